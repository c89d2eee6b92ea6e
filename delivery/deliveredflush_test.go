package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// failingDelivered is the real store with one injected failure: a
// RecordDelivered call that carries key failKey fails without writing.
type failingDelivered struct {
	*store.Store
	failKey string
	failed  atomic.Bool
}

func (f *failingDelivered) RecordDelivered(ctx context.Context, connector string, versions map[string]int64) error {
	if _, ok := versions[f.failKey]; ok && f.failed.CompareAndSwap(false, true) {
		return errors.New("injected failure")
	}
	return f.Store.RecordDelivered(ctx, connector, versions)
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
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	fs := &failingDelivered{Store: st, failKey: "k01500"}
	w, err := New(Config{Topic: "notif"}, "flush", struct{ connectors.Connector }{}, WithDeliveredStore(fs), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}

	const keys = 3000
	for i := range keys {
		w.delivered.note(fmt.Sprintf("k%05d", i), int64(i+1))
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
	all := make([]string, keys)
	for i := range all {
		all[i] = fmt.Sprintf("k%05d", i)
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
