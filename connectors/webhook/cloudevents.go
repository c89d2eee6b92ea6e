package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fanout-dev/fanout/connectors"
)

// ceStructuredType is the Content-Type of a structured-mode CloudEvent in
// the JSON event format.
const ceStructuredType = "application/cloudevents+json"

// ceAttributes are the context attributes of a notification as a
// CloudEvent 1.0: the same id, source, type and time the notification has
// on Kafka (ce_* headers), the aggregate id as subject, and the projection
// as the extension attribute fanoutprojection, since the subject is
// unique only within it.
type ceAttributes struct {
	ID              string `json:"id"`
	Source          string `json:"source"`
	SpecVersion     string `json:"specversion"`
	Type            string `json:"type"`
	Time            string `json:"time,omitempty"`
	Subject         string `json:"subject,omitempty"`
	DataContentType string `json:"datacontenttype,omitempty"`
	Projection      string `json:"fanoutprojection,omitempty"`
}

func attributes(n *connectors.Notification, ctype string) (ceAttributes, error) {
	a := ceAttributes{ID: n.ID, Source: n.Source, SpecVersion: "1.0", Type: n.Type, Subject: n.Key, DataContentType: ctype, Projection: n.Projection}
	if !n.Time.IsZero() {
		a.Time = n.Time.UTC().Format(time.RFC3339Nano)
	}
	// The projector never lets these be empty; a record from elsewhere on
	// the topic could, and would not be a CloudEvent.
	switch {
	case a.ID == "":
		return a, fmt.Errorf("the notification has no id")
	case a.Source == "":
		return a, fmt.Errorf("the notification has no source (ce_source)")
	case a.Type == "":
		return a, fmt.Errorf("the notification has no type (ce_type)")
	}
	return a, nil
}

// structured wraps body as the data of a structured-mode CloudEvent: as
// JSON when the content type is JSON (checked before), else base64.
func structured(n *connectors.Notification, ctype string, jsonBody bool, body []byte) ([]byte, error) {
	a, err := attributes(n, ctype)
	if err != nil {
		return nil, err
	}
	ev := struct {
		ceAttributes
		Data       json.RawMessage `json:"data,omitempty"`
		DataBase64 []byte          `json:"data_base64,omitempty"`
	}{ceAttributes: a}
	if jsonBody {
		ev.Data = body
	} else {
		ev.DataBase64 = body
	}
	return json.Marshal(ev)
}

// binaryHeaders sets the ce-* headers of a binary-mode CloudEvent; the
// body and its Content-Type are the data.
func binaryHeaders(h http.Header, n *connectors.Notification, ctype string) error {
	a, err := attributes(n, ctype)
	if err != nil {
		return err
	}
	for k, v := range map[string]string{
		"ce-id": a.ID, "ce-source": a.Source, "ce-specversion": a.SpecVersion,
		"ce-type": a.Type, "ce-time": a.Time, "ce-subject": a.Subject,
		"ce-fanoutprojection": a.Projection,
	} {
		if v != "" {
			h[http.CanonicalHeaderKey(k)] = []string{headerEncode(v)}
		}
	}
	return nil
}

// headerEncode percent-encodes what the CloudEvents HTTP binding says a
// ce-* header value must not hold as is: space, '"', '%' and anything
// outside printable ASCII (as UTF-8 bytes).
func headerEncode(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
