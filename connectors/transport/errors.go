package transport

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/fanout-dev/fanout/connectors"
)

// MaxMessageLen is how much of a downstream's error message connectors keep:
// enough to diagnose, short enough for dead-letter headers and logs.
const MaxMessageLen = 300

// Failure turns an error returned by Client.Do (no response at all) into a
// *connectors.Error. A header value that is not valid HTTP (an id with
// control characters) is Permanent. A certificate that does not verify or a host name
// that does not exist (EndpointFailure), still failing after the client's
// in-call attempts, is Halt: every record would fail the same way until an
// operator fixes the URL, the CA or DNS. Anything else we cannot explain,
// such as a refused connection or a timeout, is Retryable: retried by the
// delivery layer, never dropped. err must already be redacted, as Do's
// errors are.
func Failure(err error) *connectors.Error {
	if err != nil && strings.Contains(err.Error(), "invalid header field value") {
		// Configured headers are checked at start, so the bad value came
		// from the notification (an id with control characters): this
		// record will never go out, whatever the endpoint does.
		return &connectors.Error{Class: connectors.Permanent, Code: "InvalidHeaderValue",
			Message: "a header built from the notification is not valid HTTP (control characters in an id?)", Err: err}
	}
	switch kind, _ := EndpointFailure(err); kind {
	case "tls":
		return &connectors.Error{Class: connectors.Halt, Code: "TLSVerification",
			Message: "no response: the server's certificate does not verify; fix the URL or trust its CA", Err: err}
	case "dns":
		return &connectors.Error{Class: connectors.Halt, Code: "HostNotFound",
			Message: "no response: the host name does not resolve; fix the URL or DNS", Err: err}
	}
	return &connectors.Error{Class: connectors.Retryable, Message: "no response", Err: err}
}

// ParseErrorBody extracts a code and a message from the JSON error bodies
// HTTP APIs commonly return:
//
//	{"error":{"code":"...","message":"..."}}   (Azure, Logic Apps)
//	{"error":"...","error_description":"..."}  (OAuth2)
//	{"code":"...","message":"..."}
//	[{"errorCode":"...","message":"..."}]      (Salesforce)
//
// Anything else (HTML from a gateway, plain text) yields empty strings. The
// message is truncated to MaxMessageLen and scrubbed of URLs; callers
// still scrub their own secrets with RedactSecrets.
func ParseErrorBody(body []byte) (code, message string) {
	var first json.RawMessage = body
	var arr []json.RawMessage
	if json.Unmarshal(body, &arr) == nil && len(arr) > 0 {
		first = arr[0]
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(first, &doc) != nil {
		return "", ""
	}
	if inner, ok := doc["error"]; ok {
		var nested map[string]json.RawMessage
		if json.Unmarshal(inner, &nested) == nil {
			code, message = str(nested["code"]), str(nested["message"])
		} else {
			code, message = str(inner), str(doc["error_description"])
		}
	}
	if code == "" {
		code = firstNonEmpty(str(doc["code"]), str(doc["errorCode"]))
	}
	if message == "" {
		message = firstNonEmpty(str(doc["message"]), str(doc["error_description"]))
	}
	return Truncate(code, 100), Truncate(RedactText(message), MaxMessageLen)
}

// str decodes a JSON string, or returns "" for anything else.
func str(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return strings.TrimSpace(s)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// Truncate shortens s to at most n bytes on a rune boundary, marking the
// cut with "…".
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// StatusMessage is a short description of a status for when the body gave
// none, e.g. "503 Service Unavailable".
func StatusMessage(code int) string { return statusText(code) }
