package store_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/store"
)

func openIDReads(t testing.TB, idReads string) *store.Store {
	return openWith(t, store.Options{IDReads: idReads})
}

// TestIDReadModes checks that reads and deletes by a set of ids give the
// same answers by one $in command and by point commands, below and above
// the point-read limit, with missing ids among them.
func TestIDReadModes(t *testing.T) {
	for _, mode := range []string{"in", "point"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			st := openIDReads(t, mode)
			var writes []store.DomainWrite
			var entries []store.OutboxEntry
			for i := range 40 {
				id := fmt.Sprintf("agg-%02d", i)
				writes = append(writes, store.DomainWrite{ID: id, Version: int64(i + 1), Set: bson.D{{Key: "n", Value: i}}})
				entries = append(entries, store.OutboxEntry{ID: "ev-" + id, AggregateID: id, Version: int64(i + 1), Value: "{}"})
			}
			if err := st.ApplyDomain(ctx, writes); err != nil {
				t.Fatal(err)
			}
			if _, err := st.InsertOutbox(ctx, entries); err != nil {
				t.Fatal(err)
			}
			delivered := map[string]int64{}
			for i := range 40 {
				delivered[fmt.Sprintf("agg-%02d", i)] = int64(100 + i)
			}
			if err := st.RecordDelivered(ctx, "c", delivered); err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{3, 40} { // below and above the point-read limit
				ids := []string{"missing-1"}
				want := map[string]int64{}
				for i := range n {
					id := fmt.Sprintf("agg-%02d", i)
					ids = append(ids, id)
					want[id] = int64(i + 1)
				}
				got, err := st.Versions(ctx, ids)
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(got, want) {
					t.Errorf("Versions of %d ids = %v, want %v", len(ids), got, want)
				}
				gotD, err := st.DeliveredVersions(ctx, "c", ids)
				if err != nil {
					t.Fatal(err)
				}
				for id, v := range want {
					want[id] = v + 99
				}
				if !maps.Equal(gotD, want) {
					t.Errorf("DeliveredVersions of %d ids = %v, want %v", len(ids), gotD, want)
				}
			}
			// Delete 3 (point path when on) and then the rest (one deleteMany).
			if err := st.DeleteOutbox(ctx, []string{"ev-agg-00", "ev-agg-01", "ev-agg-02", "ev-missing"}); err != nil {
				t.Fatal(err)
			}
			left, err := st.PendingOutbox(ctx, math.MinInt64, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) != 37 {
				t.Fatalf("after deleting 3 entries, %d are left, want 37", len(left))
			}
			var rest []string
			for _, e := range left {
				rest = append(rest, e.ID)
			}
			if err := st.DeleteOutbox(ctx, rest); err != nil {
				t.Fatal(err)
			}
			if left, _ = st.PendingOutbox(ctx, math.MinInt64, 100); len(left) != 0 {
				t.Fatalf("after deleting all, %d entries are left", len(left))
			}
		})
	}
}

// BenchmarkVersionsByIDs reads the versions of 10 aggregates from READ
// models of growing size, by one $in command and by point commands: on
// FerretDB the $in cost grows with the collection, the point cost with the
// ids. Run against the test store (make services-up, then
// FANOUT_TEST_MONGO_URI=... go test -run '^$' -bench VersionsByIDs ./internal/store/).
func BenchmarkVersionsByIDs(b *testing.B) {
	for _, docs := range []int{1_000, 10_000} {
		for _, mode := range []string{"in", "point"} {
			b.Run(fmt.Sprintf("docs=%d/mode=%s", docs, mode), func(b *testing.B) {
				ctx := context.Background()
				st := openIDReads(b, mode)
				writes := make([]store.DomainWrite, 0, 1000)
				for i := range docs {
					writes = append(writes, store.DomainWrite{ID: fmt.Sprintf("agg-%06d", i), Version: 1, Set: bson.D{{Key: "n", Value: i}}})
					if len(writes) == cap(writes) || i == docs-1 {
						if err := st.ApplyDomain(ctx, writes); err != nil {
							b.Fatal(err)
						}
						writes = writes[:0]
					}
				}
				ids := make([]string, 10)
				b.ResetTimer()
				for n := 0; b.Loop(); n++ {
					for i := range ids {
						ids[i] = fmt.Sprintf("agg-%06d", (n*7919+i*104729)%docs)
					}
					if _, err := st.Versions(ctx, ids); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
