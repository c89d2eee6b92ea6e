package tokencache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type token struct{ n int64 }

// counter is a FetchFunc issuing numbered tokens; gate, if set, holds each
// fetch until it is closed or the context ends.
type counter struct {
	n    atomic.Int64
	gate chan struct{}
}

func (c *counter) fetch(ctx context.Context) (*token, error) {
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &token{n: c.n.Add(1)}, nil
}

func TestBurstOfDropsFetchesOnce(t *testing.T) {
	var f counter
	c := New(f.fetch, Options[token]{})
	old, fetched, err := c.Get(t.Context())
	if err != nil || !fetched || old.n != 1 {
		t.Fatalf("first Get: %v %v %v", old, fetched, err)
	}
	const n = 50
	var wg sync.WaitGroup
	got := make([]*token, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Drop(old) // every caller saw 401 with the old token
			tok, _, err := c.Get(context.Background())
			if err != nil {
				t.Error(err)
			}
			got[i] = tok
		}()
	}
	wg.Wait()
	if f.n.Load() != 2 {
		t.Fatalf("%d fetches, want 2", f.n.Load())
	}
	for _, tok := range got {
		if tok == nil || tok.n != 2 {
			t.Fatalf("a caller got %v, want token 2", tok)
		}
	}
	if c.Drop(old) {
		t.Fatal("dropping a stale token dropped the new one")
	}
}

func TestWaitHonoursContext(t *testing.T) {
	f := counter{gate: make(chan struct{})}
	c := New(f.fetch, Options[token]{})
	slow := make(chan error, 1)
	go func() { _, _, err := c.Get(context.Background()); slow <- err }()
	// Let the slow fetch take the semaphore.
	for len(c.sem) == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, _, err := c.Get(ctx); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiter whose context ended stayed blocked")
	}
	close(f.gate)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

func TestExpiryAndMaxAge(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	tests := []struct {
		name  string
		opts  Options[token]
		after time.Duration
		want  int64 // fetches after the second Get
	}{
		{"kept", Options[token]{Now: clock}, time.Hour, 1},
		{"max age", Options[token]{Now: clock, MaxAge: time.Minute}, time.Minute, 2},
		{"invalid", Options[token]{Now: clock, Valid: func(t *token) bool { return false }}, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f counter
			c := New(f.fetch, tt.opts)
			if _, _, err := c.Get(t.Context()); err != nil {
				t.Fatal(err)
			}
			advance(tt.after)
			if _, _, err := c.Get(t.Context()); err != nil {
				t.Fatal(err)
			}
			if f.n.Load() != tt.want {
				t.Fatalf("%d fetches, want %d", f.n.Load(), tt.want)
			}
		})
	}
}

func TestFetchErrorIsNotCached(t *testing.T) {
	fail := true
	c := New(func(ctx context.Context) (*token, error) {
		if fail {
			return nil, errors.New("endpoint down")
		}
		return &token{n: 7}, nil
	}, Options[token]{})
	if _, _, err := c.Get(t.Context()); err == nil {
		t.Fatal("want the fetch error")
	}
	fail = false
	if tok, _, err := c.Get(t.Context()); err != nil || tok.n != 7 {
		t.Fatalf("%v %v", tok, err)
	}
	c.Clear()
	if c.Current() != nil {
		t.Fatal("Clear kept the token")
	}
}
