package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// failingDelivered is the real store with one injected failure: an
// AppendDelivered call whose segment carries key failKey fails without
// writing.
type failingDelivered struct {
	*store.Store
	failKey string
	failed  atomic.Bool
}

func (f *failingDelivered) AppendDelivered(ctx context.Context, seg DeliveredSegment) error {
	if _, ok := seg.Versions[f.failKey]; ok && f.failed.CompareAndSwap(false, true) {
		return errors.New("injected failure")
	}
	return f.Store.AppendDelivered(ctx, seg)
}

// quietWorker is a worker for connector name on st that is never run:
// the tests drive its flush and fold directly.
func quietWorker(t *testing.T, name string, st DeliveredStore) *Worker {
	t.Helper()
	w, err := New(Config{Topic: "notif"}, name, struct{ connectors.Connector }{}, WithDeliveredStore(st), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func keyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("k%05d", i)
	}
	return out
}

// TestDeliveredFlushKeepsProgress: a flush of many keys that fails part of
// the way keeps what it stored and puts back only the rest, so that a
// backlog of delivered versions shrinks with every flush instead of being
// written again in full (issue "Performance": at 1,200 deliveries/s the
// flush of 10,000 upserts missed its timeout and started over every time).
func TestDeliveredFlushKeepsProgress(t *testing.T) {
	st, err := store.Open(context.Background(), store.Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Drop(context.Background()); _ = st.Close(context.Background()) })
	fs := &failingDelivered{Store: st, failKey: "k01500"}
	w := quietWorker(t, "flush", fs)

	const keys = 10000 // three segments
	all := keyNames(keys)
	for i, k := range all {
		w.delivered.note(k, int64(i+1))
	}
	start := time.Now()
	if err := w.flushDelivered(context.Background(), time.Minute); err == nil {
		t.Fatal("the flush with an injected failure reported success")
	}
	t.Logf("flush of %d keys with one failed write: %v", keys, time.Since(start))
	left := w.delivered.unflushed()
	if left == 0 || left >= keys {
		t.Fatalf("%d of %d keys left to flush after one failed write: want only the failed part put back", left, keys)
	}
	stored, err := st.DeliveredVersions(context.Background(), "flush", all)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored)+left != keys {
		t.Fatalf("%d stored + %d left to flush != %d keys", len(stored), left, keys)
	}
	if got := w.stats.DeliveredFlushKeys.Load(); got != keys {
		t.Fatalf("the flush counted %d keys, want %d", got, keys)
	}
	// The next flush stores the rest.
	if err := w.flushDelivered(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if left := w.delivered.unflushed(); left != 0 {
		t.Fatalf("%d keys left after a good flush", left)
	}
	stored, err = st.DeliveredVersions(context.Background(), "flush", all)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range all {
		if stored[k] != int64(i+1) {
			t.Fatalf("%s: stored version %d, want %d", k, stored[k], i+1)
		}
	}
}

// TestDeliveredFlushWritesPerSegment: a flush costs the store a few
// writes whatever the number of keys, not one per key (issue
// "Performance": per-key guarded upserts, about 1 ms of FerretDB's CPU
// each, could not keep up with a worker delivering 1,200/s, let alone
// 3,000/s).
func TestDeliveredFlushWritesPerSegment(t *testing.T) {
	var mu sync.Mutex
	sent := map[string]int{}
	mon := &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
		mu.Lock()
		sent[ev.CommandName]++
		mu.Unlock()
	}}
	st, err := store.Open(context.Background(), store.Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second, Monitor: mon})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Drop(context.Background()); _ = st.Close(context.Background()) })
	w := quietWorker(t, "percall", st)
	const keys = 10000
	for i, k := range keyNames(keys) {
		w.delivered.note(k, int64(i+1))
	}
	mu.Lock()
	clear(sent)
	mu.Unlock()
	start := time.Now()
	if err := w.flushDelivered(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range sent {
		total += n
	}
	t.Logf("flush of %d keys: %v, commands %v", keys, took, sent)
	if want := (keys + 4095) / 4096; total > want {
		t.Fatalf("a flush of %d keys sent %d commands (%v), want at most %d", keys, total, sent, want)
	}
}

// failingRecord is the real store whose RecordDelivered fails while fail
// is set.
type failingRecord struct {
	*store.Store
	fail atomic.Bool
}

func (f *failingRecord) RecordDelivered(ctx context.Context, connector string, versions map[string]int64) error {
	if f.fail.Load() {
		return errors.New("injected failure")
	}
	return f.Store.RecordDelivered(ctx, connector, versions)
}

// TestDeliveredFold: the delivered log is folded into the per-key
// versions, a key written once however many segments carry it, and a
// segment leaves the log only once folded; a failed fold keeps its
// segments, and another worker folds the segments of one that stopped.
func TestDeliveredFold(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Drop(context.Background()); _ = st.Close(context.Background()) })
	fs := &failingRecord{Store: st}
	w := quietWorker(t, "fold", fs)
	const keys, rounds = 1000, 3
	all := keyNames(keys)
	want := make(map[string]int64, keys)
	for r := range rounds {
		for i, k := range all {
			want[k] = int64(r*keys + i + 1)
			w.delivered.note(k, want[k])
		}
		if err := w.flushDelivered(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, read func() (map[string]int64, error)) {
		t.Helper()
		got, err := read()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		for _, k := range all {
			if got[k] != want[k] {
				t.Fatalf("%s: %s at version %d, want %d", step, k, got[k], want[k])
			}
		}
	}
	logLen := func() int {
		segs, err := st.DeliveredLog(ctx, "fold")
		if err != nil {
			t.Fatal(err)
		}
		return len(segs)
	}
	if n := logLen(); n != rounds {
		t.Fatalf("%d segments in the log after %d flushes, want %d", n, rounds, rounds)
	}
	check("before the fold, read with the log", func() (map[string]int64, error) { return st.DeliveredVersions(ctx, "fold", all) })

	// Segments newer than the fold's cut-off stay.
	if n, err := w.fold(ctx, time.Now().Add(-time.Hour)); n != 0 || err != nil {
		t.Fatalf("fold of segments older than an hour: %d folded, err %v; want none", n, err)
	}
	// A failed fold keeps every segment, in the log and in the queue.
	fs.fail.Store(true)
	if _, err := w.fold(ctx, time.Now()); err == nil {
		t.Fatal("a fold whose writes failed reported success")
	}
	fs.fail.Store(false)
	if n := logLen(); n != rounds {
		t.Fatalf("%d segments in the log after a failed fold, want %d", n, rounds)
	}
	if n, err := w.fold(ctx, time.Now()); n != rounds || err != nil {
		t.Fatalf("fold: %d segments folded, err %v; want %d", n, err, rounds)
	}
	if got := w.stats.DeliveredFoldKeys.Load(); got != keys {
		t.Errorf("the fold wrote %d keys for %d keys in %d segments: want each key once", got, keys, rounds)
	}
	if n := logLen(); n != 0 {
		t.Fatalf("%d segments left in the log after the fold", n)
	}
	check("after the fold, the per-key records", func() (map[string]int64, error) { return st.RecordedVersions(ctx, "fold", all) })

	// A worker that stopped before folding leaves its segment; another
	// folds it once it is older than orphanAge, not before.
	gone := quietWorker(t, "fold", st)
	for i, k := range all {
		want[k] = int64(rounds*keys + i + 1)
		gone.delivered.note(k, want[k])
	}
	if err := gone.flushDelivered(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	segs, err := st.DeliveredLog(ctx, "fold")
	if err != nil {
		t.Fatal(err)
	}
	w.adoptOrphans(segs, time.Now())
	if n, _ := w.fold(ctx, time.Now()); n != 0 {
		t.Fatalf("a fresh segment of another writer was folded (%d)", n)
	}
	w.adoptOrphans(segs, time.Now().Add(orphanAge+time.Minute))
	if n, err := w.fold(ctx, time.Now()); n != 1 || err != nil {
		t.Fatalf("orphan fold: %d folded, err %v; want 1", n, err)
	}
	if n := logLen(); n != 0 {
		t.Fatalf("%d segments left in the log after the orphan fold", n)
	}
	check("after the orphan fold", func() (map[string]int64, error) { return st.RecordedVersions(ctx, "fold", all) })
}
