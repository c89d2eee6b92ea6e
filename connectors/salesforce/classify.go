package salesforce

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/transport"
	"golang.org/x/oauth2"
)

// apiError is one entry of a Salesforce error array. Top-level errors name
// their code errorCode, per-record results statusCode; fields may be absent.
type apiError struct {
	Message    string   `json:"message"`
	ErrorCode  string   `json:"errorCode"`
	StatusCode string   `json:"statusCode"`
	Fields     []string `json:"fields"`
}

func (e apiError) code() string {
	if e.ErrorCode != "" {
		return e.ErrorCode
	}
	return e.StatusCode
}

// parseErrors reads an error body: normally an array, tolerated as a single
// object.
func parseErrors(body []byte) []apiError {
	var arr []apiError
	if json.Unmarshal(body, &arr) == nil {
		return arr
	}
	var one apiError
	if json.Unmarshal(body, &one) == nil && one.code() != "" {
		return []apiError{one}
	}
	return nil
}

// Salesforce error codes the connector acts on.
const (
	codeInvalidSession       = "INVALID_SESSION_ID"
	codeRequestLimitExceeded = connectors.CodeRequestLimitExceeded
	codeLimitExceeded        = "LIMIT_EXCEEDED"
	codeUnableToLockRow      = "UNABLE_TO_LOCK_ROW"
	codeServerUnavailable    = "SERVER_UNAVAILABLE"
	codeRolledBack           = "ALL_OR_NONE_OPERATION_ROLLED_BACK"
	codeOperationEnqueued    = "OPERATION_ENQUEUED"
)

// describe joins the messages of errs into one bounded line.
func describe(errs []apiError) (code, msg string) {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		if code == "" {
			code = e.code()
		}
		p := e.code()
		if e.Message != "" {
			p += ": " + e.Message
		}
		if len(e.Fields) > 0 {
			p += " (fields " + strings.Join(e.Fields, ", ") + ")"
		}
		parts = append(parts, p)
	}
	return code, truncate(strings.Join(parts, "; "), 1000)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// classifyCodes returns the class and wait implied by error codes, or 0
// when no code decides.
func (c *Connector) classifyCodes(errs []apiError) (connectors.Class, time.Duration) {
	var class connectors.Class
	for _, e := range errs {
		switch e.code() {
		case codeRequestLimitExceeded:
			return connectors.Retryable, c.requestLimitWait(e.Message)
		case codeLimitExceeded:
			return connectors.Retryable, c.cfg.RetryAfter.EventHourly
		case codeUnableToLockRow, codeServerUnavailable, codeRolledBack:
			class = connectors.Retryable
		case codeInvalidSession:
			if class == 0 {
				class = connectors.Reauthenticate
			}
		}
	}
	return class, 0
}

// requestLimitWait tells the concurrency limit (back off briefly) from the
// daily allocation (wait until usage rolls down).
func (c *Connector) requestLimitWait(msg string) time.Duration {
	switch {
	case strings.Contains(msg, "TotalRequests"):
		return c.cfg.RetryAfter.Daily
	case strings.Contains(msg, "Concurrent"):
		return c.cfg.RetryAfter.Concurrent
	}
	if used, limit, ok := c.Usage(); ok && limit > 0 && used >= limit {
		return c.cfg.RetryAfter.Daily
	}
	return c.cfg.RetryAfter.Concurrent
}

// classifyResponse classifies a non-2xx REST response (what names the call
// for the message).
func (c *Connector) classifyResponse(what string, status int, body []byte) *connectors.Error {
	errs := parseErrors(body)
	code, msg := describe(errs)
	e := &connectors.Error{Status: status, Code: code, Message: what}
	if msg != "" {
		e.Message += ": " + msg
	}
	if class, wait := c.classifyCodes(errs); class != 0 {
		e.Class, e.RetryAfter = class, wait
		return e
	}
	switch {
	case status == http.StatusMultipleChoices:
		var urls []string
		_ = json.Unmarshal(body, &urls)
		e.Class = connectors.Permanent
		e.Message = fmt.Sprintf("%s: the external id matched %d records; make the field unique", what, len(urls))
	case status == http.StatusUnauthorized:
		e.Class = connectors.Reauthenticate
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		e.Class = connectors.Retryable
	case hasCode(errs, endpointCodes) && !recordSpecific(errs):
		// The org refuses the object or the API itself, for any record.
		e.Class = connectors.Halt
		e.Message += " (check object, event, external_id_field and the org's API access)"
	case status == http.StatusForbidden && !recordSpecific(errs):
		// Not a limit (handled above) and not about one record: the
		// integration user lacks access to the object or the API.
		e.Class = connectors.Halt
		e.Message += " (the integration user may not use this object or API: check its profile and permission sets)"
	case status == http.StatusNotFound:
		// NOT_FOUND of the sObject type, the external id field or the
		// API version: an upsert never 404s for a missing record (it
		// creates one), so every record would fail the same way.
		e.Class = connectors.Halt
		e.Message += " (check object, external_id_field, event and api_version)"
	case status == http.StatusGone, status >= 300 && status < 400:
		e.Class = connectors.Halt
		e.Message += " (check login_url and the instance_url the token endpoint returned)"
	case status >= 400:
		// 400 validation and parse errors: this record is wrong.
		e.Class = connectors.Permanent
	default:
		// An unexpected status we cannot explain is retried, not dropped.
		e.Class = connectors.Retryable
	}
	if msg == "" && status != http.StatusMultipleChoices && len(body) > 0 {
		// Not an error array (an HTML gateway page, say): quote a little.
		e.Message += ": " + truncate(strings.Join(strings.Fields(string(body)), " "), 200)
	}
	return e
}

// recordSpecificCodes are error codes that a 403 may carry about one
// record (its sharing, a locked parent) rather than about the caller.
var recordSpecificCodes = map[string]bool{
	"INSUFFICIENT_ACCESS_OR_READONLY":               true,
	"INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY": true,
	"ENTITY_IS_LOCKED":                              true,
	"ENTITY_IS_DELETED":                             true,
}

// endpointCodes are top-level error codes that refuse the configured
// object or the API, not one record.
var endpointCodes = map[string]bool{
	"INVALID_TYPE":           true, // sObject type 'X' is not supported
	"API_DISABLED_FOR_ORG":   true,
	"API_CURRENTLY_DISABLED": true,
}

// hasCode reports whether one of errs has a code in codes.
func hasCode(errs []apiError, codes map[string]bool) bool {
	for _, e := range errs {
		if codes[e.code()] {
			return true
		}
	}
	return false
}

// recordSpecific reports whether errs name a problem with the record.
func recordSpecific(errs []apiError) bool {
	for _, e := range errs {
		if recordSpecificCodes[e.code()] {
			return true
		}
	}
	return false
}

// classifyRecord classifies one failed record of a Collections or event
// response (HTTP 200 or 201 with success:false).
func (c *Connector) classifyRecord(status int, errs []apiError) *connectors.Error {
	code, msg := describe(errs)
	e := &connectors.Error{Status: status, Code: code, Message: "record failed"}
	if msg != "" {
		e.Message += ": " + msg
	}
	if class, wait := c.classifyCodes(errs); class == connectors.Retryable {
		e.Class, e.RetryAfter = class, wait
		return e
	}
	if len(errs) == 0 {
		e.Class = connectors.Retryable // success:false without a reason
		return e
	}
	e.Class = connectors.Permanent
	return e
}

// tokenError classifies a failed token request. The OAuth error body is
// read only for its error and error_description; the request (which holds
// the secret or the signed assertion) never reaches the message.
func tokenError(err error) *connectors.Error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		code, desc := re.ErrorCode, re.ErrorDescription
		if code == "" {
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if json.Unmarshal(re.Body, &body) == nil {
				code, desc = body.Error, body.Description
			}
		}
		e := &connectors.Error{Status: status, Code: code, Message: "token endpoint refused the request"}
		if code != "" {
			e.Message += ": " + truncate(code, 100)
			if desc != "" {
				e.Message += ": " + truncate(desc, 300)
			}
		}
		switch {
		case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500 || status == 0:
			e.Class = connectors.Retryable
		default:
			// 400 invalid_client / invalid_grant / unauthorized_client:
			// the client is refused until an operator fixes the
			// credentials; no record can be delivered meanwhile.
			e.Class = connectors.Halt
			e.Message += " (check auth settings, login_url and the connected app)"
		}
		return e
	}
	f := transport.Failure(transport.RedactError(err))
	f.Message = "fetch access token: " + f.Message
	return f
}
