package transport

import (
	"context"
	"errors"
	"net/http"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/tokencache"
)

// TokenCache fetches OAuth2 client-credentials tokens and keeps the current
// one until it expires or Invalidate drops it, in a tokencache.Cache (the
// one token cache of every connector): waiting for a fetch honours the
// caller's context, and Invalidate drops only the token that was refused,
// so a burst of 401s fetches one new token. Connectors use it instead of
// oauth2.Transport so that a 401 from the downstream can drop the token,
// so that token errors are classified rather than surfacing as opaque
// transport errors, and so that every fetch runs under the calling
// Deliver's context. It is safe for concurrent use.
type TokenCache struct {
	config func() *clientcredentials.Config
	hc     *http.Client
	cache  *tokencache.Cache[oauth2.Token]
}

// NewTokenCache returns a cache whose fetches use the configuration config
// returns at that moment, so that a client secret read from a file that an
// operator updates is used by the next fetch. hc sends the token requests
// (nil means a client with DefaultTimeout); it should not retry by itself.
func NewTokenCache(config func() *clientcredentials.Config, hc *http.Client) *TokenCache {
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	c := &TokenCache{config: config, hc: hc}
	c.cache = tokencache.New(c.fetch, tokencache.Options[oauth2.Token]{
		Valid: func(t *oauth2.Token) bool { return t.Valid() },
	})
	return c
}

// fetch requests a new token under ctx.
func (c *TokenCache) fetch(ctx context.Context) (*oauth2.Token, error) {
	cfg := c.config()
	tok, err := cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, c.hc))
	if err != nil {
		return nil, classifyTokenError(err, cfg.ClientSecret)
	}
	if tok.AccessToken == "" {
		return nil, &connectors.Error{Class: connectors.Retryable, Message: "token endpoint returned no access_token"}
	}
	return tok, nil
}

// Token returns a valid access token, fetching one if none is cached or the
// cached one is about to expire. Its errors are *connectors.Error: token
// endpoint 4xx answers other than 408 and 429 (invalid_client,
// invalid_grant, unauthorized_client, invalid_scope: the client or its
// secret is refused) are Halt with the OAuth2 error code, since no record
// can be delivered until an operator fixes the credentials; everything
// else, the caller's own context ending included, is Retryable. They never
// carry the client secret or the token.
func (c *TokenCache) Token(ctx context.Context) (*oauth2.Token, error) {
	tok, _, err := c.cache.Get(ctx)
	if err != nil {
		var ce *connectors.Error
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, &connectors.Error{Class: connectors.Retryable, Message: "waiting for an access token", Err: err}
	}
	return tok, nil
}

// Invalidate drops tok if it is still the cached token, so that the next
// Token call fetches a new one: called when the downstream refuses tok
// with 401. A newer token fetched meanwhile by another caller is kept.
func (c *TokenCache) Invalidate(tok *oauth2.Token) {
	c.cache.Drop(tok)
}

// Expiry returns the expiry of the cached token, zero if none is cached or
// the endpoint gave none.
func (c *TokenCache) Expiry() time.Time {
	if t := c.cache.Current(); t != nil {
		return t.Expiry
	}
	return time.Time{}
}

// TokenRefused reports whether a token endpoint's status refuses the
// client itself (any 4xx but 408 and 429: invalid_client, invalid_grant,
// unauthorized_client, ...), as opposed to a passing failure.
func TokenRefused(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// classifyTokenError turns a token fetch error into a secret-free
// *connectors.Error. The *oauth2.RetrieveError is not kept in the chain:
// its Response still references the token request, whose body holds the
// client secret.
func classifyTokenError(err error, clientSecret string) *connectors.Error {
	secrets := []string{clientSecret}
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
