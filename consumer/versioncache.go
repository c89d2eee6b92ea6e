package consumer

import (
	"sync"
	"time"
)

// versionCache remembers the READ-model version of the aggregates the
// projector last read or wrote, each tagged with the partition its events
// came from, so that stale detection needs no store read in steady state.
//
// It is authoritative only under the assumptions that make it so, and
// answers nothing otherwise:
//   - Only the member that owns a partition writes the aggregates keyed to
//     it (events are keyed by aggregate id, and the projector uses the
//     cache only for records whose key is their aggregate id). An entry is
//     therefore dropped when its partition is revoked, lost or assigned
//     anew, and it answers only for events of the same partition.
//   - A store error leaves the written versions uncertain: the whole cache
//     is dropped.
//   - A projector paused long enough to lose its partitions without
//     noticing yet would trust versions another member has since
//     overtaken: the cache is dropped when more than maxIdle passed since
//     the last batch, the only way such a pause shows from inside.
//
// It holds at most max entries; past that it starts over (the next batch
// of each aggregate reads the store once), which bounds memory without the
// bookkeeping of an LRU. Safe for concurrent use: the rebalance callbacks
// run on the client's goroutines.
type versionCache struct {
	mu      sync.Mutex
	max     int
	maxIdle time.Duration
	last    time.Time // end of the last batch, or the last reset
	entries map[string]cachedVersion
}

type cachedVersion struct {
	partition int32
	version   int64
}

func newVersionCache(max int, maxIdle time.Duration) *versionCache {
	return &versionCache{max: max, maxIdle: maxIdle, entries: make(map[string]cachedVersion)}
}

// begin starts a batch at now: it drops everything if the projector was
// idle (or paused) for longer than maxIdle.
func (c *versionCache) begin(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxIdle > 0 && !c.last.IsZero() && now.Sub(c.last) > c.maxIdle {
		clear(c.entries)
	}
	c.last = now
}

// get returns the version of id as cached for partition.
func (c *versionCache) get(partition int32, id string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || e.partition != partition {
		return 0, false
	}
	return e.version, true
}

// put records that id is at version after a durable batch of partition.
func (c *versionCache) put(partition int32, id string, version int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[id]; !ok && len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[id] = cachedVersion{partition: partition, version: version}
}

// forget drops id, whatever its partition.
func (c *versionCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, id)
}

// dropPartitions forgets every aggregate of the given partitions.
func (c *versionCache) dropPartitions(parts []int32) {
	if len(parts) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.entries {
		for _, p := range parts {
			if e.partition == p {
				delete(c.entries, id)
				break
			}
		}
	}
}

// reset forgets everything.
func (c *versionCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}

// len returns the number of cached aggregates.
func (c *versionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
