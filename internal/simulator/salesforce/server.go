package salesforce

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults of Config, chosen to match a production org.
const (
	DefaultSessionTTL           = 2 * time.Hour
	DefaultDailyLimit           = 100000
	DefaultEventHourlyLimit     = 250000
	DefaultLongRequestCap       = 25
	DefaultLongRequestThreshold = 20 * time.Second
	DefaultNotificationIDField  = "Fanout_Notification_Id__c"
	DefaultIntegrationUser      = "integration@fanout.example"
	// DefaultMaxCalls bounds the call log of a long-running fake.
	DefaultMaxCalls = 100000
	// MaxCollectionRecords is the sObject Collections record limit.
	MaxCollectionRecords = 200
)

// ObjectSpec declares an object the fake knows by name, for standard
// objects (which the fake refuses unless declared) or to pin a custom
// object's external id and field names.
type ObjectSpec struct {
	// ExternalIDFields are the fields usable in an upsert URL.
	ExternalIDFields []string
	// Fields, when set, are the only writable fields (besides the external
	// id fields); otherwise any "__c" field and Name are accepted.
	Fields []string
}

// Config configures a Server. The zero value of every field takes the
// default documented on it.
type Config struct {
	// ClientID and ClientSecret are the connected app's consumer key and
	// secret for the client credentials flow; ClientID is also the iss
	// expected in JWT bearer assertions.
	ClientID     string
	ClientSecret string
	// JWTPublicKey verifies JWT bearer assertions; nil refuses the flow.
	JWTPublicKey *rsa.PublicKey
	// JWTAudiences are the accepted aud values (default
	// https://login.salesforce.com and https://test.salesforce.com).
	JWTAudiences []string
	// JWTUsername, when set, is the only sub accepted.
	JWTUsername string
	// IntegrationUser is the run-as user of client credentials sessions.
	IntegrationUser string
	// SessionTTL is how long an access token works (default 2 h, the
	// org's default session timeout); it counts from issue.
	SessionTTL time.Duration
	// InstanceURL is returned as instance_url; empty means the URL the
	// client reached the fake on.
	InstanceURL string
	// Objects are declared objects; undeclared names ending in __c
	// (records) or __e (platform events) are accepted too.
	Objects map[string]ObjectSpec
	// ExternalIDFields restricts the external id fields accepted for
	// undeclared custom objects; empty accepts any __c field.
	ExternalIDFields []string
	// LongRequestThreshold is when a request counts as long-running
	// (default 20 s).
	LongRequestThreshold time.Duration
	// NotificationIDField is the record field recorded in Call.NotificationIDs.
	NotificationIDField string
	// MaxCalls bounds the call log (default 100000); past it the oldest
	// half is dropped, so a fake left running does not grow without end.
	MaxCalls int
	// Faults are the initial faults and limits; zero limits take the
	// defaults (DailyLimit 100000, EventHourlyLimit 250000,
	// LongRequestCap 25, UpdateStatus 204).
	Faults Faults
	// Now is the clock (default time.Now), for tests that move time.
	Now func() time.Time
}

// Server is a fake Salesforce org: OAuth token endpoint, sObject upsert,
// sObject Collections, platform event publishing, API limits and fault
// injection, plus /_sim/ endpoints to inspect and drive it from another
// process. It is an http.Handler; Start also serves it on a TCP address.
type Server struct {
	cfg     Config
	initial Faults

	mu        sync.Mutex
	faults    Faults
	sessions  map[string]*session
	store     *store
	calls     []Call
	daily     *window
	events    *window
	apiCalls  int64
	inflight  map[uint64]time.Time
	inflightN uint64
	// clientSecret is the connected app's current consumer secret:
	// Config.ClientSecret until SetClientSecret.
	clientSecret string

	lifeMu  sync.Mutex
	started bool
	srv     *http.Server
	done    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Once
}

// New returns a Server for cfg; it serves once it is mounted or started.
func New(cfg Config) (*Server, error) {
	if len(cfg.JWTAudiences) == 0 {
		cfg.JWTAudiences = []string{"https://login.salesforce.com", "https://test.salesforce.com"}
	}
	if cfg.IntegrationUser == "" {
		cfg.IntegrationUser = DefaultIntegrationUser
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.LongRequestThreshold == 0 {
		cfg.LongRequestThreshold = DefaultLongRequestThreshold
	}
	if cfg.NotificationIDField == "" {
		cfg.NotificationIDField = DefaultNotificationIDField
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = DefaultMaxCalls
	}
	cfg.InstanceURL = strings.TrimSuffix(cfg.InstanceURL, "/")
	f := cfg.Faults.clone()
	if f.DailyLimit == 0 {
		f.DailyLimit = DefaultDailyLimit
	}
	if f.EventHourlyLimit == 0 {
		f.EventHourlyLimit = DefaultEventHourlyLimit
	}
	if f.LongRequestCap == 0 {
		f.LongRequestCap = DefaultLongRequestCap
	}
	if f.UpdateStatus == 0 {
		f.UpdateStatus = http.StatusNoContent
	}
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("salesforce simulator: faults: %w", err)
	}
	return &Server{
		cfg:      cfg,
		initial:  f.clone(),
		faults:   f,
		sessions: make(map[string]*session),
		store:    newStore(),
		daily:    newWindow(24*time.Hour, time.Minute),
		events:   newWindow(time.Hour, time.Second),
		inflight: make(map[uint64]time.Time),
		done:     make(chan struct{}),

		clientSecret: cfg.ClientSecret,
	}, nil
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// Start serves the fake on addr (e.g. "127.0.0.1:0") until ctx is done or
// Close is called, and returns its base URL.
func (s *Server) Start(ctx context.Context, addr string) (string, error) {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.started {
		return "", errors.New("salesforce simulator: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("salesforce simulator: listen on %s: %w", addr, err)
	}
	s.started = true
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(ln) // returns ErrServerClosed after Shutdown
	}()
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			s.shutdown()
		case <-s.done:
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

// shutdown stops accepting requests and aborts the latency of those in
// flight.
func (s *Server) shutdown() {
	s.closeMu.Do(func() { close(s.done) })
	s.lifeMu.Lock()
	srv := s.srv
	s.lifeMu.Unlock()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}
}

// Close stops the server started by Start and waits for its goroutines.
func (s *Server) Close() error {
	s.shutdown()
	s.wg.Wait()
	return nil
}

// Faults returns the current faults.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.clone()
}

// SetFaults replaces the faults.
func (s *Server) SetFaults(f Faults) error {
	if f.OutageFor > 0 {
		f.OutageUntil = s.now().Add(time.Duration(f.OutageFor))
		f.OutageFor = 0
	}
	if err := f.validate(); err != nil {
		return fmt.Errorf("salesforce simulator: faults: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f.clone()
	return nil
}

// UpdateFaults changes the faults in place with fn.
func (s *Server) UpdateFaults(fn func(*Faults)) error {
	f := s.Faults()
	fn(&f)
	return s.SetFaults(f)
}

// RevokeSessions invalidates every issued access token, as an admin
// revoking the integration user's sessions would.
func (s *Server) RevokeSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.sessions)
}

// SetClientSecret replaces the connected app's consumer secret, as
// "Reset consumer secret" (or an expired secret replaced) does: token
// requests with the old one fail with 400 invalid_client from now on.
// Sessions already issued stay valid; RevokeSessions ends them.
func (s *Server) SetClientSecret(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clientSecret = secret
}

// Sessions returns how many access tokens are currently valid.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Reset forgets records, events, calls and usage counters. Sessions and
// faults stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store = newStore()
	s.calls = nil
	s.daily.reset()
	s.events.reset()
	s.apiCalls = 0
}

// Calls returns every request seen since the last Reset, in arrival order
// of their completion.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		c.NotificationIDs = append([]string(nil), c.NotificationIDs...)
		out[i] = c
	}
	return out
}

// InFlight returns how many API requests are being served now, so that
// tests can wait for a slow request to be running.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight)
}

// APICalls returns how many calls counted against the daily API
// allocation since the last Reset.
func (s *Server) APICalls() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apiCalls
}

// Records returns the records of an object, or the published events of a
// platform event, in creation order.
func (s *Server) Records(object string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.list(object)
}

// Stats returns how many records of object were created and updated.
func (s *Server) Stats(object string) ObjectStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.store.stat(object)
}

// Seed inserts a record without any check and returns its id; seeding two
// records with one external id value sets up the 300 "multiple matches"
// case.
func (s *Server) Seed(object string, fields map[string]any) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.insert(s.now(), object, fields).ID
}

// instanceURL is the fake's own base URL as the client sees it.
func (s *Server) instanceURL(r *http.Request) string {
	if s.cfg.InstanceURL != "" {
		return s.cfg.InstanceURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// statusWriter records the status and stamps Sforce-Limit-Info on every
// response.
type statusWriter struct {
	http.ResponseWriter
	s      *Server
	status int
	wrote  bool
	limit  bool
}

// WriteHeader stamps Sforce-Limit-Info with the usage at answer time.
func (w *statusWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.status = code
	if w.limit {
		w.Header().Set("Sforce-Limit-Info", w.s.limitInfo())
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// limitInfo renders the Sforce-Limit-Info header value.
func (s *Server) limitInfo() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	used := s.daily.sum(s.now())
	limit := s.faults.DailyLimit
	if limit <= 0 {
		limit = 1 << 31
	}
	return fmt.Sprintf("api-usage=%d/%d", used, limit)
}

// removeDotSegments resolves the literal "." and ".." segments of an
// escaped path, as RFC 3986 section 5.2.4 does; encoded dots stay.
func removeDotSegments(p string) string {
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, sg := range segs {
		last := i == len(segs)-1
		switch sg {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, sg)
		}
	}
	return strings.Join(out, "/")
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := s.now()
	// Servers and proxies in front of Salesforce resolve "." and ".."
	// segments (RFC 3986 5.2.4) before routing, so an unencoded ".." in an
	// external id climbs out of the record's path; %2E%2E is data.
	path := removeDotSegments(r.URL.EscapedPath())
	if strings.HasPrefix(path, "/_sim/") {
		s.serveSim(rw, r)
		return
	}
	w := &statusWriter{ResponseWriter: rw, s: s, limit: path != "/"}
	rec := &Call{Time: start, Method: r.Method, Host: r.Host, Path: r.URL.Path, EscapedPath: path}
	defer func() {
		rec.Duration = s.now().Sub(start)
		if rec.Status == 0 {
			rec.Status = w.status
		}
		s.mu.Lock()
		if len(s.calls) >= s.cfg.MaxCalls {
			s.calls = append(s.calls[:0], s.calls[len(s.calls)/2:]...)
		}
		s.calls = append(s.calls, *rec)
		s.mu.Unlock()
	}()

	s.mu.Lock()
	outage := start.Before(s.faults.OutageUntil)
	s.mu.Unlock()
	if outage {
		s.fail(w, rec, apiErrorForCode("SERVER_UNAVAILABLE"))
		return
	}
	switch {
	case path == "/services/oauth2/token":
		s.handleToken(w, r, rec)
	case path == "/services/data" || path == "/services/data/":
		s.handleVersions(w, r, rec)
	case strings.HasPrefix(path, "/services/data/"):
		s.handleData(w, r, rec, strings.TrimPrefix(path, "/services/data/"))
	default:
		s.fail(w, rec, notFound())
	}
}

// statusError is an HTTP status with its single error entry.
type statusError struct {
	status int
	err    apiError
}

func apiErrorForCode(code string) statusError {
	st, e := apiErrorFor(Rule{Code: code})
	return statusError{st, e}
}

// fail writes an error array body.
func (s *Server) fail(w http.ResponseWriter, rec *Call, e statusError) {
	rec.Status = e.status
	rec.ErrorCode = e.err.ErrorCode
	writeJSON(w, e.status, []apiError{e.err})
}

// apiError is one entry of a Salesforce REST error array. Fields is
// omitted when nil, as Salesforce omits it for session and limit errors.
type apiError struct {
	Message   string
	ErrorCode string
	Fields    []string
}

// MarshalJSON writes {"message","errorCode"[,"fields"]}.
func (e apiError) MarshalJSON() ([]byte, error) {
	if e.Fields == nil {
		return json.Marshal(struct {
			Message   string `json:"message"`
			ErrorCode string `json:"errorCode"`
		}{e.Message, e.ErrorCode})
	}
	return json.Marshal(struct {
		Message   string   `json:"message"`
		ErrorCode string   `json:"errorCode"`
		Fields    []string `json:"fields"`
	}{e.Message, e.ErrorCode, e.Fields})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// sleep waits d unless the request or the server ends first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// latency picks this call's delay from the faults.
func latency(f Faults) time.Duration {
	if f.SlowRate > 0 && rand.Float64() < f.SlowRate {
		return time.Duration(f.SlowLatency)
	}
	d := time.Duration(f.Latency)
	if f.Jitter > 0 {
		d += rand.N(time.Duration(f.Jitter))
	}
	return d
}

// serveSim serves the /_sim/ control endpoints.
func (s *Server) serveSim(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/_sim/")
	switch {
	case path == "calls" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Calls())
	case strings.HasPrefix(path, "records/") && r.Method == http.MethodGet:
		obj := strings.TrimPrefix(path, "records/")
		st := s.Stats(obj)
		writeJSON(w, http.StatusOK, map[string]any{
			"object": obj, "created": st.Created, "updated": st.Updated, "records": s.Records(obj),
		})
	case strings.HasPrefix(path, "records/") && r.Method == http.MethodPost:
		obj := strings.TrimPrefix(path, "records/")
		var fields map[string]any
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&fields); err != nil {
			http.Error(w, "body must be a JSON object of fields: "+err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]string{"id": s.Seed(obj, fields)})
	case path == "faults" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Faults())
	case path == "faults" && r.Method == http.MethodPost:
		f := s.Faults()
		f.OutageFor = 0
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&f); err != nil {
			http.Error(w, "bad faults JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.SetFaults(f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, s.Faults())
	case path == "faults" && r.Method == http.MethodDelete:
		s.mu.Lock()
		s.faults = s.initial.clone()
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, s.Faults())
	case path == "client_secret" && r.Method == http.MethodPost:
		var b struct {
			ClientSecret string `json:"client_secret"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&b); err != nil || b.ClientSecret == "" {
			http.Error(w, `body must be {"client_secret":"..."}`, http.StatusBadRequest)
			return
		}
		s.SetClientSecret(b.ClientSecret)
		w.WriteHeader(http.StatusNoContent)
	case path == "revoke" && r.Method == http.MethodPost:
		s.RevokeSessions()
		w.WriteHeader(http.StatusNoContent)
	case path == "reset" && r.Method == http.MethodPost:
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	case path == "usage" && r.Method == http.MethodGet:
		s.mu.Lock()
		now := s.now()
		u := map[string]int64{
			"api_calls":          s.apiCalls,
			"daily_used":         s.daily.sum(now),
			"daily_limit":        s.faults.DailyLimit,
			"events_last_hour":   s.events.sum(now),
			"event_hourly_limit": s.faults.EventHourlyLimit,
			"sessions":           int64(len(s.sessions)),
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, u)
	default:
		http.Error(w, "unknown simulator endpoint; see package doc", http.StatusNotFound)
	}
}
