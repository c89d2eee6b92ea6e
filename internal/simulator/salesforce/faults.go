package salesforce

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("250ms", "30s") so that fault scripts posted over HTTP stay
// readable; a bare JSON number is taken as nanoseconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts "30s"-style strings and integer nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want a string like \"30s\" or integer nanoseconds, got %s", b)
	}
	*d = Duration(n)
	return nil
}

// Target says whether a fault rule fails a whole API call or single records
// inside it, because Salesforce reports lock and validation errors per record
// in sObject Collections but as the whole response for a single upsert.
const (
	// TargetCall fails the whole request with the rule's status and an
	// error array body.
	TargetCall = "call"
	// TargetRecord fails individual records: per-record results in
	// Collections, the whole response for single-record endpoints.
	TargetRecord = "record"
)

// Rule injects one kind of failure, either for the next Count matching
// calls or records (a script) or at random with probability Rate.
type Rule struct {
	// Code is a Salesforce error code (UNABLE_TO_LOCK_ROW, DUPLICATE_VALUE,
	// REQUIRED_FIELD_MISSING, FIELD_CUSTOM_VALIDATION_EXCEPTION,
	// INVALID_FIELD, MALFORMED_ID, INVALID_SESSION_ID,
	// REQUEST_LIMIT_EXCEEDED, LIMIT_EXCEEDED, NOT_FOUND, SERVER_UNAVAILABLE)
	// or an HTTP status as text ("500", "502", "503").
	Code string `json:"code"`
	// Message overrides the default message for Code.
	Message string `json:"message,omitempty"`
	// Count is how many more matches fail; 0 with Rate 0 disables the rule.
	Count int `json:"count,omitempty"`
	// Rate is the probability in [0,1] that a match fails (used when Count
	// is 0).
	Rate float64 `json:"rate,omitempty"`
	// Target is TargetCall (default) or TargetRecord.
	Target string `json:"target,omitempty"`
	// PathContains restricts the rule to request paths containing it, e.g.
	// "/composite/" or "Quote_Change__e".
	PathContains string `json:"path_contains,omitempty"`
}

// Faults are the knobs a test may change while the fake runs, through
// SetFaults, UpdateFaults or POST /_sim/faults (which merges the posted JSON
// into the current value, so a script only names what it changes).
type Faults struct {
	// FailRate is the probability that an API call fails with 503
	// SERVER_UNAVAILABLE.
	FailRate float64 `json:"fail_rate"`
	// Rules inject error codes by script or by rate.
	Rules []Rule `json:"rules"`
	// OutageUntil makes every request, token endpoint included, answer 503
	// until then.
	OutageUntil time.Time `json:"outage_until"`
	// OutageFor, when posted, sets OutageUntil to now plus this duration.
	OutageFor Duration `json:"outage_for,omitempty"`
	// RejectField and RejectValue make every record whose RejectField
	// equals RejectValue fail with FIELD_CUSTOM_VALIDATION_EXCEPTION.
	RejectField string `json:"reject_field"`
	RejectValue string `json:"reject_value"`
	// UpdateStatus is the status of an upsert that updates: 200 (with a
	// body, created:false) or 204 (no body).
	UpdateStatus int `json:"update_status"`
	// WrongHost makes the client-credentials token grant fail as it does
	// on login.salesforce.com: 400 invalid_grant "request not supported on
	// this domain".
	WrongHost bool `json:"wrong_host"`
	// Latency and Jitter delay every API call by Latency plus a random
	// part of Jitter.
	Latency Duration `json:"latency"`
	Jitter  Duration `json:"jitter"`
	// SlowRate is the probability that a call takes SlowLatency instead
	// (slow mode: > 20 s makes it a long-running request).
	SlowRate    float64  `json:"slow_rate"`
	SlowLatency Duration `json:"slow_latency"`
	// DailyLimit is the rolling 24 h API request allocation; <= 0 means
	// unlimited.
	DailyLimit int64 `json:"daily_limit"`
	// EventHourlyLimit is the rolling 1 h platform event publishing
	// allocation; <= 0 means unlimited.
	EventHourlyLimit int64 `json:"event_hourly_limit"`
	// LongRequestCap is how many long-running requests may run at once;
	// <= 0 means unlimited.
	LongRequestCap int `json:"long_request_cap"`
}

// clone returns a deep copy so that callers never share the rules slice.
func (f Faults) clone() Faults {
	f.Rules = append([]Rule(nil), f.Rules...)
	return f
}

// validate rejects fault settings the fake cannot honour.
func (f Faults) validate() error {
	if f.UpdateStatus != 200 && f.UpdateStatus != 204 {
		return fmt.Errorf("update_status must be 200 or 204, got %d", f.UpdateStatus)
	}
	if f.FailRate < 0 || f.FailRate > 1 || f.SlowRate < 0 || f.SlowRate > 1 {
		return fmt.Errorf("fail_rate and slow_rate must be in [0,1]")
	}
	for i, r := range f.Rules {
		if r.Code == "" {
			return fmt.Errorf("rules[%d]: code is required", i)
		}
		if r.Target != "" && r.Target != TargetCall && r.Target != TargetRecord {
			return fmt.Errorf("rules[%d]: target must be %q or %q", i, TargetCall, TargetRecord)
		}
		if r.Rate < 0 || r.Rate > 1 {
			return fmt.Errorf("rules[%d]: rate must be in [0,1]", i)
		}
	}
	return nil
}

// faultSpec is the status and default message of an injectable code.
type faultSpec struct {
	status  int
	message string
	fields  []string
}

// faultSpecFor returns the wording Salesforce uses for an injectable code.
func faultSpecFor(code string) (faultSpec, bool) {
	switch code {
	case "UNABLE_TO_LOCK_ROW":
		return faultSpec{400, "unable to obtain exclusive access to this record or 1 records: a0B000000000001AAA", []string{}}, true
	case "DUPLICATE_VALUE":
		return faultSpec{400, "duplicate value found: Name duplicates value on record with id: a0B000000000001AAA", []string{}}, true
	case "REQUIRED_FIELD_MISSING":
		return faultSpec{400, "Required fields are missing: [Name]", []string{"Name"}}, true
	case "FIELD_CUSTOM_VALIDATION_EXCEPTION":
		return faultSpec{400, "The record was rejected by a validation rule.", []string{}}, true
	case "INVALID_FIELD":
		return faultSpec{400, "No such column 'Unknown__c' on entity. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.", []string{}}, true
	case "MALFORMED_ID":
		return faultSpec{400, "malformed id a0B", []string{}}, true
	case "INVALID_TYPE":
		return faultSpec{400, "sObject type is not supported.", []string{}}, true
	case "JSON_PARSER_ERROR":
		return faultSpec{400, "Unexpected character at [line:1, column:1]", nil}, true
	case "LIMIT_EXCEEDED":
		return faultSpec{400, "Publishing platform events exceeded the hourly allocation.", []string{}}, true
	case "INVALID_SESSION_ID":
		return faultSpec{401, "Session expired or invalid", nil}, true
	case "REQUEST_LIMIT_EXCEEDED":
		return faultSpec{403, "TotalRequests Limit exceeded.", nil}, true
	case "NOT_FOUND":
		return faultSpec{404, "The requested resource does not exist", nil}, true
	case "SERVER_UNAVAILABLE":
		return faultSpec{503, "Server unavailable, please try again later.", nil}, true
	case "500":
		return faultSpec{500, "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)", nil}, true
	case "502":
		return faultSpec{502, "Bad gateway", nil}, true
	case "503":
		return faultSpec{503, "Server unavailable, please try again later.", nil}, true
	}
	return faultSpec{}, false
}

// apiErrorFor builds the status and error entry for an injected code.
func apiErrorFor(r Rule) (int, apiError) {
	code := strings.TrimSpace(r.Code)
	spec, ok := faultSpecFor(code)
	if !ok {
		spec = faultSpec{status: 400, message: "injected fault", fields: []string{}}
	}
	errCode := code
	switch code {
	case "500":
		errCode = "UNKNOWN_EXCEPTION"
	case "502", "503":
		errCode = "SERVER_UNAVAILABLE"
	}
	msg := spec.message
	if r.Message != "" {
		msg = r.Message
	}
	return spec.status, apiError{Message: msg, ErrorCode: errCode, Fields: spec.fields}
}
