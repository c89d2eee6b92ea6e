package transport

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// TestIdlePoolSizedToConcurrency runs n > 100 callers, each making several
// calls in a row, against one host. With the idle pool sized to n, every
// connection a call frees is kept for the next: the server sees about n
// connections in all, not a fresh dial for most calls, and each call
// arrives exactly once.
func TestIdlePoolSizedToConcurrency(t *testing.T) {
	const (
		n      = 160
		rounds = 5
	)
	var newConns atomic.Int64
	var mu sync.Mutex
	seen := make(map[string]int)
	// Every round's n calls wait until all n are in flight, so that n
	// connections are busy at once and then freed together: the case the
	// pool must keep.
	var arrived int
	releases := make([]chan struct{}, rounds)
	for i := range releases {
		releases[i] = make(chan struct{})
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Id")
		mu.Lock()
		seen[id]++
		round := arrived / n
		arrived++
		if arrived%n == 0 {
			close(releases[round])
		}
		mu.Unlock()
		<-releases[round]
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	c, err := New(Options{MaxConcurrency: n, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	errs := make(chan error, n*rounds)
	// Rounds run one after the other: between two rounds all n
	// connections sit idle at once, as between two bursts of a backlog.
	for r := range rounds {
		var wg sync.WaitGroup
		for g := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := strconv.Itoa(g) + "-" + strconv.Itoa(r)
				resp, err := c.Do(ctx, &Request{Method: http.MethodPost, URL: srv.URL, Header: http.Header{"X-Id": {id}}, Body: []byte(id)})
				if err != nil {
					errs <- err
					return
				}
				if resp.StatusCode != http.StatusNoContent {
					errs <- &statusError{resp.StatusCode}
				}
			}()
		}
		wg.Wait()
	}
	close(errs)
	for err := range errs {
		t.Fatalf("call failed: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n*rounds {
		t.Fatalf("server saw %d distinct calls, want %d", len(seen), n*rounds)
	}
	for id, k := range seen {
		if k != 1 {
			t.Fatalf("call %s arrived %d times", id, k)
		}
	}
	// A few extra dials are Go's transport racing a dial against a
	// connection being freed; churn would show as hundreds.
	got := newConns.Load()
	t.Logf("%d callers, %d calls: %d connections", n, n*rounds, got)
	if got > n+n/10 {
		t.Fatalf("%d new connections for %d concurrent callers over %d rounds: the idle pool drops connections", got, n, rounds)
	}
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + strconv.Itoa(e.code) }
