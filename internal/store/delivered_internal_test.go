package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestDeliveredKeysOfAnyShape: any key string is its own field in a bucket,
// '.', '$' and NUL included (they would be update paths or operators as
// they are), and no two keys share a field.
func TestDeliveredKeysOfAnyShape(t *testing.T) {
	keys := []string{"Q1", "a.b", "$x", "x$", "nul\x00", "orders:A1", "ü€", "k", "", "xab", "6162"}
	seen := map[string]string{}
	for _, k := range keys {
		f := deliveredField(k)
		if prev, ok := seen[f]; ok {
			t.Fatalf("%q and %q share field %q", prev, k, f)
		}
		seen[f] = k
	}
	ctx := context.Background()
	st := openInternal(t)
	in := map[string]int64{}
	for i, k := range keys {
		in[k] = int64(i + 1)
	}
	if err := st.RecordDelivered(ctx, "la", in); err != nil {
		t.Fatal(err)
	}
	got, err := st.DeliveredVersions(ctx, "la", keys)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range in {
		if got[k] != v {
			t.Errorf("version of %q = %d, want %d", k, got[k], v)
		}
	}
}

// TestDeliveredReadsOlderPerKeyDocuments: a worker of an older version
// (during a rolling upgrade, or before it) wrote one document per key; its
// versions still count, and the newer of the two wins.
func TestDeliveredReadsOlderPerKeyDocuments(t *testing.T) {
	ctx := context.Background()
	st := openInternal(t)
	hd := st.cur()
	for _, d := range []struct {
		key string
		v   int64
	}{{"old-only", 4}, {"old-newer", 9}, {"bucket-newer", 2}} {
		if _, err := hd.delivered.InsertOne(ctx, bson.D{{Key: "_id", Value: deliveredID("la", d.key)}, {Key: "connector", Value: "la"}, {Key: "key", Value: d.key}, {Key: "version", Value: d.v}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RecordDelivered(ctx, "la", map[string]int64{"old-newer": 3, "bucket-newer": 7, "new-only": 1}); err != nil {
		t.Fatal(err)
	}
	got, err := st.DeliveredVersions(ctx, "la", []string{"old-only", "old-newer", "bucket-newer", "new-only", "none"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"old-only": 4, "old-newer": 9, "bucket-newer": 7, "new-only": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("versions %v, want %v", got, want)
	}
}

// openInternal opens a store on a database of the test's own, dropped after.
func openInternal(t *testing.T) *Store {
	t.Helper()
	st, err := Open(context.Background(), Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Drop(context.Background())
		_ = st.Close(context.Background())
	})
	return st
}
