package admin_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/admin"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/observe"
	"github.com/fanout-dev/fanout/internal/secret"
)

const (
	opsToken    = "ops-token-0123456789abcdef"
	viewerToken = "viewer-token-0123456789abcdef"
)

func withTokens(c *config.Config) {
	c.Admin.Tokens = []config.AdminToken{
		{Name: "ops", TokenEnv: "T_OPS", Scopes: []string{"read", "operate"}},
		{Name: "viewer", TokenEnv: "T_VIEW", Scopes: []string{"read"}},
	}
}

var tokenEnv = map[string]string{"T_OPS": opsToken, "T_VIEW": viewerToken}

// call serves one request on h from remote and returns the recorder.
func call(h http.Handler, method, path, token, remote string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader("{}"))
	req.RemoteAddr = remote
	if strings.HasPrefix(remote, "127.") {
		req.Host = "localhost:9464"
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// TestAuth checks bearer tokens and scopes: 401 without a token or with an
// unknown one (WWW-Authenticate: Bearer), 403 with the wrong scope, the
// operational routes open; without configured tokens, loopback clients
// only.
func TestAuth(t *testing.T) {
	_, obs := offlineServer(t, withTokens, tokenEnv)
	h := obs.Handler()
	remote := "10.1.2.3:4567"
	// An unknown connector answers 404 after authentication: the store and
	// the broker are never reached.
	cases := []struct {
		name, method, path, token string
		status                    int
		wwwAuth                   string
	}{
		{"no token", "GET", "/v1/connectors", "", 401, `Bearer realm="fanout"`},
		{"unknown token", "GET", "/v1/connectors", "not-a-token-of-ours-at-all", 401, `error="invalid_token"`},
		{"viewer reads", "GET", "/v1/connectors/nope", viewerToken, 404, ""},
		{"viewer cannot pause", "POST", "/v1/connectors/logic_apps/pause", viewerToken, 403, `error="insufficient_scope", scope="pause"`},
		{"viewer cannot replay", "POST", "/v1/connectors/logic_apps/replay", viewerToken, 403, `scope="replay"`},
		{"no token replay", "POST", "/v1/connectors/logic_apps/replay", "", 401, "Bearer"},
		{"ops pauses", "POST", "/v1/connectors/nope/pause", opsToken, 404, ""},
		{"ops lists dead letters", "GET", "/v1/connectors/nope/dead-letters", opsToken, 404, ""},
		{"healthz open", "GET", "/healthz", "", 200, ""},
		{"openapi open", "GET", "/openapi.json", "", 200, ""},
		{"console open", "GET", "/", "", 200, ""},
		{"console script open", "GET", "/console/app.js", "", 200, ""},
		{"metrics open", "GET", "/metrics", "", 200, ""},
	}
	for _, tc := range cases {
		w := call(h, tc.method, tc.path, tc.token, remote)
		if w.Code != tc.status {
			t.Errorf("%s: %s %s = %d %s, want %d", tc.name, tc.method, tc.path, w.Code, w.Body.String(), tc.status)
			continue
		}
		if got := w.Header().Get("WWW-Authenticate"); tc.wwwAuth != "" && !strings.Contains(got, tc.wwwAuth) {
			t.Errorf("%s: WWW-Authenticate %q, want it to contain %q", tc.name, got, tc.wwwAuth)
		}
		if tc.status >= 400 && tc.status < 500 {
			var e struct{ Error, Code string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Errorf("%s: error body %q is not {error, code}", tc.name, w.Body.String())
			}
			if strings.Contains(w.Body.String(), opsToken) || strings.Contains(w.Body.String(), viewerToken) {
				t.Errorf("%s: answer echoes a token", tc.name)
			}
		}
	}

	// POST needs Content-Type: application/json (no cross-site forms).
	req := httptest.NewRequest("POST", "/v1/connectors/logic_apps/pause", strings.NewReader("{}"))
	req.RemoteAddr = remote
	req.Header.Set("Authorization", "Bearer "+opsToken)
	req.Header.Set("Content-Type", "text/plain")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain POST = %d, want 415", w.Code)
	}

	// Without tokens (New allows that on a loopback listener only):
	// loopback clients only, and only under a loopback host name (no DNS
	// rebinding), over a real listener on 127.0.0.1.
	_, open := offlineServer(t, nil, nil)
	oh := open.Handler()
	if w := call(oh, "GET", "/v1/connectors/nope", "", remote); w.Code != 401 || !strings.Contains(w.Body.String(), "admin.tokens") {
		t.Errorf("no tokens, remote client: %d %s, want 401 naming admin.tokens", w.Code, w.Body.String())
	}
	hs := httptest.NewServer(oh)
	defer hs.Close()
	get := func(host string) int {
		req, _ := http.NewRequest("GET", hs.URL+"/v1/connectors/nope", nil)
		if host != "" {
			req.Host = host
		}
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(""); code != 404 {
		t.Errorf("no tokens, loopback listener and client: %d, want 404 (authenticated)", code)
	}
	if code := get("evil.example"); code != 401 {
		t.Errorf("no tokens, loopback client with a foreign Host: %d, want 401", code)
	}
}

// TestTokenValidation checks that configuration names the token fields in
// error.
func TestTokenValidation(t *testing.T) {
	cfg := config.Default()
	cfg.Admin.Tokens = []config.AdminToken{
		{Name: "", TokenEnv: "X", Scopes: []string{"read"}},
		{Name: "a", TokenEnv: "not a var", Scopes: []string{"write"}},
		{Name: "a", TokenEnv: "", Scopes: nil},
	}
	cfg.Admin.TLSCertFile = "cert.pem"
	err := cfg.Validate()
	ce, ok := err.(*config.Errors)
	if !ok {
		t.Fatalf("Validate = %v, want *config.Errors", err)
	}
	fields := strings.Join(ce.Fields(), " ")
	for _, want := range []string{"admin.tokens[0].name", "admin.tokens[1](a).token_env", "admin.tokens[1](a).scopes[0]",
		"admin.tokens[2](a).name", "admin.tokens[2](a).token_env", "admin.tokens[2](a).scopes", "admin.tls_cert_file"} {
		if !strings.Contains(fields, want) {
			t.Errorf("errors %q lack %s", fields, want)
		}
	}
	ok2 := config.Default()
	ok2.Admin.Tokens = []config.AdminToken{{Name: "ops", TokenEnv: "T", Scopes: []string{"read", "operate"}}}
	if err := ok2.CheckAdminTokens(func(string) string { return "short" }); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("short token: %v", err)
	}
	if err := ok2.CheckAdminTokens(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "T is empty") {
		t.Errorf("missing token: %v", err)
	}
}

// TestReplayAndPauseScopes: replay and pause are scopes of their own, so
// an on-call reader can be given replay without pause; operate implies
// both (tokens configured before they existed keep working).
func TestReplayAndPauseScopes(t *testing.T) {
	const (
		replayer = "replayer-token-0123456789abcdef"
		pauser   = "pauser-token-0123456789abcdef"
	)
	env := map[string]string{"T_OPS": opsToken, "T_REPLAY": replayer, "T_PAUSE": pauser}
	_, obs := offlineServer(t, func(c *config.Config) {
		c.Admin.Tokens = []config.AdminToken{
			{Name: "ops", TokenEnv: "T_OPS", Scopes: []string{"read", "operate"}},
			{Name: "oncall", TokenEnv: "T_REPLAY", Scopes: []string{"read", "replay"}},
			{Name: "pauser", TokenEnv: "T_PAUSE", Scopes: []string{"pause"}},
		}
	}, env)
	h := obs.Handler()
	remote := "10.1.2.3:4567"
	// 404 (unknown connector) means authorized: the route ran.
	cases := []struct {
		name, method, path, token string
		status                    int
		scope                     string
	}{
		{"replay scope replays", "POST", "/v1/connectors/nope/replay", replayer, 404, ""},
		{"replay scope cannot pause", "POST", "/v1/connectors/nope/pause", replayer, 403, `scope="pause"`},
		{"replay scope cannot resume", "POST", "/v1/connectors/nope/resume", replayer, 403, `scope="pause"`},
		{"replay scope reads", "GET", "/v1/connectors/nope/dead-letters", replayer, 404, ""},
		{"pause scope pauses", "POST", "/v1/connectors/nope/pause", pauser, 404, ""},
		{"pause scope resumes", "POST", "/v1/connectors/nope/resume", pauser, 404, ""},
		{"pause scope cannot replay", "POST", "/v1/connectors/nope/replay", pauser, 403, `scope="replay"`},
		{"pause scope cannot read", "GET", "/v1/connectors/nope", pauser, 403, `scope="read"`},
		{"operate replays", "POST", "/v1/connectors/nope/replay", opsToken, 404, ""},
		{"operate pauses", "POST", "/v1/connectors/nope/pause", opsToken, 404, ""},
	}
	for _, tc := range cases {
		w := call(h, tc.method, tc.path, tc.token, remote)
		if w.Code != tc.status {
			t.Errorf("%s: %s %s = %d %s, want %d", tc.name, tc.method, tc.path, w.Code, w.Body.String(), tc.status)
			continue
		}
		if got := w.Header().Get("WWW-Authenticate"); tc.scope != "" && !strings.Contains(got, tc.scope) {
			t.Errorf("%s: WWW-Authenticate %q, want %s", tc.name, got, tc.scope)
		}
	}
}

// writeAtomically replaces path's content the way the kubelet updates a
// mounted Secret: a new file renamed over the old one.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestTokenFileRotation: a token read from token_file follows its file
// with no restart. The new value is accepted and the old one refused at
// the next request after the change (the file is looked at every
// interval; here every request) or, with a long interval, after the
// store's Reload (what SIGHUP calls). A file rotated to a value too short
// to be a token authenticates nothing.
func TestTokenFileRotation(t *testing.T) {
	const (
		oldToken = "old-ops-token-0123456789abcdef"
		newToken = "new-ops-token-fedcba9876543210-rotated"
	)
	for _, tc := range []struct {
		name     string
		interval time.Duration
		sighup   bool
	}{
		{"followed", time.Nanosecond, false},
		{"sighup", time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ops-token")
			writeAtomically(t, file, oldToken+"\n")
			cfg := config.Default()
			cfg.Connectors = map[string]config.Connector{"logic_apps": {Type: "logicapps"}}
			cfg.Routing.Default.Targets = []string{"logic_apps"}
			cfg.Admin.Listen = "0.0.0.0:9464"
			cfg.Admin.Tokens = []config.AdminToken{
				{Name: "ops", TokenFile: file, Scopes: []string{"read", "operate"}},
				{Name: "viewer", TokenEnv: "T_VIEW", Scopes: []string{"read"}},
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			secrets := secret.NewStore(slog.New(slog.DiscardHandler), tc.interval)
			srv, err := admin.New(admin.Options{Config: &cfg, KafkaOptions: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")},
				Getenv: func(k string) string { return tokenEnv[k] }, Secrets: secrets, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			obs := observe.NewServer(slog.New(slog.DiscardHandler))
			srv.Register(obs)
			h := obs.Handler()
			// 404 (unknown connector) means authenticated; 401 refused.
			expect := func(step, token string, want int) {
				t.Helper()
				if w := call(h, "POST", "/v1/connectors/nope/pause", token, "10.1.2.3:4567"); w.Code != want {
					t.Errorf("%s: %d %s, want %d", step, w.Code, w.Body.String(), want)
				}
			}
			expect("old token before rotation", oldToken, 404)
			expect("new token before rotation", newToken, 401)
			expect("env token", viewerToken, 403) // read only: authenticated, lacks pause

			writeAtomically(t, file, newToken+"\n")
			if tc.sighup {
				// The file is not looked at for an hour: the old token
				// holds until the reload.
				expect("old token before SIGHUP", oldToken, 404)
				if err := secrets.Reload(); err != nil {
					t.Fatal(err)
				}
			}
			expect("new token after rotation", newToken, 404)
			expect("old token after rotation", oldToken, 401)
			expect("env token after rotation", viewerToken, 403)

			writeAtomically(t, file, "short\n")
			if tc.sighup {
				if err := secrets.Reload(); err != nil {
					t.Fatal(err)
				}
			}
			expect("short value", "short", 401)
			expect("new token after a short value", newToken, 401)
		})
	}
}
