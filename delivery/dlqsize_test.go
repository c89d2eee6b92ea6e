package delivery_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// TestOversizedDeadLetter dead-letters a notification bigger than the
// dead-letter topic accepts (its max.message.bytes is set small on the
// broker): the dead letter is written truncated (fanout_dlq_truncated), or
// as a stub without the value when even that does not fit, instead of
// being retried forever; the partition commits past it and the key's next
// record is delivered.
func TestOversizedDeadLetter(t *testing.T) {
	cases := []struct {
		name     string
		maxBytes int
		stub     bool
	}{
		{"truncated", 8000, false},
		{"stub", 2500, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "sf", "salesforce", nil)
			cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			v := strconv.Itoa(tc.maxBytes)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rs, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &v}}, e.cfg.DLQTopic(e.name))
			if err == nil {
				_, err = rs.On(e.cfg.DLQTopic(e.name), nil)
			}
			if err != nil {
				t.Fatalf("set max.message.bytes: %v", err)
			}
			conn := &scripted{answer: func(n *connectors.Notification) error {
				if n.ID == "BIG-v1" {
					return &connectors.Error{Class: connectors.Permanent, Status: 400, Code: "STRING_TOO_LONG", Message: "refused by the test"}
				}
				return nil
			}}
			// Random text: the producer's compression must not shrink it.
			noise := make([]byte, 15000)
			_, _ = rand.Read(noise)
			big := note{key: "BIG", version: 1, id: "BIG-v1", payload: map[string]any{"text": base64.StdEncoding.EncodeToString(noise)}}
			recs := e.produce(t, big, note{key: "BIG", version: 2, id: "BIG-v2"})
			w := e.start(t, conn)
			st := w.w.Stats()
			waitFor(t, 30*time.Second, "dead letter written and the next version delivered", func() bool {
				return st.DeadLettered.Total() == 1 && st.Delivered.Load() == 1
			})
			dl := e.readDLQ(t, 1, 200*time.Millisecond)
			if len(dl) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dl))
			}
			d := dl[0]
			if got := header(d, delivery.HeaderDLQTruncated); got != strconv.Itoa(len(recs[0].Value)) {
				t.Errorf("%s = %q, want the original size %d", delivery.HeaderDLQTruncated, got, len(recs[0].Value))
			}
			if header(d, envelope.HeaderID) != "BIG-v1" || header(d, envelope.HeaderDLQErrorClass) != envelope.ClassPermanent || string(d.Key) != "BIG" {
				t.Errorf("dead letter lost its identity: key %q, id %q, class %q", d.Key, header(d, envelope.HeaderID), header(d, envelope.HeaderDLQErrorClass))
			}
			if tc.stub {
				if len(d.Value) != 0 || header(d, delivery.HeaderDLQStub) != "true" {
					t.Errorf("stub: value %d bytes, %s %q", len(d.Value), delivery.HeaderDLQStub, header(d, delivery.HeaderDLQStub))
				}
			} else if len(d.Value) == 0 || len(d.Value) >= len(recs[0].Value) || !strings.HasPrefix(string(recs[0].Value), string(d.Value)) {
				t.Errorf("truncated value: %d bytes of %d, want the head", len(d.Value), len(recs[0].Value))
			}
			waitFor(t, 10*time.Second, "offsets committed past the dead letter", func() bool { return e.committedLag(t) == 0 })
		})
	}
}
