package admin_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/admin"
	"github.com/fanout-dev/fanout/internal/config"
)

// TestTokenlessOnlyOnLoopbackListener is issue 13's bypass: no tokens, a
// listener on every interface, and a client that connects from a loopback
// address (a same-host sidecar) with a forged Host: localhost. The server
// must refuse to start; a request must never be authenticated by its Host.
func TestTokenlessOnlyOnLoopbackListener(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:9464", "[::]:9464", ":9464", "admin.fanout.svc:9464", "10.0.0.7:9464"} {
		cfg := config.Default()
		cfg.Connectors = map[string]config.Connector{"logic_apps": {Type: "logicapps"}}
		cfg.Routing.Default.Targets = []string{"logic_apps"}
		cfg.Admin.Listen = listen
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		srv, err := admin.New(admin.Options{Config: &cfg, KafkaOptions: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")},
			Getenv: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			srv.Close()
			t.Errorf("listen %s without tokens: New succeeded, want a refusal", listen)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "admin.listen") || !strings.Contains(msg, "admin.tokens") {
			t.Errorf("listen %s: error %q does not name admin.listen and admin.tokens", listen, msg)
		}
	}
	for _, listen := range []string{"127.0.0.1:9464", "localhost:9464", "[::1]:9464", "127.0.0.2:0", ""} {
		cfg := config.Default()
		cfg.Admin.Listen = listen
		if err := cfg.CheckAdminExposure(); err != nil {
			t.Errorf("listen %q without tokens: %v, want accepted (loopback or disabled)", listen, err)
		}
	}
}

// TestHostHeaderNeverAuthenticates: with tokens configured, a loopback
// peer sending Host: localhost (what a same-host sidecar forwards) still
// needs a token.
func TestHostHeaderNeverAuthenticates(t *testing.T) {
	_, obs := offlineServer(t, func(c *config.Config) { withTokens(c); c.Admin.Listen = "0.0.0.0:9464" }, tokenEnv)
	for _, path := range []string{"/v1/connectors/nope", "/v1/audit"} {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "127.0.0.6:41000" // Istio's inbound sidecar address
		req.Host = "localhost:9464"
		w := httptest.NewRecorder()
		obs.Handler().ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("GET %s from a loopback peer with Host: localhost and no token: %d, want 401", path, w.Code)
		}
	}
}

// TestRefusedOperateCallsAreLogged: an operate call refused for its token
// (none, unknown, lacking the scope) leaves a warning with the route, the
// client's address and the token's name when known; never the token.
func TestRefusedOperateCallsAreLogged(t *testing.T) {
	var b syncBuf
	cfg := config.Default()
	cfg.Connectors = map[string]config.Connector{"logic_apps": {Type: "logicapps"}}
	cfg.Routing.Default.Targets = []string{"logic_apps"}
	withTokens(&cfg)
	srv, err := admin.New(admin.Options{Config: &cfg, KafkaOptions: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")},
		Getenv: func(k string) string { return tokenEnv[k] }, Logger: slog.New(slog.NewJSONHandler(&b, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	mux := http.NewServeMux()
	srv.Register(mux)
	for _, tok := range []string{"", "not-a-token-of-ours-at-all", viewerToken} {
		call(mux, "POST", "/v1/connectors/logic_apps/pause", tok, "10.9.8.7:4242")
	}
	call(mux, "GET", "/v1/connectors", "", "10.9.8.7:4242") // reads refused are not logged
	out := b.String()
	if n := strings.Count(out, `"msg":"admin: operator call refused"`); n != 3 {
		t.Errorf("%d refusal warnings, want 3:\n%s", n, out)
	}
	for _, want := range []string{`"remote":"10.9.8.7:4242"`, `"path":"/v1/connectors/logic_apps/pause"`, `"token_name":"viewer"`, `"code":"insufficient_scope"`, `"code":"invalid_token"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the warnings lack %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, viewerToken) || strings.Contains(out, "not-a-token-of-ours-at-all") {
		t.Errorf("a token is logged:\n%s", out)
	}
}

// syncBuf is a bytes.Buffer safe for a logger and a reader.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
