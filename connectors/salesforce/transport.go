package salesforce

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fanout-dev/fanout/connectors/transport"
)

// maxResponseBytes bounds what the connector reads of a response; a
// 200-record Collections result is a few tens of KB.
const maxResponseBytes = 8 << 20

// LimitInfo is the API usage Salesforce reports in Sforce-Limit-Info.
type LimitInfo struct {
	// Used and Max are the rolling 24 h API requests used and allowed
	// (api-usage=Used/Max).
	Used, Max int64
	// BurstsUsed and BurstsMax come from the optional api-bursts=a/b
	// part; HasBursts says whether it was present.
	BurstsUsed, BurstsMax int64
	HasBursts             bool
	// At is when the response carrying it arrived.
	At time.Time
}

// ParseLimitInfo parses a Sforce-Limit-Info header value such as
// "api-usage=10018/100000; api-bursts=1/750".
func ParseLimitInfo(v string) (LimitInfo, bool) {
	var li LimitInfo
	found := false
	for part := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ';' || r == ',' }) {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		a, b, ok := parseRatio(val)
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "api-usage":
			li.Used, li.Max, found = a, b, true
		case "api-bursts":
			li.BurstsUsed, li.BurstsMax, li.HasBursts = a, b, true
		}
	}
	return li, found
}

func parseRatio(s string) (int64, int64, bool) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, false
	}
	x, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	y, err2 := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	if err1 != nil || err2 != nil || x < 0 || y < 0 {
		return 0, 0, false
	}
	return x, y, true
}

// limitTransport reads Sforce-Limit-Info from every response, retried
// attempts included, before retry logic can discard it.
type limitTransport struct {
	base    http.RoundTripper
	observe func(LimitInfo)
}

// RoundTrip implements http.RoundTripper.
func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if resp != nil {
		if v := resp.Header.Get("Sforce-Limit-Info"); v != "" {
			if li, ok := ParseLimitInfo(v); ok {
				li.At = time.Now()
				t.observe(li)
			}
		}
	}
	return resp, err
}

// newClient builds the connector's HTTP client on the retry stack all
// connectors share (transport.Client): at most max_attempts attempts with
// full-jitter backoff, the last response handed back to be classified,
// redirects not followed (Salesforce's REST API does not redirect; a
// redirect to a login page must surface as a status, and credentials must
// never follow it), and Sforce-Limit-Info read from every attempt.
func newClient(cfg *resolved, observe func(LimitInfo)) (*transport.Client, error) {
	t := transport.NewHTTPTransport(cfg.maxConcurrency)
	return transport.New(transport.Options{
		MaxAttempts:     cfg.MaxAttempts,
		MinBackoff:      cfg.RetryWaitMin,
		MaxBackoff:      cfg.RetryWaitMax,
		Timeout:         cfg.Timeout,
		MaxResponseBody: maxResponseBytes,
		MaxConcurrency:  cfg.maxConcurrency,
		Transport:       &limitTransport{base: t, observe: observe},
		Classifier:      retryInCall,
		// Logger nil: the connector logs.
	})
}

// retryInCall retries, within one call, what is likely to pass a moment
// later: network errors, 429, 5xx (not 501) and 400 UNABLE_TO_LOCK_ROW.
// Limits (403 REQUEST_LIMIT_EXCEEDED) are not retried here: they need a
// wait far longer than one call should take, which the delivery layer does.
func retryInCall(resp *http.Response, err error) bool {
	if err != nil {
		return transport.RetryableError(err)
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests, s >= 500 && s != http.StatusNotImplemented:
		return true
	case s == http.StatusBadRequest:
		return bytes.Contains(transport.PeekBody(resp, 64<<10), []byte("UNABLE_TO_LOCK_ROW"))
	}
	return false
}
