package store_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/fanout-dev/fanout/internal/store"
)

// sentCommand is one command the driver sent: its name, collection and,
// for deletes, the filters of its statements.
type sentCommand struct {
	name, coll string
	filters    []bson.Raw
}

type commandLog struct {
	mu   sync.Mutex
	cmds []sentCommand
}

func (l *commandLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
		c := sentCommand{name: ev.CommandName}
		if v, err := ev.Command.LookupErr(ev.CommandName); err == nil {
			c.coll, _ = v.StringValueOK()
		}
		if ev.CommandName == "delete" {
			if arr, ok := ev.Command.Lookup("deletes").ArrayOK(); ok {
				vals, _ := arr.Values()
				for _, v := range vals {
					if d, ok := v.DocumentOK(); ok {
						c.filters = append(c.filters, d.Lookup("q").Document())
					}
				}
			}
		}
		l.mu.Lock()
		l.cmds = append(l.cmds, c)
		l.mu.Unlock()
	}}
}

func (l *commandLog) take() []sentCommand {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.cmds
	l.cmds = nil
	return out
}

// TestStoreCommandsPerBatch: the store's calls cost commands per batch,
// not per document, on MongoDB's code path (bulk writes, $in reads): one
// find for a set of ids or a page of the outbox however large (no getMore
// round trips), one update for a batch's READ upserts, one delete for a
// batch of published entries. And deletes of published entries address
// the outbox by _id alone, never the READ model, on both id-read paths.
func TestStoreCommandsPerBatch(t *testing.T) {
	const n = 150 // above the server's default first batch of 101
	for _, idReads := range []string{"in", "point"} {
		t.Run(idReads, func(t *testing.T) {
			ctx := context.Background()
			var log commandLog
			st := openWith(t, store.Options{DomainWrites: "bulk", IDReads: idReads, Monitor: log.monitor()})
			var writes []store.DomainWrite
			var entries []store.OutboxEntry
			var ids, entryIDs []string
			for i := range n {
				id := fmt.Sprintf("agg-%03d", i)
				ids = append(ids, id)
				writes = append(writes, store.DomainWrite{ID: id, Version: 1, Set: bson.D{{Key: "n", Value: i}}})
				entries = append(entries, store.OutboxEntry{ID: "ev-" + id, AggregateID: id, Version: 1, Seq: int64(i), Value: "{}"})
				entryIDs = append(entryIDs, "ev-"+id)
			}
			log.take()
			if err := st.ApplyDomain(ctx, writes); err != nil {
				t.Fatal(err)
			}
			// One update on MongoDB; FerretDB gets bulks of 16 statements
			// (more can exhaust its connection pool for good).
			wantUpdates := 1
			if st.IsFerretDB() {
				wantUpdates = (n + 15) / 16
			}
			if got := names(log.take()); idReads == "in" && (len(got) != wantUpdates || !allNamed(got, "update")) {
				t.Errorf("ApplyDomain of %d writes sent %v, want %d update(s)", n, got, wantUpdates)
			}
			if _, err := st.InsertOutbox(ctx, entries); err != nil {
				t.Fatal(err)
			}
			if got := names(log.take()); !equal(got, "insert") {
				t.Errorf("InsertOutbox of %d entries sent %v, want one insert", n, got)
			}
			if v, err := st.Versions(ctx, ids); err != nil || len(v) != n {
				t.Fatalf("Versions: %d of %d, %v", len(v), n, err)
			}
			if got := names(log.take()); !equal(got, "find") {
				t.Errorf("Versions of %d ids sent %v, want one find", n, got)
			}
			page, err := st.PendingOutbox(ctx, math.MinInt64, 500)
			if err != nil || len(page) != n {
				t.Fatalf("PendingOutbox: %d of %d, %v", len(page), n, err)
			}
			if got := names(log.take()); !equal(got, "find") {
				t.Errorf("PendingOutbox of %d entries sent %v, want one find", n, got)
			}
			for _, del := range [][]string{entryIDs[:3], entryIDs[3:]} {
				if err := st.DeleteOutbox(ctx, del); err != nil {
					t.Fatal(err)
				}
				cmds := log.take()
				if len(del) > 32 && len(cmds) != 1 {
					t.Errorf("DeleteOutbox of %d ids sent %d commands, want one", len(del), len(cmds))
				}
				for _, c := range cmds {
					if c.name != "delete" || c.coll != "outbox" {
						t.Errorf("DeleteOutbox sent %s on %q, want delete on the outbox", c.name, c.coll)
					}
					for _, f := range c.filters {
						if keys, _ := f.Elements(); len(keys) != 1 || keys[0].Key() != "_id" {
							t.Errorf("DeleteOutbox filter %v: want the outbox _id alone", f)
						}
					}
				}
			}
			if left, err := st.PendingOutbox(ctx, math.MinInt64, 500); err != nil || len(left) != 0 {
				t.Errorf("after the deletes %d entries are left (%v)", len(left), err)
			}
		})
	}
}

func names(cs []sentCommand) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.name)
	}
	return out
}

func equal(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func allNamed(got []string, name string) bool {
	for _, g := range got {
		if g != name {
			return false
		}
	}
	return true
}
