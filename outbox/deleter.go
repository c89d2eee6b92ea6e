package outbox

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// deleter removes published entries off the relay's critical path. Until
// an entry's delete has completed, its id stays in the pending set and the
// relay ignores the entry when it reads the outbox again: it was published
// already. A relay that dies with deletes pending republishes those entries
// after restart (duplicates with the same id), never loses them.
type deleter struct {
	del func(ctx context.Context, ids []string) error
	log *slog.Logger
	ch  chan []string

	mu sync.Mutex
	// pending maps an id to false while its delete runs, then to true: a
	// read that started before the delete completed may still return the
	// entry, so it stays filtered until the next iteration begins (prune).
	pending map[string]bool
}

func newDeleter(del func(context.Context, []string) error, log *slog.Logger) *deleter {
	return &deleter{del: del, log: log, ch: make(chan []string, 8), pending: map[string]bool{}}
}

// add queues ids for deletion; it blocks while the queue is full, which
// slows the relay down to the store's delete rate.
func (d *deleter) add(ctx context.Context, ids []string) {
	d.mu.Lock()
	for _, id := range ids {
		d.pending[id] = false
	}
	d.mu.Unlock()
	select {
	case d.ch <- ids:
	case <-ctx.Done():
	}
}

// published reports whether id was published and awaits deletion.
func (d *deleter) published(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.pending[id]
	return ok
}

// run deletes queued batches until ctx ends, then drains what is queued
// with a short grace so a clean stop leaves few duplicates behind.
func (d *deleter) run(ctx context.Context) {
	for {
		select {
		case ids := <-d.ch:
			d.deleteBatch(ctx, ids)
		case <-ctx.Done():
			grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			for {
				select {
				case ids := <-d.ch:
					d.deleteBatch(grace, ids)
				default:
					return
				}
			}
		}
	}
}

func (d *deleter) deleteBatch(ctx context.Context, ids []string) {
	backoff := 50 * time.Millisecond
	for {
		err := d.del(ctx, ids)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("deleting published outbox entries failed; retrying", "entries", len(ids), "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	d.mu.Lock()
	for _, id := range ids {
		d.pending[id] = true
	}
	d.mu.Unlock()
}

// prune forgets the entries whose delete completed before now; the relay
// calls it before it reads the outbox, so no read of the coming iteration
// can still return them.
func (d *deleter) prune() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, done := range d.pending {
		if done {
			delete(d.pending, id)
		}
	}
}
