package delivery

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/envelope"
)

// Header names of a dead letter cut to fit the dead-letter topic.
const (
	// HeaderDLQTruncated holds the original value's size when the dead
	// letter's value was cut (or dropped) to fit the topic, as the
	// projector's dead letters do.
	HeaderDLQTruncated = envelope.HeaderDLQPrefix + "truncated"
	// HeaderDLQStub is "true" on a stub: a dead letter without the value
	// and with only the identifying headers of the record, written when
	// even the truncated one did not fit. Its source topic, partition and
	// offset locate the original.
	HeaderDLQStub = envelope.HeaderDLQPrefix + "stub"
)

// dlqTruncatedBytes is how much of the value a truncated dead letter
// keeps: enough to see what the notification was.
const dlqTruncatedBytes = 4 << 10

// tooLarge reports whether a produce failed because the record is over
// the topic's (or the client's) size limit: retrying it as it is would
// block its key and its partition's commit forever.
func tooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

// fitDeadLetter returns the dead letter full cut down by one step: first
// its value truncated to dlqTruncatedBytes, then a stub without the value
// and with only the dead-letter and identifying headers. ok is false when
// nothing smaller is left.
func fitDeadLetter(full *kgo.Record, step int) (out *kgo.Record, ok bool) {
	size := []byte(strconv.Itoa(len(full.Value)))
	switch {
	case step == 1 && len(full.Value) > dlqTruncatedBytes:
		h := append(slices.Clone(full.Headers), kgo.RecordHeader{Key: HeaderDLQTruncated, Value: size})
		return &kgo.Record{Topic: full.Topic, Key: full.Key, Value: full.Value[:dlqTruncatedBytes], Headers: h}, true
	case step <= 2:
		var h []kgo.RecordHeader
		for _, x := range full.Headers {
			switch {
			case strings.HasPrefix(x.Key, envelope.HeaderDLQPrefix), x.Key == envelope.HeaderID, x.Key == envelope.HeaderType,
				x.Key == envelope.HeaderVersion, x.Key == envelope.HeaderTargets, x.Key == envelope.HeaderCommitTime:
				h = append(h, x)
			}
		}
		h = append(h, kgo.RecordHeader{Key: HeaderDLQTruncated, Value: size}, kgo.RecordHeader{Key: HeaderDLQStub, Value: []byte("true")})
		return &kgo.Record{Topic: full.Topic, Key: full.Key, Headers: h}, true
	default:
		return nil, false
	}
}

// capDeadLetter truncates a dead letter over the client's record limit
// (kafka.max_record_bytes, less room for the headers) before the first
// try, as the projector does.
func capDeadLetter(out *kgo.Record, maxRecordBytes int32) *kgo.Record {
	limit := int(maxRecordBytes) - 16<<10
	if maxRecordBytes <= 0 || len(out.Value) <= limit {
		return out
	}
	out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderDLQTruncated, Value: []byte(strconv.Itoa(len(out.Value)))})
	out.Value = out.Value[:max(limit, 0)]
	return out
}
