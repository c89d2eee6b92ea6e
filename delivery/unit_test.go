package delivery

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
)

func TestTruncateUTF8(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"},  // é is 2 bytes: not split
		{"a€b", 3, "a"}, // € is 3 bytes
		{"a€b", 4, "a€"},
		{"", 5, ""},
	}
	for _, tc := range cases {
		got := envelope.TruncateUTF8(tc.in, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("envelope.TruncateUTF8(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestDLQRecord(t *testing.T) {
	src := &kgo.Record{
		Topic: "notif", Partition: 3, Offset: 42, Key: []byte("Q1"), Value: []byte(`{"id":"e1"}`),
		Headers: []kgo.RecordHeader{
			{Key: "ce_id", Value: []byte("e1")},
			{Key: envelope.HeaderDLQErrorClass, Value: []byte("old")},
			{Key: envelope.HeaderDLQAttempts, Value: []byte("4")},
		},
	}
	long := strings.Repeat("x", 3000)
	err := &connectors.Error{Class: connectors.Permanent, Status: 400, Code: "INVALID_FIELD", Message: long}
	first := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	out := dlqRecord("notif.dlq.sf", "sf", src, deadLetter{class: envelope.ClassPermanent, err: err, attempts: 5, firstFail: first, lastFail: first.Add(time.Second)})
	got := map[string][]string{}
	for _, h := range out.Headers {
		got[h.Key] = append(got[h.Key], string(h.Value))
	}
	want := map[string]string{
		"ce_id":                           "e1",
		envelope.HeaderDLQErrorClass:      envelope.ClassPermanent,
		envelope.HeaderDLQHTTPStatus:      "400",
		envelope.HeaderDLQErrorCode:       "INVALID_FIELD",
		envelope.HeaderDLQAttempts:        "5",
		envelope.HeaderDLQFirstFailure:    "2026-01-02T03:04:05.000000006Z",
		envelope.HeaderDLQLastFailure:     "2026-01-02T03:04:06.000000006Z",
		envelope.HeaderDLQSourceTopic:     "notif",
		envelope.HeaderDLQSourcePartition: "3",
		envelope.HeaderDLQSourceOffset:    "42",
		envelope.HeaderDLQConnector:       "sf",
	}
	for k, v := range want {
		if len(got[k]) != 1 || got[k][0] != v {
			t.Errorf("header %s = %q, want exactly %q", k, got[k], v)
		}
	}
	if msg := got[envelope.HeaderDLQError]; len(msg) != 1 || len(msg[0]) != envelope.MaxDLQErrorBytes {
		t.Errorf("error header: %d values, want one of %d bytes", len(msg), envelope.MaxDLQErrorBytes)
	}
	if out.Topic != "notif.dlq.sf" || string(out.Key) != "Q1" || string(out.Value) != `{"id":"e1"}` {
		t.Errorf("record %s %q %q", out.Topic, out.Key, out.Value)
	}
	if n := envelope.PriorAttempts(src); n != 4 {
		t.Errorf("priorAttempts = %d, want 4", n)
	}
}

func TestBackoff(t *testing.T) {
	d := withDefaults(config.Delivery{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, RetryAfterCap: 3 * time.Second})
	l := &loop{w: &Worker{d: d}}
	for attempt := 1; attempt <= 40; attempt++ {
		hi := min(d.MaxBackoff, d.MinBackoff<<min(attempt, 20))
		for range 50 {
			got := l.backoff(&rec{attempts: attempt}, errors.New("x"))
			if got < d.MinBackoff || got > hi {
				t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempt, got, d.MinBackoff, hi)
			}
		}
	}
	ra := &connectors.Error{Class: connectors.Retryable, RetryAfter: 2 * time.Second}
	if got := l.backoff(&rec{attempts: 1}, ra); got != 2*time.Second {
		t.Errorf("Retry-After 2s: waited %v", got)
	}
	ra.RetryAfter = time.Hour
	if got := l.backoff(&rec{attempts: 1}, ra); got != d.RetryAfterCap {
		t.Errorf("Retry-After 1h: waited %v, want the cap %v", got, d.RetryAfterCap)
	}
}

func TestOutcome(t *testing.T) {
	retry := &connectors.Error{Class: connectors.Retryable}
	perm := &connectors.Error{Class: connectors.Permanent}
	cases := []struct {
		name string
		errs []error
		ok   bool
	}{
		{"all delivered", []error{nil, nil}, true},
		{"one refused on its merits", []error{perm, retry}, true},
		{"all failed", []error{retry, retry}, false},
		{"unclassified error", []error{errors.New("boom")}, false},
	}
	for _, tc := range cases {
		if got := outcome(tc.errs) == nil; got != tc.ok {
			t.Errorf("%s: success %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// TestPauseHold: a gap between two loop iterations longer than half the
// session timeout (the process was paused) holds new calls for a session
// timeout; a shorter one does not.
func TestPauseHold(t *testing.T) {
	cfg := Config{SessionTimeout: 6 * time.Second}
	l := &loop{w: &Worker{cfg: cfg, log: slog.New(slog.DiscardHandler)}}
	t0 := time.Now()
	cases := []struct {
		name string
		gap  time.Duration
		held bool
	}{
		{"a busy second", 1500 * time.Millisecond, false},
		{"just under half the session", 2900 * time.Millisecond, false},
		{"paused past half the session", 4 * time.Second, true},
		{"paused past the session", 20 * time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l.pauseHoldUntil = time.Time{}
			l.now = t0.Add(tc.gap)
			l.checkPause(t0)
			if got := l.pauseHeld(); got != tc.held {
				t.Fatalf("held = %v, want %v", got, tc.held)
			}
			if tc.held {
				l.now = l.now.Add(cfg.SessionTimeout - time.Millisecond)
				if !l.pauseHeld() {
					t.Error("hold ended before a session timeout")
				}
				l.now = l.now.Add(2 * time.Millisecond)
				if l.pauseHeld() {
					t.Error("hold lasts past a session timeout")
				}
			}
		})
	}
}
