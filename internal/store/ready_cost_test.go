package store

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestReadyMarkCost times the ready marks' strategies on the test store
// at two outbox sizes, beside the alternative of one "ready up to"
// watermark document per partition (one guarded upsert on a tiny
// collection), for choosing MarkOutboxReady's paths (docs/architecture.md).
func TestReadyMarkCost(t *testing.T) {
	if os.Getenv("FANOUT_BENCH_MARKS") == "" {
		t.Skip("set FANOUT_BENCH_MARKS=1 to time the ready marks' strategies (about a minute of load)")
	}
	ctx := context.Background()
	st, err := Open(ctx, Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Drop(context.Background()); _ = st.Close(context.Background()) })
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	hd := st.cur()
	value := strings.Repeat("x", 600)
	n := 0
	fill := func(upTo int) {
		for n < upTo {
			batch := make([]OutboxEntry, 0, 1000)
			for range min(1000, upTo-n) {
				batch = append(batch, OutboxEntry{ID: fmt.Sprintf("e%07d", n), AggregateID: fmt.Sprintf("a%05d", n%5000), Version: int64(n + 1), Seq: int64(n), CreatedAt: time.Now(), Value: value})
				n++
			}
			if _, err := st.InsertOutbox(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	next := 0 // marks go to entries not marked yet
	marks := func(k int) []ReadyMark {
		out := make([]ReadyMark, k)
		for i := range out {
			id := next
			next++
			out[i] = ReadyMark{ID: fmt.Sprintf("e%07d", id), AggregateID: fmt.Sprintf("a%05d", id%5000), Version: int64(id + 1)}
		}
		return out
	}
	load := func() string {
		b, _ := os.ReadFile("/proc/loadavg")
		return strings.Join(strings.Fields(string(b))[:3], " ")
	}
	watermark := hd.db.Collection("ready_watermarks")
	wm := int64(0)
	for _, size := range []int{1000, 10000} {
		fill(size)
		for _, k := range []int{32, 200} {
			for _, strat := range []string{"point", "bulk", "in", "watermark"} {
				var ds []time.Duration
				for range 7 {
					m := marks(k)
					t0 := time.Now()
					var err error
					switch strat {
					case "point":
						err = markPoint(ctx, hd.outbox, m)
					case "in":
						err = markIn(ctx, hd.outbox, m)
					case "bulk":
						// Chunked as MarkOutboxReady does: one bulk update of 50
						// statements hangs FerretDB 1.24 for good.
						for c := m; len(c) > 0 && err == nil; c = c[min(len(c), ferretBulkMax):] {
							err = markBulk(ctx, hd.outbox, c[:min(len(c), ferretBulkMax)], idFilter)
						}
					case "watermark":
						wm += int64(k)
						_, err = watermark.UpdateOne(ctx, bson.D{{Key: "_id", Value: "p0"}, {Key: "upto", Value: bson.D{{Key: "$lt", Value: wm}}}},
							bson.D{{Key: "$set", Value: bson.D{{Key: "upto", Value: wm}}}}, options.UpdateOne().SetUpsert(true))
					}
					if err != nil {
						t.Fatal(err)
					}
					ds = append(ds, time.Since(t0))
				}
				slices.Sort(ds)
				t.Logf("outbox %6d entries, %3d marks, %-9s: median %7.1f ms, max %7.1f ms (%.2f ms/mark) load %s",
					size, k, strat, ms(ds[len(ds)/2]), ms(ds[len(ds)-1]), ms(ds[len(ds)/2])/float64(k), load())
			}
		}
	}
}

// markIn, the alternative measured and not used, marks by one updateMany: _id $in, and per (aggregate, version) of
// the marks its ids (the projector gives all of an aggregate's marks one
// version, so there is a clause per aggregate).
func markIn(ctx context.Context, coll *mongo.Collection, marks []ReadyMark) error {
	type bound struct {
		agg string
		v   int64
	}
	byBound := map[bound][]string{}
	var order []bound
	ids := make([]string, len(marks))
	for i, m := range marks {
		ids[i] = m.ID
		b := bound{m.AggregateID, m.Version}
		if _, ok := byBound[b]; !ok {
			order = append(order, b)
		}
		byBound[b] = append(byBound[b], m.ID)
	}
	or := make(bson.A, 0, len(order))
	for _, b := range order {
		or = append(or, bson.D{{Key: "aggregate_id", Value: b.agg}, {Key: "version", Value: bson.D{{Key: "$lte", Value: b.v}}},
			{Key: "_id", Value: bson.D{{Key: "$in", Value: byBound[b]}}}})
	}
	_, err := coll.UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "$or", Value: or}}, readyUpdate())
	return err
}

// markPoint, an alternative measured, marks by concurrent updateOne by _id alone.
func markPoint(ctx context.Context, coll *mongo.Collection, marks []ReadyMark) error {
	return forEachConcurrently(ctx, len(marks), pointWorkers, func(ctx context.Context, i int) error {
		if _, err := coll.UpdateOne(ctx, idFilter(marks[i]), readyUpdate()); err != nil {
			return fmt.Errorf("mark %q: %w", marks[i].ID, err)
		}
		return nil
	})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
