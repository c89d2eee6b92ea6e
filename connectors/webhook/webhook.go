// Package webhook delivers notifications to any HTTP receiver described by
// configuration alone, and registers the connector type "webhook". A new
// plain-HTTP downstream needs a settings block, not code:
//
//	connectors:
//	  billing_hook:
//	    type: webhook
//	    settings:
//	      url_env: BILLING_HOOK_URL
//	      method: POST
//	      headers:
//	        X-Api-Key: ${BILLING_API_KEY}
//	      body_template: '{"event":{{json .Type}},"id":{{json .ID}},"data":{{.Body}}}'
//	      auth: {type: oauth2, token_url: https://idp.example/oauth2/token,
//	             client_id: fanout, client_secret_env: BILLING_CLIENT_SECRET,
//	             scopes: [notifications.write]}
//	      signing:
//	        secret_env: BILLING_WEBHOOK_SECRET   # whsec_...
//	      status:
//	        success: [200-299, 409]              # 409: already have it
//	        retryable: [408, 425, 429, 500-599]
//
// Every call carries webhook-id: <notification id> (the same on every
// attempt and replay, for receivers to deduplicate on) and traceparent when
// known. With signing, each attempt is signed per Standard Webhooks:
// webhook-timestamp is the Unix time of that attempt and webhook-signature
// is "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body))
// over the exact bytes sent, so in-call retries are re-signed.
//
// Classification is declarative. status.body rules come first: the first
// whose regular expression matches the response body (and whose statuses,
// if given, include the status) decides. Then the status lists:
// status.success (default 2xx) is delivered; status.retryable (default
// 408, 425, 429, 5xx) is Retryable, with the server's Retry-After;
// status.permanent is Permanent; status.halt (default 3xx, 401, 403, 404,
// 410) is Halt: the endpoint or the credentials are wrong, not the record,
// so the connector pauses instead of dead-lettering the stream. A token
// endpoint refusing the client, a certificate that does not verify and a
// host that does not resolve are Halt too. With auth oauth2 a first 401
// drops the token and the call is sent once more with a new one; a 401 of
// that new token is Halt. Every other status is Permanent.
//
//	status:
//	  halt: [401, 403, 404, 410, 3xx]
//	  permanent: [422]
//	  body:
//	    - {match: "(?i)account suspended", class: halt}
//	    - {match: "\"retry\":true", statuses: [400], class: retryable}
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
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
const TypeName = "webhook"

func init() {
	connectors.Register(TypeName, Factory)
}

// Factory builds a webhook connector from its YAML settings; it is the
// function registered under TypeName.
func Factory(ctx context.Context, cfg connectors.Config) (connectors.Connector, error) {
	var s Settings
	if cfg.Decode != nil {
		if err := cfg.Decode(&s); err != nil {
			return nil, fmt.Errorf("decode webhook settings: %s", transport.RedactText(err.Error()))
		}
	}
	return newConnector(ctx, cfg.Name, s, cfg.Logger, cfg.Secrets, cfg.MaxInFlight)
}

// Connector delivers notifications to one HTTP receiver. It is safe for
// concurrent use.
type Connector struct {
	name   string
	cfg    *resolved
	log    *slog.Logger
	client *transport.Client
	tokens *transport.TokenCache // nil unless auth is oauth2
	closed atomic.Bool
	// now is the clock of webhook-timestamp; tests replace it.
	now func() time.Time
	// creds caches what the secret settings give, by their versions.
	creds atomic.Pointer[creds]
}

// creds is what the connector derives from its secret settings, which may
// change under it (*_file): the URL, the static Authorization header, the
// signing key, and every secret to scrub from errors and logs.
type creds struct {
	versions   [4]uint64
	rawURL     string
	authHeader string
	signingKey []byte
	secrets    []string
	err        error
}

var _ connectors.Connector = (*Connector)(nil)

// New validates s, loads its secrets and returns a connector. It makes no
// network call. log may be nil (slog.Default).
func New(ctx context.Context, name string, s Settings, log *slog.Logger) (*Connector, error) {
	return newConnector(ctx, name, s, log, nil, 0)
}

// newConnector is New with the store that owns file-backed secrets
// and the most calls the worker makes at once (0 for the default), to
// which the HTTP idle pool is sized.
func newConnector(_ context.Context, name string, s Settings, log *slog.Logger, store *secret.Store, maxInFlight int) (*Connector, error) {
	if log == nil {
		log = slog.Default()
	}
	r, err := resolve(name, s, log, store)
	if err != nil {
		return nil, err
	}
	opts := r.opts
	opts.MaxConcurrency = maxInFlight
	client, err := transport.New(opts)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	c := &Connector{name: name, cfg: r, log: log, client: client, now: time.Now}
	if r.auth == AuthOAuth2 {
		cc := clientcredentials.Config{
			ClientID: r.oauth.clientID,
			TokenURL: r.oauth.tokenURL,
			Scopes:   r.oauth.scopes,
		}
		if r.oauth.inParams {
			cc.AuthStyle = oauth2.AuthStyleInParams
		}
		if len(r.oauth.params) > 0 {
			cc.EndpointParams = make(map[string][]string, len(r.oauth.params))
			for k, v := range r.oauth.params {
				cc.EndpointParams.Set(k, v)
			}
		}
		c.tokens = transport.NewTokenCache(func() *clientcredentials.Config {
			cfg := cc
			cfg.ClientSecret = r.oauth.clientSecret.Current()
			return &cfg
		}, client.HTTPClient())
	}
	return c, nil
}

// Deliver sends n to the receiver. It returns nil once the receiver
// answered a success status, or a *connectors.Error.
func (c *Connector) Deliver(ctx context.Context, n *connectors.Notification) error {
	if c.closed.Load() {
		return &connectors.Error{Class: connectors.Retryable, Message: "connector " + c.name + " is closed"}
	}
	if n == nil {
		return &connectors.Error{Class: connectors.Permanent, Message: "nil notification"}
	}
	body := n.Body
	if c.cfg.tmpl != nil {
		out, err := render(c.cfg.tmpl, n)
		if err != nil {
			return c.fail(n, &connectors.Error{Class: connectors.Permanent, Code: "BodyTemplate",
				Message: "body_template failed on this notification: " + transport.Truncate(transport.RedactSecrets(err.Error(), c.current().secrets...), transport.MaxMessageLen)})
		}
		body = out
	}
	if c.cfg.jsonBody && c.cfg.method != http.MethodDelete && !json.Valid(body) {
		what := "the notification body"
		if c.cfg.tmpl != nil {
			what = "body_template's output"
		}
		return c.fail(n, &connectors.Error{Class: connectors.Permanent, Code: "InvalidBody",
			Message: what + " is not valid JSON but content_type is " + c.cfg.ctype})
	}

	cr := c.current()
	if cr.err != nil {
		// A secret file now holds something unusable: no record can go
		// out until the operator fixes it.
		return c.fail(n, &connectors.Error{Class: connectors.Halt, Code: "InvalidSecret", Message: cr.err.Error()})
	}
	h := c.cfg.headers.Clone()
	h.Set("Content-Type", c.cfg.ctype)
	switch c.cfg.format {
	case FormatCloudEventsStructured:
		ce, err := structured(n, c.cfg.ctype, c.cfg.jsonBody, body)
		if err != nil {
			return c.fail(n, &connectors.Error{Class: connectors.Permanent, Code: "InvalidCloudEvent", Message: err.Error()})
		}
		body = ce
		h.Set("Content-Type", ceStructuredType)
	case FormatCloudEventsBinary:
		if err := binaryHeaders(h, n, c.cfg.ctype); err != nil {
			return c.fail(n, &connectors.Error{Class: connectors.Permanent, Code: "InvalidCloudEvent", Message: err.Error()})
		}
	}
	h.Set("webhook-id", n.ID)
	if n.TraceParent != "" {
		h.Set("traceparent", n.TraceParent)
	}
	for attempt := 1; ; attempt++ {
		secrets := cr.secrets
		var tok *oauth2.Token
		switch {
		case cr.authHeader != "":
			h.Set("Authorization", cr.authHeader)
		case c.tokens != nil:
			var err error
			if tok, err = c.tokens.Token(ctx); err != nil {
				return c.fail(n, err)
			}
			h.Set("Authorization", "Bearer "+tok.AccessToken)
			secrets = append(secrets[:len(secrets):len(secrets)], tok.AccessToken)
		}
		req := &transport.Request{
			Method:  c.cfg.method,
			URL:     cr.rawURL,
			Header:  h,
			Body:    body,
			Secrets: secrets,
		}
		if cr.signingKey != nil {
			req.Prepare = func(r *http.Request, _ int) error {
				ts := strconv.FormatInt(c.now().Unix(), 10)
				r.Header.Set("webhook-timestamp", ts)
				r.Header.Set("webhook-signature", "v1,"+sign(cr.signingKey, n.ID, ts, body))
				return nil
			}
		}
		resp, err := c.client.Do(ctx, req)
		if err != nil {
			return c.fail(n, transport.Failure(err))
		}
		class, byBody := c.cfg.classes.classify(resp.StatusCode, resp.Body)
		if class == classSuccess {
			c.log.Debug("webhook: delivered", "connector", c.name, "notification_id", n.ID,
				"status", resp.StatusCode, "attempts", resp.Attempts)
			return nil
		}
		if resp.StatusCode == http.StatusUnauthorized && c.tokens != nil && !byBody && !c.cfg.classes.explicit(resp.StatusCode) {
			// The token expired or was revoked: drop it and send once
			// more with a new one. A refusal of a token fetched just now
			// is a configuration problem, classified below (Halt).
			c.tokens.Invalidate(tok)
			if attempt == 1 && ctx.Err() == nil {
				c.log.Info("webhook: access token refused; fetching a new one", "connector", c.name)
				continue
			}
		}
		return c.fail(n, c.classify(resp, secrets))
	}
}

// current returns what the secret settings give now, derived again only
// when one of them changed.
func (c *Connector) current() *creds {
	var vals [4]string
	var vers [4]uint64
	for i, v := range []*secret.Value{c.cfg.urlValue, c.cfg.authSecret, c.cfg.signing, c.cfg.oauth.clientSecret} {
		vals[i], vers[i] = v.Get() // nil-safe: "", 0
	}
	if cr := c.creds.Load(); cr != nil && cr.versions == vers {
		return cr
	}
	cr := &creds{versions: vers, rawURL: strings.TrimSpace(vals[0])}
	cr.secrets = append(cr.secrets, c.cfg.secrets...)
	if u, err := c.cfg.checkURL(vals[0]); err != nil {
		cr.err = err
	} else {
		for _, vs := range u.Query() {
			cr.secrets = append(cr.secrets, vs...)
		}
		if p, ok := u.User.Password(); ok {
			cr.secrets = append(cr.secrets, p)
		}
	}
	switch c.cfg.auth {
	case AuthBasic:
		req := &http.Request{Header: make(http.Header)}
		req.SetBasicAuth(c.cfg.username, vals[1])
		cr.authHeader = req.Header.Get("Authorization")
		cr.secrets = append(cr.secrets, vals[1], cr.authHeader)
	case AuthBearer:
		cr.authHeader = "Bearer " + vals[1]
		cr.secrets = append(cr.secrets, vals[1], cr.authHeader)
	case AuthOAuth2:
		cr.secrets = append(cr.secrets, vals[3])
	}
	if c.cfg.signing != nil {
		key, err := decodeSigningSecret(vals[2])
		if err != nil && cr.err == nil {
			cr.err = fmt.Errorf("signing.secret: %w", err)
		}
		cr.signingKey = key
		cr.secrets = append(cr.secrets, vals[2], strings.TrimPrefix(vals[2], "whsec_"))
	}
	c.creds.Store(cr)
	return cr
}

// sign returns the Standard Webhooks v1 signature of one attempt.
func sign(key []byte, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// classify turns a non-success response into a *connectors.Error.
func (c *Connector) classify(resp *transport.Response, secrets []string) *connectors.Error {
	code, msg := transport.ParseErrorBody(resp.Body)
	msg = transport.RedactSecrets(msg, secrets...)
	if msg == "" {
		msg = transport.StatusMessage(resp.StatusCode)
	}
	if resp.Attempts > 1 {
		msg += fmt.Sprintf(" (after %d attempts)", resp.Attempts)
	}
	e := &connectors.Error{Status: resp.StatusCode, Code: code, Message: msg}
	s := resp.StatusCode
	class, byBody := c.cfg.classes.classify(s, resp.Body)
	explicit := byBody || c.cfg.classes.explicit(s)
	switch {
	case class == classRetryable:
		e.Class = connectors.Retryable
		e.RetryAfter = resp.RetryAfter
	case class == classHalt:
		e.Class = connectors.Halt
		if explicit {
			e.Message = hint(e.Message, "classified halt by the connector's status settings")
			break
		}
		switch {
		case s == http.StatusUnauthorized && c.tokens != nil:
			e.Message = hint(e.Message, "a freshly fetched access token was refused; check the oauth2 client, its scopes and the receiver's policy")
		case s == http.StatusUnauthorized || s == http.StatusForbidden:
			e.Message = hint(e.Message, "the receiver refused the credentials; check auth and headers")
		case s == http.StatusNotFound:
			e.Message = hint(e.Message, "the receiver has no such endpoint; fix "+c.cfg.urlField)
		case s == http.StatusGone:
			e.Message = hint(e.Message, "the receiver says this endpoint no longer exists and must not be called again; fix "+c.cfg.urlField+" or disable the connector")
		case s >= 300 && s < 400:
			e.Message = hint(e.Message, "unexpected redirect (redirects are not followed); fix "+c.cfg.urlField)
		}
	default:
		e.Class = connectors.Permanent
	}
	return e
}

// hint appends advice for the operator to a downstream message.
func hint(msg, advice string) string {
	return strings.TrimRight(msg, ". ") + "; " + advice
}

// fail logs a failed delivery at debug level (the delivery layer logs the
// outcome) and returns err.
func (c *Connector) fail(n *connectors.Notification, err error) error {
	c.log.Debug("webhook: delivery failed", "connector", c.name, "notification_id", n.ID,
		"class", connectors.Classify(err).String(), "error", err.Error())
	return err
}

// Close releases idle connections; Deliver fails afterwards.
func (c *Connector) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.client.Close()
}
