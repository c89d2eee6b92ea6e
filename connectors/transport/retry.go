package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Classifier decides whether the outcome of one attempt is worth another
// attempt within the same Deliver call. resp is nil when err is not. It is
// not asked about context cancellation: the client never retries once the
// caller's context is done. Each connector passes its own, because what is
// transient differs between downstreams.
type Classifier func(resp *http.Response, err error) (retry bool)

// DefaultClassifier retries network errors and timeouts, except those that
// can never succeed (an unsupported scheme, an untrusted certificate), and
// the statuses that mean "not now": 408, 429, 500, 502, 503 and 504.
func DefaultClassifier(resp *http.Response, err error) bool {
	if err != nil {
		return RetryableError(err)
	}
	return RetryableStatus(resp.StatusCode)
}

// RetryableStatus reports whether status is one of 408, 429, 500, 502, 503,
// 504: the statuses for which a repeat of the same request may succeed.
func RetryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// RetryableError reports whether a transport error (no response) may go
// away on its own. Certificate problems and malformed requests do not, so
// retrying them in-call only wastes the caller's deadline.
func RetryableError(err error) bool {
	if err == nil {
		return false
	}
	if certificateError(err) {
		return false
	}
	msg := err.Error()
	for _, s := range []string{"unsupported protocol scheme", "stopped after", "invalid header"} {
		if strings.Contains(msg, s) {
			return false
		}
	}
	return true
}

// certificateError reports whether err is a failure to verify the server's
// certificate: untrusted, expired, or for another host.
func certificateError(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownAuthority),
		errors.As(err, &hostErr), errors.As(err, &invalidCert):
		return true
	}
	return strings.Contains(err.Error(), "certificate is not trusted")
}

// ParseRetryAfter parses a Retry-After header value in either of its forms,
// delta-seconds ("120") or HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"),
// relative to now. A date in the past yields 0. ok is false when h is empty
// or malformed (a negative or fractional number, an unknown date format).
// The result is not capped; callers apply their own limit.
func ParseRetryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if h[0] >= '0' && h[0] <= '9' {
		secs, err := strconv.ParseUint(h, 10, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return time.Duration(math.MaxInt64), true
			}
			return 0, false
		}
		if secs > uint64(math.MaxInt64/int64(time.Second)) {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(h)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}

// FullJitterBackoff returns a wait drawn uniformly from
// [0, min(max, min*2^attemptNum)] ("full jitter"): spreading retries over
// the whole window keeps many workers that failed together from retrying
// together. attemptNum counts from 0 for the wait after the first attempt.
// It has the signature of retryablehttp.Backoff and ignores resp.
func FullJitterBackoff(min, max time.Duration, attemptNum int, _ *http.Response) time.Duration {
	ceiling := backoffCeiling(min, max, attemptNum)
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// backoffCeiling is min*2^attemptNum capped at max, without overflowing.
func backoffCeiling(min, max time.Duration, attemptNum int) time.Duration {
	if min <= 0 {
		return 0
	}
	if max < min {
		max = min
	}
	if attemptNum < 0 {
		attemptNum = 0
	}
	if attemptNum >= 62 {
		return max
	}
	c := min
	for range attemptNum {
		if c > max/2 {
			return max
		}
		c *= 2
	}
	if c > max {
		return max
	}
	return c
}
