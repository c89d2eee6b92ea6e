// Package tokencache holds the one credential (an OAuth2 access token, a
// Salesforce session) that a connector sends with every call, and fetches
// a new one when it is missing, expired or refused.
//
// Two properties matter under load. Waiting for a fetch honours the
// caller's context: a delivery whose deadline passes returns at once
// instead of queueing behind a slow token endpoint. And dropping is
// compare-and-drop: a caller that got 401 drops only the credential it
// sent, so a burst of 401s for one revoked token fetches one new token,
// not one per caller.
package tokencache

import (
	"context"
	"sync"
	"time"
)

// FetchFunc fetches a new credential under the caller's context.
type FetchFunc[T any] func(ctx context.Context) (*T, error)

// Options tune a Cache. The zero value keeps a credential until Drop.
type Options[T any] struct {
	// Valid, if set, reports whether a cached credential may still be
	// used (an OAuth2 token's expiry); an invalid one is fetched anew.
	Valid func(*T) bool
	// MaxAge, if positive, drops a credential that old even if Valid
	// says it is good (Salesforce sends no expiry).
	MaxAge time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Cache holds one credential. It is safe for concurrent use.
type Cache[T any] struct {
	fetch FetchFunc[T]
	opts  Options[T]
	// sem serialises fetches; a channel rather than a mutex so that
	// waiters can give up when their context ends.
	sem chan struct{}

	mu      sync.Mutex
	cur     *T
	fetched time.Time
}

// New returns an empty cache that fetches with fetch.
func New[T any](fetch FetchFunc[T], opts Options[T]) *Cache[T] {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache[T]{fetch: fetch, opts: opts, sem: make(chan struct{}, 1)}
}

// Get returns the cached credential, or fetches one when there is none
// (or it expired). Concurrent callers wait for a single fetch, each only
// as long as its own context allows; fetched is true for the caller whose
// fetch produced the credential. A fetch error goes to the caller that
// ran it; the next caller tries again.
func (c *Cache[T]) Get(ctx context.Context) (cred *T, fetched bool, err error) {
	if t := c.cached(); t != nil {
		return t, false, nil
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	defer func() { <-c.sem }()
	if t := c.cached(); t != nil {
		return t, false, nil // fetched by another caller while we waited
	}
	t, err := c.fetch(ctx)
	if err != nil {
		return nil, false, err
	}
	c.mu.Lock()
	c.cur, c.fetched = t, c.opts.Now()
	c.mu.Unlock()
	return t, true, nil
}

// cached returns the current credential if it is still good.
func (c *Cache[T]) cached() *T {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.cur
	if t == nil {
		return nil
	}
	if (c.opts.MaxAge > 0 && c.opts.Now().Sub(c.fetched) >= c.opts.MaxAge) ||
		(c.opts.Valid != nil && !c.opts.Valid(t)) {
		c.cur = nil
		return nil
	}
	return t
}

// Drop forgets cred if it is still the cached credential, so that the next
// Get fetches a new one; a newer credential fetched meanwhile is kept. It
// reports whether cred was dropped.
func (c *Cache[T]) Drop(cred *T) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cred == nil || c.cur != cred {
		return false
	}
	c.cur = nil
	return true
}

// Clear forgets any cached credential, for when the credentials behind it
// changed (a rotated client secret).
func (c *Cache[T]) Clear() {
	c.mu.Lock()
	c.cur = nil
	c.mu.Unlock()
}

// Current returns the cached credential without fetching, nil if none.
func (c *Cache[T]) Current() *T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}
