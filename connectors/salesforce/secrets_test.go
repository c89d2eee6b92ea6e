package salesforce

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
)

// tokenTap records every access token the fake hands out.
type tokenTap struct {
	next http.Handler
	mu   sync.Mutex
	toks []string
}

type teeWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *teeWriter) Write(b []byte) (int, error) {
	w.buf.Write(b)
	return w.ResponseWriter.Write(b)
}

func (t *tokenTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/services/oauth2/token" {
		t.next.ServeHTTP(w, r)
		return
	}
	tw := &teeWriter{ResponseWriter: w}
	t.next.ServeHTTP(tw, r)
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(tw.buf.Bytes(), &body) == nil && body.AccessToken != "" {
		t.mu.Lock()
		t.toks = append(t.toks, body.AccessToken)
		t.mu.Unlock()
	}
}

func (t *tokenTap) tokens() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.toks...)
}

// serveTapped serves sim behind a tokenTap on 127.0.0.1:0.
func serveTapped(t *testing.T, sim *sfsim.Server) (string, *tokenTap) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tap := &tokenTap{next: sim}
	srv := &http.Server{Handler: tap, ReadHeaderTimeout: time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return "http://" + ln.Addr().String(), tap
}

func TestSecretsNeverLeak(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
	t.Setenv("SF_LEAK_KEY", keyPEM)
	t.Setenv("SF_LEAK_SECRET", testSecret)

	sim, err := sfsim.New(sfsim.Config{ClientID: testClientID, ClientSecret: testSecret, JWTPublicKey: &key.PublicKey, SessionTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	base, tap := serveTapped(t, sim)
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var texts []string
	record := func(errs ...error) {
		for _, err := range errs {
			if err != nil {
				texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
			}
		}
	}
	newConn := func(s Settings) *Connector {
		t.Helper()
		c, err := New(t.Context(), "leak", s, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		log.Info("connector settings", "settings", s, "auth", s.Auth)
		texts = append(texts, fmt.Sprintf("%v", s), fmt.Sprintf("%+v", s))
		return c
	}
	e := &env{base: base}
	cc := e.settings(ModeUpsert)
	cc.Auth = AuthSettings{Type: AuthClientCredentials, ClientID: testClientID, ClientSecretEnv: "SF_LEAK_SECRET"}
	literal := cc
	literal.Auth = AuthSettings{Type: AuthClientCredentials, ClientID: testClientID, ClientSecret: testSecret}
	jw := e.settings(ModeUpsert)
	jw.Auth = AuthSettings{Type: AuthJWTBearer, ClientID: testClientID, Username: "u@acme.example", PrivateKeyEnv: "SF_LEAK_KEY"}

	scenarios := []struct {
		name   string
		s      Settings
		faults func(*sfsim.Faults)
		before func()
	}{
		{name: "client credentials ok", s: cc},
		{name: "literal secret", s: literal},
		{name: "jwt ok", s: jw},
		{name: "revoked", s: cc, before: sim.RevokeSessions},
		{name: "401 twice", s: literal, faults: func(f *sfsim.Faults) { f.Rules = []sfsim.Rule{{Code: "INVALID_SESSION_ID", Count: 2}} }},
		{name: "validation", s: cc, faults: func(f *sfsim.Faults) {
			f.Rules = []sfsim.Rule{{Code: "FIELD_CUSTOM_VALIDATION_EXCEPTION", Count: 1, Target: sfsim.TargetRecord}}
		}},
		{name: "wrong host", s: literal, faults: func(f *sfsim.Faults) { f.WrongHost = true }},
		{name: "token outage", s: jw, faults: func(f *sfsim.Faults) { f.OutageUntil = time.Now().Add(time.Hour) }},
		{name: "limits", s: cc, faults: func(f *sfsim.Faults) { f.DailyLimit = 1 }},
		{name: "bad secret", s: func() Settings { s := literal; s.Auth.ClientSecret = testSecret + "-wrong"; return s }()},
	}
	for _, sc := range scenarios {
		sim.Reset()
		if err := sim.SetFaults(sfsim.Faults{UpdateStatus: 204, DailyLimit: -1, EventHourlyLimit: -1, LongRequestCap: -1}); err != nil {
			t.Fatal(err)
		}
		if sc.faults != nil {
			if err := sim.UpdateFaults(sc.faults); err != nil {
				t.Fatal(err)
			}
		}
		c := newConn(sc.s)
		record(c.Deliver(t.Context(), note("Q-1", 1, quote(1))))
		if sc.before != nil {
			sc.before()
		}
		record(c.DeliverBatch(t.Context(), []*notification{note("Q-2", 1, quote(2)), note("Q-3", 1, quote(3))})...)
		record(c.Deliver(t.Context(), note("Q-4", 1, quote(4))))
	}

	toks := tap.tokens()
	if len(toks) < 4 {
		t.Fatalf("only %d tokens issued: the scenarios did not authenticate", len(toks))
	}
	secrets := map[string]string{"client secret": testSecret, "private key PEM": keyPEM}
	for _, line := range strings.Split(keyPEM, "\n") {
		if len(line) > 20 && !strings.HasPrefix(line, "-----") {
			secrets["private key line"] = line
			break
		}
	}
	for i, tok := range toks {
		secrets[fmt.Sprint("access token ", i)] = tok
		// The part after "!" is the secret part of a Salesforce session id.
		secrets[fmt.Sprint("access token tail ", i)] = tok[strings.IndexByte(tok, '!')+1:]
	}
	haystack := logs.String() + "\n" + strings.Join(texts, "\n")
	if len(texts) < 10 || !strings.Contains(logs.String(), "fetched access token") {
		t.Fatalf("the test saw too little: %d error texts, logs:\n%s", len(texts), logs.String())
	}
	for name, secret := range secrets {
		if strings.Contains(haystack, secret) {
			i := strings.Index(haystack, secret)
			t.Errorf("%s leaked into logs or errors: ...%s...", name, haystack[max(0, i-300):i])
		}
	}
	// The errors must still be useful.
	for _, want := range []string{"authentication failure", "request not supported on this domain", "INVALID_SESSION_ID", "REQUEST_LIMIT_EXCEEDED", "FIELD_CUSTOM_VALIDATION_EXCEPTION"} {
		if !strings.Contains(haystack, want) {
			t.Errorf("no error mentions %q", want)
		}
	}
	var _ connectors.Connector = (*Connector)(nil)
}
