package transport

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/fanout-dev/fanout/connectors"
)

// TokenCache fetches OAuth2 client-credentials tokens and keeps the current
// one until it expires or Invalidate drops it. Connectors use it instead of
// oauth2.Transport so that a 401 from the downstream can drop the token
// (Reauthenticate), so that token errors are classified rather than
// surfacing as opaque transport errors, and so that every fetch runs under
// the calling Deliver's context. It is safe for concurrent use; concurrent
// callers wait for a single fetch.
type TokenCache struct {
	cfg *clientcredentials.Config
	hc  *http.Client

	mu  sync.Mutex
	tok *oauth2.Token
}

// NewTokenCache returns a cache for cfg. hc sends the token requests (nil
// means a client with DefaultTimeout); it should not retry by itself.
func NewTokenCache(cfg *clientcredentials.Config, hc *http.Client) *TokenCache {
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	return &TokenCache{cfg: cfg, hc: hc}
}

// Token returns a valid access token, fetching one if none is cached or the
// cached one is about to expire. Its errors are *connectors.Error: token
// endpoint 4xx answers other than 408 and 429 (invalid_client,
// invalid_grant, unauthorized_client, invalid_scope: the client or its
// secret is refused) are Halt with the OAuth2 error code, since no record
// can be delivered until an operator fixes the credentials; everything
// else is Retryable. They never carry the client secret or the token.
func (c *TokenCache) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != nil && c.tok.Valid() {
		return c.tok.AccessToken, nil
	}
	c.tok = nil
	tok, err := c.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, c.hc))
	if err != nil {
		return "", c.classify(err)
	}
	if tok.AccessToken == "" {
		return "", &connectors.Error{Class: connectors.Retryable, Message: "token endpoint returned no access_token"}
	}
	c.tok = tok
	return tok.AccessToken, nil
}

// Invalidate drops the cached token so that the next Token call fetches a
// new one: called when the downstream rejects the token with 401.
func (c *TokenCache) Invalidate() {
	c.mu.Lock()
	c.tok = nil
	c.mu.Unlock()
}

// Expiry returns the expiry of the cached token, zero if none is cached or
// the endpoint gave none.
func (c *TokenCache) Expiry() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok == nil {
		return time.Time{}
	}
	return c.tok.Expiry
}

// TokenRefused reports whether a token endpoint's status refuses the
// client itself (any 4xx but 408 and 429: invalid_client, invalid_grant,
// unauthorized_client, ...), as opposed to a passing failure.
func TokenRefused(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// classify turns a token fetch error into a secret-free *connectors.Error.
// The *oauth2.RetrieveError is not kept in the chain: its Response still
// references the token request, whose body holds the client secret.
func (c *TokenCache) classify(err error) *connectors.Error {
	secrets := []string{c.cfg.ClientSecret}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		class := connectors.Retryable
		if TokenRefused(status) {
			class = connectors.Halt
		}
		msg := re.ErrorDescription
		if msg == "" && status != 0 {
			msg = StatusMessage(status)
		}
		return &connectors.Error{
			Class:   class,
			Status:  status,
			Code:    Truncate(re.ErrorCode, 100),
			Message: "token request failed: " + Truncate(RedactSecrets(RedactText(msg), secrets...), MaxMessageLen),
		}
	}
	f := Failure(RedactError(err, secrets...))
	f.Message = "token request failed: " + f.Message
	return f
}
