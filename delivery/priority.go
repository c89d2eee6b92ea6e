package delivery

import (
	"time"

	"golang.org/x/time/rate"
)

// Priority: the routing decision's priority (envelope meta Priority) puts
// a ready record in one of two lanes. Dispatch takes from the high lane
// first, so that high-priority notifications overtake a normal backlog;
// only the head of a key is ever ready, so per-key order holds whatever
// the priorities of the key's records. Each lane may have its own rate
// limit (delivery.priority_rate_limit) besides the connector's
// (delivery.rate_limit): a lane out of tokens lets the other go.

// PriorityHigh is the routing priority dispatched ahead of the others.
const PriorityHigh = "high"

const (
	laneHigh = iota
	laneNormal
	lanes
)

// laneOf returns r's lane.
func laneOf(r *rec) int {
	if r.meta.Priority == PriorityHigh {
		return laneHigh
	}
	return laneNormal
}

// priorityReady is the ready queue: one FIFO per lane.
type priorityReady struct {
	lanes [lanes]readyQueue
}

func (q *priorityReady) len() int {
	n := 0
	for i := range q.lanes {
		n += q.lanes[i].len()
	}
	return n
}

func (q *priorityReady) push(r *rec) { q.lanes[laneOf(r)].push(r) }

// takeLane removes up to n ready records of one lane.
func (q *priorityReady) takeLane(lane, n int) []*rec { return q.lanes[lane].take(n) }

// untake puts records just taken back at the front of their lanes, in
// order.
func (q *priorityReady) untake(rs []*rec) {
	for i := range q.lanes {
		var mine []*rec
		for _, r := range rs {
			if laneOf(r) == i {
				mine = append(mine, r)
			}
		}
		if len(mine) > 0 {
			q.lanes[i].untake(mine)
		}
	}
}

func (q *priorityReady) filter(keep func(*rec) bool) {
	for i := range q.lanes {
		q.lanes[i].filter(keep)
	}
}

// pickLane returns the lane to dispatch from: the first with ready
// records whose rate limits (the connector's and the lane's) have a token.
// When none does, lane is -1 and wait is how long until one has.
func (l *loop) pickLane() (lane int, wait time.Duration) {
	lane = -1
	for i := range l.ready.lanes {
		if l.ready.lanes[i].len() == 0 {
			continue
		}
		wt := max(tokenWait(l.w.limiter, l.now), tokenWait(l.w.laneLimiters[i], l.now))
		if wt == 0 {
			return i, 0
		}
		if wait == 0 || wt < wait {
			wait = wt
		}
	}
	return lane, wait
}

// laneLimiters builds the lanes' own rate limiters (nil: no own limit).
func laneLimiters(high, normal float64) [lanes]*rate.Limiter {
	mk := func(r float64) *rate.Limiter {
		if r <= 0 {
			return nil
		}
		return rate.NewLimiter(rate.Limit(r), max(1, int(r)))
	}
	return [lanes]*rate.Limiter{laneHigh: mk(high), laneNormal: mk(normal)}
}
