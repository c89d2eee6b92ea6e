package logicapps

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("250ms", "2s"); a bare JSON number is taken as milliseconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("duration must be a string like \"250ms\" or a number of milliseconds")
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// Mode is how a workflow answers an accepted call.
type Mode string

const (
	// ModeAccepted is a workflow without a Response action: 202 Accepted
	// with an empty body, at once.
	ModeAccepted Mode = "accepted"
	// ModeResponse is a workflow with a Response action: the configured
	// status and body.
	ModeResponse Mode = "response"
)

// Faults are the behaviours that tests change while the simulator runs,
// in Go with SetFaults or over HTTP with POST /_sim/faults.
type Faults struct {
	// Mode, Status, Body and ContentType describe the workflow's answer.
	// Status (default 200) and Body apply in ModeResponse only; Status may
	// be any 2xx, 4xx or 5xx but never 3xx, as for a Response action.
	Mode        Mode   `json:"mode"`
	Status      int    `json:"status,omitempty"`
	Body        string `json:"body,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	// Latency plus a uniform random [0, Jitter] delays every accepted call;
	// a delay beyond Config.Timeout answers 504 after Timeout.
	Latency Duration `json:"latency,omitempty"`
	Jitter  Duration `json:"jitter,omitempty"`
	// RunsAfterCallerGone models the service starting the workflow run
	// once it has the trigger request: a caller that gives up during the
	// latency does not cancel it, and the call is recorded with its answer
	// when the latency is over (a late write, as a real timeout can be).
	// Off, a caller gone during the latency cancels the call.
	RunsAfterCallerGone bool `json:"runs_after_caller_gone,omitempty"`
	// FailRate (0..1) answers that fraction of calls with one of
	// FailStatuses (default 500, 502, 503), chosen uniformly.
	FailRate     float64 `json:"fail_rate,omitempty"`
	FailStatuses []int   `json:"fail_statuses,omitempty"`
	// ThrottleRate (0..1) answers that fraction of calls with 429
	// WorkflowRequestsThrottled.
	ThrottleRate float64 `json:"throttle_rate,omitempty"`
	// RetryAfter adds a Retry-After header (delta-seconds) to 429 and 503
	// answers. Whether the real service sends one on inbound throttling is
	// undocumented, so the default is off and clients must cope with both.
	RetryAfter bool `json:"retry_after"`
	// RetryAfterSeconds is the value sent when no better one is known
	// (default 1). Budget throttling sends the time until a slot frees up.
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
	// Capacity models a workflow (and the systems it calls) that slows
	// down under load: with more than Capacity calls of the workflow in
	// flight, a call's latency (Latency plus jitter) is multiplied by the
	// square of (calls in flight / Capacity), counted when it arrives.
	// Every extra call slows the others down, as lock and CPU contention
	// do, so the workflow's throughput falls past its capacity instead of
	// staying flat. 0 turns it off.
	Capacity int `json:"capacity,omitempty"`
	// CapacityThrottle is how far over Capacity the service starts to
	// throttle: a call arriving with Capacity × CapacityThrottle calls in
	// flight is answered 429 WorkflowRequestsThrottled at once, with a
	// Retry-After when RetryAfter is set (default 4).
	CapacityThrottle float64 `json:"capacity_throttle,omitempty"`
	// Script answers the next calls in order, before any random fault.
	Script []Step `json:"script,omitempty"`
}

// DefaultCapacityThrottle is Faults.CapacityThrottle when left zero.
const DefaultCapacityThrottle = 4

// capacityDelay scales delay for a call arriving with n calls of its
// workflow in flight (itself included).
func (f *Faults) capacityDelay(delay time.Duration, n int) time.Duration {
	if f.Capacity <= 0 || n <= f.Capacity {
		return delay
	}
	r := float64(n) / float64(f.Capacity)
	return time.Duration(float64(delay) * r * r)
}

// capacityThrottled reports whether a call arriving with inFlight calls
// already in flight is throttled.
func (f *Faults) capacityThrottled(inFlight int) bool {
	if f.Capacity <= 0 {
		return false
	}
	t := f.CapacityThrottle
	if t <= 0 {
		t = DefaultCapacityThrottle
	}
	return float64(inFlight) >= float64(f.Capacity)*t
}

// Step is one entry of a fault script: it answers the calls that reach it
// with Status until Count calls have been answered or For has elapsed since
// the step became current (for the first step, when the script was set; for
// later ones, when the previous step ended), whichever comes first. A step
// with neither answers one call.
type Step struct {
	Count int      `json:"count,omitempty"`
	For   Duration `json:"for,omitempty"`
	// Status is the status to answer: 429, 5xx and 4xx get the bodies the
	// real service sends (502 an HTML page); 2xx answers like a Response
	// action; 0 lets the call through to the normal behaviour.
	Status int `json:"status"`
	// RetryAfter, if set, is sent verbatim as Retry-After, in either of
	// its forms ("2" or an HTTP-date), whatever Faults.RetryAfter says.
	RetryAfter string `json:"retry_after,omitempty"`
	// Body, if set, replaces the default body for Status.
	Body string `json:"body,omitempty"`
	// Delay adds latency to the calls this step answers.
	Delay Duration `json:"delay,omitempty"`
}

// validate checks f for values the simulator cannot honour.
func (f *Faults) validate() error {
	switch f.Mode {
	case "", ModeAccepted, ModeResponse:
	default:
		return fmt.Errorf("mode %q: want %q or %q", f.Mode, ModeAccepted, ModeResponse)
	}
	if f.Status != 0 && !responseStatus(f.Status) {
		return fmt.Errorf("status %d: a Response action answers 2xx, 4xx or 5xx, never 3xx", f.Status)
	}
	if f.FailRate < 0 || f.FailRate > 1 || f.ThrottleRate < 0 || f.ThrottleRate > 1 {
		return fmt.Errorf("fail_rate and throttle_rate must be within 0..1")
	}
	for _, s := range f.FailStatuses {
		if !responseStatus(s) || s < 400 {
			return fmt.Errorf("fail_statuses: %d is not a 4xx or 5xx status", s)
		}
	}
	if f.Latency < 0 || f.Jitter < 0 || f.RetryAfterSeconds < 0 {
		return fmt.Errorf("latency, jitter and retry_after_seconds must not be negative")
	}
	if f.Capacity < 0 || f.CapacityThrottle < 0 || (f.CapacityThrottle > 0 && f.CapacityThrottle < 1) {
		return fmt.Errorf("capacity must not be negative and capacity_throttle must be 0 (for %d) or at least 1", DefaultCapacityThrottle)
	}
	for i, s := range f.Script {
		if s.Status != 0 && !responseStatus(s.Status) {
			return fmt.Errorf("script[%d]: status %d must be 2xx, 4xx or 5xx (or 0 to pass)", i, s.Status)
		}
		if s.Count < 0 || s.For < 0 || s.Delay < 0 {
			return fmt.Errorf("script[%d]: count, for and delay must not be negative", i)
		}
	}
	return nil
}

// responseStatus reports whether a Response action may answer status.
func responseStatus(status int) bool {
	return (status >= 200 && status < 300) || (status >= 400 && status < 600)
}
