package salesforce

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"

	"github.com/fanout-dev/fanout/connectors/tokencache"
)

// session is a cached access token with the API base URL it belongs to.
type session struct {
	tok     *oauth2.Token
	base    string // instance_url, or login_url when absent
	fetched time.Time
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
		return func(ctx context.Context) (*oauth2.Token, error) {
			// A fresh config and source per fetch: the key may have
			// been replaced (private_key_file), and ReuseTokenSource
			// would otherwise keep handing back the token Salesforce
			// just refused.
			jc := &jwt.Config{
				Email:      cfg.Auth.ClientID,
				Subject:    cfg.Auth.Username,
				PrivateKey: []byte(cfg.privateKey.Current()),
				TokenURL:   tokenURL,
				Audience:   cfg.Auth.Audience,
				Expires:    JWTExpiry,
			}
			return jc.TokenSource(withClient(ctx)).Token()
		}
	default:
		return func(ctx context.Context) (*oauth2.Token, error) {
			// The secret is read per fetch: client_secret_file may have
			// been updated by an operator since the last one.
			cc := &clientcredentials.Config{
				ClientID:     cfg.Auth.ClientID,
				ClientSecret: cfg.clientSecret.Current(),
				TokenURL:     tokenURL,
				AuthStyle:    oauth2.AuthStyleInParams,
			}
			return cc.Token(withClient(ctx))
		}
	}
}

// newSessions returns the connector's token cache. Salesforce sends no
// expires_in, so oauth2's ReuseTokenSource would keep a token forever: the
// cache keeps a session until a 401 drops it (compare-and-drop, so a burst
// of 401s fetches one token) or TokenMaxAge passes.
func (c *Connector) newSessions() *tokencache.Cache[session] {
	return tokencache.New(func(ctx context.Context) (*session, error) {
		tok, err := c.fetch(ctx)
		if err != nil {
			return nil, err
		}
		return &session{tok: tok, base: c.instanceBase(tok), fetched: time.Now()}, nil
	}, tokencache.Options[session]{MaxAge: c.cfg.TokenMaxAge})
}

// session returns the cached session, fetching a token when there is none.
func (c *Connector) session(ctx context.Context) (*session, error) {
	s, fetched, err := c.tokens.Get(ctx)
	if err != nil {
		return nil, err
	}
	if fetched {
		c.log.Info("salesforce: fetched access token", "auth", c.cfg.Auth.Type, "instance_url", s.base)
	}
	return s, nil
}

// dropSession forgets s if it is still the cached session, so that the
// next call fetches a new token; a newer session is kept.
func (c *Connector) dropSession(s *session) {
	c.tokens.Drop(s)
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
