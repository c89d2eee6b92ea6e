package store_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestRecordDelivered checks the version guard of the delivered versions
// on both write paths: one bulkWrite (with its fallback where the server
// stops at the first error) and parallel single upserts.
func TestRecordDelivered(t *testing.T) {
	uri := testenv.Mongo(t)
	for _, mode := range []string{"bulk", "parallel"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.Open(ctx, store.Options{URI: uri, Database: testenv.Database(t), Timeout: 20 * time.Second, DomainWrites: mode})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = st.Drop(context.Background())
				_ = st.Close(context.Background())
			})
			steps := []struct {
				name      string
				connector string
				versions  map[string]int64
				want      map[string]int64 // for connector "la"
			}{
				{"create", "la", map[string]int64{"a": 1, "b": 3}, map[string]int64{"a": 1, "b": 3}},
				{"newer applies", "la", map[string]int64{"a": 2}, map[string]int64{"a": 2, "b": 3}},
				{"stale ignored", "la", map[string]int64{"a": 1, "b": 2}, map[string]int64{"a": 2, "b": 3}},
				{"mixed batch", "la", map[string]int64{"a": 1, "b": 5, "c": 7}, map[string]int64{"a": 2, "b": 5, "c": 7}},
				{"other connector apart", "sf", map[string]int64{"a": 100, "d": 1}, map[string]int64{"a": 2, "b": 5, "c": 7}},
				{"empty", "la", nil, map[string]int64{"a": 2, "b": 5, "c": 7}},
			}
			for _, s := range steps {
				if err := st.RecordDelivered(ctx, s.connector, s.versions); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				got, err := st.DeliveredVersions(ctx, "la", []string{"a", "b", "c", "d", "missing"})
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(s.want) {
					t.Errorf("%s: got %v, want %v", s.name, got, s.want)
				}
				for k, v := range s.want {
					if got[k] != v {
						t.Errorf("%s: version of %s = %d, want %d", s.name, k, got[k], v)
					}
				}
			}
			sf, err := st.DeliveredVersions(ctx, "sf", []string{"a", "d"})
			if err != nil {
				t.Fatal(err)
			}
			if sf["a"] != 100 || sf["d"] != 1 {
				t.Errorf("sf versions = %v, want a:100 d:1", sf)
			}
			// A larger flush, half of it stale, as a worker sends it.
			big := make(map[string]int64)
			for i := range 120 {
				big[fmt.Sprintf("k%03d", i)] = int64(10 + i%2)
			}
			if err := st.RecordDelivered(ctx, "la", big); err != nil {
				t.Fatal(err)
			}
			for k := range big {
				big[k] = 10
			}
			if err := st.RecordDelivered(ctx, "la", big); err != nil {
				t.Fatal(err)
			}
			keys := make([]string, 0, len(big))
			for k := range big {
				keys = append(keys, k)
			}
			got, err := st.DeliveredVersions(ctx, "la", keys)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 120 {
				k := fmt.Sprintf("k%03d", i)
				if want := int64(10 + i%2); got[k] != want {
					t.Fatalf("version of %s = %d, want %d", k, got[k], want)
				}
			}
		})
	}
}

// TestDeliveredLog: DeliveredVersions is the newer of the delivered log
// and the per-key records; RecordedVersions the records alone; a segment
// too large or a corrupt one is an error, never a panic or a silent loss.
func TestDeliveredLog(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Drop(context.Background())
		_ = st.Close(context.Background())
	})
	if err := st.RecordDelivered(ctx, "la", map[string]int64{"a": 5, "b": 3}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("k", 300) + "/é.$x" // any key round-trips
	for i, seg := range []store.DeliveredSegment{
		{ID: "w1/1", Connector: "la", Writer: "w1", Versions: map[string]int64{"a": 9, "c": 1, long: 1 << 40}},
		{ID: "w1/2", Connector: "la", Writer: "w1", Versions: map[string]int64{"a": 7, "c": 2}},
		{ID: "w2/1", Connector: "sf", Writer: "w2", Versions: map[string]int64{"b": 100}},
	} {
		if err := st.AppendDelivered(ctx, seg); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
	}
	keys := []string{"a", "b", "c", "missing", long}
	got, err := st.DeliveredVersions(ctx, "la", keys)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"a": 9, "b": 3, "c": 2, long: 1 << 40}; !maps.Equal(got, want) {
		t.Errorf("DeliveredVersions = %v, want %v", got, want)
	}
	got, err = st.RecordedVersions(ctx, "la", keys)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"a": 5, "b": 3}; !maps.Equal(got, want) {
		t.Errorf("RecordedVersions = %v, want %v", got, want)
	}
	segs, err := st.DeliveredLog(ctx, "la")
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 || segs[0].ID != "w1/1" || segs[1].ID != "w1/2" || segs[0].Writer != "w1" || segs[0].At.IsZero() {
		t.Fatalf("DeliveredLog(la) = %+v, want w1/1 then w1/2 with writer and time", segs)
	}
	byID, err := st.DeliveredSegments(ctx, []string{"w1/2", "gone/1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(byID) != 1 || byID[0].ID != "w1/2" || !maps.Equal(byID[0].Versions, map[string]int64{"a": 7, "c": 2}) {
		t.Fatalf("DeliveredSegments(w1/2, gone/1) = %+v, want w1/2 alone with its versions", byID)
	}
	if err := st.DropDelivered(ctx, []string{"w1/1", "w1/2"}); err != nil {
		t.Fatal(err)
	}
	if segs, err := st.DeliveredLog(ctx, "la"); err != nil || len(segs) != 0 {
		t.Fatalf("after the drop: %d segments, err %v", len(segs), err)
	}

	huge := map[string]int64{}
	for i := range store.MaxSegmentBytes / 1000 {
		huge[fmt.Sprintf("%01000d", i)] = 1
	}
	if err := st.AppendDelivered(ctx, store.DeliveredSegment{ID: "w1/3", Connector: "la", Versions: huge}); err == nil || !strings.Contains(err.Error(), "split it") {
		t.Errorf("an oversize segment: err %v, want one asking to split it", err)
	}

	// A corrupt segment (written by hand) is reported with its id.
	if err := st.PutRawDelivered(ctx, bson.D{{Key: "_id", Value: "bad/1"}, {Key: "connector", Value: "la"}, {Key: "versions", Value: bson.Binary{Data: []byte{0x05, 'a'}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeliveredVersions(ctx, "la", keys); err == nil || !strings.Contains(err.Error(), "bad/1") {
		t.Errorf("a corrupt segment: err %v, want one naming bad/1", err)
	}
}
