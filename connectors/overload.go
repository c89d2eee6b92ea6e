package connectors

import (
	"errors"
	"net/http"
)

// CodeRequestLimitExceeded is Salesforce's error code for an exceeded API
// limit (concurrent long-running requests, or the org's daily allocation).
const CodeRequestLimitExceeded = "REQUEST_LIMIT_EXCEEDED"

// Overloaded reports whether err says the downstream is over its capacity
// rather than failing: 429 Too Many Requests, 503 Service Unavailable,
// 504 Gateway Timeout (the service behind the gateway is too slow to
// answer) or Salesforce's REQUEST_LIMIT_EXCEEDED. The delivery layer's
// adaptive concurrency limit shrinks on these.
func Overloaded(err error) bool {
	var ce *Error
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return ce.Code == CodeRequestLimitExceeded
}
