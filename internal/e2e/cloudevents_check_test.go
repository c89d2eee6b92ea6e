package e2e

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCheckCloudEvent: the SDK check the end-to-end tests apply to every
// notification tells valid records from the defects issue 12 found.
func TestCheckCloudEvent(t *testing.T) {
	rec := func(typ, tm, source string) *kgo.Record {
		h := []kgo.RecordHeader{
			{Key: "ce_id", Value: []byte("evt-1")}, {Key: "ce_specversion", Value: []byte("1.0")},
			{Key: "ce_source", Value: []byte(source)}, {Key: "ce_subject", Value: []byte("Q/1")},
			{Key: "content-type", Value: []byte("application/json")}, {Key: "fanout_targets", Value: []byte("a,b")},
		}
		if typ != "-" {
			h = append(h, kgo.RecordHeader{Key: "ce_type", Value: []byte(typ)})
		}
		if tm != "-" {
			h = append(h, kgo.RecordHeader{Key: "ce_time", Value: []byte(tm)})
		}
		return &kgo.Record{Key: []byte("Q/1"), Value: []byte(`{"id":"evt-1"}`), Headers: h}
	}
	cases := []struct {
		name  string
		r     *kgo.Record
		valid bool
	}{
		{"valid", rec("quote_created", "2025-07-14T10:00:00.123456789+05:30", "/fanout/quotes"), true},
		{"no time", rec("quote_created", "-", "/fanout/quotes"), true},
		{"urn source", rec("quote_created", "-", "urn:example:quotes"), true},
		{"empty type", rec("", "2025-07-14T10:00:00Z", "/fanout/quotes"), false},
		{"no type", rec("-", "2025-07-14T10:00:00Z", "/fanout/quotes"), false},
		{"month 13", rec("quote_created", "2025-13-01T10:00:00Z", "/fanout/quotes"), false},
		{"empty source", rec("quote_created", "-", ""), false},
		{"source not a URI-reference", rec("quote_created", "-", "http://a b/%zz"), false},
		{"no specversion", &kgo.Record{Value: []byte(`{}`), Headers: []kgo.RecordHeader{{Key: "ce_type", Value: []byte("t")}}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCloudEvent(tc.r)
			if tc.valid != (err == nil) {
				t.Fatalf("checkCloudEvent = %v, want valid=%v", err, tc.valid)
			}
		})
	}
}
