// Package logicapps is a local fake of an Azure Logic Apps "When a HTTP
// request is received" (Request) trigger, faithful enough to test the
// logicapps connector and fanout end to end without Azure: both callback
// URL shapes, SAS signature checks, optional bearer (Entra ID) auth with a
// tiny client-credentials token endpoint, 202 or Response-action answers,
// schema validation, size limits, throttling, scripted outages, latency,
// and a record of every call.
//
// Routes:
//
//	POST /workflows/{id}/triggers/{t}/paths/invoke   Consumption trigger
//	POST /api/{wf}/triggers/{t}/invoke               Standard trigger
//	POST /tokens/{tenant}/oauth2/v2.0/token          client-credentials tokens
//	GET  /_sim/calls     recorded calls (JSON); DELETE clears them
//	GET  /_sim/faults    current faults; POST merges a JSON patch
//	POST /_sim/admin     rotate the key, disable or enable workflows,
//	                     replace client secrets (see AdminOp)
//	POST /_sim/reset     calls, budget, tokens and faults back to the start
//
// The checks run in this order, each answering like the real service:
// route (404), api-version (400 MissingApiVersionParameter), workflow (404
// WorkflowNotFound), authentication (400 when both sig and Authorization
// are sent, 401 otherwise), body size (413), invoke budget and concurrency
// (429 WorkflowRequestsThrottled, also past Faults.Capacity), scripted then random faults, schema (400
// TriggerInputSchemaMismatch), latency (504 past the timeout), answer.
package logicapps

import (
	"context"
	crand "crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultTimeout      = 120 * time.Second
	DefaultMaxBody      = 100 << 20
	DefaultBudgetWindow = 5 * time.Minute
	DefaultTokenTTL     = time.Hour
)

// Config configures a Server.
type Config struct {
	// Key signs and verifies SAS callback URLs (see CanonicalString).
	Key string
	// Workflows lists the known workflow ids (Consumption) or names
	// (Standard); others get 404 WorkflowNotFound. Empty accepts any.
	Workflows []string
	// Timeout is how long a call may take before the caller gets 504
	// (default 120s, the Consumption limit).
	Timeout time.Duration
	// Schema, if set, turns on schema validation.
	Schema *Schema
	// MaxBody is the largest accepted body in bytes (default 100 MB).
	MaxBody int64
	// Budget is the number of invokes allowed per BudgetWindow (default
	// 5 min) per workflow; 0 means unlimited. Concurrency caps in-flight
	// calls per workflow; 0 means unlimited.
	Budget       int
	BudgetWindow time.Duration
	Concurrency  int
	// BearerToken, if set, is a static token accepted as
	// "Authorization: Bearer <token>" instead of a sig.
	BearerToken string
	// Clients maps client ids to secrets for the token endpoint. Setting
	// it or BearerToken enables bearer auth; nil with BearerToken empty
	// leaves the trigger SAS-only. An empty non-nil map accepts any client.
	Clients map[string]string
	// TokenTTL is the lifetime of issued tokens (default 1h).
	TokenTTL time.Duration
	// Faults are the initial faults; /_sim/reset returns to them.
	Faults Faults
	// Seed makes random faults and jitter reproducible; 0 seeds randomly.
	Seed uint64
}

// Call is one recorded request to a trigger route, whatever its outcome.
type Call struct {
	Seq      int       `json:"seq"`
	Time     time.Time `json:"time"`
	Method   string    `json:"method"`
	Path     string    `json:"path"`
	Workflow string    `json:"workflow,omitempty"`
	Trigger  string    `json:"trigger,omitempty"`
	// Flavor is "consumption" or "standard", from the route shape.
	Flavor string `json:"flavor,omitempty"`
	// Auth is "sas", "bearer" or "" when the call was not authenticated.
	Auth string `json:"auth,omitempty"`
	// TrackingID is the client tracking id: the caller's
	// x-ms-client-tracking-id, or the one generated for it.
	TrackingID string `json:"tracking_id"`
	// ClientTrackingIDSent tells whether the caller sent one.
	ClientTrackingIDSent bool   `json:"client_tracking_id_sent"`
	RunID                string `json:"run_id"`
	CorrelationID        string `json:"correlation_id"`
	// Header holds the request headers, Authorization redacted.
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
	// Status is the status returned, 0 if the caller went away first.
	Status int `json:"status"`
	// Code is the error code returned, if any; Reason says which check
	// or fault produced the answer.
	Code     string        `json:"code,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Duration time.Duration `json:"duration"`
}

// TokenCall is one recorded request to the token endpoint.
type TokenCall struct {
	Time     time.Time `json:"time"`
	Tenant   string    `json:"tenant"`
	ClientID string    `json:"client_id"`
	Scope    string    `json:"scope"`
	Status   int       `json:"status"`
}

// Server is the simulator. It is an http.Handler; Start also serves it on
// a listener of its own. All methods are safe for concurrent use.
type Server struct {
	cfg Config

	mu          sync.Mutex
	faults      Faults
	script      []scriptStep
	calls       []Call
	tokenCalls  []TokenCall
	tokens      map[string]issuedToken
	invokes     map[string][]time.Time // per workflow, within the budget window
	inflight    map[string]int
	seq         int
	rnd         *rand.Rand
	httpServer  *http.Server
	stopWatch   func() bool
	serveDone   chan struct{}
	stop        chan struct{} // closed by Close: cuts simulated latency short
	stopOnce    sync.Once
	baseURL     string
	started     bool
	workflowSet map[string]bool
	// key is the current access key (Config.Key until RotateKey); disabled
	// holds the workflows disabled with SetWorkflowEnabled; clients the
	// current client secrets (Config.Clients until SetClientSecret).
	key      string
	disabled map[string]bool
	clients  map[string]string
}

type scriptStep struct {
	Step
	used    int
	started time.Time
}

type issuedToken struct {
	tenant, clientID string
	expires          time.Time
}

// New validates cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.BudgetWindow == 0 {
		cfg.BudgetWindow = DefaultBudgetWindow
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.Timeout < 0 || cfg.MaxBody < 0 || cfg.Budget < 0 || cfg.Concurrency < 0 || cfg.BudgetWindow < 0 || cfg.TokenTTL < 0 {
		return nil, errors.New("logicapps simulator: timeout, max body, budget, concurrency and TTLs must not be negative")
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, fmt.Errorf("logicapps simulator: faults: %w", err)
	}
	if cfg.Schema != nil {
		if err := cfg.Schema.prepare(); err != nil {
			return nil, err
		}
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Server{
		cfg:         cfg,
		faults:      cfg.Faults,
		tokens:      make(map[string]issuedToken),
		invokes:     make(map[string][]time.Time),
		inflight:    make(map[string]int),
		rnd:         rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		stop:        make(chan struct{}),
		workflowSet: make(map[string]bool),
		key:         cfg.Key,
		disabled:    make(map[string]bool),
	}
	if cfg.Clients != nil {
		s.clients = make(map[string]string, len(cfg.Clients))
		for id, sec := range cfg.Clients {
			s.clients[id] = sec
		}
	}
	for _, w := range cfg.Workflows {
		s.workflowSet[strings.ToLower(w)] = true
	}
	s.setScriptLocked(cfg.Faults.Script, time.Now())
	return s, nil
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves until ctx is done
// or Close is called. It returns the base URL, e.g. "http://127.0.0.1:41234".
func (s *Server) Start(ctx context.Context, addr string) (string, error) {
	select {
	case <-s.stop:
		return "", errors.New("logicapps simulator: closed")
	default:
	}
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return "", errors.New("logicapps simulator: already started")
	}
	s.started = true
	s.mu.Unlock()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("logicapps simulator: listen on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	s.mu.Lock()
	s.httpServer = hs
	s.serveDone = done
	s.baseURL = "http://" + ln.Addr().String()
	base := s.baseURL
	s.stopWatch = context.AfterFunc(ctx, func() { _ = s.Close() })
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = hs.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return base, nil
}

// URL returns the base URL once Start has returned, "" before.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// CallbackURL returns a signed callback URL for workflow and trigger on
// this server (after Start).
func (s *Server) CallbackURL(workflow, trigger string, standard bool) string {
	s.mu.Lock()
	key := s.key
	s.mu.Unlock()
	return SignURL(s.URL(), key, workflow, trigger, standard)
}

// RotateKey replaces the access key, as "Regenerate access key" in the
// portal does: every callback URL signed with the old key gets 401
// DirectApiInvalidAuthorizationSignature from now on, and CallbackURL
// signs with the new one.
func (s *Server) RotateKey(key string) {
	s.mu.Lock()
	s.key = key
	s.mu.Unlock()
}

// SetWorkflowEnabled disables or re-enables a workflow. A call to a
// disabled workflow's trigger gets 409 WorkflowNotEnabled (the code the
// service reports for runs of a disabled workflow; the status and code of
// a Request trigger call are not in the public documentation, so this is
// a best guess that the connector treats like 404 WorkflowNotFound).
func (s *Server) SetWorkflowEnabled(workflow string, enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if enabled {
		delete(s.disabled, strings.ToLower(workflow))
	} else {
		s.disabled[strings.ToLower(workflow)] = true
	}
}

// SetClientSecret replaces the secret of a token endpoint client, as
// rotating an app registration's secret does: the old one gets 401
// invalid_client from now on. Tokens already issued stay valid until they
// expire or RevokeTokens.
func (s *Server) SetClientSecret(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients == nil {
		s.clients = make(map[string]string)
	}
	s.clients[clientID] = secret
}

// Close stops serving, cutting simulated latency short, and waits for the
// serving goroutine to end. It is safe to call more than once and on a
// Server that was never started.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.mu.Lock()
	hs, done, stopWatch := s.httpServer, s.serveDone, s.stopWatch
	s.mu.Unlock()
	if stopWatch != nil {
		stopWatch()
	}
	if hs == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(ctx)
	if err != nil {
		err = hs.Close()
	}
	<-done
	if err != nil {
		return fmt.Errorf("logicapps simulator: shutdown: %w", err)
	}
	return nil
}

// Calls returns a copy of the recorded trigger calls, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	copy(out, s.calls)
	return out
}

// TokenCalls returns a copy of the recorded token requests.
func (s *Server) TokenCalls() []TokenCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tokenCalls)
}

// Reset forgets the recorded calls, the invoke budget, issued tokens and
// the fault script, and restores the faults the Server started with.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls, s.tokenCalls = nil, nil
	s.invokes = make(map[string][]time.Time)
	s.tokens = make(map[string]issuedToken)
	s.faults = s.cfg.Faults
	s.setScriptLocked(s.cfg.Faults.Script, time.Now())
}

// Faults returns the current faults, with the remaining script.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	f.Script = nil
	for _, st := range s.script {
		step := st.Step
		if step.Count > 0 {
			step.Count -= st.used
		}
		f.Script = append(f.Script, step)
	}
	return f
}

// SetFaults replaces the faults; the script restarts from its first step.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.setScriptLocked(f.Script, time.Now())
	return nil
}

// RevokeTokens invalidates every issued token, as a key rotation or an
// admin revocation would: the next bearer call with one gets 401.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	s.tokens = make(map[string]issuedToken)
	s.mu.Unlock()
}

func (s *Server) setScriptLocked(steps []Step, now time.Time) {
	s.script = s.script[:0]
	for _, st := range steps {
		s.script = append(s.script, scriptStep{Step: st})
	}
	if len(s.script) > 0 {
		s.script[0].started = now
	}
}

// nextScriptedLocked returns the step answering a call at now, if any.
func (s *Server) nextScriptedLocked(now time.Time) (Step, bool) {
	for len(s.script) > 0 {
		h := &s.script[0]
		if h.started.IsZero() {
			h.started = now
		}
		if h.For > 0 && !now.Before(h.started.Add(time.Duration(h.For))) {
			end := h.started.Add(time.Duration(h.For))
			s.script = s.script[1:]
			if len(s.script) > 0 {
				s.script[0].started = end
			}
			continue
		}
		step := h.Step
		h.used++
		limit := h.Count
		if limit == 0 && h.For == 0 {
			limit = 1
		}
		if limit > 0 && h.used >= limit {
			s.script = s.script[1:]
			if len(s.script) > 0 {
				s.script[0].started = now
			}
		}
		return step, true
	}
	return Step{}, false
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/_sim/"):
		s.serveControl(w, r)
	case strings.HasPrefix(r.URL.Path, "/tokens/"):
		s.serveToken(w, r)
	default:
		s.serveTrigger(w, r)
	}
}

// route is a parsed trigger path.
type route struct {
	workflow, trigger, flavor string
}

func parseRoute(path string) (route, bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 6 && parts[0] == "workflows" && parts[2] == "triggers" && parts[4] == "paths" && parts[5] == "invoke":
		return route{parts[1], parts[3], "consumption"}, parts[1] != "" && parts[3] != ""
	case len(parts) == 5 && parts[0] == "api" && parts[2] == "triggers" && parts[4] == "invoke":
		return route{parts[1], parts[3], "standard"}, parts[1] != "" && parts[3] != ""
	}
	return route{}, false
}

// answer is what the trigger will send back.
type answer struct {
	status      int
	code        string
	message     string
	body        []byte
	contentType string
	retryAfter  string
	reason      string
}

func errorAnswer(status int, code, message, reason string) answer {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message}})
	return answer{status: status, code: code, message: message, body: b, contentType: "application/json; charset=utf-8", reason: reason}
}

func (s *Server) serveTrigger(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	call := Call{
		Time:          start,
		Method:        r.Method,
		Path:          r.URL.Path,
		Header:        redactHeader(r.Header),
		RunID:         newRunID(),
		CorrelationID: newGUID(),
	}
	call.TrackingID = r.Header.Get("x-ms-client-tracking-id")
	call.ClientTrackingIDSent = call.TrackingID != ""
	if call.TrackingID == "" {
		call.TrackingID = newGUID()
	}
	// Headers the service sets on every answer.
	h := w.Header()
	h.Set("x-ms-workflow-run-id", call.RunID)
	h.Set("x-ms-correlation-id", call.CorrelationID)
	h.Set("x-ms-client-tracking-id", call.TrackingID)
	h.Set("x-ms-trigger-history-name", call.RunID)
	h.Set("x-ms-request-id", call.CorrelationID)

	ans, release := s.decide(r, &call)
	if release != nil {
		defer release()
	}
	if ans.status == 0 {
		// The caller went away or the simulator is closing.
		call.Reason = ans.reason
		s.record(call, start)
		return
	}
	if ans.retryAfter != "" {
		h.Set("Retry-After", ans.retryAfter)
	}
	if len(ans.body) > 0 {
		ct := ans.contentType
		if ct == "" {
			ct = "application/json; charset=utf-8"
		}
		h.Set("Content-Type", ct)
		h.Set("Content-Length", strconv.Itoa(len(ans.body)))
	}
	w.WriteHeader(ans.status)
	if len(ans.body) > 0 && r.Method != http.MethodHead {
		_, _ = w.Write(ans.body)
	}
	call.Status, call.Code, call.Reason = ans.status, ans.code, ans.reason
	s.record(call, start)
}

func (s *Server) record(call Call, start time.Time) {
	call.Duration = time.Since(start)
	s.mu.Lock()
	s.seq++
	call.Seq = s.seq
	s.calls = append(s.calls, call)
	s.mu.Unlock()
}

// decide runs the checks in order and returns the answer; release, if not
// nil, frees the concurrency slot once the answer is written.
func (s *Server) decide(r *http.Request, call *Call) (answer, func()) {
	rt, ok := parseRoute(r.URL.Path)
	if !ok {
		return errorAnswer(http.StatusNotFound, "NotFound", "The requested path was not found. Expected /workflows/{id}/triggers/{trigger}/paths/invoke or /api/{workflow}/triggers/{trigger}/invoke.", "route"), nil
	}
	call.Workflow, call.Trigger, call.Flavor = rt.workflow, rt.trigger, rt.flavor
	q := r.URL.Query()
	if q.Get("api-version") == "" {
		return errorAnswer(http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.", "api-version"), nil
	}
	if len(s.workflowSet) > 0 && !s.workflowSet[strings.ToLower(rt.workflow)] {
		return errorAnswer(http.StatusNotFound, "WorkflowNotFound", fmt.Sprintf("The workflow '%s' could not be found.", rt.workflow), "workflow"), nil
	}
	s.mu.Lock()
	disabled := s.disabled[strings.ToLower(rt.workflow)]
	s.mu.Unlock()
	if disabled {
		return errorAnswer(http.StatusConflict, "WorkflowNotEnabled", fmt.Sprintf("The workflow '%s' is not enabled.", rt.workflow), "disabled"), nil
	}
	if a, ok := s.authenticate(r, rt, q.Get("sig"), call); !ok {
		return a, nil
	}
	if r.Method != http.MethodPost {
		return errorAnswer(http.StatusMethodNotAllowed, "TriggerRequestMethodNotValid", fmt.Sprintf("The HTTP method for this request is not valid: expected 'POST' and actual '%s'.", r.Method), "method"), nil
	}

	// Body size: the Content-Length first, then what was really sent.
	if r.ContentLength > s.cfg.MaxBody {
		return tooLarge(r.ContentLength, s.cfg.MaxBody), nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(mbe.Limit+1, s.cfg.MaxBody), nil
		}
		return answer{reason: "read body: " + err.Error()}, nil
	}
	call.Body = string(body)

	now := time.Now()
	s.mu.Lock()
	faults := s.faults
	// Throttling: invoke budget over the window, then concurrency.
	key := strings.ToLower(rt.workflow)
	if s.cfg.Budget > 0 {
		win := s.invokes[key]
		cut := 0
		for cut < len(win) && now.Sub(win[cut]) >= s.cfg.BudgetWindow {
			cut++
		}
		win = win[cut:]
		s.invokes[key] = win
		if len(win) >= s.cfg.Budget {
			wait := win[0].Add(s.cfg.BudgetWindow).Sub(now)
			s.mu.Unlock()
			a := errorAnswer(http.StatusTooManyRequests, "WorkflowRequestsThrottled",
				fmt.Sprintf("Number of read requests for workflow '%s' exceeded the limit of '%d' over time window of '%s'.", rt.workflow, s.cfg.Budget, windowString(s.cfg.BudgetWindow)), "budget")
			if faults.RetryAfter {
				a.retryAfter = strconv.Itoa(int((wait + time.Second - 1) / time.Second))
			}
			return a, nil
		}
		s.invokes[key] = append(win, now)
	}
	if s.cfg.Concurrency > 0 && s.inflight[key] >= s.cfg.Concurrency {
		s.mu.Unlock()
		a := errorAnswer(http.StatusTooManyRequests, "WorkflowRequestsThrottled",
			fmt.Sprintf("Number of concurrent requests for workflow '%s' exceeded the limit of '%d'.", rt.workflow, s.cfg.Concurrency), "concurrency")
		if faults.RetryAfter {
			a.retryAfter = strconv.Itoa(max(faults.RetryAfterSeconds, 1))
		}
		return a, nil
	}
	if n := s.inflight[key]; faults.capacityThrottled(n) {
		s.mu.Unlock()
		a := errorAnswer(http.StatusTooManyRequests, "WorkflowRequestsThrottled",
			fmt.Sprintf("Number of concurrent requests for workflow '%s' exceeded the limit of '%d'.", rt.workflow, n), "capacity")
		if faults.RetryAfter {
			a.retryAfter = strconv.Itoa(max(faults.RetryAfterSeconds, 1))
		}
		return a, nil
	}
	s.inflight[key]++
	inFlight := s.inflight[key]
	release := func() {
		s.mu.Lock()
		s.inflight[key]--
		s.mu.Unlock()
	}
	step, scripted := s.nextScriptedLocked(now)
	delay := time.Duration(faults.Latency)
	if faults.Jitter > 0 {
		delay += time.Duration(s.rnd.Int64N(int64(faults.Jitter) + 1))
	}
	delay = faults.capacityDelay(delay, inFlight)
	randomStatus, randomReason := 0, ""
	if !scripted || step.Status == 0 {
		switch {
		case faults.ThrottleRate > 0 && s.rnd.Float64() < faults.ThrottleRate:
			randomStatus, randomReason = http.StatusTooManyRequests, "throttle-rate"
		case faults.FailRate > 0 && s.rnd.Float64() < faults.FailRate:
			statuses := faults.FailStatuses
			if len(statuses) == 0 {
				statuses = []int{500, 502, 503}
			}
			randomStatus, randomReason = statuses[s.rnd.IntN(len(statuses))], "fail-rate"
		}
	}
	s.mu.Unlock()

	var ans answer
	switch {
	case scripted && step.Status != 0:
		delay += time.Duration(step.Delay)
		ans = s.faultAnswer(step.Status, rt, faults, call)
		ans.reason = "script"
		if step.RetryAfter != "" {
			ans.retryAfter = step.RetryAfter
		}
		if step.Body != "" {
			ans.body, ans.code = []byte(step.Body), ""
			ans.contentType = sniffContentType(step.Body)
		}
	case randomStatus != 0:
		ans = s.faultAnswer(randomStatus, rt, faults, call)
		ans.reason = randomReason
	default:
		if scripted {
			delay += time.Duration(step.Delay)
		}
		ans = s.workflowAnswer(r, body, rt, faults)
	}

	if delay > 0 {
		wait := min(delay, s.cfg.Timeout)
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			if !faults.RunsAfterCallerGone {
				return answer{reason: "caller gone"}, release
			}
			select {
			case <-t.C:
			case <-s.stop:
				return answer{reason: "simulator closed"}, release
			}
		case <-s.stop:
			return answer{reason: "simulator closed"}, release
		}
		if delay >= s.cfg.Timeout && s.cfg.Timeout > 0 {
			return errorAnswer(http.StatusGatewayTimeout, "GatewayTimeout",
				fmt.Sprintf("The server did not receive a response from an upstream server. Request tracking id '%s'.", call.CorrelationID), "timeout"), release
		}
	}
	return ans, release
}

// authenticate checks SAS or bearer credentials; ok is false with the
// answer to send when they fail.
func (s *Server) authenticate(r *http.Request, rt route, sig string, call *Call) (answer, bool) {
	authz := r.Header.Get("Authorization")
	if sig != "" && authz != "" {
		return errorAnswer(http.StatusBadRequest, "DirectApiRequestHasMoreThanOneAuthorization",
			"The request has both SAS authentication scheme and 'Bearer' authorization scheme. Only one scheme should be used.", "auth-both"), false
	}
	if sig != "" {
		q := r.URL.Query()
		sp, sv := q.Get("sp"), q.Get("sv")
		s.mu.Lock()
		key := s.key
		s.mu.Unlock()
		want := Signature(key, r.URL.Path, q.Get("api-version"), sp, sv)
		if sp != "/triggers/"+rt.trigger+"/run" || sv == "" ||
			subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
			return errorAnswer(http.StatusUnauthorized, "DirectApiInvalidAuthorizationSignature",
				"The provided authorization signature is not valid.", "sig"), false
		}
		call.Auth = "sas"
		return answer{}, true
	}
	if authz == "" {
		return errorAnswer(http.StatusUnauthorized, "DirectApiAuthorizationRequired",
			"The request must be authenticated only by Shared Access scheme or only by Authorization scheme.", "auth-missing"), false
	}
	scheme, token, _ := strings.Cut(authz, " ")
	if !s.bearerEnabled() || !strings.EqualFold(scheme, "Bearer") || !s.validToken(strings.TrimSpace(token)) {
		return errorAnswer(http.StatusUnauthorized, "MisMatchingOAuthClaims",
			"One or more claims either missing or does not match with the open authentication access control policy.", "bearer"), false
	}
	call.Auth = "bearer"
	return answer{}, true
}

func (s *Server) bearerEnabled() bool {
	return s.cfg.BearerToken != "" || s.cfg.Clients != nil
}

func (s *Server) validToken(tok string) bool {
	if tok == "" {
		return false
	}
	if s.cfg.BearerToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.BearerToken)) == 1 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.tokens[tok]
	return ok && time.Now().Before(it.expires)
}

// workflowAnswer is the normal answer of an authenticated, unthrottled call.
func (s *Server) workflowAnswer(r *http.Request, body []byte, rt route, f Faults) answer {
	if s.cfg.Schema != nil {
		if errs := s.cfg.Schema.Validate(body); len(errs) > 0 {
			return errorAnswer(http.StatusBadRequest, "TriggerInputSchemaMismatch",
				fmt.Sprintf("The input body for trigger '%s' of type 'Request' did not match its schema definition. Error details: '%s'.", rt.trigger, strings.Join(errs, " ")), "schema")
		}
	} else if isJSON(r.Header.Get("Content-Type")) && len(body) > 0 && !json.Valid(body) {
		return errorAnswer(http.StatusBadRequest, "InvalidRequestContent",
			"The request content is not valid and could not be deserialized.", "invalid-json")
	}
	if f.Mode != ModeResponse {
		return answer{status: http.StatusAccepted, reason: "accepted"}
	}
	status := f.Status
	if status == 0 {
		status = http.StatusOK
	}
	ct := f.ContentType
	if ct == "" && f.Body != "" {
		ct = sniffContentType(f.Body)
	}
	return answer{status: status, body: []byte(f.Body), contentType: ct, reason: "response"}
}

// faultAnswer is what the service sends for an injected status.
func (s *Server) faultAnswer(status int, rt route, f Faults, call *Call) answer {
	retryAfter := ""
	if f.RetryAfter {
		retryAfter = strconv.Itoa(max(f.RetryAfterSeconds, 1))
	}
	var a answer
	switch status {
	case http.StatusTooManyRequests:
		a = errorAnswer(status, "WorkflowRequestsThrottled",
			fmt.Sprintf("Number of read requests for workflow '%s' exceeded the limit of '%d' over time window of '00:05:00'.", rt.workflow, max(s.cfg.Budget, 45000)), "")
		a.retryAfter = retryAfter
	case http.StatusBadGateway:
		a = answer{status: status, body: []byte(badGatewayHTML), contentType: "text/html"}
	case http.StatusServiceUnavailable:
		a = errorAnswer(status, "ServiceUnavailable", "The service is currently unavailable. Please try again later.", "")
		a.retryAfter = retryAfter
	case http.StatusInternalServerError:
		a = errorAnswer(status, "InternalServerError", fmt.Sprintf("Encountered internal server error. The tracking Id is '%s'.", call.CorrelationID), "")
	case http.StatusGatewayTimeout:
		a = errorAnswer(status, "GatewayTimeout", fmt.Sprintf("The server did not receive a response from an upstream server. Request tracking id '%s'.", call.CorrelationID), "")
	case http.StatusBadRequest:
		a = errorAnswer(status, "TriggerInputSchemaMismatch", fmt.Sprintf("The input body for trigger '%s' of type 'Request' did not match its schema definition. Error details: 'Injected fault.'.", rt.trigger), "")
	case http.StatusUnauthorized:
		a = errorAnswer(status, "DirectApiInvalidAuthorizationSignature", "The provided authorization signature is not valid.", "")
	case http.StatusNotFound:
		a = errorAnswer(status, "WorkflowNotFound", fmt.Sprintf("The workflow '%s' could not be found.", rt.workflow), "")
	case http.StatusRequestEntityTooLarge:
		a = tooLarge(s.cfg.MaxBody+1, s.cfg.MaxBody)
	default:
		if status >= 200 && status < 300 {
			return answer{status: status}
		}
		a = errorAnswer(status, strings.ReplaceAll(http.StatusText(status), " ", ""), "Injected fault.", "")
	}
	return a
}

func tooLarge(got, limit int64) answer {
	return errorAnswer(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
		fmt.Sprintf("The request content length '%d' exceeds the maximum allowed content length of '%d' bytes.", got, limit), "size")
}

const badGatewayHTML = `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>
<title>502 - Web server received an invalid response while acting as a gateway or proxy server.</title></head>
<body><div id="header"><h1>Server Error</h1></div>
<div id="content"><fieldset><h2>502 - Web server received an invalid response while acting as a gateway or proxy server.</h2>
<h3>There is a problem with the page you are looking for, and it cannot be displayed. When the Web server (while acting as a gateway or proxy) contacted the upstream content server, it received an invalid response from the content server.</h3>
</fieldset></div></body></html>
`

// windowString renders a duration as a .NET TimeSpan, like "00:05:00".
func windowString(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

func isJSON(contentType string) bool {
	ct := strings.ToLower(contentType)
	return strings.HasPrefix(ct, "application/json") || strings.Contains(ct, "+json")
}

func sniffContentType(body string) string {
	if json.Valid([]byte(body)) {
		return "application/json; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

func redactHeader(h http.Header) http.Header {
	out := h.Clone()
	if out.Get("Authorization") != "" {
		scheme, _, _ := strings.Cut(out.Get("Authorization"), " ")
		out.Set("Authorization", scheme+" REDACTED")
	}
	return out
}

// newRunID returns an id shaped like a Logic Apps run id:
// 29 digits, "CU", 2 digits.
func newRunID() string {
	var b [27]byte
	_, _ = crand.Read(b[:])
	out := make([]byte, 0, 33)
	out = append(out, "0858"...)
	for _, x := range b[:25] {
		out = append(out, '0'+x%10)
	}
	out = append(out, 'C', 'U', '0'+b[25]%10, '0'+b[26]%10)
	return string(out)
}

// newGUID returns a random RFC 4122 version 4 id.
func newGUID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}
