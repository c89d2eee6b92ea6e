package logicapps

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const testKey = "test-key"

func startSim(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Key == "" {
		cfg.Key = testKey
	}
	s, err := New(cfg)
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

type result struct {
	status int
	header http.Header
	body   string
	code   string
}

func post(t *testing.T, target string, body string, hdr map[string]string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(b, &e)
	return result{resp.StatusCode, resp.Header, string(b), e.Error.Code}
}

func TestSignatureIsStable(t *testing.T) {
	// Pin the canonical string and its signature: other tools build URLs
	// from the documented recipe.
	c := CanonicalString("/workflows/wf1/triggers/manual/paths/invoke", "2016-10-01", "/triggers/manual/run", "1.0")
	if c != "/workflows/wf1/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0" {
		t.Fatalf("canonical = %q", c)
	}
	sig := Signature("k", "/workflows/wf1/triggers/manual/paths/invoke", "2016-10-01", "/triggers/manual/run", "1.0")
	if len(sig) != 43 || strings.ContainsAny(sig, "+/=") {
		t.Fatalf("sig %q is not unpadded base64url of 32 bytes", sig)
	}
	u, err := url.Parse(SignURL("http://h:1/", "k", "wf1", "manual", false))
	if err != nil || u.Query().Get("sig") != sig || u.Query().Get("sp") != "/triggers/manual/run" {
		t.Fatalf("SignURL = %v (%v)", u, err)
	}
}

func TestTriggerAuthAndRouting(t *testing.T) {
	_, base := startSim(t, Config{Workflows: []string{"wf1", "orders"}, BearerToken: "static-token"})
	good := SignURL(base, testKey, "wf1", "manual", false)
	tamper := func(f func(q url.Values) url.Values, path string) string {
		u, _ := url.Parse(good)
		u.RawQuery = f(u.Query()).Encode()
		if path != "" {
			u.Path = path
		}
		return u.String()
	}
	tests := []struct {
		name     string
		url      string
		hdr      map[string]string
		status   int
		code     string
		wantEcho bool
	}{
		{"consumption ok", good, map[string]string{"x-ms-client-tracking-id": "n-1"}, 202, "", true},
		{"standard ok", SignURL(base, testKey, "orders", "manual", true), nil, 202, "", false},
		{"wrong key", SignURL(base, "other", "wf1", "manual", false), nil, 401, "DirectApiInvalidAuthorizationSignature", false},
		{"sig for another trigger path", tamper(func(q url.Values) url.Values { return q }, "/workflows/wf1/triggers/other/paths/invoke"), nil, 401, "DirectApiInvalidAuthorizationSignature", false},
		{"tampered sp", tamper(func(q url.Values) url.Values { q.Set("sp", "/triggers/manual/read"); return q }, ""), nil, 401, "DirectApiInvalidAuthorizationSignature", false},
		{"missing sv", tamper(func(q url.Values) url.Values { q.Del("sv"); return q }, ""), nil, 401, "DirectApiInvalidAuthorizationSignature", false},
		{"missing sig", tamper(func(q url.Values) url.Values { q.Del("sig"); return q }, ""), nil, 401, "DirectApiAuthorizationRequired", false},
		{"missing api-version", tamper(func(q url.Values) url.Values { q.Del("api-version"); return q }, ""), nil, 400, "MissingApiVersionParameter", false},
		{"unknown workflow", SignURL(base, testKey, "nope", "manual", false), nil, 404, "WorkflowNotFound", false},
		{"unknown route", base + "/workflows/wf1/run?api-version=1", nil, 404, "NotFound", false},
		{"sig and bearer", good, map[string]string{"Authorization": "Bearer static-token"}, 400, "DirectApiRequestHasMoreThanOneAuthorization", false},
		{"bearer ok", UnsignedURL(base, "wf1", "manual", false), map[string]string{"Authorization": "Bearer static-token"}, 202, "", false},
		{"bearer wrong", UnsignedURL(base, "wf1", "manual", false), map[string]string{"Authorization": "Bearer nope"}, 401, "MisMatchingOAuthClaims", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, tt.url, `{"a":1}`, tt.hdr)
			if r.status != tt.status || r.code != tt.code {
				t.Fatalf("got %d %q (%s), want %d %q", r.status, r.code, r.body, tt.status, tt.code)
			}
			if r.status == 202 && r.body != "" {
				t.Fatalf("202 with body %q", r.body)
			}
			if r.header.Get("x-ms-workflow-run-id") == "" || r.header.Get("x-ms-correlation-id") == "" || r.header.Get("x-ms-client-tracking-id") == "" {
				t.Fatalf("missing x-ms headers: %v", r.header)
			}
			if tt.wantEcho && r.header.Get("x-ms-client-tracking-id") != "n-1" {
				t.Fatalf("tracking id not echoed: %q", r.header.Get("x-ms-client-tracking-id"))
			}
		})
	}
}

func TestRunIDsAreNewPerCall(t *testing.T) {
	s, base := startSim(t, Config{})
	u := SignURL(base, testKey, "anything", "manual", false)
	a := post(t, u, `{"same":true}`, map[string]string{"x-ms-client-tracking-id": "dup"})
	b := post(t, u, `{"same":true}`, map[string]string{"x-ms-client-tracking-id": "dup"})
	if a.header.Get("x-ms-workflow-run-id") == b.header.Get("x-ms-workflow-run-id") {
		t.Fatal("identical calls got the same run id")
	}
	calls := s.Calls()
	if len(calls) != 2 || calls[0].TrackingID != "dup" || calls[1].Body != `{"same":true}` || calls[0].Status != 202 || calls[0].Auth != "sas" {
		t.Fatalf("calls = %+v", calls)
	}
	s.Reset()
	if len(s.Calls()) != 0 {
		t.Fatal("Reset kept calls")
	}
}

func TestBehaviours(t *testing.T) {
	schema, err := ParseSchema([]byte(`{"type":"object","required":["id","type"],"additionalProperties":false,
		"properties":{"id":{"type":"string"},"type":{"type":"string"},"data":{"type":"object","additionalProperties":false,"properties":{"n":{"type":"integer"}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cfg        Config
		body       string
		status     int
		code       string
		retryAfter string
		bodyHas    string
	}{
		{name: "response mode", cfg: Config{Faults: Faults{Mode: ModeResponse, Status: 200, Body: `{"ok":true}`}}, body: `{}`, status: 200, bodyHas: `{"ok":true}`},
		{name: "response mode 500", cfg: Config{Faults: Faults{Mode: ModeResponse, Status: 500}}, body: `{}`, status: 500},
		{name: "delay past timeout", cfg: Config{Timeout: 50 * time.Millisecond, Faults: Faults{Latency: Duration(time.Second)}}, body: `{}`, status: 504, code: "GatewayTimeout"},
		{name: "latency within timeout", cfg: Config{Faults: Faults{Latency: Duration(20 * time.Millisecond), Jitter: Duration(10 * time.Millisecond)}}, body: `{}`, status: 202},
		{name: "schema ok", cfg: Config{Schema: schema}, body: `{"id":"1","type":"t","data":{"n":2}}`, status: 202},
		{name: "schema missing", cfg: Config{Schema: schema}, body: `{"id":"1"}`, status: 400, code: "TriggerInputSchemaMismatch", bodyHas: "Required properties are missing from object: type."},
		{name: "schema additional", cfg: Config{Schema: schema}, body: `{"id":"1","type":"t","extra":1}`, status: 400, code: "TriggerInputSchemaMismatch", bodyHas: "Property 'extra' has not been defined"},
		{name: "schema nested type", cfg: Config{Schema: schema}, body: `{"id":"1","type":"t","data":{"n":"x"}}`, status: 400, code: "TriggerInputSchemaMismatch", bodyHas: "Expected Integer but got String"},
		{name: "invalid json", cfg: Config{}, body: `{"a":`, status: 400, code: "InvalidRequestContent"},
		{name: "too large", cfg: Config{MaxBody: 10}, body: `{"a":"0123456789"}`, status: 413, code: "RequestEntityTooLarge"},
		{name: "throttle without retry-after", cfg: Config{Faults: Faults{ThrottleRate: 1}}, body: `{}`, status: 429, code: "WorkflowRequestsThrottled"},
		{name: "throttle with retry-after", cfg: Config{Faults: Faults{ThrottleRate: 1, RetryAfter: true, RetryAfterSeconds: 7}}, body: `{}`, status: 429, code: "WorkflowRequestsThrottled", retryAfter: "7"},
		{name: "502 html", cfg: Config{Faults: Faults{FailRate: 1, FailStatuses: []int{502}}}, body: `{}`, status: 502, bodyHas: "<html"},
		{name: "503 with retry-after", cfg: Config{Faults: Faults{FailRate: 1, FailStatuses: []int{503}, RetryAfter: true}}, body: `{}`, status: 503, code: "ServiceUnavailable", retryAfter: "1"},
		{name: "script step", cfg: Config{Faults: Faults{Script: []Step{{Status: 429, RetryAfter: "Wed, 21 Oct 2015 07:28:00 GMT"}}}}, body: `{}`, status: 429, code: "WorkflowRequestsThrottled", retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, base := startSim(t, tt.cfg)
			r := post(t, SignURL(base, testKey, "wf1", "manual", false), tt.body, nil)
			if r.status != tt.status || r.code != tt.code {
				t.Fatalf("got %d %q (%s), want %d %q", r.status, r.code, r.body, tt.status, tt.code)
			}
			if got := r.header.Get("Retry-After"); got != tt.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if !strings.Contains(r.body, tt.bodyHas) {
				t.Fatalf("body %q lacks %q", r.body, tt.bodyHas)
			}
		})
	}
}

func TestBudgetAndConcurrency(t *testing.T) {
	t.Run("budget", func(t *testing.T) {
		s, base := startSim(t, Config{Budget: 2, BudgetWindow: 2 * time.Second, Faults: Faults{RetryAfter: true}})
		u := SignURL(base, testKey, "wf1", "manual", false)
		for i := range 2 {
			if r := post(t, u, `{}`, nil); r.status != 202 {
				t.Fatalf("call %d: %d", i, r.status)
			}
		}
		r := post(t, u, `{}`, nil)
		if r.status != 429 || r.code != "WorkflowRequestsThrottled" || !strings.Contains(r.body, "over time window of '00:00:02'") {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		if ra := r.header.Get("Retry-After"); ra != "2" && ra != "1" {
			t.Fatalf("Retry-After %q", ra)
		}
		// Other workflows have their own budget.
		if r := post(t, SignURL(base, testKey, "wf2", "manual", false), `{}`, nil); r.status != 202 {
			t.Fatalf("wf2: %d", r.status)
		}
		if err := s.SetFaults(Faults{RetryAfter: false}); err != nil {
			t.Fatal(err)
		}
		if r := post(t, u, `{}`, nil); r.status != 429 || r.header.Get("Retry-After") != "" {
			t.Fatalf("without retry-after: %d %v", r.status, r.header)
		}
	})
	t.Run("concurrency", func(t *testing.T) {
		_, base := startSim(t, Config{Concurrency: 1, Faults: Faults{Latency: Duration(300 * time.Millisecond)}})
		u := SignURL(base, testKey, "wf1", "manual", false)
		var wg sync.WaitGroup
		statuses := make([]int, 3)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 50 * time.Millisecond)
				statuses[i] = post(t, u, `{}`, nil).status
			}()
		}
		wg.Wait()
		if statuses[0] != 202 || statuses[1] != 429 || statuses[2] != 429 {
			t.Fatalf("statuses %v", statuses)
		}
	})
}

func TestScriptOverHTTP(t *testing.T) {
	s, base := startSim(t, Config{})
	u := SignURL(base, testKey, "wf1", "manual", false)
	setFaults := func(body string) int {
		resp, err := http.Post(base+"/_sim/faults", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := setFaults(`{"script":[{"count":2,"status":503},{"status":0},{"status":500}]}`); code != 200 {
		t.Fatalf("POST faults: %d", code)
	}
	want := []int{503, 503, 202, 500, 202}
	for i, w := range want {
		if r := post(t, u, `{}`, nil); r.status != w {
			t.Fatalf("call %d: %d, want %d", i, r.status, w)
		}
	}
	// An outage window.
	setFaults(`{"script":[{"for":"300ms","status":502}]}`)
	if r := post(t, u, `{}`, nil); r.status != 502 || !strings.Contains(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("in window: %d %v", r.status, r.header)
	}
	time.Sleep(350 * time.Millisecond)
	if r := post(t, u, `{}`, nil); r.status != 202 {
		t.Fatalf("after window: %d", r.status)
	}
	if code := setFaults(`{"fail_rat":1}`); code != 400 {
		t.Fatalf("typo accepted: %d", code)
	}
	if code := setFaults(`{"status":302}`); code != 400 {
		t.Fatalf("3xx accepted: %d", code)
	}
	// Calls over HTTP.
	resp, err := http.Get(base + "/_sim/calls")
	if err != nil {
		t.Fatal(err)
	}
	var calls []Call
	if err := json.NewDecoder(resp.Body).Decode(&calls); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(calls) != 7 || calls[0].Status != 503 || calls[0].Reason != "script" || calls[2].RunID == "" {
		t.Fatalf("calls = %+v", calls)
	}
	if len(s.Calls()) != 7 {
		t.Fatal("Go and HTTP views differ")
	}
}

func TestTokenEndpoint(t *testing.T) {
	s, base := startSim(t, Config{Clients: map[string]string{"app": "secret"}})
	tokenURL := base + "/tokens/tenant-1/oauth2/v2.0/token"
	fetch := func(form url.Values) (int, map[string]any) {
		resp, err := http.PostForm(tokenURL, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	tests := []struct {
		name   string
		form   url.Values
		status int
		errStr string
	}{
		{"ok", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"secret"}, "scope": {"https://logic.azure.com/.default"}}, 200, ""},
		{"bad secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"x"}, "scope": {"https://logic.azure.com/.default"}}, 401, "invalid_client"},
		{"unknown client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"zzz"}, "client_secret": {"x"}, "scope": {"https://logic.azure.com/.default"}}, 400, "unauthorized_client"},
		{"no scope", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"secret"}}, 400, "invalid_request"},
		{"wrong grant", url.Values{"grant_type": {"password"}, "client_id": {"app"}, "scope": {"x/.default"}}, 400, "unsupported_grant_type"},
	}
	var token string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, m := fetch(tt.form)
			if status != tt.status || (tt.errStr != "" && m["error"] != tt.errStr) {
				t.Fatalf("got %d %v", status, m)
			}
			if status == 200 {
				token, _ = m["access_token"].(string)
				if token == "" || m["token_type"] != "Bearer" {
					t.Fatalf("token response %v", m)
				}
			}
		})
	}
	u := UnsignedURL(base, "wf1", "manual", false)
	if r := post(t, u, `{}`, map[string]string{"Authorization": "Bearer " + token}); r.status != 202 {
		t.Fatalf("with issued token: %d %s", r.status, r.body)
	}
	s.RevokeTokens()
	if r := post(t, u, `{}`, map[string]string{"Authorization": "Bearer " + token}); r.status != 401 {
		t.Fatalf("with revoked token: %d", r.status)
	}
	if calls := s.Calls(); calls[0].Header.Get("Authorization") != "Bearer REDACTED" {
		t.Fatalf("recorded Authorization %q", calls[0].Header.Get("Authorization"))
	}
	if n := len(s.TokenCalls()); n != len(tests) {
		t.Fatalf("token calls %d", n)
	}
}

func TestCloseCutsLatency(t *testing.T) {
	s, base := startSim(t, Config{Faults: Faults{Latency: Duration(time.Minute)}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest(http.MethodPost, SignURL(base, testKey, "wf1", "manual", false), strings.NewReader("{}"))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("Close waited for the simulated latency")
	}
	<-done
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- Command(ctx, []string{"-addr", "127.0.0.1:0", "-key", "k2", "-mode", "response", "-status", "201", "-retry-after=on", "-budget", "100"}, &out)
	}()
	var callback string
	deadline := time.Now().Add(5 * time.Second)
	for callback == "" && time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "callback URL (workflow wf1, trigger manual): "); ok {
				callback = rest
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if callback == "" {
		t.Fatalf("no callback URL printed:\n%s", out.String())
	}
	if r := post(t, callback, `{}`, nil); r.status != 201 {
		t.Fatalf("status %d", r.status)
	}
	if !strings.Contains(out.String(), "retry-after on") {
		t.Fatalf("output:\n%s", out.String())
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Command did not return after cancel")
	}
}

func TestCommandRejectsBadFlags(t *testing.T) {
	tests := [][]string{
		{"-mode", "sync"},
		{"-status", "302", "-mode", "response"},
		{"-retry-after=maybe"},
		{"-fail-rate", "2"},
		{"stray"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out bytes.Buffer
			if err := Command(context.Background(), append([]string{"-addr", "127.0.0.1:0"}, args...), &out); err == nil {
				t.Fatal("want error")
			}
		})
	}
}

func TestOperatorActions(t *testing.T) {
	s, base := startSim(t, Config{Clients: map[string]string{"app": "secret-1"}})
	oldURL := s.CallbackURL("wf1", "manual", false)
	if r := post(t, oldURL, `{}`, nil); r.status != 202 {
		t.Fatalf("before: %d %s", r.status, r.body)
	}

	s.RotateKey("key-2")
	if r := post(t, oldURL, `{}`, nil); r.status != 401 || r.code != "DirectApiInvalidAuthorizationSignature" {
		t.Fatalf("old URL after rotation: %d %s", r.status, r.body)
	}
	newURL := s.CallbackURL("wf1", "manual", false)
	if r := post(t, newURL, `{}`, nil); r.status != 202 {
		t.Fatalf("new URL after rotation: %d %s", r.status, r.body)
	}

	s.SetWorkflowEnabled("WF1", false)
	if r := post(t, newURL, `{}`, nil); r.status != 409 || r.code != "WorkflowNotEnabled" {
		t.Fatalf("disabled: %d %s", r.status, r.body)
	}
	if r := post(t, s.CallbackURL("wf2", "manual", false), `{}`, nil); r.status != 202 {
		t.Fatalf("another workflow: %d %s", r.status, r.body)
	}
	s.SetWorkflowEnabled("wf1", true)
	if r := post(t, newURL, `{}`, nil); r.status != 202 {
		t.Fatalf("re-enabled: %d %s", r.status, r.body)
	}

	tokenURL := base + "/tokens/t1/oauth2/v2.0/token"
	form := func(secret string) string {
		return "grant_type=client_credentials&client_id=app&scope=api%3A%2F%2Fx%2F.default&client_secret=" + secret
	}
	tokenStatus := func(secret string) int {
		resp, err := http.Post(tokenURL, "application/x-www-form-urlencoded", strings.NewReader(form(secret)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := tokenStatus("secret-1"); st != 200 {
		t.Fatalf("token before: %d", st)
	}

	// The control endpoint does the same for a simulator in another process.
	r := post(t, base+"/_sim/admin", `{"rotate_key":"key-3","disable":["wf1"],"client_secrets":{"app":"secret-2"}}`, nil)
	if r.status != http.StatusNoContent {
		t.Fatalf("admin: %d %s", r.status, r.body)
	}
	if st := tokenStatus("secret-1"); st != 401 {
		t.Fatalf("old secret: %d, want 401", st)
	}
	if st := tokenStatus("secret-2"); st != 200 {
		t.Fatalf("new secret: %d", st)
	}
	if r := post(t, s.CallbackURL("wf1", "manual", false), `{}`, nil); r.status != 409 {
		t.Fatalf("disabled over control: %d %s", r.status, r.body)
	}
	if r := post(t, base+"/_sim/admin", `{"enable":["wf1"]}`, nil); r.status != http.StatusNoContent {
		t.Fatalf("enable: %d", r.status)
	}
	if r := post(t, newURL, `{}`, nil); r.status != 401 {
		t.Fatalf("key-2 URL after key-3: %d", r.status)
	}
	if r := post(t, s.CallbackURL("wf1", "manual", false), `{}`, nil); r.status != 202 {
		t.Fatalf("key-3 URL: %d %s", r.status, r.body)
	}
	if r := post(t, base+"/_sim/admin", `{"rotate":"typo"}`, nil); r.status != http.StatusBadRequest {
		t.Fatalf("unknown field accepted: %d", r.status)
	}
}

func TestCapacityDelay(t *testing.T) {
	base := 100 * time.Millisecond
	tests := []struct {
		name     string
		f        Faults
		inFlight int
		want     time.Duration
	}{
		{"off", Faults{}, 1000, base},
		{"at capacity", Faults{Capacity: 10}, 10, base},
		{"twice the capacity: four times slower", Faults{Capacity: 10}, 20, 4 * base},
		{"three times: nine times slower", Faults{Capacity: 10}, 30, 9 * base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.capacityDelay(base, tt.inFlight); got != tt.want {
				t.Fatalf("delay %v, want %v", got, tt.want)
			}
		})
	}
	throttle := []struct {
		f        Faults
		inFlight int
		want     bool
	}{
		{Faults{}, 1 << 20, false},
		{Faults{Capacity: 10}, 39, false},
		{Faults{Capacity: 10}, 40, true}, // the default: 4x capacity
		{Faults{Capacity: 10, CapacityThrottle: 1.5}, 15, true},
		{Faults{Capacity: 10, CapacityThrottle: 1.5}, 14, false},
	}
	for _, tt := range throttle {
		if got := tt.f.capacityThrottled(tt.inFlight); got != tt.want {
			t.Errorf("%+v with %d in flight: throttled %v, want %v", tt.f, tt.inFlight, got, tt.want)
		}
	}
	if err := (&Faults{CapacityThrottle: 0.5}).validate(); err == nil {
		t.Error("capacity_throttle 0.5 accepted")
	}
}

// TestCapacityThrottles: past Capacity × CapacityThrottle calls in flight
// the trigger answers 429 WorkflowRequestsThrottled with a Retry-After.
// Two calls are sent together until one arrives while the other is in
// flight (each takes 3 s, so the first pair normally does).
func TestCapacityThrottles(t *testing.T) {
	s, base := startSim(t, Config{Faults: Faults{Latency: Duration(3 * time.Second), Capacity: 1, CapacityThrottle: 1,
		RetryAfter: true, RetryAfterSeconds: 3}})
	u := SignURL(base, testKey, "wf1", "manual", false)
	var throttled *result
	for range 5 {
		var wg sync.WaitGroup
		res := make([]result, 2)
		for i := range res {
			wg.Add(1)
			go func() { defer wg.Done(); res[i] = post(t, u, `{}`, nil) }()
		}
		wg.Wait()
		for i := range res {
			if res[i].status == 429 {
				throttled = &res[i]
				if other := res[1-i].status; other != 202 {
					t.Fatalf("the call in flight got %d", other)
				}
			}
		}
		if throttled != nil {
			break
		}
	}
	if throttled == nil {
		t.Fatal("no call throttled in 5 pairs of concurrent calls")
	}
	if throttled.code != "WorkflowRequestsThrottled" || throttled.header.Get("Retry-After") != "3" {
		t.Fatalf("got %q Retry-After %q, want WorkflowRequestsThrottled with Retry-After 3", throttled.code, throttled.header.Get("Retry-After"))
	}
	var n int
	for _, c := range s.Calls() {
		if c.Reason == "capacity" {
			n++
		}
	}
	if n == 0 {
		t.Fatal("no call recorded with reason capacity")
	}
}
