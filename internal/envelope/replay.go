package envelope

import (
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names the admin API adds to a replayed dead letter on the retry
// topic. They stay on the record if it is dead-lettered again, so a dead
// letter shows that it came from a replay.
const (
	// HeaderReplayID identifies the replay request (its audit record).
	HeaderReplayID = "fanout_replay_id"
	// HeaderReplayedFrom locates the dead letter replayed:
	// "<dlq topic>/<partition>/<offset>".
	HeaderReplayedFrom = "fanout_replayed_from"
	// HeaderReplayAttempts is the number of delivery attempts made before
	// the replay (the dead letter's HeaderDLQAttempts): the replay's first
	// attempt is number HeaderReplayAttempts + 1.
	HeaderReplayAttempts = "fanout_replay_attempts"
	// HeaderReplayBy is the name of the admin token that asked for it.
	HeaderReplayBy = "fanout_replay_by"
	// HeaderReplayForce is "true" on a forced replay: the worker's version
	// fence lets it through even if a newer version of its key was
	// delivered. It is the only way past the fence.
	HeaderReplayForce = "fanout_replay_force"

	// HeaderReplayPrefix is the prefix of the headers above; a replay
	// replaces an earlier replay's set.
	HeaderReplayPrefix = "fanout_replay"
)

// ReplayRecord builds the record that replays dead letter dl of connector
// on topic (the connector's retry topic): the original key, value and
// headers (ce_id included, so the idempotency key stays the same),
// fanout_targets naming connector alone (no other connector's worker
// delivers it), without the dead letter's fanout_dlq_ headers, plus the
// replay headers. The attempt count carries over. A forced replay
// (force) passes the workers' version fence.
func ReplayRecord(topic, connector string, dl *kgo.Record, replayID, by string, force bool) *kgo.Record {
	h := make([]kgo.RecordHeader, 0, len(dl.Headers)+5)
	for _, x := range dl.Headers {
		switch {
		case strings.HasPrefix(x.Key, HeaderDLQPrefix), strings.HasPrefix(x.Key, HeaderReplayPrefix), x.Key == HeaderTargets:
			continue
		}
		h = append(h, kgo.RecordHeader{Key: x.Key, Value: slices.Clone(x.Value)})
	}
	h = append(h,
		kgo.RecordHeader{Key: HeaderTargets, Value: []byte(connector)},
		kgo.RecordHeader{Key: HeaderReplayID, Value: []byte(replayID)},
		kgo.RecordHeader{Key: HeaderReplayedFrom, Value: []byte(dl.Topic + "/" + strconv.Itoa(int(dl.Partition)) + "/" + strconv.FormatInt(dl.Offset, 10))},
		kgo.RecordHeader{Key: HeaderReplayAttempts, Value: []byte(strconv.Itoa(PriorAttempts(dl)))},
		kgo.RecordHeader{Key: HeaderReplayBy, Value: []byte(by)},
	)
	if force {
		h = append(h, kgo.RecordHeader{Key: HeaderReplayForce, Value: []byte("true")})
	}
	return &kgo.Record{Topic: topic, Key: slices.Clone(dl.Key), Value: slices.Clone(dl.Value), Headers: h}
}

// ReplayForced reports whether r is a forced replay.
func ReplayForced(r *kgo.Record) bool {
	v, _ := Header(r, HeaderReplayForce)
	return v == "true"
}
