// Package logicapps delivers notifications to an Azure Logic Apps workflow
// through its "When a HTTP request is received" (Request) trigger. It
// registers the connector type "logicapps".
//
// Each notification is one POST of its JSON body to the trigger's callback
// URL, with the notification id as x-ms-client-tracking-id (Logic Apps has
// no deduplication: a workflow that must not run twice for one change
// dedupes on it) and the CloudEvents HTTP binary-mode headers ce-id,
// ce-type, ce-source, ce-specversion and ce-time (and the extension
// ce-fanoutprojection when the notification has a projection), plus
// traceparent.
//
// SAS (default): the callback URL carries the credential in its sig query
// parameter; keep it out of the file with url_env, or url_file (a mounted
// Secret, re-read when it changes and on SIGHUP, so a regenerated access
// key needs no restart):
//
//	connectors:
//	  logic_apps:
//	    type: logicapps
//	    settings:
//	      url_env: LOGIC_APPS_CALLBACK_URL
//	      timeout: 30s
//	      max_attempts: 3
//
// Entra ID: a bearer token from the client credentials flow, with a
// callback URL stripped of sig (a request may use only one scheme):
//
//	settings:
//	  url: https://prod-01.westeurope.logic.azure.com/workflows/<id>/triggers/manual/paths/invoke?api-version=2016-10-01
//	  auth: entra
//	  tenant_id: <directory id>
//	  client_id: <application id>
//	  client_secret_env: LOGIC_APPS_CLIENT_SECRET
//	  # scope: https://logic.azure.com/.default
//
// The Entra settings may also be nested: auth: {type: entra, tenant_id: ...}.
//
// Notifications of some projections or trigger types may go to other
// workflows, each URL given as url, url_env or url_file with the same
// rules; the most specific wins (the projection's URL for the trigger
// type, the projection's, the trigger type's, then url):
//
//	settings:
//	  url_env: QUOTES_LA_URL                 # everything else
//	  trigger_types:
//	    quote_lifecycle: {url_env: LIFECYCLE_LA_URL}
//	  projections:
//	    orders:
//	      url_file: /etc/fanout/orders-la-url
//	      trigger_types:
//	        order_cancelled: {url_env: ORDERS_CANCEL_LA_URL}
//
// Messages name the setting of the URL concerned; every call scrubs the
// sig of every URL. The projection also travels as ce-fanoutprojection.
//
// Classification: any 2xx is delivered (202 without a Response action);
// 408, 429 and 5xx are Retryable, with the server's Retry-After when it
// sent one. Failures of the endpoint rather than the record are Halt, so
// that the delivery layer pauses the connector instead of dead-lettering
// the stream: 401 with SAS (the sig is wrong or its key was regenerated);
// 401 with Entra for a token fetched just now (the first 401 drops the
// cached token and the call is sent once more with a new one); 403; 404
// (WorkflowNotFound, unknown trigger); 409 WorkflowNotEnabled (a disabled
// workflow); 410; 3xx; configuration errors that every call would get
// (MissingApiVersionParameter, both SAS and a bearer token); a token
// endpoint refusing the client; a certificate that does not verify or a
// host that does not resolve. Record-specific failures are Permanent: 400
// TriggerInputSchemaMismatch, 413 and other 4xx. The error code and message of the body {"error":{"code",
// "message"}} go into Error.Code and Error.Message. Neither errors nor logs
// ever contain the sig, the token or the client secret.
package logicapps

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/transport"
	"github.com/fanout-dev/fanout/internal/secret"
)

// TypeName is the connector type this package registers.
const TypeName = "logicapps"

func init() {
	connectors.Register(TypeName, Factory)
}

// Factory builds a logicapps connector from its YAML settings; it is the
// function registered under TypeName.
func Factory(ctx context.Context, cfg connectors.Config) (connectors.Connector, error) {
	var s Settings
	if cfg.Decode != nil {
		if err := cfg.Decode(&s); err != nil {
			return nil, fmt.Errorf("decode logicapps settings: %s", transport.RedactText(err.Error()))
		}
	}
	return newConnector(ctx, cfg.Name, s, cfg.Logger, cfg.Secrets, cfg.MaxInFlight)
}

// Connector delivers notifications to one Logic Apps Request trigger. It
// is safe for concurrent use.
type Connector struct {
	name   string
	cfg    *resolved
	log    *slog.Logger
	client *transport.Client
	tokens *transport.TokenCache // nil with SAS
	closed atomic.Bool
}

var _ connectors.Connector = (*Connector)(nil)

// New validates s, loads its secrets and returns a connector. It makes no
// network call: with Entra ID the first delivery fetches the token. log may
// be nil (slog.Default).
func New(ctx context.Context, name string, s Settings, log *slog.Logger) (*Connector, error) {
	return newConnector(ctx, name, s, log, nil, 0)
}

// newConnector is New with the store that owns file-backed secrets
// and the most calls the worker makes at once (0 for the default), to
// which the HTTP idle pool is sized.
func newConnector(_ context.Context, name string, s Settings, log *slog.Logger, secrets *secret.Store, maxInFlight int) (*Connector, error) {
	if log == nil {
		log = slog.Default()
	}
	r, err := resolve(name, s, log, secrets)
	if err != nil {
		return nil, err
	}
	opts := r.opts
	opts.MaxConcurrency = maxInFlight
	client, err := transport.New(opts)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	c := &Connector{name: name, cfg: r, log: log, client: client}
	if r.auth == AuthEntra {
		c.tokens = transport.NewTokenCache(func() *clientcredentials.Config {
			return &clientcredentials.Config{
				ClientID:     r.clientID,
				ClientSecret: r.clientSecret.Current(),
				TokenURL:     r.tokenURL,
				Scopes:       []string{r.scope},
				AuthStyle:    oauth2.AuthStyleInParams,
			}
		}, client.HTTPClient())
	}
	return c, nil
}

// Deliver posts n to the trigger. It returns nil once the workflow
// accepted it (any 2xx), or a *connectors.Error.
func (c *Connector) Deliver(ctx context.Context, n *connectors.Notification) error {
	if c.closed.Load() {
		return &connectors.Error{Class: connectors.Retryable, Message: "connector " + c.name + " is closed"}
	}
	if n == nil {
		return &connectors.Error{Class: connectors.Permanent, Message: "nil notification"}
	}
	if !json.Valid(n.Body) {
		return &connectors.Error{Class: connectors.Permanent, Code: "InvalidBody", Message: "notification body is not valid JSON; the trigger expects application/json"}
	}

	h := c.cfg.headers.Clone()
	h.Set("Content-Type", "application/json")
	h.Set("x-ms-client-tracking-id", n.ID)
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", n.ID)
	source := n.Source
	if source == "" {
		source = c.cfg.source
	}
	h.Set("ce-source", source)
	if n.Type != "" {
		h.Set("ce-type", n.Type)
	}
	if !n.Time.IsZero() {
		h.Set("ce-time", n.Time.UTC().Format(time.RFC3339Nano))
	}
	if n.TraceParent != "" {
		h.Set("traceparent", n.TraceParent)
	}

	if n.Projection != "" {
		h.Set("ce-fanoutprojection", n.Projection)
	}

	ep := c.cfg.endpointFor(n)
	tg := ep.current(c.cfg)
	if tg.err != nil {
		// url_file now holds something unusable: no record can go out
		// until the operator fixes it.
		return c.fail(n, &connectors.Error{Class: connectors.Halt, Code: "InvalidCallbackURL", Message: tg.err.Error()})
	}
	for attempt := 1; ; attempt++ {
		// Every URL's sig, not only this one's: a message may quote any.
		secrets := c.cfg.sigs()
		if c.cfg.clientSecret != nil {
			secrets = append(secrets, c.cfg.clientSecret.Current())
		}
		var tok *oauth2.Token
		if c.tokens != nil {
			var err error
			if tok, err = c.tokens.Token(ctx); err != nil {
				return c.fail(n, err)
			}
			h.Set("Authorization", "Bearer "+tok.AccessToken)
			secrets = append(secrets[:len(secrets):len(secrets)], tok.AccessToken)
		}
		resp, err := c.client.Do(ctx, &transport.Request{
			Method:  http.MethodPost,
			URL:     tg.raw,
			Header:  h,
			Body:    n.Body,
			Secrets: secrets,
		})
		if err != nil {
			return c.fail(n, transport.Failure(err))
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			c.log.Debug("logicapps: delivered",
				"connector", c.name, "notification_id", n.ID, "url_field", ep.field, "status", resp.StatusCode,
				"run_id", resp.Header.Get("x-ms-workflow-run-id"), "attempts", resp.Attempts)
			return nil
		}
		if resp.StatusCode == http.StatusUnauthorized && c.tokens != nil {
			// The token expired or was revoked: drop it and try once
			// more with a new one. A refusal of a token fetched just now
			// is no expiry but a configuration problem (Halt).
			c.tokens.Invalidate(tok)
			if attempt == 1 && ctx.Err() == nil {
				c.log.Info("logicapps: bearer token refused; fetching a new one", "connector", c.name)
				continue
			}
		}
		return c.fail(n, c.classify(resp, ep.field, secrets))
	}
}

// fail logs a failed delivery at debug level (the delivery layer logs the
// outcome) and returns err.
func (c *Connector) fail(n *connectors.Notification, err error) error {
	c.log.Debug("logicapps: delivery failed",
		"connector", c.name, "notification_id", n.ID, "class", connectors.Classify(err).String(), "error", err.Error())
	return err
}

// classify turns a non-2xx response from the URL of setting urlField
// into a *connectors.Error.
func (c *Connector) classify(resp *transport.Response, urlField string, secrets []string) *connectors.Error {
	code, msg := transport.ParseErrorBody(resp.Body)
	msg = transport.RedactSecrets(msg, secrets...)
	if msg == "" {
		msg = transport.StatusMessage(resp.StatusCode)
	}
	e := &connectors.Error{Status: resp.StatusCode, Code: code, Message: msg}
	if resp.Attempts > 1 {
		e.Message += fmt.Sprintf(" (after %d attempts)", resp.Attempts)
	}
	s := resp.StatusCode
	switch {
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		e.Class = connectors.Retryable
		e.RetryAfter = resp.RetryAfter
	case s == http.StatusUnauthorized && c.cfg.auth == AuthEntra:
		e.Class = connectors.Halt
		e.Message = hint(e.Message, "a freshly fetched bearer token was refused: check the workflow's authorization policy (issuer, audience, claims) and the app registration")
	case s == http.StatusUnauthorized:
		e.Class = connectors.Halt
		e.Message = hint(e.Message, "the callback URL's sig is not valid (wrong URL, or the access key was regenerated): update "+urlField)
	case s == http.StatusForbidden:
		e.Class = connectors.Halt
		e.Message = hint(e.Message, "the trigger refused the caller (IP restrictions or access policy)")
	case s == http.StatusNotFound:
		e.Class = connectors.Halt
		e.Message = hint(e.Message, "check "+urlField+": the workflow or trigger does not exist")
	case haltCodes[code]:
		e.Class = connectors.Halt
		e.Message = hint(e.Message, "the trigger cannot accept any call as configured: check "+urlField+" and the workflow's state")
	case s == http.StatusGone:
		e.Class = connectors.Halt
		e.Message = hint(e.Message, "the trigger is gone: update "+urlField)
	case s >= 300 && s < 400:
		e.Class = connectors.Halt
		e.Message = hint(e.Message, "unexpected redirect from the trigger (Logic Apps never redirects): check "+urlField)
	default:
		// 400 TriggerInputSchemaMismatch, 413: this record is wrong.
		e.Class = connectors.Permanent
	}
	return e
}

// haltCodes are Logic Apps error codes that refuse every call, whatever
// the record: a disabled workflow, or a request the connector's
// configuration makes wrong each time (URL without api-version, both SAS
// and a bearer token, a trigger that wants another method).
var haltCodes = map[string]bool{
	"WorkflowNotEnabled":                          true,
	"WorkflowDisabled":                            true,
	"WorkflowNotFound":                            true,
	"WorkflowTriggerNotFound":                     true,
	"MissingApiVersionParameter":                  true,
	"DirectApiRequestHasMoreThanOneAuthorization": true,
	"DirectApiAuthorizationRequired":              true,
	"TriggerRequestMethodNotValid":                true,
}

// hint appends advice for the operator to a downstream message.
func hint(msg, advice string) string {
	return strings.TrimRight(msg, ". ") + "; " + advice
}

// classifyAttempt decides in-call retries: transport errors that may pass,
// 408, 429, 500, 502, 503 and 504. Everything else is decided once, by
// classify.
func classifyAttempt(resp *http.Response, err error) bool {
	if err != nil {
		return transport.RetryableError(err)
	}
	return transport.RetryableStatus(resp.StatusCode)
}

// Close releases idle connections; Deliver fails afterwards.
func (c *Connector) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.client.Close()
}
