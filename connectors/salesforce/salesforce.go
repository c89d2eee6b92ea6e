package salesforce

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/tokencache"
	"github.com/fanout-dev/fanout/connectors/transport"
	"github.com/fanout-dev/fanout/internal/secret"
)

// TypeName is the connector type under which the package registers.
const TypeName = "salesforce"

func init() {
	connectors.Register(TypeName, Factory)
}

// Factory builds a salesforce connector from its YAML settings; it is the
// function registered under TypeName.
func Factory(ctx context.Context, cfg connectors.Config) (connectors.Connector, error) {
	var s Settings
	if cfg.Decode != nil {
		if err := cfg.Decode(&s); err != nil {
			return nil, fmt.Errorf("decode salesforce settings: %w", err)
		}
	}
	return newConnector(ctx, cfg.Name, s, cfg.Logger, cfg.Secrets, cfg.MaxInFlight)
}

// Connector delivers notifications to one Salesforce org, by sObject upsert
// or platform event. It is safe for concurrent use.
type Connector struct {
	name string
	cfg  *resolved
	log  *slog.Logger

	client *transport.Client
	fetch  fetchFunc
	tokens *tokencache.Cache[session]
	limits atomic.Pointer[LimitInfo]
	closed atomic.Bool
}

var (
	_ connectors.BatchConnector = (*Connector)(nil)
	_ connectors.UsageReporter  = (*Connector)(nil)
)

// New validates s, loads its secrets and returns a connector. It makes no
// network call: the first delivery fetches the token.
func New(ctx context.Context, name string, s Settings, logger *slog.Logger) (*Connector, error) {
	return newConnector(ctx, name, s, logger, nil, 0)
}

// newConnector is New with the store that owns file-backed secrets
// and the most calls the worker makes at once (0 for the default), to
// which the HTTP idle pool is sized.
func newConnector(_ context.Context, name string, s Settings, logger *slog.Logger, store *secret.Store, maxInFlight int) (*Connector, error) {
	cfg, err := resolve(s, store)
	if err != nil {
		return nil, fmt.Errorf("salesforce settings: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Connector{
		name: name,
		cfg:  cfg,
		log:  logger.With("connector", name, "type", TypeName),
	}
	cfg.maxConcurrency = maxInFlight
	client, err := newClient(cfg, func(li LimitInfo) { c.limits.Store(&li) })
	if err != nil {
		return nil, fmt.Errorf("salesforce: %w", err)
	}
	c.client = client
	// Token requests go through the same connections, timeout and
	// Sforce-Limit-Info observer, one attempt each: a failed fetch is
	// classified and the delivery layer retries it.
	tokenClient := client.HTTPClient()
	c.fetch = newFetcher(cfg, tokenClient)
	c.tokens = c.newSessions()
	return c, nil
}

// MaxBatch is the largest batch DeliverBatch takes: max_records, or 1 for
// platform events published one call each.
func (c *Connector) MaxBatch() int {
	if c.cfg.Mode == ModePlatformEvent && !c.cfg.Batch.PlatformEventCollections {
		return 1
	}
	return c.cfg.Batch.MaxRecords
}

// Usage implements connectors.UsageReporter from the latest
// Sforce-Limit-Info header.
func (c *Connector) Usage() (used, limit int64, ok bool) {
	li := c.limits.Load()
	if li == nil {
		return 0, 0, false
	}
	return li.Used, li.Max, true
}

// Limits returns the latest Sforce-Limit-Info, bursts included.
func (c *Connector) Limits() (LimitInfo, bool) {
	li := c.limits.Load()
	if li == nil {
		return LimitInfo{}, false
	}
	return *li, true
}

// Close releases idle connections; later deliveries fail as retryable.
func (c *Connector) Close() error {
	c.closed.Store(true)
	return c.client.Close()
}

// response is a read REST response.
type response struct {
	status int
	body   []byte
}

// call sends one REST request with the cached token. On 401 it drops the
// token, fetches a new one and sends once more; a second 401 is a
// Reauthenticate error.
func (c *Connector) call(ctx context.Context, method, path string, body []byte) (*response, *connectors.Error) {
	what := method + " " + path
	if c.closed.Load() {
		return nil, &connectors.Error{Class: connectors.Retryable, Message: what + ": connector closed"}
	}
	for attempt := 1; ; attempt++ {
		s, err := c.session(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, &connectors.Error{Class: connectors.Retryable, Message: what + ": waiting for access token", Err: ctx.Err()}
			}
			return nil, tokenError(err)
		}
		resp, cerr := c.send(ctx, s, method, path, body)
		if cerr != nil {
			return nil, cerr
		}
		if resp.status != http.StatusUnauthorized {
			return resp, nil
		}
		c.dropSession(s)
		if attempt == 1 {
			c.log.Info("salesforce: session expired or invalid; fetching a new access token", "call", what)
			continue
		}
		// A token fetched just now was refused: no expiry but revoked
		// access (a frozen integration user, an IP restriction).
		e := c.classifyResponse(what, resp.status, resp.body)
		e.Class = connectors.Halt
		e.Message += " (refused again right after re-authentication: check the integration user and the connected app)"
		return nil, e
	}
}

// send performs the HTTP exchange (with in-call retries) and reads the body.
func (c *Connector) send(ctx context.Context, s *session, method, path string, body []byte) (*response, *connectors.Error) {
	what := method + " " + path
	h := http.Header{}
	h.Set("Authorization", "Bearer "+s.tok.AccessToken)
	h.Set("Accept", "application/json")
	if tp, ok := ctx.Value(traceParentKey{}).(string); ok && tp != "" {
		h.Set("traceparent", tp)
	}
	if body != nil {
		h.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.client.Do(ctx, &transport.Request{
		Method:  method,
		URL:     s.base + path,
		Header:  h,
		Body:    body,
		Secrets: []string{s.tok.AccessToken},
	})
	if err != nil {
		f := transport.Failure(err)
		f.Message = what + ": request failed: " + f.Message
		return nil, f
	}
	c.log.Debug("salesforce: call", "method", method, "path", path, "status", resp.StatusCode, "attempts", resp.Attempts, "duration", time.Since(start))
	return &response{status: resp.StatusCode, body: resp.Body}, nil
}

// traceParentKey carries a notification's traceparent to the requests
// that deliver it.
type traceParentKey struct{}

// Deliver upserts or publishes one notification, to the object or event
// of its projection. Its requests carry the notification's traceparent;
// batched calls (DeliverBatch) serve several traces and carry none.
func (c *Connector) Deliver(ctx context.Context, n *connectors.Notification) error {
	if n.TraceParent != "" {
		ctx = context.WithValue(ctx, traceParentKey{}, n.TraceParent)
	}
	m := c.mappingFor(n)
	fields, err := buildFields(m, n)
	if err != nil {
		return err
	}
	if c.cfg.Mode == ModePlatformEvent {
		return c.publish(ctx, m, fields)
	}
	return c.upsert(ctx, m, n, fields)
}

func (c *Connector) dataPath(rest string) string {
	return "/services/data/" + c.cfg.APIVersion + rest
}

// upsert sends PATCH /sobjects/{object}/{extField}/{key}. Any 2xx is
// success: 201 created, 200 or 204 updated.
func (c *Connector) upsert(ctx context.Context, m *mapping, n *notification, fields map[string]any) error {
	if n.Key == "" {
		return noKey(m, n)
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return permanent("encode record: %v", err)
	}
	path := c.dataPath("/sobjects/" + transport.PathSegment(m.object) + "/" + transport.PathSegment(m.extField) + "/" + transport.PathSegment(n.Key))
	resp, cerr := c.call(ctx, http.MethodPatch, path, body)
	if cerr != nil {
		return cerr
	}
	if resp.status >= 200 && resp.status < 300 {
		return nil
	}
	return c.classifyResponse(http.MethodPatch+" "+path, resp.status, resp.body)
}

// noKey is the error of an upsert notification without an aggregate id.
func noKey(m *mapping, n *notification) *connectors.Error {
	return permanent("notification %s has no key (aggregate id) to use as the %s value", n.ID, m.extField)
}

// recordResult is one result of sObject Collections, or a platform event
// publish response.
type recordResult struct {
	ID      string     `json:"id"`
	Success bool       `json:"success"`
	Errors  []apiError `json:"errors"`
	Created *bool      `json:"created"`
}

// publish sends POST /sobjects/{Event__e}/. A 2xx with success:true is
// success even when errors holds OPERATION_ENQUEUED (the event is queued).
func (c *Connector) publish(ctx context.Context, m *mapping, fields map[string]any) error {
	body, err := json.Marshal(fields)
	if err != nil {
		return permanent("encode event: %v", err)
	}
	path := c.dataPath("/sobjects/" + transport.PathSegment(m.event) + "/")
	resp, cerr := c.call(ctx, http.MethodPost, path, body)
	if cerr != nil {
		return cerr
	}
	if resp.status < 200 || resp.status >= 300 {
		return c.classifyResponse(http.MethodPost+" "+path, resp.status, resp.body)
	}
	var rr struct {
		Success *bool      `json:"success"`
		Errors  []apiError `json:"errors"`
	}
	if json.Unmarshal(resp.body, &rr) == nil && rr.Success != nil && !*rr.Success && !(len(rr.Errors) > 0 && onlyEnqueued(rr.Errors)) {
		return c.classifyRecord(resp.status, rr.Errors)
	}
	return nil
}

// onlyEnqueued reports whether errs are all OPERATION_ENQUEUED notes.
func onlyEnqueued(errs []apiError) bool {
	for _, e := range errs {
		if e.code() != codeOperationEnqueued {
			return false
		}
	}
	return true
}
