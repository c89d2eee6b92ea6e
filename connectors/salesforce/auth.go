package salesforce

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"
)

// session is a cached access token with the API base URL it belongs to.
type session struct {
	tok     *oauth2.Token
	base    string // instance_url, or login_url when absent
	fetched time.Time
}

// tokenCache holds the one access token the connector uses. Salesforce
// sends no expires_in, so oauth2's ReuseTokenSource would keep a token
// forever: the cache keeps it until a 401 (or TokenMaxAge) drops it.
type tokenCache struct {
	// sem serialises fetches so that a burst of 401s triggers one token
	// request, while waiters still honour their context.
	sem chan struct{}

	mu  sync.Mutex
	cur *session
}

func newTokenCache() *tokenCache {
	return &tokenCache{sem: make(chan struct{}, 1)}
}

// fetchFunc requests a new token.
type fetchFunc func(ctx context.Context) (*oauth2.Token, error)

// newFetcher returns the token request of the configured flow. hc carries
// the token requests (with the connector's retries and timeouts).
func newFetcher(cfg *resolved, hc *http.Client) fetchFunc {
	tokenURL := cfg.loginURL.String() + "/services/oauth2/token"
	withClient := func(ctx context.Context) context.Context {
		return context.WithValue(ctx, oauth2.HTTPClient, hc)
	}
	switch cfg.Auth.Type {
	case AuthJWTBearer:
		jc := &jwt.Config{
			Email:      cfg.Auth.ClientID,
			Subject:    cfg.Auth.Username,
			PrivateKey: cfg.privateKey,
			TokenURL:   tokenURL,
			Audience:   cfg.Auth.Audience,
			Expires:    JWTExpiry,
		}
		return func(ctx context.Context) (*oauth2.Token, error) {
			// A fresh source per fetch: its ReuseTokenSource wrapper
			// would otherwise keep handing back the token Salesforce
			// just refused.
			return jc.TokenSource(withClient(ctx)).Token()
		}
	default:
		cc := &clientcredentials.Config{
			ClientID:     cfg.Auth.ClientID,
			ClientSecret: cfg.clientSecret,
			TokenURL:     tokenURL,
			AuthStyle:    oauth2.AuthStyleInParams,
		}
		return func(ctx context.Context) (*oauth2.Token, error) {
			return cc.Token(withClient(ctx))
		}
	}
}

// session returns the cached session, fetching a token when there is none.
func (c *Connector) session(ctx context.Context) (*session, error) {
	if s := c.cachedSession(); s != nil {
		return s, nil
	}
	select {
	case c.tokens.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.tokens.sem }()
	if s := c.cachedSession(); s != nil {
		return s, nil // fetched by another caller while we waited
	}
	tok, err := c.fetch(ctx)
	if err != nil {
		return nil, err
	}
	s := &session{tok: tok, base: c.instanceBase(tok), fetched: time.Now()}
	c.tokens.mu.Lock()
	c.tokens.cur = s
	c.tokens.mu.Unlock()
	c.log.Info("salesforce: fetched access token", "auth", c.cfg.Auth.Type, "instance_url", s.base)
	return s, nil
}

func (c *Connector) cachedSession() *session {
	c.tokens.mu.Lock()
	defer c.tokens.mu.Unlock()
	s := c.tokens.cur
	if s != nil && c.cfg.TokenMaxAge > 0 && time.Since(s.fetched) >= c.cfg.TokenMaxAge {
		c.tokens.cur = nil
		return nil
	}
	return s
}

// dropSession forgets s if it is still the cached session, so that the
// next call fetches a new token; a newer session is kept.
func (c *Connector) dropSession(s *session) {
	c.tokens.mu.Lock()
	defer c.tokens.mu.Unlock()
	if c.tokens.cur == s {
		c.tokens.cur = nil
	}
}

// instanceBase picks the API base URL: the token's instance_url when it is
// a sane URL (https, or http only where login_url may be http), else
// login_url.
func (c *Connector) instanceBase(tok *oauth2.Token) string {
	fallback := c.cfg.loginURL.String()
	raw, _ := tok.Extra("instance_url").(string)
	if raw == "" {
		return fallback
	}
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		c.log.Warn("salesforce: ignoring malformed instance_url; using login_url", "login_url", fallback)
		return fallback
	}
	if u.Scheme == "http" && !c.cfg.AllowHTTP && !isLoopback(u.Hostname()) {
		c.log.Warn("salesforce: ignoring plain-http instance_url; using login_url", "instance_url", u.Host, "login_url", fallback)
		return fallback
	}
	u.Path, u.RawQuery, u.Fragment, u.User = "", "", "", nil
	return u.String()
}
