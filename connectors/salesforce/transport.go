package salesforce

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
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

// newRetryClient builds the retrying HTTP client shared by the token and
// REST calls: at most maxAttempts attempts, full-jitter exponential backoff,
// and the last response handed back (not an opaque "giving up" error) so
// that it can be classified.
func newRetryClient(cfg *resolved, base *http.Transport, observe func(LimitInfo)) *retryablehttp.Client {
	return &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: &limitTransport{base: base, observe: observe},
			Timeout:   cfg.Timeout,
			// Salesforce's REST API does not redirect; a redirect (to a
			// login page, say) must surface as a status, and credentials
			// must never follow it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		RetryWaitMin: cfg.RetryWaitMin,
		RetryWaitMax: cfg.RetryWaitMax,
		RetryMax:     cfg.MaxAttempts - 1,
		CheckRetry:   checkRetry,
		Backoff:      fullJitterBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		// Logger nil: retryablehttp logs nothing; the connector logs.
	}
}

// checkRetry retries, within one call, what is likely to pass a moment
// later: network errors, 429, 5xx (not 501) and 400 UNABLE_TO_LOCK_ROW.
// Limits (403 REQUEST_LIMIT_EXCEEDED) are not retried here: they need a
// wait far longer than one call should take, which the delivery layer does.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests, s >= 500 && s != http.StatusNotImplemented:
		return true, nil
	case s == http.StatusBadRequest:
		return bytes.Contains(peekBody(resp, 64<<10), []byte("UNABLE_TO_LOCK_ROW")), nil
	}
	return false, nil
}

// peekBody returns up to n bytes of the body and leaves the body readable
// in full.
func peekBody(resp *http.Response, n int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, n))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	return b
}

// fullJitterBackoff sleeps a uniform random time in [0, min(max, min*2^n)],
// so that many workers retrying a contended record do not retry in step.
func fullJitterBackoff(min, max time.Duration, attempt int, _ *http.Response) time.Duration {
	if max <= 0 {
		return 0
	}
	upper := max
	if attempt < 30 {
		if u := min << attempt; u > 0 && u < max {
			upper = u
		}
	}
	return rand.N(upper + 1)
}
