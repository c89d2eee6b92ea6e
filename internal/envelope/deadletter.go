package envelope

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names a worker adds to a dead letter, on top of the original
// record's key, value and headers. The admin API reads them to filter and
// replay dead letters, so they are part of the contract.
const (
	// HeaderDLQErrorClass is the failure class: permanent, retryable,
	// reauthenticate (retries exhausted or max_elapsed passed), parked or
	// invalid.
	HeaderDLQErrorClass = "fanout_dlq_error_class"
	// HeaderDLQError is the last error message, at most MaxDLQErrorBytes,
	// as free of secrets as the connector made it.
	HeaderDLQError = "fanout_dlq_error"
	// HeaderDLQHTTPStatus is the last HTTP status, "0" when none came.
	HeaderDLQHTTPStatus = "fanout_dlq_http_status"
	// HeaderDLQErrorCode is the downstream's error code, if it gave one.
	HeaderDLQErrorCode = "fanout_dlq_error_code"
	// HeaderDLQAttempts is the number of delivery attempts made, counting
	// those of earlier replays.
	HeaderDLQAttempts = "fanout_dlq_attempts"
	// HeaderDLQFirstFailure and HeaderDLQLastFailure are the times of the
	// first and last failed attempt (RFC 3339 with nanoseconds, UTC).
	HeaderDLQFirstFailure = "fanout_dlq_first_failure"
	HeaderDLQLastFailure  = "fanout_dlq_last_failure"
	// HeaderDLQSourceTopic, HeaderDLQSourcePartition and
	// HeaderDLQSourceOffset locate the original record.
	HeaderDLQSourceTopic     = "fanout_dlq_source_topic"
	HeaderDLQSourcePartition = "fanout_dlq_source_partition"
	HeaderDLQSourceOffset    = "fanout_dlq_source_offset"
	// HeaderDLQConnector is the connector that gave up on the record.
	HeaderDLQConnector = "fanout_dlq_connector"

	// HeaderDLQPrefix is the prefix of all the headers above; a record
	// dead-lettered again loses the previous set before the new one is
	// added, except for the attempt count, which carries over.
	HeaderDLQPrefix = "fanout_dlq_"
)

// Dead-letter classes, the values of HeaderDLQErrorClass.
const (
	// ClassPermanent: the downstream refused the notification in a way no
	// retry will fix (validation, unknown field, 4xx).
	ClassPermanent = "permanent"
	// ClassRetryable and ClassReauthenticate: retries were exhausted
	// (max_attempts while the breaker was closed, or max_elapsed).
	ClassRetryable      = "retryable"
	ClassReauthenticate = "reauthenticate"
	// ClassParked: an earlier notification of the same key was
	// dead-lettered and after_dead_letter is park, so this one was not
	// attempted; replay it after the earlier one, in order.
	ClassParked = "parked"
	// ClassInvalid: the record is routed here but lacks what delivery
	// needs (the ce_id header, the idempotency key).
	ClassInvalid = "invalid"
)

// MaxDLQErrorBytes bounds the error text in HeaderDLQError.
const MaxDLQErrorBytes = 1024

// DeadLetter is the failure context a dead letter carries.
type DeadLetter struct {
	// Class is one of the Class constants.
	Class string
	// Error is the last error message, as free of secrets as the
	// connector made it; it is cut to MaxDLQErrorBytes.
	Error string
	// HTTPStatus and ErrorCode are the downstream's last answer, if any.
	HTTPStatus int
	ErrorCode  string
	// Attempts counts the delivery attempts made, earlier replays'
	// included.
	Attempts int
	// FirstFailure and LastFailure are the times of the first and last
	// failed attempt.
	FirstFailure, LastFailure time.Time
}

// DeadLetterRecord builds the dead letter of r, given up by connector, for
// topic: r's key, value and headers (without an earlier dead letter's
// fanout_dlq_ headers) plus the failure context.
func DeadLetterRecord(topic, connector string, r *kgo.Record, dl DeadLetter) *kgo.Record {
	h := make([]kgo.RecordHeader, 0, len(r.Headers)+11)
	for _, x := range r.Headers {
		if !strings.HasPrefix(x.Key, HeaderDLQPrefix) {
			h = append(h, x)
		}
	}
	ts := func(t time.Time) []byte { return []byte(t.UTC().Format(time.RFC3339Nano)) }
	h = append(h,
		kgo.RecordHeader{Key: HeaderDLQErrorClass, Value: []byte(dl.Class)},
		kgo.RecordHeader{Key: HeaderDLQError, Value: []byte(TruncateUTF8(dl.Error, MaxDLQErrorBytes))},
		kgo.RecordHeader{Key: HeaderDLQHTTPStatus, Value: []byte(strconv.Itoa(dl.HTTPStatus))},
		kgo.RecordHeader{Key: HeaderDLQErrorCode, Value: []byte(dl.ErrorCode)},
		kgo.RecordHeader{Key: HeaderDLQAttempts, Value: []byte(strconv.Itoa(dl.Attempts))},
		kgo.RecordHeader{Key: HeaderDLQFirstFailure, Value: ts(dl.FirstFailure)},
		kgo.RecordHeader{Key: HeaderDLQLastFailure, Value: ts(dl.LastFailure)},
		kgo.RecordHeader{Key: HeaderDLQSourceTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderDLQSourcePartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: HeaderDLQSourceOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		kgo.RecordHeader{Key: HeaderDLQConnector, Value: []byte(connector)},
	)
	return &kgo.Record{Topic: topic, Key: slices.Clone(r.Key), Value: r.Value, Headers: h}
}

// PriorAttempts reads the attempts made before this record was replayed
// (HeaderReplayAttempts, or the attempt count of a dead letter fed back
// as it is), so that attempt numbers keep counting.
func PriorAttempts(r *kgo.Record) int {
	best := 0
	for _, h := range r.Headers {
		if h.Key == HeaderDLQAttempts || h.Key == HeaderReplayAttempts {
			n, err := strconv.Atoi(string(h.Value))
			if err == nil && n > best {
				best = n
			}
		}
	}
	return best
}

// TruncateUTF8 cuts s to at most n bytes without splitting a rune.
func TruncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
