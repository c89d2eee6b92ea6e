package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/store"
)

// TestMarkOutboxReady runs the ready marks on every path (point updates,
// one bulk write), below and above the point limit:
// a mark sets ready only on an entry of its aggregate at or below its
// version, never inserts, and ignores ids without an entry.
func TestMarkOutboxReady(t *testing.T) {
	for _, mode := range []string{"in", "point"} {
		for _, n := range []int{5, 40, 120} { // 120: more statements than FerretDB 1.24 has pooled connections (50)
			t.Run(fmt.Sprintf("%s/%d", mode, n), func(t *testing.T) {
				ctx := context.Background()
				st := openIDReads(t, mode)
				var entries []store.OutboxEntry
				var marks []store.ReadyMark
				for i := range n {
					agg := fmt.Sprintf("agg-%02d", i%7)
					id := fmt.Sprintf("ev-%02d", i)
					entries = append(entries, store.OutboxEntry{ID: id, AggregateID: agg, Version: int64(i + 1), Seq: int64(i), CreatedAt: time.Now(), Value: "{}"})
					switch i % 5 {
					case 0: // above the mark's version: not ready
						marks = append(marks, store.ReadyMark{ID: id, AggregateID: agg, Version: int64(i)})
					case 1: // another aggregate's mark (a reused event id): not ready
						marks = append(marks, store.ReadyMark{ID: id, AggregateID: "other", Version: 1000})
					case 2: // not marked
					default:
						marks = append(marks, store.ReadyMark{ID: id, AggregateID: agg, Version: int64(i + 1)})
					}
				}
				marks = append(marks, store.ReadyMark{ID: "no-such-entry", AggregateID: "agg-00", Version: 1000})
				if _, err := st.InsertOutbox(ctx, entries); err != nil {
					t.Fatal(err)
				}
				if err := st.MarkOutboxReady(ctx, marks); err != nil {
					t.Fatal(err)
				}
				page, err := st.PendingOutbox(ctx, -1<<63, 1000)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) != n {
					t.Fatalf("%d entries after marking, want %d (a mark never inserts)", len(page), n)
				}
				var got, want []string
				for i, e := range page {
					if e.Ready {
						got = append(got, e.ID)
					}
					if i%5 >= 3 {
						want = append(want, fmt.Sprintf("ev-%02d", i))
					}
					if e.CreatedAt.IsZero() {
						t.Fatalf("the page lacks created_at (the relay's grace needs it)")
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("ready %v, want %v", got, want)
				}
			})
		}
	}
}

// TestApplyDomainGuardedReportsRefusals: on both write paths, the writes
// the guard refused (a newer document, a version that is not a number) are
// reported, and only those.
func TestApplyDomainGuardedReportsRefusals(t *testing.T) {
	for _, mode := range []string{"bulk", "parallel"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			st := openWith(t, store.Options{DomainWrites: mode})
			if err := st.ApplyDomain(ctx, []store.DomainWrite{{ID: "NEWER", Version: 5}, {ID: "SAME", Version: 2}}); err != nil {
				t.Fatal(err)
			}
			if err := st.PutRawDomain(ctx, "TEXT", bson.D{{Key: "version", Value: "seven"}}); err != nil {
				t.Fatal(err)
			}
			refused, err := st.ApplyDomainGuarded(ctx, []store.DomainWrite{
				{ID: "NEWER", Version: 3}, {ID: "SAME", Version: 2}, {ID: "TEXT", Version: 1}, {ID: "NEW", Version: 1}, {ID: "UP", Version: 4},
			})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(refused)
			if want := []string{"NEWER", "SAME", "TEXT"}; !slices.Equal(refused, want) {
				t.Fatalf("refused %v, want %v", refused, want)
			}
		})
	}
}
