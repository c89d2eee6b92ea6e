package store_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// The store suite runs against any MongoDB-compatible URI: an embedded
// FerretDB by default, FANOUT_TEST_MONGO_URI when set (FerretDB on
// PostgreSQL under `make test`, or a real MongoDB replica set).

func open(t *testing.T) *store.Store { return openMode(t, "auto") }

func openMode(t *testing.T, domainWrites string) *store.Store {
	return openWith(t, store.Options{DomainWrites: domainWrites})
}

// openWith opens a store on the test server and a database of the test's
// own, dropped at the end; o's URI, database and timeout are set here.
func openWith(t testing.TB, o store.Options) *store.Store {
	t.Helper()
	ctx := context.Background()
	o.URI, o.Database, o.Timeout = testenv.Mongo(t), testenv.Database(t), 60*time.Second
	st, err := store.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Drop(context.Background())
		_ = st.Close(context.Background())
	})
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestVersionGuard runs on both write paths: bulk (MongoDB's) must also
// be right on a server whose bulk write stops at the first error.
func TestVersionGuard(t *testing.T) {
	for _, mode := range []string{"parallel", "bulk"} {
		t.Run(mode, func(t *testing.T) { testVersionGuard(t, openMode(t, mode)) })
	}
}

func testVersionGuard(t *testing.T, st *store.Store) {
	ctx := context.Background()
	w := func(id string, v int64, amount int) store.DomainWrite {
		return store.DomainWrite{ID: id, Version: v, Set: bson.D{{Key: "amount", Value: amount}}}
	}
	steps := []struct {
		name    string
		writes  []store.DomainWrite
		wantVer map[string]int64
		wantAmt map[string]int32
	}{
		{"create", []store.DomainWrite{w("a", 1, 10), w("b", 3, 30)}, map[string]int64{"a": 1, "b": 3}, map[string]int32{"a": 10, "b": 30}},
		{"newer applies", []store.DomainWrite{w("a", 2, 20)}, map[string]int64{"a": 2, "b": 3}, map[string]int32{"a": 20, "b": 30}},
		{"stale ignored", []store.DomainWrite{w("b", 2, 99), w("a", 2, 99)}, map[string]int64{"a": 2, "b": 3}, map[string]int32{"a": 20, "b": 30}},
		{"mixed batch", []store.DomainWrite{w("a", 1, 99), w("b", 4, 40), w("c", 1, 5)}, map[string]int64{"a": 2, "b": 4, "c": 1}, map[string]int32{"a": 20, "b": 40, "c": 5}},
	}
	for _, s := range steps {
		if err := st.ApplyDomain(ctx, s.writes); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, err := st.Versions(ctx, []string{"a", "b", "c", "missing"})
		if err != nil {
			t.Fatal(err)
		}
		for id, v := range s.wantVer {
			if got[id] != v {
				t.Errorf("%s: version of %s = %d, want %d", s.name, id, got[id], v)
			}
		}
		if _, ok := got["missing"]; ok {
			t.Errorf("%s: missing aggregate has a version", s.name)
		}
		for id, amt := range s.wantAmt {
			doc, err := st.Domain(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if a, _ := doc["amount"].(int32); a != amt {
				t.Errorf("%s: amount of %s = %v, want %d", s.name, id, doc["amount"], amt)
			}
		}
	}
}

func TestOutboxInsertIsIdempotent(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	mk := func(id, agg string, v int64, seq int64) store.OutboxEntry {
		return store.OutboxEntry{ID: id, AggregateID: agg, Version: v, Seq: seq, CreatedAt: time.Now(), Targets: []string{"x"}, Value: `{}`}
	}
	n, err := st.InsertOutbox(ctx, []store.OutboxEntry{mk("e1", "a", 1, 1), mk("e2", "a", 2, 2), mk("e3", "b", 1, 3)})
	if err != nil || n != 3 {
		t.Fatalf("first insert: n=%d err=%v", n, err)
	}
	// A replay of e2 and e3 plus a new e4: only e4 is new.
	n, err = st.InsertOutbox(ctx, []store.OutboxEntry{mk("e2", "a", 2, 4), mk("e4", "b", 2, 5), mk("e3", "b", 1, 6)})
	if err != nil {
		t.Fatalf("replay insert: %v", err)
	}
	if n != 1 {
		t.Errorf("replay inserted %d, want 1", n)
	}
	page, err := st.PendingOutbox(ctx, math.MinInt64, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range page {
		ids = append(ids, e.ID)
	}
	if fmt.Sprint(ids) != "[e1 e2 e3 e4]" {
		t.Errorf("pending in seq order = %v, want [e1 e2 e3 e4]", ids)
	}
	after, err := st.PendingOutbox(ctx, 2, 10)
	if err != nil || len(after) != 2 || after[0].ID != "e3" {
		t.Fatalf("PendingOutbox after seq 2 = %v, err %v; want [e3 e4]", after, err)
	}
	of, _, err := st.OutboxOf(ctx, []string{"b"}, 100, 1<<20)
	if err != nil || len(of) != 2 {
		t.Fatalf("OutboxOf(b) = %d entries, err %v; want 2", len(of), err)
	}
	if err := st.DeleteOutbox(ctx, []string{"e1", "e3"}); err != nil {
		t.Fatal(err)
	}
	n64, age, err := st.OutboxBacklog(ctx, time.Now())
	if err != nil || n64 != 2 || age < 0 {
		t.Fatalf("backlog = %d age %v err %v; want 2", n64, age, err)
	}
}

func TestLeaseLifecycle(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	ok, err := st.CreateLease(ctx, "relay", "r1")
	if err != nil || !ok {
		t.Fatalf("create: %v %v", ok, err)
	}
	if ok, _ := st.CreateLease(ctx, "relay", "r2"); ok {
		t.Fatal("second create succeeded")
	}
	if ok, err := st.RenewLease(ctx, "relay", "r1", 1); err != nil || !ok {
		t.Fatalf("renew: %v %v", ok, err)
	}
	if ok, _ := st.RenewLease(ctx, "relay", "r2", 1); ok {
		t.Fatal("a non-holder renewed")
	}
	l, err := st.ReadLease(ctx, "relay")
	if err != nil || l.Holder != "r1" || l.Token != 1 || l.Beat != 1 {
		t.Fatalf("read = %+v, %v", l, err)
	}
	stale := *l
	stale.Beat = 0
	if tok, _ := st.TakeLease(ctx, "relay", "r2", stale); tok != 0 {
		t.Fatal("takeover with a stale observation succeeded")
	}
	tok, err := st.TakeLease(ctx, "relay", "r2", *l)
	if err != nil || tok != 2 {
		t.Fatalf("takeover: token %d err %v; want 2", tok, err)
	}
	if ok, _ := st.RenewLease(ctx, "relay", "r1", 1); ok {
		t.Fatal("the old holder renewed after takeover")
	}
	if err := st.ReleaseLease(ctx, "relay", "r2", 2); err != nil {
		t.Fatal(err)
	}
	l, _ = st.ReadLease(ctx, "relay")
	if !l.Released {
		t.Fatal("release not recorded")
	}
}

// TestConcurrentTakeover needs an atomic conditional update, which FerretDB
// does not give (its updates are unchecked read-modify-write).
func TestConcurrentTakeover(t *testing.T) {
	st := open(t)
	if st.IsFerretDB() {
		t.Skip("FerretDB applies updates as unchecked read-modify-write, so two racing takeovers can both win; run with FANOUT_TEST_MONGO_URI pointing at a real MongoDB replica set to test this")
	}
	ctx := context.Background()
	if _, err := st.CreateLease(ctx, "relay", "r0"); err != nil {
		t.Fatal(err)
	}
	l, _ := st.ReadLease(ctx, "relay")
	var wg sync.WaitGroup
	wins := make(chan string, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := fmt.Sprintf("r%d", i+1)
			if tok, err := st.TakeLease(ctx, "relay", h, *l); err == nil && tok != 0 {
				wins <- h
			}
		}()
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d takeovers won, want exactly 1", n)
	}
}

// TestEnsureIndexesTwice: every role calls EnsureIndexes at start.
func TestEnsureIndexesTwice(t *testing.T) {
	st := open(t)
	if err := st.EnsureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestOutboxOfIsBounded: the read of ready aggregates stops at the entry
// and byte bounds, always with a prefix of each aggregate's versions.
func TestOutboxOfIsBounded(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	var es []store.OutboxEntry
	seq := int64(0)
	for _, agg := range []string{"b", "a"} {
		for _, v := range []int64{3, 1, 2} {
			seq++
			es = append(es, store.OutboxEntry{ID: fmt.Sprintf("%s%d", agg, v), AggregateID: agg, Version: v, Seq: seq, CreatedAt: time.Now(), Value: "0123456789"})
		}
	}
	if _, err := st.InsertOutbox(ctx, es); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name              string
		maxEntries, bytes int
		want              string
		more              bool
	}{
		{"unbounded", 100, 1000, "[a1 a2 a3 b1 b2 b3]", false},
		{"by count", 4, 1000, "[a1 a2 a3 b1]", true},
		{"by bytes", 100, 25, "[a1 a2]", true},
		{"one entry larger than the bound", 100, 5, "[a1]", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, more, err := st.OutboxOf(ctx, []string{"a", "b"}, tc.maxEntries, tc.bytes)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range got {
				ids = append(ids, e.ID)
			}
			if fmt.Sprint(ids) != tc.want || more != tc.more {
				t.Fatalf("OutboxOf = %v more=%v, want %s more=%v", ids, more, tc.want, tc.more)
			}
		})
	}
}
