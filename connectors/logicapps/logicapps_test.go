package logicapps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fanout-dev/fanout/connectors"
	sim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
)

const simKey = "test-signing-key"

// logSink collects every log line of a test, to prove no secret is in it.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *logSink) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// strictYAML decodes doc into v the way fanout's config does, with unknown
// fields an error.
func strictYAML(doc string) func(v any) error {
	return func(v any) error {
		if strings.TrimSpace(doc) == "" {
			return nil // cmd/fanout skips Decode for absent settings
		}
		dec := yaml.NewDecoder(strings.NewReader(doc))
		dec.KnownFields(true)
		return dec.Decode(v)
	}
}

// nodeYAML decodes doc through a yaml.Node, as cmd/fanout does today.
func nodeYAML(doc string) func(v any) error {
	return func(v any) error {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
			return err
		}
		return n.Content[0].Decode(v)
	}
}

func open(t *testing.T, doc string, log *slog.Logger) (connectors.Connector, error) {
	t.Helper()
	return connectors.Default().Open(context.Background(), connectors.Config{
		Name:   "logic_apps",
		Type:   TypeName,
		Decode: strictYAML(doc),
		Logger: log,
	})
}

func notification(id string) *connectors.Notification {
	return &connectors.Notification{
		ID:          id,
		Key:         "quote-42",
		Type:        "quote_created",
		Source:      "/fanout/quotes",
		Version:     3,
		Time:        time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Body:        []byte(`{"id":"` + id + `","type":"quote_created","data":{"n":1}}`),
		Attempt:     1,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

func startSim(t *testing.T, cfg sim.Config) (*sim.Server, string) {
	t.Helper()
	cfg.Key = simKey
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, base
}

func sigOf(t *testing.T, callback string) string {
	u, err := url.Parse(callback)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("sig")
}

// TestDeliverAgainstSimulator runs the connector against the Logic Apps
// fake and, across every case, checks that no sig and no token leaked into
// an error or a log line.
func TestDeliverAgainstSimulator(t *testing.T) {
	schema, err := sim.ParseSchema([]byte(`{"type":"object","required":["id","type","quote"],"properties":{"id":{},"type":{},"quote":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{}
	var secrets []string
	var errTexts []string

	tests := []struct {
		name      string
		cfg       sim.Config
		faults    string // JSON for SetFaults, applied after start
		settings  string // extra YAML settings
		badKey    bool   // sign the URL with the wrong key
		standard  bool
		before    func(s *sim.Server) // an operator's action at the service, before the call
		class     connectors.Class    // 0 = success
		status    int
		code      string
		minWait   time.Duration
		maxWait   time.Duration
		retryAft  time.Duration
		wantCalls int
		check     func(t *testing.T, s *sim.Server)
	}{
		{
			name: "202 accepted with tracking id and cloudevents headers", wantCalls: 1,
			check: func(t *testing.T, s *sim.Server) {
				c := s.Calls()[0]
				if c.TrackingID != "n-1" || !c.ClientTrackingIDSent {
					t.Fatalf("tracking id %q sent=%v", c.TrackingID, c.ClientTrackingIDSent)
				}
				want := map[string]string{
					"Content-Type": "application/json", "Ce-Id": "n-1", "Ce-Type": "quote_created",
					"Ce-Source": "/fanout/quotes", "Ce-Specversion": "1.0", "Ce-Time": "2026-03-01T12:00:00Z",
					"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Team": "quotes",
				}
				for k, v := range want {
					if got := c.Header.Get(k); got != v {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				if c.Header.Get("Ce-Datacontenttype") != "" || c.Header.Get("Authorization") != "" {
					t.Errorf("unexpected headers %v", c.Header)
				}
				if c.Body != string(notification("n-1").Body) {
					t.Errorf("body %q", c.Body)
				}
			},
			settings: "headers: {X-Team: quotes}\n",
		},
		{name: "standard route", standard: true, wantCalls: 1},
		{name: "response action 200", cfg: sim.Config{Faults: sim.Faults{Mode: sim.ModeResponse, Status: 200, Body: `{"ok":true}`}}, wantCalls: 1},
		{
			name: "429 with retry-after then 200 is delivered after the wait", wantCalls: 2,
			cfg:     sim.Config{Faults: sim.Faults{Mode: sim.ModeResponse, Status: 200}},
			faults:  `{"script":[{"status":429,"retry_after":"1"}]}`,
			minWait: 900 * time.Millisecond,
		},
		{
			name: "429 without retry-after retried with backoff", wantCalls: 3,
			faults: `{"script":[{"count":2,"status":429}]}`,
		},
		{
			name: "429 retry-after above cap goes to the delivery layer", wantCalls: 1,
			faults: `{"script":[{"status":429,"retry_after":"120"}]}`, settings: "max_retry_after: 5s\n",
			class: connectors.Retryable, status: 429, code: "WorkflowRequestsThrottled", retryAft: 5 * time.Second, maxWait: time.Second,
		},
		{
			name: "throttled until attempts run out", wantCalls: 2, settings: "max_attempts: 2\n",
			cfg:   sim.Config{Faults: sim.Faults{ThrottleRate: 1, RetryAfter: true}},
			class: connectors.Retryable, status: 429, code: "WorkflowRequestsThrottled", retryAft: time.Second,
		},
		{
			name: "400 schema mismatch is permanent with its code", wantCalls: 1,
			cfg:   sim.Config{Schema: schema},
			class: connectors.Permanent, status: 400, code: "TriggerInputSchemaMismatch",
		},
		{
			name: "bad sig halts 401", badKey: true, wantCalls: 1,
			class: connectors.Halt, status: 401, code: "DirectApiInvalidAuthorizationSignature",
		},
		{
			name: "access key regenerated halts 401", wantCalls: 1,
			before: func(s *sim.Server) { s.RotateKey("regenerated-key") },
			class:  connectors.Halt, status: 401, code: "DirectApiInvalidAuthorizationSignature",
		},
		{
			name: "unknown workflow halts 404", wantCalls: 1,
			cfg:   sim.Config{Workflows: []string{"other"}},
			class: connectors.Halt, status: 404, code: "WorkflowNotFound",
		},
		{
			name: "disabled workflow halts", wantCalls: 1,
			before: func(s *sim.Server) { s.SetWorkflowEnabled("wf1", false) },
			class:  connectors.Halt, status: 409, code: "WorkflowNotEnabled",
		},
		{
			name: "403 halts", wantCalls: 1,
			faults: `{"script":[{"status":403,"body":"{\"error\":{\"code\":\"AuthorizationFailed\",\"message\":\"The client IP is not allowed.\"}}"}]}`,
			class:  connectors.Halt, status: 403, code: "AuthorizationFailed",
		},
		{
			name: "410 halts", wantCalls: 1,
			faults: `{"script":[{"status":410}]}`,
			class:  connectors.Halt, status: 410,
		},
		{
			name: "413 is permanent", wantCalls: 1,
			cfg:   sim.Config{MaxBody: 16},
			class: connectors.Permanent, status: 413,
		},
		{
			name: "503 with an HTML body is retryable", wantCalls: 1, settings: "max_attempts: 1\n",
			faults: `{"script":[{"status":503,"body":"<html><body>Service Unavailable</body></html>"}]}`,
			class:  connectors.Retryable, status: 503,
		},
		{
			name: "502 HTML every attempt is retryable", wantCalls: 3,
			cfg:   sim.Config{Faults: sim.Faults{FailRate: 1, FailStatuses: []int{502}}},
			class: connectors.Retryable, status: 502,
		},
		{
			name: "504 when the workflow is slower than the timeout", wantCalls: 1, settings: "max_attempts: 1\n",
			cfg:   sim.Config{Timeout: 100 * time.Millisecond, Faults: sim.Faults{Latency: sim.Duration(time.Second)}},
			class: connectors.Retryable, status: 504,
		},
		{
			name: "client timeout is retryable", wantCalls: 2, settings: "max_attempts: 2\ntimeout: 100ms\n",
			cfg:   sim.Config{Faults: sim.Faults{Latency: sim.Duration(2 * time.Second)}},
			class: connectors.Retryable, status: 0, maxWait: 2 * time.Second,
		},
		{
			name: "outage window then recovery within one call", wantCalls: 3, settings: "min_backoff: 200ms\nmax_backoff: 200ms\n",
			faults: `{"script":[{"count":2,"status":500}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base := startSim(t, tt.cfg)
			if tt.faults != "" {
				var f sim.FaultsPatch
				f.Faults = s.Faults()
				if err := jsonUnmarshal(tt.faults, &f); err != nil {
					t.Fatal(err)
				}
				if err := s.SetFaults(f.Faults); err != nil {
					t.Fatal(err)
				}
			}
			if tt.before != nil {
				tt.before(s)
			}
			key := simKey
			if tt.badKey {
				key = "wrong-key"
			}
			callback := sim.SignURL(base, key, "wf1", "manual", tt.standard)
			secrets = append(secrets, sigOf(t, callback))
			doc := fmt.Sprintf("url: %q\nmin_backoff: 1ms\nmax_backoff: 20ms\n%s", callback, tt.settings)
			if strings.Contains(tt.settings, "min_backoff") {
				doc = fmt.Sprintf("url: %q\n%s", callback, tt.settings)
			}
			c, err := open(t, doc, sink.logger())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			start := time.Now()
			err = c.Deliver(context.Background(), notification("n-1"))
			elapsed := time.Since(start)
			if err != nil {
				errTexts = append(errTexts, err.Error())
			}
			if tt.class == 0 {
				if err != nil {
					t.Fatalf("Deliver: %v", err)
				}
			} else {
				var ce *connectors.Error
				if !errors.As(err, &ce) {
					t.Fatalf("want *connectors.Error, got %v", err)
				}
				if ce.Class != tt.class || ce.Status != tt.status || (tt.code != "" && ce.Code != tt.code) {
					t.Fatalf("got class %v status %d code %q (%v), want %v %d %q", ce.Class, ce.Status, ce.Code, err, tt.class, tt.status, tt.code)
				}
				if ce.RetryAfter != tt.retryAft {
					t.Fatalf("RetryAfter %v, want %v", ce.RetryAfter, tt.retryAft)
				}
				if len(ce.Message) > 600 {
					t.Fatalf("message too long: %d", len(ce.Message))
				}
			}
			// A call cut short by the client is recorded when the
			// simulator notices, just after Deliver returns.
			n := len(s.Calls())
			for end := time.Now().Add(2 * time.Second); n < tt.wantCalls && time.Now().Before(end); n = len(s.Calls()) {
				time.Sleep(10 * time.Millisecond)
			}
			if n != tt.wantCalls {
				t.Fatalf("simulator saw %d calls, want %d", n, tt.wantCalls)
			}
			if elapsed < tt.minWait {
				t.Fatalf("delivered after %v, want at least %v", elapsed, tt.minWait)
			}
			if tt.maxWait > 0 && elapsed > tt.maxWait {
				t.Fatalf("took %v, want at most %v", elapsed, tt.maxWait)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}

	t.Run("connection refused is retryable", func(t *testing.T) {
		s, base := startSim(t, sim.Config{})
		callback := sim.SignURL(base, simKey, "wf1", "manual", false)
		secrets = append(secrets, sigOf(t, callback))
		_ = s.Close()
		c, err := open(t, fmt.Sprintf("url: %q\nmin_backoff: 1ms\nmax_backoff: 2ms\n", callback), sink.logger())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Deliver(context.Background(), notification("n-2"))
		if connectors.Classify(err) != connectors.Retryable || err == nil {
			t.Fatalf("err = %v", err)
		}
		errTexts = append(errTexts, err.Error())
		if !strings.Contains(err.Error(), "sig=REDACTED") {
			t.Fatalf("error should show the redacted URL: %v", err)
		}
	})

	t.Run("redirect in front of the trigger halts", func(t *testing.T) {
		_, base := startSim(t, sim.Config{})
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, base+r.URL.RequestURI(), http.StatusMovedPermanently)
		}))
		defer front.Close()
		callback := sim.SignURL(front.URL, simKey, "wf1", "manual", false)
		secrets = append(secrets, sigOf(t, callback))
		c, err := open(t, fmt.Sprintf("url: %q\n", callback), sink.logger())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Deliver(context.Background(), notification("n-3"))
		var ce *connectors.Error
		if !errors.As(err, &ce) || ce.Class != connectors.Halt || ce.Status != http.StatusMovedPermanently {
			t.Fatalf("err = %v", err)
		}
		errTexts = append(errTexts, err.Error())
	})

	t.Run("certificate that does not verify halts", func(t *testing.T) {
		s, err := sim.New(sim.Config{Key: simKey})
		if err != nil {
			t.Fatal(err)
		}
		tlsSrv := httptest.NewUnstartedServer(s)
		tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
		tlsSrv.StartTLS() // a certificate no client trusts
		defer tlsSrv.Close()
		callback := sim.SignURL(tlsSrv.URL, simKey, "wf1", "manual", false)
		secrets = append(secrets, sigOf(t, callback))
		c, err := open(t, fmt.Sprintf("url: %q\nmin_backoff: 1ms\nmax_backoff: 2ms\n", callback), sink.logger())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Deliver(context.Background(), notification("n-4"))
		var ce *connectors.Error
		if !errors.As(err, &ce) || ce.Class != connectors.Halt || ce.Code != "TLSVerification" {
			t.Fatalf("err = %v", err)
		}
		errTexts = append(errTexts, err.Error())
	})

	t.Run("entra", func(t *testing.T) {
		testEntra(t, sink, &secrets, &errTexts)
	})

	// The point of it all: no secret anywhere.
	logs := sink.String()
	if !strings.Contains(logs, "delivery failed") {
		t.Fatalf("expected debug logs to be captured, got:\n%s", logs)
	}
	for _, sec := range secrets {
		if sec == "" {
			t.Fatal("empty secret recorded")
		}
		if strings.Contains(logs, sec) {
			t.Errorf("secret %q… found in logs", sec[:6])
		}
		for _, e := range errTexts {
			if strings.Contains(e, sec) {
				t.Errorf("secret %q… found in error %q", sec[:6], e)
			}
		}
	}
	if strings.Contains(logs, "sig=") && !strings.Contains(logs, "sig=REDACTED") {
		t.Errorf("logs mention sig= unredacted:\n%s", logs)
	}
}

func testEntra(t *testing.T, sink *logSink, secrets, errTexts *[]string) {
	const clientSecret = "entra-client-secret-value-123"
	s, base := startSim(t, sim.Config{Clients: map[string]string{"app-1": clientSecret}})
	*secrets = append(*secrets, clientSecret)
	tokenURL := base + "/tokens/tenant-1/oauth2/v2.0/token"
	doc := fmt.Sprintf(`url: %q
auth: entra
tenant_id: tenant-1
client_id: app-1
client_secret: %q
token_url: %q
min_backoff: 1ms
max_backoff: 2ms
`, sim.UnsignedURL(base, "wf1", "manual", false), clientSecret, tokenURL)
	c, err := open(t, doc, sink.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	steps := []struct {
		name    string
		before  func()
		class   connectors.Class
		tokens  int
		calls   int
		errCode string
	}{
		{name: "token fetched, delivered", tokens: 1, calls: 1},
		{name: "token reused", tokens: 1, calls: 2},
		{name: "revoked token: dropped, new one fetched, delivered", before: s.RevokeTokens, tokens: 2, calls: 4},
		{name: "new token reused", tokens: 2, calls: 5},
		{
			name: "a fresh token refused again halts",
			before: func() {
				_ = s.SetFaults(sim.Faults{Script: []sim.Step{{Count: 2, Status: 401,
					Body: `{"error":{"code":"MisMatchingOAuthClaims","message":"One or more claims either missing or does not match with the open authentication access control policy."}}`}}})
			},
			class: connectors.Halt, tokens: 3, calls: 7,
		},
		{
			name: "client secret rotated and tokens revoked halts at the token endpoint",
			before: func() {
				s.SetClientSecret("app-1", "rotated-secret-value-456")
				s.RevokeTokens()
			},
			class: connectors.Halt, errCode: "invalid_client", tokens: 4, calls: 7,
		},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before()
		}
		err := c.Deliver(ctx, notification("n-entra"))
		if err != nil {
			*errTexts = append(*errTexts, err.Error())
		}
		if st.class == 0 && err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.class != 0 {
			var ce *connectors.Error
			if !errors.As(err, &ce) || ce.Class != st.class || ce.Status != 401 || (st.errCode != "" && ce.Code != st.errCode) {
				t.Fatalf("%s: err = %v", st.name, err)
			}
		}
		if n := len(s.TokenCalls()); n != st.tokens {
			t.Fatalf("%s: %d token calls, want %d", st.name, n, st.tokens)
		}
		if n := len(s.Calls()); n != st.calls {
			t.Fatalf("%s: %d calls, want %d", st.name, n, st.calls)
		}
	}
	calls := s.Calls()
	if calls[0].Auth != "bearer" || calls[0].Header.Get("Authorization") != "Bearer REDACTED" {
		t.Fatalf("first call auth %q header %q", calls[0].Auth, calls[0].Header.Get("Authorization"))
	}

	// A wrong client secret is a configuration error: permanent, with the
	// OAuth2 code and without the secret.
	wrong := strings.Replace(doc, clientSecret, "not-the-secret-xyz", 1)
	*secrets = append(*secrets, "not-the-secret-xyz")
	c2, err := open(t, wrong, sink.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	err = c2.Deliver(ctx, notification("n-entra-2"))
	var ce *connectors.Error
	if !errors.As(err, &ce) || ce.Class != connectors.Halt || ce.Code != "invalid_client" {
		t.Fatalf("wrong secret: %v", err)
	}
	*errTexts = append(*errTexts, err.Error())
}

func TestConfigErrors(t *testing.T) {
	const good = "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SECRETSIGVALUE0123456789"
	const noSig = "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01"
	t.Setenv("LA_TEST_URL", good)
	t.Setenv("LA_TEST_EMPTY", "")
	entra := "auth: entra\ntenant_id: t\nclient_id: c\nclient_secret: s3cr3t-value\n"
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"missing url", "timeout: 5s\n", []string{"url is required"}},
		{"no settings at all", "", []string{"url is required"}},
		{"url and url_env", fmt.Sprintf("url: %q\nurl_env: LA_TEST_URL\n", good), []string{"url and url_env"}},
		{"url and url_file", fmt.Sprintf("url: %q\nurl_file: /nonexistent\n", good), []string{"url and url_file are both set"}},
		{"url_file missing", "url_file: /nonexistent/callback\n", []string{"url_file", "/nonexistent/callback", "no such file"}},
		{"client_secret_file missing", fmt.Sprintf("url: %q\nauth: entra\ntenant_id: t\nclient_id: c\nclient_secret_file: /nonexistent/s\n", noSig), []string{"client_secret_file", "no such file"}},
		{"url_env unset", "url_env: LA_TEST_NOPE\n", []string{"url_env", "LA_TEST_NOPE"}},
		{"url_env empty", "url_env: LA_TEST_EMPTY\n", []string{"url_env", "LA_TEST_EMPTY"}},
		{"sas without sig", fmt.Sprintf("url: %q\n", noSig), []string{"url", "no sig"}},
		{"entra with sig", fmt.Sprintf("url: %q\n%s", good, entra), []string{"url ", "sig", "entra"}},
		{"entra with sig from env", "url_env: LA_TEST_URL\n" + entra, []string{"url_env", "sig"}},
		{"entra nested with sig", fmt.Sprintf("url: %q\nauth: {type: entra, tenant_id: t, client_id: c, client_secret: x}\n", good), []string{"url", "sig", "entra"}},
		{"entra without client_id", fmt.Sprintf("url: %q\nauth: entra\ntenant_id: t\nclient_secret: x\n", noSig), []string{"client_id"}},
		{"entra without secret", fmt.Sprintf("url: %q\nauth: entra\ntenant_id: t\nclient_id: c\n", noSig), []string{"client_secret"}},
		{"entra both secrets", fmt.Sprintf("url: %q\n%sclient_secret_env: X\n", noSig, entra), []string{"client_secret and client_secret_env"}},
		{"entra secret env unset", fmt.Sprintf("url: %q\nauth: entra\ntenant_id: t\nclient_id: c\nclient_secret_env: LA_NOPE\n", noSig), []string{"client_secret_env", "LA_NOPE"}},
		{"entra without tenant", fmt.Sprintf("url: %q\nauth: entra\nclient_id: c\nclient_secret: x\n", noSig), []string{"tenant_id"}},
		{"entra field with sas", fmt.Sprintf("url: %q\nclient_id: c\n", good), []string{"client_id", "auth: entra"}},
		{"conflicting nested and flat", fmt.Sprintf("url: %q\nclient_id: a\nauth: {type: entra, client_id: b}\n", noSig), []string{"client_id and auth.client_id"}},
		{"unknown auth", fmt.Sprintf("url: %q\nauth: basic\n", good), []string{"auth", "basic"}},
		{"unknown nested auth key", fmt.Sprintf("url: %q\nauth: {type: entra, tenant: x}\n", noSig), []string{"tenant"}},
		{"unknown field", fmt.Sprintf("url: %q\nretries: 3\n", good), []string{"retries"}},
		{"ftp url", "url: ftp://h/x?sig=abcdefgh\n", []string{"url", "scheme"}},
		{"reserved header", fmt.Sprintf("url: %q\nheaders: {Authorization: x}\n", good), []string{"headers", "Authorization"}},
		{"reserved ce header", fmt.Sprintf("url: %q\nheaders: {ce-id: x}\n", good), []string{"headers", "Ce-Id"}},
		{"attempts", fmt.Sprintf("url: %q\nmax_attempts: 99\n", good), []string{"max_attempts"}},
		{"negative timeout", fmt.Sprintf("url: %q\ntimeout: -1s\n", good), []string{"timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := open(t, tt.doc, slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, sec := range []string{"SECRETSIGVALUE0123456789", "s3cr3t-value"} {
				if strings.Contains(err.Error(), sec) {
					t.Errorf("error leaks a secret: %v", err)
				}
			}
			if !strings.Contains(err.Error(), `connector "logic_apps"`) {
				t.Errorf("error does not name the connector: %v", err)
			}
		})
	}
}

func TestConfigForms(t *testing.T) {
	const noSig = "https://h.example/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01"
	tests := []struct {
		name     string
		doc      string
		auth     string
		tokenURL string
		scope    string
	}{
		{"sas default", "url: https://h.example/workflows/abc/triggers/manual/paths/invoke?api-version=1&sp=x&sv=1.0&sig=abc\n", AuthSAS, "", ""},
		{"entra flat", "url: " + noSig + "\nauth: entra\ntenant_id: my-tenant\nclient_id: c\nclient_secret: s\n", AuthEntra,
			"https://login.microsoftonline.com/my-tenant/oauth2/v2.0/token", DefaultScope},
		{"entra nested", "url: " + noSig + "\nauth:\n  type: entra\n  tenant_id: t2\n  client_id: c\n  client_secret: s\n  scope: api://x/.default\n", AuthEntra,
			"https://login.microsoftonline.com/t2/oauth2/v2.0/token", "api://x/.default"},
	}
	for _, tt := range tests {
		for _, dec := range []struct {
			name string
			f    func(string) func(any) error
		}{{"strict", strictYAML}, {"node", nodeYAML}} {
			t.Run(tt.name+"/"+dec.name, func(t *testing.T) {
				var s Settings
				if err := dec.f(tt.doc)(&s); err != nil {
					t.Fatal(err)
				}
				r, err := resolve("x", s, slog.New(slog.DiscardHandler), nil)
				if err != nil {
					t.Fatal(err)
				}
				if r.auth != tt.auth || r.tokenURL != tt.tokenURL || r.scope != tt.scope {
					t.Fatalf("auth %q token_url %q scope %q", r.auth, r.tokenURL, r.scope)
				}
			})
		}
	}
}

func TestURLShapeWarnings(t *testing.T) {
	tests := []struct {
		name string
		url  string
		warn bool
	}{
		{"consumption", "https://h.example:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=abc", false},
		{"consumption relative path", "https://h.example/workflows/abc/triggers/manual/paths/invoke/orders/7?api-version=2016-10-01&sp=x&sv=1.0&sig=abc", false},
		{"standard", "https://app.azurewebsites.net:443/api/wf/triggers/manual/invoke?api-version=2022-05-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=abc", false},
		{"unknown shape", "https://h.example/hooks/x?api-version=1&sp=x&sv=1.0&sig=abc", true},
		{"missing sp", "https://h.example/workflows/abc/triggers/manual/paths/invoke?api-version=1&sv=1.0&sig=abc", true},
		{"plain http remote", "http://h.example/workflows/abc/triggers/manual/paths/invoke?api-version=1&sp=x&sv=1.0&sig=abc", true},
		{"plain http loopback", "http://127.0.0.1:7071/workflows/abc/triggers/manual/paths/invoke?api-version=1&sp=x&sv=1.0&sig=abc", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &logSink{}
			if _, err := resolve("x", Settings{URL: tt.url}, sink.logger(), nil); err != nil {
				t.Fatal(err)
			}
			out := sink.String()
			if got := strings.Contains(out, "level=WARN"); got != tt.warn {
				t.Fatalf("warned = %v, want %v:\n%s", got, tt.warn, out)
			}
			if strings.Contains(out, "sig=abc") {
				t.Fatalf("warning leaks sig:\n%s", out)
			}
		})
	}
}

func TestDeliverRejectsInvalidBody(t *testing.T) {
	c, err := New(context.Background(), "x", Settings{URL: "http://127.0.0.1:1/workflows/a/triggers/m/paths/invoke?api-version=1&sp=x&sv=1.0&sig=abc"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := notification("n")
	n.Body = []byte("not json")
	if err := c.Deliver(context.Background(), n); connectors.Classify(err) != connectors.Permanent {
		t.Fatalf("err = %v", err)
	}
	_ = c.Close()
	if err := c.Deliver(context.Background(), notification("n")); connectors.Classify(err) != connectors.Retryable {
		t.Fatalf("after close: %v", err)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// TestControlCharacterInIDIsPermanent: an id that cannot travel in an HTTP
// header (x-ms-client-tracking-id, ce-id) is this record's problem.
func TestControlCharacterInIDIsPermanent(t *testing.T) {
	s, base := startSim(t, sim.Config{})
	c, err := open(t, fmt.Sprintf("url: %q\n", sim.SignURL(base, simKey, "wf1", "manual", false)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := notification("n-1")
	n.ID = "bad\nid"
	if err := c.Deliver(context.Background(), n); connectors.Classify(err) != connectors.Permanent {
		t.Fatalf("err = %v, want permanent", err)
	}
	if len(s.Calls()) != 0 {
		t.Fatal("a call reached the trigger")
	}
}
