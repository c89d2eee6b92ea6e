package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.yaml.in/yaml/v3"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/transport"
)

// testSecret is a Standard Webhooks secret: whsec_ + base64 of 32 bytes.
var testSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

func strictYAML(doc string) func(v any) error {
	return func(v any) error {
		if strings.TrimSpace(doc) == "" {
			return nil
		}
		dec := yaml.NewDecoder(strings.NewReader(doc))
		dec.KnownFields(true)
		return dec.Decode(v)
	}
}

func open(t *testing.T, doc string, log *slog.Logger) (*Connector, error) {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := connectors.Default().Open(context.Background(), connectors.Config{
		Name: "hook", Type: TypeName, Decode: strictYAML(doc), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return c.(*Connector), nil
}

func mustOpen(t *testing.T, doc string, log *slog.Logger) *Connector {
	t.Helper()
	c, err := open(t, doc, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func notification() *connectors.Notification {
	return &connectors.Notification{
		ID: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", Key: "quote-42", Type: "quote_created", Source: "/fanout/quotes",
		Version: 7, Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Priority: "high", TriggerType: "change",
		Body: []byte(`{"quote_id":"q-42","amount":12.5,"lines":[1,2]}`), Attempt: 2,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

// recorder is a receiver that answers from a script and keeps requests.
type recorder struct {
	mu      sync.Mutex
	reqs    []*http.Request
	bodies  [][]byte
	answers []func(w http.ResponseWriter)
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	i := len(rc.reqs)
	rc.reqs = append(rc.reqs, r.Clone(context.Background()))
	rc.bodies = append(rc.bodies, b)
	var a func(w http.ResponseWriter)
	if len(rc.answers) > 0 {
		a = rc.answers[min(i, len(rc.answers)-1)]
	}
	rc.mu.Unlock()
	if a == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	a(w)
}

func answer(status int, body string, hdr ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func serve(t *testing.T, answers ...func(w http.ResponseWriter)) (*recorder, string) {
	rc := &recorder{answers: answers}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv.URL
}

func TestStandardWebhooksSignatureVerifies(t *testing.T) {
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var verified []error
	var stamps []string
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls++
		verified = append(verified, wh.Verify(body, r.Header))
		stamps = append(stamps, r.Header.Get("webhook-timestamp"))
		if calls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // force an in-call retry
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	tests := []struct {
		name string
		doc  string
	}{
		{"raw body", ""},
		{"templated body", "body_template: '{\"event\":{{json .Type}},\"data\":{{.Body}}}'\n"},
		{"secret from env", ""},
	}
	t.Setenv("WH_TEST_SECRET", testSecret)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			calls, verified, stamps = 0, nil, nil
			mu.Unlock()
			signing := fmt.Sprintf("signing: {secret: %q}\n", testSecret)
			if tt.name == "secret from env" {
				signing = "signing: {secret_env: WH_TEST_SECRET}\n"
			}
			c := mustOpen(t, fmt.Sprintf("url: %s\nmin_backoff: 1ms\nmax_backoff: 1ms\n%s%s", srv.URL, signing, tt.doc), nil)
			// Each attempt gets its own second, as if the backoff were long.
			base := time.Now()
			tick := 0
			c.now = func() time.Time { tick++; return base.Add(time.Duration(tick) * time.Second) }
			if err := c.Deliver(context.Background(), notification()); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(verified) != 2 {
				t.Fatalf("%d attempts, want 2", len(verified))
			}
			for i, err := range verified {
				if err != nil {
					t.Fatalf("attempt %d: signature does not verify: %v", i+1, err)
				}
			}
			if stamps[0] == stamps[1] {
				t.Fatalf("retry was not re-signed: both timestamps %s", stamps[0])
			}
		})
	}

	t.Run("wrong secret does not verify", func(t *testing.T) {
		other, _ := standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString([]byte("another-secret-another-secret-xx")))
		rc, url := serve(t)
		c := mustOpen(t, fmt.Sprintf("url: %s\nsigning: {secret: %q}\n", url, testSecret), nil)
		if err := c.Deliver(context.Background(), notification()); err != nil {
			t.Fatal(err)
		}
		if err := other.Verify(rc.bodies[0], rc.reqs[0].Header); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
			t.Fatalf("verify with another secret: %v", err)
		}
		if rc.reqs[0].Header.Get("webhook-id") != notification().ID {
			t.Fatalf("webhook-id %q", rc.reqs[0].Header.Get("webhook-id"))
		}
	})
}

func TestRequestShape(t *testing.T) {
	t.Setenv("WH_API_KEY", "k-123456")
	tests := []struct {
		name     string
		doc      string
		method   string
		ctype    string
		body     string
		headers  map[string]string
		noHeader []string
	}{
		{
			name: "defaults send the raw body", method: "POST", ctype: "application/json",
			body:     `{"quote_id":"q-42","amount":12.5,"lines":[1,2]}`,
			headers:  map[string]string{"Webhook-Id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			noHeader: []string{"Webhook-Signature", "Webhook-Timestamp", "Authorization"},
		},
		{
			name: "template with fields and data",
			doc: `method: put
body_template: '{"id":{{json .ID}},"key":{{json .Key}},"type":{{json .Type}},"v":{{.Version}},"at":{{json .Time}},"prio":{{json .Priority}},"tt":{{json .TriggerType}},"src":{{json .Source}},"quote":{{json .Data.quote_id}},"amount":{{.Data.amount}},"raw":{{.Body}}}'
`,
			method: "PUT", ctype: "application/json",
			body: `{"id":"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W","key":"quote-42","type":"quote_created","v":7,"at":"2026-03-01T12:00:00Z","prio":"high","tt":"change","src":"/fanout/quotes","quote":"q-42","amount":12.5,"raw":{"quote_id":"q-42","amount":12.5,"lines":[1,2]}}`,
		},
		{
			name: "form body with env headers",
			doc: `content_type: application/x-www-form-urlencoded
body_template: 'id={{.ID}}&type={{.Type}}'
headers:
  X-Api-Key: "${WH_API_KEY}"
  X-Static: "plain $NOT_EXPANDED"
`,
			method: "POST", ctype: "application/x-www-form-urlencoded",
			body:    `id=msg_2KWPBgLlAfxdpx2AI54pPJ85f4W&type=quote_created`,
			headers: map[string]string{"X-Api-Key": "k-123456", "X-Static": "plain $NOT_EXPANDED"},
		},
		{
			name: "basic auth", doc: "auth: basic\nusername: fanout\npassword: pw-secret\n", method: "POST", ctype: "application/json",
			body:    `{"quote_id":"q-42","amount":12.5,"lines":[1,2]}`,
			headers: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("fanout:pw-secret"))},
		},
		{
			name: "bearer auth nested", doc: "auth: {type: bearer, token: tok-secret}\n", method: "POST", ctype: "application/json",
			body:    `{"quote_id":"q-42","amount":12.5,"lines":[1,2]}`,
			headers: map[string]string{"Authorization": "Bearer tok-secret"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, url := serve(t)
			c := mustOpen(t, "url: "+url+"/hook\n"+tt.doc, nil)
			if err := c.Deliver(context.Background(), notification()); err != nil {
				t.Fatal(err)
			}
			r := rc.reqs[0]
			if r.Method != tt.method || r.Header.Get("Content-Type") != tt.ctype || string(rc.bodies[0]) != tt.body {
				t.Fatalf("got %s %q body %s", r.Method, r.Header.Get("Content-Type"), rc.bodies[0])
			}
			for k, v := range tt.headers {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			for _, k := range tt.noHeader {
				if r.Header.Get(k) != "" {
					t.Errorf("unexpected header %s", k)
				}
			}
		})
	}
}

func TestTemplateFailuresArePermanent(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		n    func(*connectors.Notification)
		code string
	}{
		{"missing data key", "body_template: '{\"x\":{{json .Data.nope}}}'\n", nil, "BodyTemplate"},
		{"output not json", "body_template: '{\"x\": {{.Key}}}'\n", nil, "InvalidBody"},
		{"raw body not json", "", func(n *connectors.Notification) { n.Body = []byte("plain text") }, "InvalidBody"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, url := serve(t)
			c := mustOpen(t, "url: "+url+"\n"+tt.doc, nil)
			n := notification()
			if tt.n != nil {
				tt.n(n)
			}
			err := c.Deliver(context.Background(), n)
			var ce *connectors.Error
			if !errors.As(err, &ce) || ce.Class != connectors.Permanent || ce.Code != tt.code {
				t.Fatalf("err = %v", err)
			}
			if len(rc.reqs) != 0 {
				t.Fatal("a broken body was sent")
			}
		})
	}
}

func TestStatusClassification(t *testing.T) {
	custom := "status:\n  success: [200-299, 409]\n  retryable: [404, 5xx]\n  permanent: [\"503\"]\n"
	_, err := open(t, "url: http://127.0.0.1:1\n"+custom, nil)
	if err == nil || !strings.Contains(err.Error(), "503 is in both status.retryable and status.permanent") {
		t.Fatalf("overlap not caught: %v", err)
	}
	custom = "status:\n  success: [200-299, 409]\n  retryable: [404, 500-502]\n  permanent: [503]\n"
	tests := []struct {
		name    string
		doc     string
		answer  func(http.ResponseWriter)
		class   connectors.Class // 0 = delivered
		calls   int
		ra      time.Duration
		code    string
		message string
	}{
		{name: "200", answer: answer(200, ""), calls: 1},
		{name: "202", answer: answer(202, ""), calls: 1},
		{name: "400 permanent with body code", answer: answer(400, `{"code":"bad_field","message":"amount is required"}`), class: connectors.Permanent, calls: 1, code: "bad_field", message: "amount is required"},
		{name: "401 halts", answer: answer(401, ""), class: connectors.Halt, calls: 1, message: "refused the credentials"},
		{name: "403 halts", answer: answer(403, ""), class: connectors.Halt, calls: 1, message: "refused the credentials"},
		{name: "404 halts", answer: answer(404, ""), class: connectors.Halt, calls: 1, message: "no such endpoint"},
		{name: "410 gone halts", answer: answer(410, ""), class: connectors.Halt, calls: 1, message: "no longer exists"},
		{name: "302 not followed halts", answer: answer(302, "", "Location", "/x"), class: connectors.Halt, calls: 1, message: "redirect"},
		{name: "413 permanent", answer: answer(413, ""), class: connectors.Permanent, calls: 1},
		{name: "422 permanent", answer: answer(422, ""), class: connectors.Permanent, calls: 1},
		{name: "custom 404 permanent", doc: "status: {permanent: [404]}\n", answer: answer(404, ""), class: connectors.Permanent, calls: 1},
		{name: "425 retryable", answer: answer(425, ""), class: connectors.Retryable, calls: 3},
		{name: "429 retry-after capped", doc: "max_retry_after: 2s\n", answer: answer(429, "", "Retry-After", "30"), class: connectors.Retryable, calls: 1, ra: 2 * time.Second},
		{name: "503 retryable", answer: answer(503, ""), class: connectors.Retryable, calls: 3},
		{name: "custom 409 success", doc: custom, answer: answer(409, ""), calls: 1},
		{name: "custom 404 retryable", doc: custom, answer: answer(404, ""), class: connectors.Retryable, calls: 3},
		{name: "custom 503 permanent", doc: custom, answer: answer(503, ""), class: connectors.Permanent, calls: 1},
		{name: "custom 504 falls to permanent", doc: custom, answer: answer(504, ""), class: connectors.Permanent, calls: 1},
		{name: "custom 201 success", doc: custom, answer: answer(201, ""), calls: 1},
		{name: "only success given keeps default retryable", doc: "status: {success: [\"200\"]}\n", answer: answer(500, ""), class: connectors.Retryable, calls: 3},
		{name: "custom halt list", doc: "status: {halt: [\"422\"]}\n", answer: answer(422, ""), class: connectors.Halt, calls: 1, message: "status settings"},
		{name: "custom halt list replaces the default", doc: "status: {halt: [\"422\"]}\n", answer: answer(404, ""), class: connectors.Permanent, calls: 1},
		{name: "custom permanent 401", doc: "status: {permanent: [401]}\n", answer: answer(401, ""), class: connectors.Permanent, calls: 1},
		{name: "custom retryable 403", doc: "status: {retryable: [403]}\n", answer: answer(403, ""), class: connectors.Retryable, calls: 3},
		{name: "body rule halts a 400", doc: "status: {body: [{match: \"(?i)account suspended\", class: halt}]}\n",
			answer: answer(400, `{"code":"E1","message":"Account SUSPENDED"}`), class: connectors.Halt, calls: 1, code: "E1"},
		{name: "body rule that does not match falls to the status", doc: "status: {body: [{match: \"(?i)account suspended\", class: halt}]}\n",
			answer: answer(400, `{"message":"amount missing"}`), class: connectors.Permanent, calls: 1},
		{name: "body rule retries in-call", doc: "status: {body: [{match: \"rate_limited\", statuses: [\"400\"], class: retryable}]}\n",
			answer: answer(400, `{"code":"rate_limited"}`), class: connectors.Retryable, calls: 3, code: "rate_limited"},
		{name: "body rule limited to other statuses", doc: "status: {body: [{match: \"rate_limited\", statuses: [\"429\"], class: permanent}]}\n",
			answer: answer(400, `{"code":"rate_limited"}`), class: connectors.Permanent, calls: 1, code: "rate_limited"},
		{name: "body rule turns a 200 into a failure", doc: "status: {body: [{match: \"\\\"ok\\\":false\", statuses: [\"200\"], class: permanent}]}\n",
			answer: answer(200, `{"ok":false,"error":"invalid_payload"}`), class: connectors.Permanent, calls: 1, code: "invalid_payload"},
		{name: "body rule leaves a good 200 delivered", doc: "status: {body: [{match: \"\\\"ok\\\":false\", statuses: [\"200\"], class: permanent}]}\n",
			answer: answer(200, `{"ok":true}`), calls: 1},
		{name: "first matching body rule wins", doc: "status: {body: [{match: suspended, class: halt}, {match: \".\", class: retryable}]}\n",
			answer: answer(503, `account suspended`), class: connectors.Halt, calls: 1},
		{name: "only success given makes 204 permanent", doc: "status: {success: [\"200\"]}\n", answer: answer(204, ""), class: connectors.Permanent, calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, url := serve(t, tt.answer)
			c := mustOpen(t, "url: "+url+"\nmin_backoff: 1ms\nmax_backoff: 2ms\n"+tt.doc, nil)
			err := c.Deliver(context.Background(), notification())
			if tt.class == 0 {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var ce *connectors.Error
				if !errors.As(err, &ce) || ce.Class != tt.class || ce.RetryAfter != tt.ra || ce.Code != tt.code {
					t.Fatalf("err = %#v", err)
				}
				if !strings.Contains(ce.Message, tt.message) {
					t.Fatalf("message %q lacks %q", ce.Message, tt.message)
				}
			}
			if len(rc.reqs) != tt.calls {
				t.Fatalf("%d calls, want %d", len(rc.reqs), tt.calls)
			}
		})
	}
}

// tokenServer is an OAuth2 client-credentials endpoint counting issues.
type tokenServer struct {
	mu     sync.Mutex
	issued int
	forms  []string
	basic  []bool
	secret string
}

func (ts *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.forms = append(ts.forms, r.PostForm.Encode())
	ts.basic = append(ts.basic, basic)
	w.Header().Set("Content-Type", "application/json")
	if id != "fanout" || secret != ts.secret {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"client authentication failed"}`))
		return
	}
	ts.issued++
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("access-token-%d", ts.issued), "token_type": "Bearer", "expires_in": 3600})
}

func TestOAuth2(t *testing.T) {
	const secret = "oauth-client-secret-987"
	ts := &tokenServer{secret: secret}
	tsrv := httptest.NewServer(ts)
	defer tsrv.Close()

	var mu sync.Mutex
	var seen []string
	reject := 0
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Header.Get("Authorization"))
		if reject > 0 {
			reject--
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer api.Close()

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	doc := fmt.Sprintf("url: %s\nauth: oauth2\ntoken_url: %s\nclient_id: fanout\nclient_secret: %s\nscopes: [a, b]\nauth_style_in_params: true\nendpoint_params: {audience: api://x}\n", api.URL, tsrv.URL, secret)
	c := mustOpen(t, doc, log)
	ctx := context.Background()

	steps := []struct {
		name   string
		reject int
		class  connectors.Class
		issued int
		auth   string
	}{
		{name: "first call fetches a token", issued: 1, auth: "Bearer access-token-1"},
		{name: "second call reuses it", issued: 1, auth: "Bearer access-token-1"},
		{name: "401 drops the token and resends with a new one", reject: 1, issued: 2, auth: "Bearer access-token-2"},
		{name: "next call reuses the new token", issued: 2, auth: "Bearer access-token-2"},
		{name: "a fresh token refused again halts", reject: 2, class: connectors.Halt, issued: 3, auth: "Bearer access-token-3"},
		{name: "then a new token is fetched", issued: 4, auth: "Bearer access-token-4"},
	}
	var errs []string
	for _, st := range steps {
		mu.Lock()
		reject = st.reject
		mu.Unlock()
		err := c.Deliver(ctx, notification())
		if err != nil {
			errs = append(errs, err.Error())
		}
		if got := connectors.Classify(err); (st.class == 0 && err != nil) || (st.class != 0 && got != st.class) {
			t.Fatalf("%s: err = %v", st.name, err)
		}
		ts.mu.Lock()
		issued := ts.issued
		ts.mu.Unlock()
		mu.Lock()
		last := seen[len(seen)-1]
		mu.Unlock()
		if issued != st.issued || last != st.auth {
			t.Fatalf("%s: issued %d auth %q", st.name, issued, last)
		}
	}
	ts.mu.Lock()
	if ts.basic[0] || !strings.Contains(ts.forms[0], "scope=a+b") || !strings.Contains(ts.forms[0], "audience=api%3A%2F%2Fx") || !strings.Contains(ts.forms[0], "client_secret=") {
		t.Fatalf("token request: basic=%v form=%s", ts.basic[0], ts.forms[0])
	}
	ts.mu.Unlock()

	// A wrong secret (revoked or rotated): halt, with the OAuth2 code,
	// without the secret.
	bad := mustOpen(t, strings.Replace(doc, secret, "wrong-secret-value", 1), log)
	err := bad.Deliver(ctx, notification())
	var ce *connectors.Error
	if !errors.As(err, &ce) || ce.Class != connectors.Halt || ce.Code != "invalid_client" {
		t.Fatalf("wrong secret: %v", err)
	}
	errs = append(errs, err.Error())
	for _, s := range []string{secret, "wrong-secret-value", "access-token-1", "access-token-2"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("log leaks %q", s)
		}
		for _, e := range errs {
			if strings.Contains(e, s) {
				t.Errorf("error leaks %q: %s", s, e)
			}
		}
	}
}

func TestStaticAuth401Halts(t *testing.T) {
	_, url := serve(t, answer(401, `{"message":"bad token tok-secret-xyz"}`))
	c := mustOpen(t, "url: "+url+"\nauth: bearer\ntoken: tok-secret-xyz\n", nil)
	err := c.Deliver(context.Background(), notification())
	if connectors.Classify(err) != connectors.Halt {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "tok-secret-xyz") {
		t.Fatalf("error echoes the token: %v", err)
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	t.Setenv("WH_KEY", "header-secret-abcdef")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, url := serve(t, answer(500, `{"error":{"code":"E","message":"echo header-secret-abcdef and key=qsecret-123456"}}`))
	c := mustOpen(t, fmt.Sprintf("url: %s/p?key=qsecret-123456\nheaders: {X-Key: \"${WH_KEY}\"}\nsigning: {secret: %q}\nmin_backoff: 1ms\nmax_backoff: 1ms\n", url, testSecret), log)
	err := c.Deliver(context.Background(), notification())
	if connectors.Classify(err) != connectors.Retryable {
		t.Fatalf("err = %v", err)
	}
	// Also a transport failure, whose error quotes the URL.
	c2 := mustOpen(t, "url: http://127.0.0.1:1/p?key=qsecret-123456\nmax_attempts: 1\n", log)
	err2 := c2.Deliver(context.Background(), notification())
	if connectors.Classify(err2) != connectors.Retryable {
		t.Fatalf("err2 = %v", err2)
	}
	for _, s := range []string{"header-secret-abcdef", "qsecret-123456", strings.TrimPrefix(testSecret, "whsec_")} {
		for _, text := range []string{err.Error(), err2.Error(), logs.String()} {
			if strings.Contains(text, s) {
				t.Errorf("secret %q leaked into:\n%s", s, text)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv("WH_EMPTY", "")
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"missing url", "method: POST\n", []string{"url is required"}},
		{"url and url_env", "url: http://h\nurl_env: X\n", []string{"url and url_env"}},
		{"url_env unset", "url_env: WH_NOPE\n", []string{"url_env", "WH_NOPE"}},
		{"bad method", "url: http://h\nmethod: GET\n", []string{"method", "GET"}},
		{"bad template", "url: http://h\nbody_template: '{{.ID'\n", []string{"body_template"}},
		{"unknown template field", "url: http://h\nbody_template: '{{.Nope}}'\n", []string{"body_template", "Nope"}},
		{"unknown auth", "url: http://h\nauth: digest\n", []string{"auth", "digest"}},
		{"basic without user", "url: http://h\nauth: basic\npassword: x\n", []string{"username"}},
		{"basic without password", "url: http://h\nauth: basic\nusername: u\n", []string{"password, password_env or password_file"}},
		{"token and token_file", "url: http://h\nauth: bearer\ntoken: a\ntoken_file: /nonexistent\n", []string{"token and token_file are both set"}},
		{"token_file missing", "url: http://h\nauth: bearer\ntoken_file: /nonexistent/tok\n", []string{"token_file", "/nonexistent/tok"}},
		{"signing secret_file missing", "url: http://h\nsigning: {secret_file: /nonexistent/whsec}\n", []string{"signing.secret_file", "/nonexistent/whsec"}},
		{"url_file missing", "url_file: /nonexistent/url\n", []string{"url_file", "/nonexistent/url"}},
		{"basic password env empty", "url: http://h\nauth: basic\nusername: u\npassword_env: WH_EMPTY\n", []string{"password_env", "WH_EMPTY"}},
		{"bearer both", "url: http://h\nauth: bearer\ntoken: a\ntoken_env: B\n", []string{"token and token_env"}},
		{"token with basic", "url: http://h\nauth: basic\nusername: u\npassword: p\ntoken: t\n", []string{"token", "auth: bearer"}},
		{"oauth2 without token_url", "url: http://h\nauth: oauth2\nclient_id: c\nclient_secret: s\n", []string{"token_url"}},
		{"oauth2 without client_id", "url: http://h\nauth: oauth2\ntoken_url: http://t\nclient_secret: s\n", []string{"client_id"}},
		{"oauth2 without secret", "url: http://h\nauth: oauth2\ntoken_url: http://t\nclient_id: c\n", []string{"client_secret"}},
		{"scopes without oauth2", "url: http://h\nscopes: [a]\n", []string{"scopes"}},
		{"nested unknown key", "url: http://h\nauth: {type: bearer, tokn: x}\n", []string{"tokn"}},
		{"authorization header with auth", "url: http://h\nauth: bearer\ntoken: t\nheaders: {Authorization: x}\n", []string{"headers", "Authorization"}},
		{"reserved header", "url: http://h\nheaders: {webhook-id: x}\n", []string{"headers", "Webhook-Id"}},
		{"header env missing", "url: http://h\nheaders: {X-Key: \"${WH_MISSING_VAR}\"}\n", []string{"headers.X-Key", "WH_MISSING_VAR"}},
		{"signing without secret", "url: http://h\nsigning: {}\n", []string{"signing.secret"}},
		{"signing bad secret", "url: http://h\nsigning: {secret: \"whsec_%%%\"}\n", []string{"signing secret", "whsec_"}},
		{"status garbage", "url: http://h\nstatus: {retryable: [abc]}\n", []string{"status.retryable", "abc"}},
		{"status out of range", "url: http://h\nstatus: {success: [200-700]}\n", []string{"status.success"}},
		{"status overlap", "url: http://h\nstatus: {success: [2xx], permanent: [204]}\n", []string{"204", "status.success", "status.permanent"}},
		{"status halt overlap", "url: http://h\nstatus: {halt: [4xx], permanent: [422]}\n", []string{"422", "status.permanent", "status.halt"}},
		{"misspelt status list", "url: http://h\nstatus: {hault: [401]}\n", []string{"hault"}},
		{"misspelt body class", "url: http://h\nstatus: {body: [{match: x, class: hault}]}\n", []string{"status.body[0].class", "hault", "retryable, permanent or halt"}},
		{"body class missing", "url: http://h\nstatus: {body: [{match: x}]}\n", []string{"status.body[0].class is required"}},
		{"body match missing", "url: http://h\nstatus: {body: [{class: halt}]}\n", []string{"status.body[0].match is required"}},
		{"body bad regexp", "url: http://h\nstatus: {body: [{match: \"(\", class: halt}]}\n", []string{"status.body[0].match", "missing closing )"}},
		{"body bad statuses", "url: http://h\nstatus: {body: [{match: x, statuses: [abc], class: halt}]}\n", []string{"status.body[0].statuses", "abc"}},
		{"body unknown key", "url: http://h\nstatus: {body: [{match: x, class: halt, stat: [400]}]}\n", []string{"stat"}},
		{"unknown field", "url: http://h\nretry: 3\n", []string{"retry"}},
		{"attempts", "url: http://h\nmax_attempts: 11\n", []string{"max_attempts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := open(t, tt.doc, nil)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestOAuth2BurstOf401FetchesOneToken: when a token is revoked under many
// concurrent deliveries, they all see 401, but only one new token is
// fetched (compare-and-drop: a caller drops only the token that failed).
func TestOAuth2BurstOf401FetchesOneToken(t *testing.T) {
	const secret = "oauth-client-secret-burst"
	ts := &tokenServer{secret: secret}
	tsrv := httptest.NewServer(ts)
	defer tsrv.Close()

	const n = 16
	var mu sync.Mutex
	revoked := map[string]bool{}
	arrived := 0
	gate := make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		mu.Lock()
		if auth == "Bearer access-token-1" {
			// Hold the first wave until all n calls are in flight with
			// the old token, then refuse them all at once.
			arrived++
			if arrived == n {
				close(gate)
			}
			mu.Unlock()
			<-gate
			mu.Lock()
			revoked[auth] = true
		}
		bad := revoked[auth]
		mu.Unlock()
		if bad {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer api.Close()

	doc := fmt.Sprintf("url: %s\nauth: oauth2\ntoken_url: %s\nclient_id: fanout\nclient_secret: %s\nmax_attempts: 1\n", api.URL, tsrv.URL, secret)
	c := mustOpen(t, doc, nil)
	// Prime the cache with token 1 without a delivery.
	mu.Lock()
	revoked["Bearer access-token-1"] = false
	mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Deliver(context.Background(), notification())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("delivery %d: %v", i, err)
		}
	}
	ts.mu.Lock()
	issued := ts.issued
	ts.mu.Unlock()
	if issued != 2 {
		t.Fatalf("%d tokens fetched for one revocation under %d concurrent calls, want 2 (the first and one replacement)", issued, n)
	}
}

// TestOAuth2WaitHonoursContext: while one delivery waits on a slow token
// endpoint, another whose context ends returns at once instead of queueing
// behind the fetch.
func TestOAuth2WaitHonoursContext(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	tsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"slow-token","token_type":"Bearer","expires_in":3600}`))
	}))
	defer tsrv.Close()
	defer close(release)
	_, api := serve(t, answer(200, ""))
	c := mustOpen(t, fmt.Sprintf("url: %s\nauth: oauth2\ntoken_url: %s\nclient_id: fanout\nclient_secret: s3cret-value\n", api, tsrv.URL), nil)

	first := make(chan error, 1)
	go func() { first <- c.Deliver(context.Background(), notification()) }()
	for calls.Load() == 0 { // the first delivery is fetching
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Deliver(ctx, notification()) }()
	select {
	case err := <-done:
		if err == nil || connectors.Classify(err) != connectors.Retryable {
			t.Fatalf("cancelled delivery: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a delivery whose context ended stayed blocked behind a slow token fetch")
	}
	release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatalf("first delivery: %v", err)
	}
}

// TestControlCharacterInIDIsPermanent: an id that cannot travel in an HTTP
// header is this record's problem: permanent at once, not retried until
// max_elapsed.
func TestControlCharacterInIDIsPermanent(t *testing.T) {
	rc, url := serve(t, answer(200, ""))
	c := mustOpen(t, "url: "+url+"\nmin_backoff: 1ms\nmax_backoff: 2ms\n", nil)
	n := notification()
	n.ID = "id-with\r\nInjected: header"
	err := c.Deliver(context.Background(), n)
	if connectors.Classify(err) != connectors.Permanent {
		t.Fatalf("err = %v, want permanent", err)
	}
	if len(rc.reqs) != 0 {
		t.Fatalf("%d requests reached the receiver", len(rc.reqs))
	}
}

// TestMaxInFlightSizesIdlePool checks that the worker's concurrency reaches
// the HTTP client, whose idle pool transport.TestIdlePoolSizedToConcurrency
// covers.
func TestMaxInFlightSizesIdlePool(t *testing.T) {
	for _, tt := range []struct{ in, want int }{{0, transport.DefaultMaxConcurrency}, {1024, 1024}} {
		c, err := connectors.Default().Open(context.Background(), connectors.Config{
			Name: "hook", Type: TypeName, Decode: strictYAML("url: http://127.0.0.1:1/hook\n"), MaxInFlight: tt.in,
		})
		if err != nil {
			t.Fatal(err)
		}
		got := c.(*Connector).client.Options().MaxConcurrency
		_ = c.Close()
		if got != tt.want {
			t.Fatalf("max_in_flight %d: client concurrency %d, want %d", tt.in, got, tt.want)
		}
	}
}
