package webhook

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// TestProjectionInTemplate: body_template can name the notification's
// projection.
func TestProjectionInTemplate(t *testing.T) {
	rc, url := serve(t)
	c := mustOpen(t, "url: "+url+"\nbody_template: '{\"projection\":{{json .Projection}},\"key\":{{json .Key}}}'\n", nil)
	n := notification()
	n.Projection = "orders"
	if err := c.Deliver(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	if got, want := string(rc.bodies[0]), `{"projection":"orders","key":"quote-42"}`; got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
}

// TestProjectionCloudEventsExtension: in both CloudEvents formats the
// projection travels as the extension attribute fanoutprojection, read
// back with the CloudEvents SDK; a notification without a projection
// (a record from before projections) has none.
func TestProjectionCloudEventsExtension(t *testing.T) {
	for _, format := range []string{FormatCloudEventsStructured, FormatCloudEventsBinary} {
		t.Run(format, func(t *testing.T) {
			rc, url := serve(t)
			c := mustOpen(t, "url: "+url+"\nformat: "+format+"\n", nil)
			with, without := notification(), notification()
			with.Projection = "orders"
			if err := c.Deliver(context.Background(), with); err != nil {
				t.Fatal(err)
			}
			if err := c.Deliver(context.Background(), without); err != nil {
				t.Fatal(err)
			}
			for i, want := range []string{"orders", ""} {
				r := rc.reqs[i]
				r.Body = io.NopCloser(bytes.NewReader(rc.bodies[i]))
				ev, err := binding.ToEvent(context.Background(), cehttp.NewMessageFromHttpRequest(r))
				if err != nil {
					t.Fatalf("request %d is not a CloudEvent: %v", i, err)
				}
				if err := ev.Validate(); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				got, ok := ev.Extensions()["fanoutprojection"]
				switch {
				case want == "" && ok:
					t.Errorf("request %d: fanoutprojection %v on a notification without a projection", i, got)
				case want != "" && got != want:
					t.Errorf("request %d: fanoutprojection %v, want %q (extensions %v)", i, got, want, ev.Extensions())
				}
			}
		})
	}
}
