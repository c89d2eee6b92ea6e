package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/fanout-dev/fanout/connectors"
)

const testSig = "s3cr3tSigValue_abcdefghijklmnopqrstuvwxyz012345"

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"delta seconds", "120", 120 * time.Second, true},
		{"zero", "0", 0, true},
		{"spaces", "  7 ", 7 * time.Second, true},
		{"empty", "", 0, false},
		{"negative", "-1", 0, false},
		{"fraction", "1.5", 0, false},
		{"garbage", "soon", 0, false},
		{"huge", "99999999999999999999999", time.Duration(1<<63 - 1), true},
		{"imf-fixdate future", "Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second, true},
		{"rfc850 future", "Sunday, 01-Mar-26 12:01:00 GMT", time.Minute, true},
		{"asctime future", "Sun Mar  1 12:00:05 2026", 5 * time.Second, true},
		{"date in the past", "Sun, 01 Mar 2026 11:00:00 GMT", 0, true},
		{"bad date", "Sun, 32 Mar 2026 11:00:00 GMT", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFullJitterBackoffBounds(t *testing.T) {
	tests := []struct {
		name    string
		min     time.Duration
		max     time.Duration
		attempt int
		ceiling time.Duration
	}{
		{"first", 100 * time.Millisecond, 2 * time.Second, 0, 100 * time.Millisecond},
		{"second", 100 * time.Millisecond, 2 * time.Second, 1, 200 * time.Millisecond},
		{"fourth", 100 * time.Millisecond, 2 * time.Second, 3, 800 * time.Millisecond},
		{"capped", 100 * time.Millisecond, 2 * time.Second, 10, 2 * time.Second},
		{"overflow safe", time.Second, time.Minute, 200, time.Minute},
		{"zero min", 0, time.Second, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c := backoffCeiling(tt.min, tt.max, tt.attempt); c != tt.ceiling {
				t.Fatalf("ceiling = %v, want %v", c, tt.ceiling)
			}
			lo, hi := time.Duration(1<<62), time.Duration(-1)
			for range 4000 {
				d := FullJitterBackoff(tt.min, tt.max, tt.attempt, nil)
				if d < 0 || d > tt.ceiling {
					t.Fatalf("backoff %v outside [0, %v]", d, tt.ceiling)
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			// Full jitter spreads over the whole window, down to ~0.
			if tt.ceiling > 0 && (lo > tt.ceiling/10 || hi < tt.ceiling*9/10) {
				t.Fatalf("samples span [%v, %v], want most of [0, %v]", lo, hi, tt.ceiling)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	la := "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=" + testSig
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"logic apps", la, "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=REDACTED&sp=REDACTED&sv=REDACTED&sig=REDACTED"},
		{"no query", "https://example.com/hook", "https://example.com/hook"},
		{"userinfo and fragment", "https://user:pw@example.com/x?token=abc#frag", "https://REDACTED@example.com/x?token=REDACTED"},
		{"repeated and bare keys", "http://h/p?code=1&code=2&flag", "http://h/p?code=REDACTED&code=REDACTED&flag=REDACTED"},
		{"unparsable", "https://h/%zz?sig=" + testSig, "https://h/%zz?REDACTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RedactURL(tt.in)
			if got != tt.want {
				t.Fatalf("RedactURL(string) = %q, want %q", got, tt.want)
			}
			if strings.Contains(got, testSig) {
				t.Fatal("sig leaked")
			}
			if u, err := url.Parse(tt.in); err == nil {
				if got := RedactURL(u); got != tt.want {
					t.Fatalf("RedactURL(*url.URL) = %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestRedactErrorOfURLError(t *testing.T) {
	// A listener that is closed at once: connections are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	target := "http://" + addr + "/workflows/x/triggers/manual/paths/invoke?api-version=2016-10-01&sig=" + testSig

	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	tests := []struct {
		name         string
		ctx          context.Context
		wantDeadline bool
	}{
		{"connection refused", context.Background(), false},
		{"deadline", ctx, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(tt.ctx, http.MethodPost, target, nil)
			_, rawErr := http.DefaultClient.Do(req)
			var ue *url.Error
			if !errors.As(rawErr, &ue) || !strings.Contains(rawErr.Error(), testSig) {
				t.Fatalf("precondition: want a *url.Error quoting the sig, got %v", rawErr)
			}
			red := RedactError(rawErr, "extra-secret")
			if strings.Contains(red.Error(), testSig) {
				t.Fatalf("sig in redacted error: %v", red)
			}
			if !strings.Contains(red.Error(), "sig=REDACTED") {
				t.Fatalf("redacted error lost its shape: %v", red)
			}
			if errors.As(red, &ue) {
				t.Fatal("redacted error still unwraps to *url.Error")
			}
			if got := errors.Is(red, context.DeadlineExceeded); got != tt.wantDeadline {
				t.Fatalf("errors.Is(DeadlineExceeded) = %v, want %v", got, tt.wantDeadline)
			}
		})
	}
}

func TestRedactSecrets(t *testing.T) {
	got := RedactSecrets("token abcd1234 and abcd1234xyz and a%2Fb%3D", "abcd1234", "abcd1234xyz", "a/b=", "")
	want := "token REDACTED and REDACTED and REDACTED"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// script is a test server answering from a list of handlers, one per call.
type script struct {
	mu    sync.Mutex
	steps []http.HandlerFunc
	calls []*http.Request
	seen  []time.Time
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := len(s.calls)
	s.calls = append(s.calls, r.Clone(context.Background()))
	s.seen = append(s.seen, time.Now())
	var h http.HandlerFunc
	if i < len(s.steps) {
		h = s.steps[i]
	} else {
		h = s.steps[len(s.steps)-1]
	}
	s.mu.Unlock()
	h(w, r)
}

func status(code int, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"status":` + strconv.Itoa(code) + `}`))
	}
}

func TestClientDo(t *testing.T) {
	httpDate := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(http.TimeFormat) }
	sleepy := func(w http.ResponseWriter, r *http.Request) {
		// net/http notices a gone client only once the body was read.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}
	tests := []struct {
		name         string
		steps        []http.HandlerFunc
		opts         Options
		ctxTimeout   time.Duration
		wantStatus   int
		wantErr      bool
		wantAttempts int
		wantRA       time.Duration
		wantCapped   bool
		minElapsed   time.Duration
		maxElapsed   time.Duration
	}{
		{name: "success first try", steps: []http.HandlerFunc{status(202)}, wantStatus: 202, wantAttempts: 1},
		{name: "503 then 200", steps: []http.HandlerFunc{status(503), status(200)}, wantStatus: 200, wantAttempts: 2},
		{name: "exhausted returns last response", steps: []http.HandlerFunc{status(503)}, wantStatus: 503, wantAttempts: 3},
		{name: "400 not retried", steps: []http.HandlerFunc{status(400), status(200)}, wantStatus: 400, wantAttempts: 1},
		{
			name:       "retry-after seconds honoured",
			steps:      []http.HandlerFunc{status(429, "Retry-After", "1"), status(200)},
			wantStatus: 200, wantAttempts: 2, minElapsed: 900 * time.Millisecond,
		},
		{
			name: "retry-after http-date honoured",
			steps: []http.HandlerFunc{func(w http.ResponseWriter, r *http.Request) {
				status(503, "Retry-After", httpDate(3*time.Second))(w, r)
			}, status(200)},
			wantStatus: 200, wantAttempts: 2, minElapsed: 1500 * time.Millisecond,
		},
		{
			name:       "retry-after above cap stops in-call",
			steps:      []http.HandlerFunc{status(429, "Retry-After", "3600"), status(200)},
			opts:       Options{MaxRetryAfter: 10 * time.Second},
			wantStatus: 429, wantAttempts: 1, wantRA: 10 * time.Second, wantCapped: true, maxElapsed: time.Second,
		},
		{
			name:       "retry-after date above cap stops in-call",
			steps:      []http.HandlerFunc{status(429, "Retry-After", httpDate(5*time.Minute)), status(200)},
			wantStatus: 429, wantAttempts: 1, wantRA: DefaultMaxRetryAfter, wantCapped: true, maxElapsed: time.Second,
		},
		{
			name:       "retry-after beyond deadline stops in-call",
			steps:      []http.HandlerFunc{status(503, "Retry-After", "5"), status(200)},
			ctxTimeout: 2 * time.Second,
			wantStatus: 503, wantAttempts: 1, wantRA: 5 * time.Second, maxElapsed: time.Second,
		},
		{
			name:       "custom classifier",
			steps:      []http.HandlerFunc{status(409), status(200)},
			opts:       Options{Classifier: func(r *http.Response, err error) bool { return r != nil && r.StatusCode == 409 }},
			wantStatus: 200, wantAttempts: 2,
		},
		{
			name:       "single attempt",
			steps:      []http.HandlerFunc{status(503), status(200)},
			opts:       Options{MaxAttempts: 1},
			wantStatus: 503, wantAttempts: 1,
		},
		{
			name:    "per-attempt timeout retried then fails",
			steps:   []http.HandlerFunc{sleepy},
			opts:    Options{Timeout: 100 * time.Millisecond, MaxAttempts: 2},
			wantErr: true, wantAttempts: 2, maxElapsed: 1500 * time.Millisecond,
		},
		{
			name:       "per-attempt timeout then success",
			steps:      []http.HandlerFunc{sleepy, status(200)},
			opts:       Options{Timeout: 100 * time.Millisecond},
			wantStatus: 200, wantAttempts: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{steps: tt.steps}
			srv := httptest.NewServer(s)
			defer srv.Close()
			opts := tt.opts
			opts.MinBackoff, opts.MaxBackoff = time.Millisecond, 10*time.Millisecond
			c, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			if tt.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxTimeout)
				defer cancel()
			}
			start := time.Now()
			resp, err := c.Do(ctx, &Request{Method: http.MethodPost, URL: srv.URL + "/hook?sig=" + testSig, Body: []byte(`{"a":1}`)})
			elapsed := time.Since(start)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want error, got status %d", resp.StatusCode)
				}
				if strings.Contains(err.Error(), testSig) {
					t.Fatalf("sig in error: %v", err)
				}
				if !strings.Contains(err.Error(), strconv.Itoa(tt.wantAttempts)+" attempt") {
					t.Fatalf("error %q does not report %d attempts", err, tt.wantAttempts)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tt.wantStatus || resp.Attempts != tt.wantAttempts {
					t.Fatalf("status %d attempts %d, want %d and %d", resp.StatusCode, resp.Attempts, tt.wantStatus, tt.wantAttempts)
				}
				if tt.wantRA != 0 && (resp.RetryAfter > tt.wantRA || resp.RetryAfter < tt.wantRA-2*time.Second) {
					t.Fatalf("RetryAfter %v, want ~%v", resp.RetryAfter, tt.wantRA)
				}
				if resp.RetryAfterCapped != tt.wantCapped {
					t.Fatalf("RetryAfterCapped = %v", resp.RetryAfterCapped)
				}
			}
			s.mu.Lock()
			n := len(s.calls)
			s.mu.Unlock()
			if n != tt.wantAttempts {
				t.Fatalf("server saw %d calls, want %d", n, tt.wantAttempts)
			}
			if elapsed < tt.minElapsed {
				t.Fatalf("took %v, want at least %v", elapsed, tt.minElapsed)
			}
			if tt.maxElapsed > 0 && elapsed > tt.maxElapsed {
				t.Fatalf("took %v, want at most %v", elapsed, tt.maxElapsed)
			}
		})
	}
}

func TestClientPrepareRunsPerAttempt(t *testing.T) {
	s := &script{steps: []http.HandlerFunc{status(503), status(502), status(200)}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c, err := New(Options{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	resp, err := c.Do(context.Background(), &Request{
		URL:  srv.URL,
		Body: []byte("payload"),
		Header: http.Header{
			"X-Static": {"1"},
		},
		Prepare: func(r *http.Request, attempt int) error {
			got = append(got, attempt)
			r.Header.Set("X-Attempt", strconv.Itoa(attempt))
			return nil
		},
	})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("resp %v err %v", resp, err)
	}
	if len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("Prepare attempts = %v", got)
	}
	for i, r := range s.calls {
		if r.Header.Get("X-Attempt") != strconv.Itoa(i+1) || r.Header.Get("X-Static") != "1" {
			t.Fatalf("call %d headers %v", i, r.Header)
		}
	}
}

func TestClientPrepareErrorStops(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(503)
	}))
	defer srv.Close()
	c, _ := New(Options{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	_, err := c.Do(context.Background(), &Request{URL: srv.URL + "?sig=" + testSig, Prepare: func(r *http.Request, attempt int) error {
		if attempt == 2 {
			return errors.New("signing failed")
		}
		return nil
	}})
	if err == nil || !strings.Contains(err.Error(), "signing failed") || strings.Contains(err.Error(), testSig) {
		t.Fatalf("err = %v", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("calls = %d", calls.Load())
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	c, _ := New(Options{})
	resp, err := c.Do(context.Background(), &Request{URL: srv.URL})
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("resp %+v err %v", resp, err)
	}
}

func TestLoggerNeverPrintsQueries(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(status(503))
	defer srv.Close()
	c, _ := New(Options{Logger: logger, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if _, err := c.Do(context.Background(), &Request{URL: srv.URL + "/p?sig=" + testSig + "&code=abc"}); err != nil {
		t.Fatal(err)
	}
	// A refused connection makes retryablehttp log the *url.Error too.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := c.Do(context.Background(), &Request{URL: "http://" + addr + "/p?sig=" + testSig})
	if err == nil {
		t.Fatal("want error")
	}
	out := buf.String()
	if !strings.Contains(out, "retrying request") || !strings.Contains(out, "request failed") {
		t.Fatalf("expected retryablehttp lines, got:\n%s", out)
	}
	if strings.Contains(out, testSig) || strings.Contains(out, "?") {
		t.Fatalf("log output has a query:\n%s", out)
	}

	// The adapter on its own, with every kind of value.
	buf.Reset()
	u, _ := url.Parse("https://h/p?sig=" + testSig)
	NewLogger(logger).Error("failed https://h/x?sig="+testSig, "url", u, "err", errors.New("Post \"https://h/p?sig="+testSig+"\": EOF"), "n", 3)
	if out := buf.String(); strings.Contains(out, testSig) || strings.Contains(out, "?") || !strings.Contains(out, "level=WARN") {
		t.Fatalf("adapter output:\n%s", out)
	}
}

func TestParseErrorBody(t *testing.T) {
	long := strings.Repeat("x", 500)
	tests := []struct {
		name, body, code, msg string
	}{
		{"azure", `{"error":{"code":"TriggerInputSchemaMismatch","message":"Required properties are missing"}}`, "TriggerInputSchemaMismatch", "Required properties are missing"},
		{"oauth", `{"error":"invalid_client","error_description":"bad secret"}`, "invalid_client", "bad secret"},
		{"flat", `{"code":"X","message":"y"}`, "X", "y"},
		{"salesforce", `[{"message":"Session expired","errorCode":"INVALID_SESSION_ID"}]`, "INVALID_SESSION_ID", "Session expired"},
		{"html", `<html><body>502 Bad Gateway</body></html>`, "", ""},
		{"url in message", `{"error":{"code":"C","message":"see https://h/p?sig=abc"}}`, "C", "see https://h/p?sig=REDACTED"},
		{"long message", `{"error":{"code":"C","message":"` + long + `"}}`, "C", long[:MaxMessageLen] + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := ParseErrorBody([]byte(tt.body))
			if code != tt.code || msg != tt.msg {
				t.Fatalf("got %q %q, want %q %q", code, msg, tt.code, tt.msg)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"attempts too high", Options{MaxAttempts: 50}, "max_attempts"},
		{"negative attempts", Options{MaxAttempts: -1}, "max_attempts"},
		{"inverted backoff", Options{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "backoff"},
		{"negative timeout", Options{Timeout: -time.Second}, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestFailureClassifiesEndpointErrors(t *testing.T) {
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS() // a certificate no client trusts
	defer tlsSrv.Close()
	c, err := New(Options{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, tlsErr := c.Do(context.Background(), &Request{URL: tlsSrv.URL + "/hook?sig=" + testSig})
	if tlsErr == nil {
		t.Fatal("want a certificate error")
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, refusedErr := c.Do(context.Background(), &Request{URL: "http://" + addr + "/hook"})

	tests := []struct {
		name     string
		err      error
		class    connectors.Class
		code     string
		redacted bool
	}{
		{"untrusted certificate over real TLS", tlsErr, connectors.Halt, "TLSVerification", false},
		{"no such host", &net.DNSError{Err: "no such host", Name: "nope.invalid", IsNotFound: true}, connectors.Halt, "HostNotFound", true},
		{"dns timeout passes", &net.DNSError{Err: "i/o timeout", Name: "h", IsTimeout: true}, connectors.Retryable, "", true},
		{"dns servfail passes", &net.DNSError{Err: "server misbehaving", Name: "h", IsTemporary: true}, connectors.Retryable, "", true},
		{"connection refused", refusedErr, connectors.Retryable, "", false},
		{"deadline", context.DeadlineExceeded, connectors.Retryable, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err
			if tt.redacted {
				err = RedactError(err)
			}
			f := Failure(err)
			if f.Class != tt.class || f.Code != tt.code {
				t.Fatalf("Failure(%v) = %v (class %v code %q), want %v %q", err, f, f.Class, f.Code, tt.class, tt.code)
			}
			if strings.Contains(f.Error(), testSig) {
				t.Fatalf("sig leaked: %v", f)
			}
		})
	}
}

func TestTokenCacheClassifiesRefusals(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		class  connectors.Class
		code   string
	}{
		{"invalid_client halts", 401, `{"error":"invalid_client","error_description":"bad secret"}`, connectors.Halt, "invalid_client"},
		{"invalid_grant halts", 400, `{"error":"invalid_grant","error_description":"expired"}`, connectors.Halt, "invalid_grant"},
		{"unauthorized_client halts", 400, `{"error":"unauthorized_client","error_description":"app not found"}`, connectors.Halt, "unauthorized_client"},
		{"429 retryable", 429, `{"error":"temporarily_unavailable"}`, connectors.Retryable, "temporarily_unavailable"},
		{"503 retryable", 503, ``, connectors.Retryable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			tc := NewTokenCache(func() *clientcredentials.Config {
				return &clientcredentials.Config{ClientID: "c", ClientSecret: "client-secret-1234", TokenURL: srv.URL}
			}, nil)
			_, err := tc.Token(context.Background())
			var ce *connectors.Error
			if !errors.As(err, &ce) || ce.Class != tt.class || ce.Code != tt.code {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(err.Error(), "client-secret-1234") {
				t.Fatalf("secret leaked: %v", err)
			}
		})
	}
}

func TestPathSegment(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain-id_1", "plain-id_1"},
		{"a/b", "a%2Fb"},
		{"..", "%2E%2E"},
		{".", "%2E"},
		{"...", "..."}, // not a dot segment
		{"a..b", "a..b"},
		{"q?x=1#f", "q%3Fx=1%23f"},
		{"100%", "100%25"},
		{"with space", "with%20space"},
		{"ü", "%C3%BC"},
	}
	for _, tt := range tests {
		if got := PathSegment(tt.in); got != tt.want {
			t.Errorf("PathSegment(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got, err := url.PathUnescape(PathSegment(tt.in)); err != nil || got != tt.in {
			t.Errorf("round trip of %q: %q %v", tt.in, got, err)
		}
	}
}
