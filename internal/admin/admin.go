// Package admin is fanout's admin API and console: connector status,
// pause and resume, dead letters and their replay, and an audit trail of
// every operator action. `fanout admin` serves it on the role's admin
// listener next to /healthz, /readyz and /metrics (and `fanout dev` on its
// own); api/openapi.json describes it.
//
// The admin process talks to the workers only through the store (pause
// documents they poll, status documents they publish) and Kafka (the dead
// letter topics it reads, the retry topics it replays into, the worker
// groups' offsets): workers run elsewhere, and an admin that is down stops
// no delivery.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/api"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/store"
)

// Store is the part of the store the admin API uses; *store.Store
// implements it.
type Store interface {
	Pause(ctx context.Context, connector string) (store.PauseState, error)
	SetPause(ctx context.Context, st store.PauseState) error
	WorkerStatuses(ctx context.Context, connector string, since time.Time) ([]store.WorkerStatus, error)
	PruneWorkerStatuses(ctx context.Context, connector string, before time.Time) (int64, error)
	ClaimReplay(ctx context.Context, m store.ReplayMarker, force bool) error
	ReleaseReplay(ctx context.Context, connector string, partition int32, offset int64, replayID string) error
	ReplayMarkers(ctx context.Context, connector string, recs []store.PartitionOffset) (map[store.PartitionOffset]store.ReplayMarker, error)
	DeliveredVersions(ctx context.Context, connector string, keys []string) (map[string]int64, error)
	InsertAudit(ctx context.Context, r store.AuditRecord) error
	AuditRecords(ctx context.Context, connector string, limit int) ([]bson.Raw, error)
}

// Options are what an admin server needs.
type Options struct {
	// Config is the validated configuration: connectors, topics, groups,
	// admin tokens and replay defaults.
	Config *config.Config
	// Store holds pause, status, replay markers and audit records.
	Store Store
	// KafkaOptions reach the broker (kafkaconf.Options); every client of
	// the admin uses them.
	KafkaOptions []kgo.Opt
	// MainClientOptions go to the admin's one long-lived client only
	// (metrics hooks, which must not see the short-lived readers a request
	// makes).
	MainClientOptions []kgo.Opt
	// Getenv reads the admin tokens' environment variables.
	Getenv func(string) string
	// Secrets owns the admin tokens' files (token_file), so that SIGHUP
	// re-reads them at once; nil: the files are still followed, by a stat
	// every few seconds.
	Secrets *secret.Store
	// Logger logs operator actions (never a token).
	Logger *slog.Logger
	// Trace, if set, records the replays in the per-notification trace.
	Trace TraceRecorder
	// LiveWindow is how recent a worker's status must be to count as live
	// (default 30s).
	LiveWindow time.Duration
	// SampleEvery and History shape the pipeline history that
	// RunSampler keeps in memory for the console's charts: a sample every
	// SampleEvery (default 5s) for the last History (default 1h).
	SampleEvery, History time.Duration
}

// Server serves the admin API. Register its routes on a mux, and Close it
// after the mux stops serving.
type Server struct {
	cfg    *config.Config
	st     Store
	kopts  []kgo.Opt
	cl     *kgo.Client // produces replays; kadm requests
	adm    *kadm.Client
	log    *slog.Logger
	tokens []*token
	live   time.Duration
	trace  TraceRecorder
	hist   *history
}

// New returns an admin server. It fails when a configured token's
// environment variable is empty, naming the variable, and when no token is
// configured but admin.listen is not a loopback address (tokenless mode
// trusts whoever connects, so it exists on a loopback listener only).
func New(o Options) (*Server, error) {
	if o.Config == nil {
		return nil, errors.New("admin: no configuration")
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := o.Config.CheckAdminExposure(); err != nil {
		return nil, err
	}
	tokens, err := loadTokens(o.Config, o.Getenv, o.Secrets, log)
	if err != nil {
		return nil, err
	}
	opts := append(append(append([]kgo.Opt(nil), o.KafkaOptions...), o.MainClientOptions...),
		kgo.AllowAutoTopicCreation(), // the retry topic, where the broker allows it
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("admin: create kafka client: %w", err)
	}
	s := &Server{
		cfg: o.Config, st: o.Store, kopts: o.KafkaOptions, cl: cl, adm: kadm.NewClient(cl),
		log: log, tokens: tokens, live: o.LiveWindow, trace: o.Trace,
	}
	if s.live <= 0 {
		s.live = 30 * time.Second
	}
	every, span := o.SampleEvery, o.History
	if every <= 0 {
		every = 5 * time.Second
	}
	if span < every {
		span = time.Hour
	}
	s.hist = newHistory(every, span)
	if len(tokens) == 0 {
		log.Warn("admin API: no admin.tokens configured; it answers clients of its loopback listener only", "listen", o.Config.Admin.Listen)
	}
	return s, nil
}

// Close releases the Kafka client.
func (s *Server) Close() { s.cl.Close() }

// Mux is where routes are registered (observe.Server, http.ServeMux).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Register adds the admin API's routes and the console to m. /healthz,
// /readyz and /metrics are the observe server's own.
func (s *Server) Register(m Mux) {
	for _, r := range routeTable() {
		if r.handle == nil {
			continue
		}
		m.Handle(r.pattern(), s.wrap(r))
	}
}

// Route describes one route of the admin listener, for the OpenAPI test
// and the documentation.
type Route struct {
	// Method and Path as in the OpenAPI description ("/" is the console).
	Method, Path string
	// Scope is the token scope the route needs; "" for none.
	Scope string
	// External routes are served by the observe server, not this package.
	External bool
}

// Routes returns every route of the admin listener.
func Routes() []Route {
	var out []Route
	for _, r := range routeTable() {
		out = append(out, Route{Method: r.method, Path: r.path, Scope: r.scope, External: r.handle == nil})
	}
	return out
}

// route is one entry of the route table.
type route struct {
	method, path, scope string
	// handle serves the route; nil for the observe server's routes.
	handle func(s *Server, w http.ResponseWriter, r *http.Request)
}

// pattern is the route's ServeMux pattern.
func (r route) pattern() string {
	if r.path == "/" {
		return r.method + " /{$}"
	}
	return r.method + " " + r.path
}

// routeTable is the admin listener's routes, in the order of the OpenAPI
// description.
func routeTable() []route {
	return []route{
		{"GET", "/healthz", "", nil},
		{"GET", "/readyz", "", nil},
		{"GET", "/metrics", "", nil},
		{"GET", "/openapi.json", "", (*Server).openAPI},
		{"GET", "/", "", (*Server).consoleIndex},
		{"GET", "/console/{file}", "", (*Server).consoleAsset},
		{"GET", "/v1/connectors", config.ScopeRead, (*Server).listConnectors},
		{"GET", "/v1/connectors/{name}", config.ScopeRead, (*Server).getConnector},
		{"GET", "/v1/connectors/{name}/ledger", config.ScopeRead, (*Server).getLedger},
		{"POST", "/v1/connectors/{name}/pause", config.ScopePause, (*Server).pause},
		{"POST", "/v1/connectors/{name}/resume", config.ScopePause, (*Server).resume},
		{"GET", "/v1/connectors/{name}/dead-letters", config.ScopeRead, (*Server).listDeadLetters},
		{"GET", "/v1/connectors/{name}/dead-letters/{partition}/{offset}", config.ScopeRead, (*Server).getDeadLetter},
		{"POST", "/v1/connectors/{name}/replay", config.ScopeReplay, (*Server).replay},
		{"GET", "/v1/connectors/{name}/parked", config.ScopeRead, (*Server).listParked},
		{"POST", "/v1/connectors/{name}/parked/release", config.ScopeReplay, (*Server).releaseParked},
		{"GET", "/v1/audit", config.ScopeRead, (*Server).listAudit},
		{"GET", "/v1/relay", config.ScopeRead, (*Server).getRelay},
		{"GET", "/v1/pipeline", config.ScopeRead, (*Server).getPipeline},
		{"GET", "/v1/pipeline/history", config.ScopeRead, (*Server).getHistory},
		{"GET", "/v1/pipeline/charts/{name}", config.ScopeRead, (*Server).getChart},
		{"GET", "/v1/events/{id}", config.ScopeRead, (*Server).getEventTrace},
		{"GET", "/v1/aggregates/{id}/events", config.ScopeRead, (*Server).getAggregateTrace},
	}
}

// wrap adds the security headers, authentication and, for POST, the JSON
// content type check (a cross-site form cannot send it without a CORS
// preflight, which the API never grants) and the body limit.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if rt.scope != "" {
			p, ok := s.authenticate(w, r, rt.scope)
			if !ok {
				return
			}
			r = r.WithContext(withPrincipal(r.Context(), p))
		}
		if r.Method == http.MethodPost {
			ct := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
			if ct != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send Content-Type: application/json (an empty body is {})")
				return
			}
			// Read the whole body here, bounded, so that every POST route
			// gets the same limit and answer (413), and a slow body ends
			// at the listener's read timeout before any handler acts.
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.Admin.MaxBodyBytes))
			if err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					writeError(w, http.StatusRequestEntityTooLarge, "body_too_large",
						fmt.Sprintf("the request body is above %d bytes (admin.max_body_bytes)", tooBig.Limit))
					return
				}
				writeError(w, http.StatusBadRequest, "bad_request", "reading the request body: "+err.Error())
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rt.handle(s, w, r)
	})
}

// openAPI serves the OpenAPI description.
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(api.Document())
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeBody decodes a JSON request body into v; an empty body leaves v
// as it is. Unknown fields are errors, so a typo does not silently widen
// a replay.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("request body: %w", err)
	}
	if dec.More() {
		return errors.New("request body: more than one JSON value")
	}
	return nil
}

// connectorOr404 returns the connector named in the path, or answers 404.
func (s *Server) connectorOr404(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if _, ok := s.cfg.Connectors[name]; !ok {
		names := s.connectorNames()
		writeError(w, http.StatusNotFound, "unknown_connector", fmt.Sprintf("connector %q is not configured (configured: %s)", name, strings.Join(names, ", ")))
		return "", false
	}
	return name, true
}

func (s *Server) connectorNames() []string {
	names := make([]string, 0, len(s.cfg.Connectors))
	for n := range s.cfg.Connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// audit writes an operator action's audit record; a failure is logged and
// returned for the answer to say so.
func (s *Server) audit(ctx context.Context, r *http.Request, rec store.AuditRecord) error {
	p := principalFrom(r.Context())
	rec.Who = p.name
	rec.Remote = r.RemoteAddr
	if rec.At.IsZero() {
		rec.At = time.Now().UTC()
	}
	if rec.ID == "" {
		rec.ID = newID()
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.st.InsertAudit(actx, rec); err != nil {
		s.log.Error("admin: writing the audit record failed", "action", rec.Action, "connector", rec.Connector, "who", rec.Who, "err", err)
		return err
	}
	return nil
}

// listAudit answers GET /v1/audit.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := parsePositive(v, 1000)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "limit: "+err.Error())
			return
		}
		limit = n
	}
	connector := r.URL.Query().Get("connector")
	recs, err := s.st.AuditRecords(r.Context(), connector, limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "reading the audit records failed: "+err.Error())
		return
	}
	items := make([]json.RawMessage, 0, len(recs))
	for _, raw := range recs {
		b, err := bson.MarshalExtJSON(raw, false, false)
		if err != nil {
			continue
		}
		items = append(items, b)
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": items})
}
