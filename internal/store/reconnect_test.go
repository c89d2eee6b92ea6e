package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// withQuery adds a query option to a MongoDB URI.
func withQuery(uri, opt string) string {
	if strings.Contains(uri, "?") {
		return uri + "&" + opt
	}
	if !strings.Contains(strings.TrimPrefix(uri, "mongodb://"), "/") {
		uri += "/"
	}
	return uri + "?" + opt
}

// TestReconnect: a Store is swapped to a new client (a different but
// equivalent URI, as after mongo.uri_file rotated) while a goroutine keeps
// writing and reading through it: no command fails because of the swap,
// and the replaced client is disconnected (commands still going to it
// would fail). A Reconnect to an unreachable URI fails, naming no
// password, and the store keeps serving on the client it had.
func TestReconnect(t *testing.T) {
	ctx := context.Background()
	uri := testenv.Mongo(t)
	st, err := store.Open(ctx, store.Options{URI: uri, Database: testenv.Database(t), Timeout: 20 * time.Second, RetireGrace: time.Second, AppName: "fanout-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Drop(context.Background())
		_ = st.Close(context.Background())
	})

	var (
		ops     atomic.Int64
		mu      sync.Mutex
		errs    []error
		stop    = make(chan struct{})
		stopped = make(chan struct{})
	)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("q-%d-%d", w, i%5)
				err := st.ApplyDomain(ctx, []store.DomainWrite{{ID: id, Version: i, Set: bson.D{{Key: "n", Value: i}}}})
				if err == nil {
					var doc bson.M
					doc, err = st.Domain(ctx, id)
					if err == nil && doc == nil {
						err = fmt.Errorf("%s: written, then not found", id)
					}
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
				ops.Add(1)
			}
		}()
	}
	go func() { wg.Wait(); close(stopped) }()
	waitOps := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for ops.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("the writer did %d rounds, want %d", ops.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitOps(5)
	if err := st.Reconnect(ctx, withQuery(uri, "appName=fanout-test-rotated")); err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	// The old client is disconnected now: rounds from here on ran on
	// the new one.
	waitOps(ops.Load() + 5)

	const password = "hunter2-not-a-real-password"
	down, cancel := context.WithTimeout(ctx, 2*time.Second)
	err = st.Reconnect(down, "mongodb://fanout:"+password+"@127.0.0.1:1/?connectTimeoutMS=200")
	cancel()
	if err == nil {
		t.Fatal("reconnect to an unreachable URI succeeded")
	}
	if strings.Contains(err.Error(), password) {
		t.Fatalf("reconnect error shows the password: %v", err)
	}
	waitOps(ops.Load() + 5)
	close(stop)
	<-stopped

	mu.Lock()
	defer mu.Unlock()
	for _, err := range errs {
		t.Errorf("command failed around a reconnect: %v", err)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("store after a failed reconnect: %v", err)
	}
}
