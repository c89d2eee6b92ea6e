package delivery

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// onRevoked runs in franz-go's group goroutine: it stops the poller,
// asks the loop to finish or abandon the partitions' work, and commits
// what is done before the partitions move.
func (l *loop) onRevoked(ctx context.Context, cl *kgo.Client, parts map[string][]int32, lost bool) {
	if len(parts[l.w.topic]) == 0 && len(parts[l.w.retryTopic]) == 0 {
		return
	}
	select {
	case <-l.loopDone:
		return // stopped: Run made the final commit
	default:
	}
	l.gate.block()
	defer l.gate.unblock()
	l.committer.mu.Lock()
	defer l.committer.mu.Unlock()
	req := revokeReq{parts: parts, lost: lost, reply: make(chan revokeReply, 1)}
	select {
	case l.ctrlCh <- req:
	case <-l.loopDone:
		return
	}
	var rep revokeReply
	select {
	case rep = <-req.reply:
	case <-l.loopDone:
		return
	}
	l.committer.drop(parts)
	offs := rep.offs
	if lost || len(offs) == 0 {
		return
	}
	if err := l.w.flushDelivered(ctx, 10*time.Second); err != nil {
		l.w.log.Warn("no commit on revoke: the delivered versions could not be stored first; the next owner redelivers the uncommitted records", "err", err)
		return
	}
	if err := commitSync(withCommitMetadata(ctx, commitReleased, rep.owned), cl, offs); err != nil {
		l.w.log.Warn("commit on revoke failed; the next owner redelivers the uncommitted records", "err", err)
	}
}

// addOffset adds p's commit offset to offs if it moved since it was last
// offered, or always with force: a revoke or the final commit must not
// rely on a periodic commit that may still be pending (and is dropped).
func (l *loop) addOffset(offs map[string]map[int32]kgo.EpochOffset, p *partition, force bool) {
	off := p.commitOffset()
	if off.Offset <= p.committed && !force {
		return
	}
	p.committed = off.Offset
	if offs[p.topic] == nil {
		offs[p.topic] = make(map[int32]kgo.EpochOffset)
	}
	offs[p.topic][p.id] = off
}

// startRevoke begins giving up partitions.
func (l *loop) startRevoke(req revokeReq) {
	rv := &pendingRevoke{req: req, deadline: time.Now().Add(l.w.d.RevokeTimeout)}
	if req.lost {
		rv.deadline = time.Now()
	}
	for topic, ids := range req.parts {
		for _, id := range ids {
			if p := l.parts[tp{topic, id}]; p != nil {
				p.revoking = true
				rv.parts = append(rv.parts, p)
			}
		}
	}
	l.revokes = append(l.revokes, rv)
	l.w.log.Info("partitions revoked; finishing in-flight work", "partitions", req.parts, "lost", req.lost, "timeout", l.w.d.RevokeTimeout)
	l.checkRevokes()
}

// checkRevokes answers the revokes whose partitions are idle or whose
// deadline passed.
func (l *loop) checkRevokes() {
	keep := l.revokes[:0]
	for _, rv := range l.revokes {
		idle := true
		for _, p := range rv.parts {
			if p.busy > 0 {
				idle = false
			}
		}
		if !idle && time.Now().Before(rv.deadline) {
			keep = append(keep, rv)
			continue
		}
		rv.req.reply <- l.revokeOffsets(rv)
	}
	clear(l.revokes[len(keep):])
	l.revokes = keep
}

// revokeReply is the loop's answer to a revoke: the offsets to commit and
// the partitions whose calls were given up (no clean release).
type revokeReply struct {
	offs  map[string]map[int32]kgo.EpochOffset
	owned map[tp]bool
}

// revokeOffsets abandons what is still running in rv's partitions, drops
// them and returns their commit offsets (none when lost).
func (l *loop) revokeOffsets(rv *pendingRevoke) revokeReply {
	offs := make(map[string]map[int32]kgo.EpochOffset)
	owned := make(map[tp]bool)
	abandoned := 0
	now := time.Now()
	for _, p := range rv.parts {
		if p.dropped {
			continue
		}
		if len(p.calls) > 0 || p.holding(now) {
			// Calls given up, or calls that timed out earlier, may
			// still land: not a clean release.
			owned[tp{p.topic, p.id}] = true
		}
		abandoned += l.abandon(p)
		if !rv.req.lost {
			l.addOffset(offs, p, true)
		}
		l.drop(p)
	}
	if abandoned > 0 {
		l.w.log.Warn("revoke timeout: in-flight work abandoned; the next owner redelivers it", "records", abandoned)
	}
	return revokeReply{offs: offs, owned: owned}
}

// abandon cancels p's calls and dead-letter produces; it returns how many
// records were still busy.
func (l *loop) abandon(p *partition) int {
	n := p.busy
	for c := range p.calls {
		c.cancel()
	}
	p.cancel()
	return n
}

// abandonAll cancels everything still running at the stop deadline.
func (l *loop) abandonAll() {
	if l.calls > 0 {
		l.uncleanStop = true
	}
	if l.calls+l.dlqs > 0 {
		l.w.log.Warn("stop timeout: in-flight work abandoned; the next owner redelivers it", "calls", l.calls, "dead_letters", l.dlqs)
	}
	l.hardStop()
	l.stopAt = time.Time{}
}

// drop forgets a partition; its unfinished records are abandoned to the
// next owner.
func (l *loop) drop(p *partition) {
	p.dropped = true
	p.cancel()
	l.fence.forget(p)
	l.w.stats.Abandoned.Add(int64(p.buffered))
	l.buffered -= p.buffered
	l.bufferedBytes -= p.bufferedBytes
	p.buffered, p.bufferedBytes = 0, 0
	delete(l.parts, tp{p.topic, p.id})
}
