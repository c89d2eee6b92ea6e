package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/fanout-dev/fanout/connectors"
)

// TestCloudEventsModes: deliveries in the CloudEvents formats, received by
// a real HTTP server, are read back with the CloudEvents SDK's HTTP
// binding; each is a valid CloudEvent 1.0 whose id, type, source, subject
// and time are the notification's, with the notification body as data.
func TestCloudEventsModes(t *testing.T) {
	for _, format := range []string{FormatCloudEventsStructured, FormatCloudEventsBinary} {
		t.Run(format, func(t *testing.T) {
			var (
				mu   sync.Mutex
				reqs []*http.Request
				raw  [][]byte
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				reqs, raw = append(reqs, r.Clone(context.Background())), append(raw, b)
				mu.Unlock()
				w.WriteHeader(http.StatusAccepted)
			}))
			defer srv.Close()
			c := mustOpen(t, "url: "+srv.URL+"\nformat: "+format+"\nsigning: {secret: "+testSecret+"}\n", nil)

			sent := []*connectors.Notification{notification(), notification(), notification()}
			sent[1].ID, sent[1].Type, sent[1].Key = "n-2", "quote_deleted", "Q/1 ü %41"
			sent[2].ID, sent[2].Time = "n-3", time.Time{}
			for _, n := range sent {
				if err := c.Deliver(context.Background(), n); err != nil {
					t.Fatal(err)
				}
			}
			if len(reqs) != len(sent) {
				t.Fatalf("%d requests, want %d", len(reqs), len(sent))
			}
			for i, r := range reqs {
				n := sent[i]
				wantCT := "application/json"
				if format == FormatCloudEventsStructured {
					wantCT = "application/cloudevents+json"
				}
				if ct := r.Header.Get("Content-Type"); ct != wantCT {
					t.Errorf("Content-Type %q, want %q", ct, wantCT)
				}
				r.Body = io.NopCloser(bytes.NewReader(raw[i]))
				ev, err := binding.ToEvent(context.Background(), cehttp.NewMessageFromHttpRequest(r))
				if err != nil {
					t.Fatalf("request %d is not a CloudEvent: %v\n%s", i, err, raw[i])
				}
				if err := ev.Validate(); err != nil {
					t.Fatalf("request %d: invalid CloudEvent: %v", i, err)
				}
				subject := ev.Subject()
				if format == FormatCloudEventsBinary {
					// The HTTP binding (v1.0.2, 3.1.3.2) has ce-* values
					// percent-encoded past printable ASCII, space, '"' and
					// '%'; sdk-go v2.16 hands them over undecoded.
					if subject, err = url.PathUnescape(subject); err != nil {
						t.Fatal(err)
					}
				}
				if ev.ID() != n.ID || ev.Type() != n.Type || ev.Source() != n.Source || subject != n.Key || ev.SpecVersion() != "1.0" {
					t.Errorf("request %d: id %q type %q source %q subject %q spec %q, want %q %q %q %q 1.0",
						i, ev.ID(), ev.Type(), ev.Source(), subject, ev.SpecVersion(), n.ID, n.Type, n.Source, n.Key)
				}
				if !ev.Time().Equal(n.Time) {
					t.Errorf("request %d: time %v, want %v", i, ev.Time(), n.Time)
				}
				if ev.DataContentType() != "application/json" {
					t.Errorf("request %d: datacontenttype %q", i, ev.DataContentType())
				}
				var got, want any
				if err := json.Unmarshal(ev.Data(), &got); err != nil {
					t.Fatalf("request %d: data %s: %v", i, ev.Data(), err)
				}
				_ = json.Unmarshal(n.Body, &want)
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				if !bytes.Equal(gj, wj) {
					t.Errorf("request %d: data %s, want %s", i, gj, wj)
				}
				if r.Header.Get("webhook-id") != n.ID || r.Header.Get("webhook-signature") == "" {
					t.Errorf("request %d: webhook-id %q, signature %q", i, r.Header.Get("webhook-id"), r.Header.Get("webhook-signature"))
				}
			}
		})
	}
}

func TestCloudEventsSettings(t *testing.T) {
	if _, err := open(t, "url: http://x\nformat: cloudevents\n", nil); err == nil {
		t.Fatal("an unknown format was accepted")
	}
	if _, err := open(t, "url: http://x\nformat: cloudevents-binary\nheaders: {ce-type: x}\n", nil); err == nil {
		t.Fatal("a ce-* header was accepted in binary mode")
	}
	// A notification without a source is not a CloudEvent: Permanent.
	c := mustOpen(t, "url: http://127.0.0.1:1\nformat: cloudevents-structured\n", nil)
	n := notification()
	n.Source = ""
	if err := c.Deliver(context.Background(), n); connectors.Classify(err) != connectors.Permanent {
		t.Fatalf("no source: %v, want Permanent", err)
	}
}
