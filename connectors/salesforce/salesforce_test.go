package salesforce

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
	"go.yaml.in/yaml/v3"
)

const (
	testClientID = "3MVG9-test-consumer-key"
	// testSecret must never show up in logs or errors.
	testSecret = "s3cr3t-CLIENT-secret-7f3a9c"
)

// syncBuffer is a log sink safe for concurrent handlers.
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

// env is one simulator plus the connector settings that reach it.
type env struct {
	sim  *sfsim.Server
	base string
	logs *syncBuffer
}

func startSim(t *testing.T, cfg sfsim.Config) *env {
	t.Helper()
	if cfg.ClientID == "" {
		cfg.ClientID, cfg.ClientSecret = testClientID, testSecret
	}
	s, err := sfsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Start(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &env{sim: s, base: base, logs: &syncBuffer{}}
}

func (e *env) settings(mode string) Settings {
	s := Settings{
		LoginURL: e.base,
		Auth:     AuthSettings{Type: AuthClientCredentials, ClientID: testClientID, ClientSecret: testSecret},
		Mode:     mode,
		Fields: map[string]string{
			"Amount__c":     "amount",
			"Email__c":      "profile_snapshot.email",
			"Event_Type__c": "$.event_type",
		},
		RetryWaitMin: time.Millisecond,
		RetryWaitMax: 5 * time.Millisecond,
	}
	if mode == ModeUpsert {
		s.Object, s.ExternalIDField = "Quote__c", "Quote_Ext_Id__c"
	} else {
		s.Event = "Quote_Change__e"
		s.Fields["Quote_Id__c"] = "@key"
	}
	return s
}

func (e *env) connector(t *testing.T, s Settings) *Connector {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(t.Context(), "sf-test", s, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// note builds a notification for aggregate key with version v.
func note(key string, v int64, payload map[string]any) *notification {
	body, _ := json.Marshal(map[string]any{
		"id":         fmt.Sprintf("%s-v%d", key, v),
		"event_type": "quote_updated",
		"version":    v,
		"payload":    payload,
	})
	return &notification{ID: fmt.Sprintf("%s-v%d", key, v), Key: key, Type: "quote_updated", Version: v, Time: time.Now(), Body: body, Attempt: 1}
}

func quote(amount int) map[string]any {
	return map[string]any{"amount": amount, "currency": "INR", "profile_snapshot": map[string]any{"email": "jane@example.com"}}
}

func asError(t *testing.T, err error) *connectors.Error {
	t.Helper()
	var ce *connectors.Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *connectors.Error, got %T %v", err, err)
	}
	return ce
}

func tokenCalls(s *sfsim.Server) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Path == "/services/oauth2/token" {
			n++
		}
	}
	return n
}

func TestUpsertCreateThenUpdate(t *testing.T) {
	for _, status := range []int{200, 204} {
		t.Run(fmt.Sprint("update ", status), func(t *testing.T) {
			e := startSim(t, sfsim.Config{Faults: sfsim.Faults{UpdateStatus: status}})
			c := e.connector(t, e.settings(ModeUpsert))
			ctx := t.Context()
			if err := c.Deliver(ctx, note("Q-1", 1, quote(100))); err != nil {
				t.Fatalf("create: %v", err)
			}
			if err := c.Deliver(ctx, note("Q-1", 2, quote(250))); err != nil {
				t.Fatalf("update: %v", err)
			}
			recs := e.sim.Records("Quote__c")
			if len(recs) != 1 {
				t.Fatalf("records %+v", recs)
			}
			f := recs[0].Fields
			want := map[string]any{
				"Quote_Ext_Id__c": "Q-1", "Amount__c": json.Number("250"), "Email__c": "jane@example.com",
				"Event_Type__c": "quote_updated", "Fanout_Notification_Id__c": "Q-1-v2", "Fanout_Version__c": json.Number("2"),
			}
			for k, v := range want {
				if f[k] != v {
					t.Errorf("%s = %v (%T), want %v", k, f[k], f[k], v)
				}
			}
			if st := e.sim.Stats("Quote__c"); st.Created != 1 || st.Updated != 1 {
				t.Fatalf("stats %+v", st)
			}
			if n := tokenCalls(e.sim); n != 1 {
				t.Fatalf("token fetched %d times, want 1 (cached)", n)
			}
		})
	}
}

func TestJWTBearer(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	pem8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	pem1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	keyFile := filepath.Join(t.TempDir(), "sf.key")
	if err := os.WriteFile(keyFile, pem8, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SF_TEST_JWT_KEY", string(pem1))

	e := startSim(t, sfsim.Config{ClientID: testClientID, JWTPublicKey: &key.PublicKey, JWTUsername: "integration@acme.example"})
	tests := []struct {
		name      string
		auth      AuthSettings
		wantClass connectors.Class
		wantDesc  string
	}{
		{name: "PKCS#8 file", auth: AuthSettings{Type: AuthJWTBearer, ClientID: testClientID, Username: "integration@acme.example", PrivateKeyFile: keyFile}},
		{name: "PKCS#1 env", auth: AuthSettings{Type: AuthJWTBearer, ClientID: testClientID, Username: "integration@acme.example", PrivateKeyEnv: "SF_TEST_JWT_KEY"}},
		{name: "unknown user", auth: AuthSettings{Type: AuthJWTBearer, ClientID: testClientID, Username: "eve@acme.example", PrivateKeyFile: keyFile}, wantClass: connectors.Halt, wantDesc: "user hasn't approved this consumer"},
		{name: "sandbox audience refused", auth: AuthSettings{Type: AuthJWTBearer, ClientID: testClientID, Username: "integration@acme.example", PrivateKeyFile: keyFile, Audience: "https://acme.example.com"}, wantClass: connectors.Halt, wantDesc: "audience is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := e.settings(ModeUpsert)
			s.Auth = tt.auth
			c := e.connector(t, s)
			err := c.Deliver(t.Context(), note("Q-"+tt.name, 1, quote(1)))
			if tt.wantClass == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			ce := asError(t, err)
			if ce.Class != tt.wantClass || ce.Code != "invalid_grant" || !strings.Contains(ce.Message, tt.wantDesc) {
				t.Fatalf("got %v (class %v code %q)", ce, ce.Class, ce.Code)
			}
		})
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	tests := []struct {
		name      string
		faults    sfsim.Faults
		secret    string
		wantClass connectors.Class
		wantMsg   string
	}{
		{name: "bad secret halts", secret: "wrong", wantClass: connectors.Halt, wantMsg: "invalid_grant: authentication failure"},
		{name: "wrong host halts", secret: testSecret, faults: sfsim.Faults{WrongHost: true}, wantClass: connectors.Halt, wantMsg: "request not supported on this domain"},
		{name: "outage", secret: testSecret, faults: sfsim.Faults{OutageUntil: time.Now().Add(time.Hour)}, wantClass: connectors.Retryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startSim(t, sfsim.Config{Faults: tt.faults})
			s := e.settings(ModeUpsert)
			s.Auth.ClientSecret = Secret(tt.secret)
			err := e.connector(t, s).Deliver(t.Context(), note("Q-1", 1, quote(1)))
			ce := asError(t, err)
			if ce.Class != tt.wantClass || !strings.Contains(ce.Error(), tt.wantMsg) {
				t.Fatalf("got %v, want class %v with %q", ce, tt.wantClass, tt.wantMsg)
			}
		})
	}
	t.Run("client secret replaced and sessions revoked halts", func(t *testing.T) {
		e := startSim(t, sfsim.Config{})
		c := e.connector(t, e.settings(ModeUpsert))
		if err := c.Deliver(t.Context(), note("Q-1", 1, quote(1))); err != nil {
			t.Fatal(err)
		}
		e.sim.SetClientSecret("replaced-consumer-secret")
		if err := c.Deliver(t.Context(), note("Q-2", 1, quote(2))); err != nil {
			t.Fatalf("the session outlives a secret change: %v", err)
		}
		e.sim.RevokeSessions()
		ce := asError(t, c.Deliver(t.Context(), note("Q-3", 1, quote(3))))
		if ce.Class != connectors.Halt || ce.Code != "invalid_grant" {
			t.Fatalf("got %v (class %v)", ce, ce.Class)
		}
		if strings.Contains(ce.Error(), testSecret) {
			t.Fatalf("error leaks the secret: %v", ce)
		}
	})
	t.Run("network", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		e := &env{base: "http://" + addr, logs: &syncBuffer{}}
		err = e.connector(t, e.settings(ModeUpsert)).Deliver(t.Context(), note("Q-1", 1, quote(1)))
		if ce := asError(t, err); ce.Class != connectors.Retryable || ce.Status != 0 {
			t.Fatalf("got %v", ce)
		}
	})
}

func TestSessionExpiryReauthenticates(t *testing.T) {
	t.Run("ttl", func(t *testing.T) {
		var mu sync.Mutex
		var offset time.Duration
		now := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
		e := startSim(t, sfsim.Config{SessionTTL: time.Hour, Now: now})
		c := e.connector(t, e.settings(ModeUpsert))
		for i := range 3 {
			if i == 2 { // the session expires mid-run
				mu.Lock()
				offset += time.Hour
				mu.Unlock()
			}
			if err := c.Deliver(t.Context(), note(fmt.Sprint("Q-", i), 1, quote(i))); err != nil {
				t.Fatalf("delivery %d: %v", i, err)
			}
		}
		if n := tokenCalls(e.sim); n != 2 {
			t.Fatalf("token fetched %d times, want 2", n)
		}
		if n := len(e.sim.Records("Quote__c")); n != 3 {
			t.Fatalf("%d records, want 3", n)
		}
	})
	t.Run("revoked during a batch", func(t *testing.T) {
		e := startSim(t, sfsim.Config{})
		c := e.connector(t, e.settings(ModeUpsert))
		if err := c.Deliver(t.Context(), note("Q-0", 1, quote(0))); err != nil {
			t.Fatal(err)
		}
		e.sim.RevokeSessions()
		ns := []*notification{note("Q-1", 1, quote(1)), note("Q-2", 1, quote(2))}
		for i, err := range c.DeliverBatch(t.Context(), ns) {
			if err != nil {
				t.Fatalf("notification %d: %v", i, err)
			}
		}
		if n := tokenCalls(e.sim); n != 2 {
			t.Fatalf("token fetched %d times, want 2", n)
		}
	})
	t.Run("401 twice halts", func(t *testing.T) {
		e := startSim(t, sfsim.Config{Faults: sfsim.Faults{Rules: []sfsim.Rule{{Code: "INVALID_SESSION_ID", Count: 2}}}})
		c := e.connector(t, e.settings(ModeUpsert))
		ce := asError(t, c.Deliver(t.Context(), note("Q-1", 1, quote(1))))
		if ce.Class != connectors.Halt || ce.Status != 401 || ce.Code != "INVALID_SESSION_ID" {
			t.Fatalf("got %v", ce)
		}
		if err := c.Deliver(t.Context(), note("Q-1", 1, quote(1))); err != nil {
			t.Fatalf("next attempt: %v", err)
		}
		if n := tokenCalls(e.sim); n != 3 {
			t.Fatalf("token fetched %d times, want 3", n)
		}
	})
}

func TestBatchOneInvalidRecord(t *testing.T) {
	e := startSim(t, sfsim.Config{Faults: sfsim.Faults{RejectField: "Amount__c", RejectValue: "-1"}})
	c := e.connector(t, e.settings(ModeUpsert))
	ns := make([]*notification, 200)
	for i := range ns {
		amount := i
		if i == 137 {
			amount = -1
		}
		ns[i] = note(fmt.Sprintf("Q-%03d", i), 1, quote(amount))
	}
	errs := c.DeliverBatch(t.Context(), ns)
	if len(errs) != len(ns) {
		t.Fatalf("%d results for %d notifications", len(errs), len(ns))
	}
	for i, err := range errs {
		if i == 137 {
			ce := asError(t, err)
			if ce.Class != connectors.Permanent || ce.Code != "FIELD_CUSTOM_VALIDATION_EXCEPTION" {
				t.Fatalf("bad record: %v (code %q)", ce, ce.Code)
			}
			continue
		}
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
	}
	if n := e.sim.APICalls(); n != 1 {
		t.Fatalf("%d API calls, want 1", n)
	}
	if n := len(e.sim.Records("Quote__c")); n != 199 {
		t.Fatalf("%d records, want 199", n)
	}
}

func TestBatch250TwoCalls(t *testing.T) {
	e := startSim(t, sfsim.Config{})
	c := e.connector(t, e.settings(ModeUpsert))
	if c.MaxBatch() != 200 {
		t.Fatalf("MaxBatch %d", c.MaxBatch())
	}
	ns := make([]*notification, 250)
	for i := range ns {
		ns[i] = note(fmt.Sprintf("Q-%03d", i), 1, quote(i))
	}
	for i, err := range c.DeliverBatch(t.Context(), ns) {
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
	}
	if n := e.sim.APICalls(); n != 2 {
		t.Fatalf("%d API calls, want 2", n)
	}
	if n := len(e.sim.Records("Quote__c")); n != 250 {
		t.Fatalf("%d records, want 250", n)
	}
	var seen []string
	for _, call := range e.sim.Calls() {
		seen = append(seen, call.NotificationIDs...)
	}
	if len(seen) != 250 || seen[0] != "Q-000-v1" {
		t.Fatalf("notification ids seen: %d", len(seen))
	}
}

func TestBatchSameKeyTwice(t *testing.T) {
	e := startSim(t, sfsim.Config{})
	c := e.connector(t, e.settings(ModeUpsert))
	ns := []*notification{note("A", 1, quote(1)), note("B", 1, quote(1)), note("A", 2, quote(2)), note("C", 1, quote(1)), note("A", 3, quote(3))}
	for i, err := range c.DeliverBatch(t.Context(), ns) {
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
	}
	for _, r := range e.sim.Records("Quote__c") {
		if r.Fields["Quote_Ext_Id__c"] == "A" && r.Fields["Fanout_Version__c"] != json.Number("3") {
			t.Fatalf("A ends at version %v, want 3", r.Fields["Fanout_Version__c"])
		}
	}
	if n := e.sim.APICalls(); n != 3 {
		t.Fatalf("%d API calls, want 3 (one per version of A)", n)
	}
}

func TestClassification(t *testing.T) {
	tests := []struct {
		name       string
		cfg        sfsim.Config
		seed       bool
		batch      bool
		wantClass  connectors.Class
		wantStatus int
		wantCode   string
		wantWait   time.Duration
		wantCalls  int64
	}{
		{name: "daily limit", cfg: sfsim.Config{Faults: sfsim.Faults{DailyLimit: -1, Rules: []sfsim.Rule{{Code: "REQUEST_LIMIT_EXCEEDED", Count: 1}}}},
			wantClass: connectors.Retryable, wantStatus: 403, wantCode: "REQUEST_LIMIT_EXCEEDED", wantWait: DefaultDailyWait, wantCalls: 1},
		{name: "concurrency limit", cfg: sfsim.Config{Faults: sfsim.Faults{Rules: []sfsim.Rule{{Code: "REQUEST_LIMIT_EXCEEDED", Message: "ConcurrentPerOrgLongTxn Limit exceeded.", Count: 1}}}},
			wantClass: connectors.Retryable, wantStatus: 403, wantCode: "REQUEST_LIMIT_EXCEEDED", wantWait: DefaultConcurrentWait, wantCalls: 1},
		{name: "lock retried in call", cfg: sfsim.Config{Faults: sfsim.Faults{Rules: []sfsim.Rule{{Code: "UNABLE_TO_LOCK_ROW", Count: 2}}}}, wantCalls: 3},
		{name: "lock persists", cfg: sfsim.Config{Faults: sfsim.Faults{Rules: []sfsim.Rule{{Code: "UNABLE_TO_LOCK_ROW", Count: 5}}}},
			wantClass: connectors.Retryable, wantStatus: 400, wantCode: "UNABLE_TO_LOCK_ROW", wantCalls: 3},
		{name: "lock per record", batch: true, cfg: sfsim.Config{Faults: sfsim.Faults{Rules: []sfsim.Rule{{Code: "UNABLE_TO_LOCK_ROW", Count: 1, Target: sfsim.TargetRecord}}}},
			wantClass: connectors.Retryable, wantStatus: 200, wantCode: "UNABLE_TO_LOCK_ROW", wantCalls: 1},
		{name: "503 persists", cfg: sfsim.Config{Faults: sfsim.Faults{FailRate: 1}}, wantClass: connectors.Retryable, wantStatus: 503, wantCode: "SERVER_UNAVAILABLE", wantCalls: 3},
		{name: "several matches", seed: true, wantClass: connectors.Permanent, wantStatus: 300, wantCalls: 1},
		{name: "duplicate value", cfg: sfsim.Config{Faults: sfsim.Faults{Rules: []sfsim.Rule{{Code: "DUPLICATE_VALUE", Count: 1}}}}, wantClass: connectors.Permanent, wantStatus: 400, wantCode: "DUPLICATE_VALUE", wantCalls: 1},
		{name: "required field", cfg: sfsim.Config{Faults: sfsim.Faults{Rules: []sfsim.Rule{{Code: "REQUIRED_FIELD_MISSING", Count: 1}}}}, wantClass: connectors.Permanent, wantStatus: 400, wantCode: "REQUIRED_FIELD_MISSING", wantCalls: 1},
		{name: "malformed id", cfg: sfsim.Config{Faults: sfsim.Faults{Rules: []sfsim.Rule{{Code: "MALFORMED_ID", Count: 1}}}}, wantClass: connectors.Permanent, wantStatus: 400, wantCode: "MALFORMED_ID", wantCalls: 1},
		{name: "unknown external id field halts", cfg: sfsim.Config{ExternalIDFields: []string{"Other__c"}}, wantClass: connectors.Halt, wantStatus: 404, wantCode: "NOT_FOUND", wantCalls: 1},
		{name: "field validation stays permanent", cfg: sfsim.Config{Faults: sfsim.Faults{Rules: []sfsim.Rule{{Code: "FIELD_CUSTOM_VALIDATION_EXCEPTION", Count: 1}}}}, wantClass: connectors.Permanent, wantStatus: 400, wantCode: "FIELD_CUSTOM_VALIDATION_EXCEPTION", wantCalls: 1},
		{name: "record not found in a batch stays permanent", batch: true, cfg: sfsim.Config{Faults: sfsim.Faults{Rules: []sfsim.Rule{{Code: "INVALID_FIELD", Count: 1, Target: sfsim.TargetRecord}}}},
			wantClass: connectors.Permanent, wantStatus: 200, wantCode: "INVALID_FIELD", wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startSim(t, tt.cfg)
			if tt.seed {
				e.sim.Seed("Quote__c", map[string]any{"Quote_Ext_Id__c": "Q-1"})
				e.sim.Seed("Quote__c", map[string]any{"Quote_Ext_Id__c": "Q-1"})
			}
			c := e.connector(t, e.settings(ModeUpsert))
			var err error
			if tt.batch {
				errs := c.DeliverBatch(t.Context(), []*notification{note("Q-1", 1, quote(1)), note("Q-2", 1, quote(2))})
				if errs[1] != nil {
					t.Fatalf("second record: %v", errs[1])
				}
				err = errs[0]
			} else {
				err = c.Deliver(t.Context(), note("Q-1", 1, quote(1)))
			}
			if n := e.sim.APICalls(); n != tt.wantCalls {
				t.Errorf("%d API calls, want %d", n, tt.wantCalls)
			}
			if tt.wantClass == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			ce := asError(t, err)
			if ce.Class != tt.wantClass || ce.Status != tt.wantStatus || ce.Code != tt.wantCode || ce.RetryAfter != tt.wantWait {
				t.Fatalf("got class %v status %d code %q wait %s (%v); want %v %d %q %s",
					ce.Class, ce.Status, ce.Code, ce.RetryAfter, ce, tt.wantClass, tt.wantStatus, tt.wantCode, tt.wantWait)
			}
		})
	}
}

func TestDailyLimitStopsBatch(t *testing.T) {
	e := startSim(t, sfsim.Config{Faults: sfsim.Faults{DailyLimit: 1}})
	s := e.settings(ModeUpsert)
	s.Batch.MaxRecords = 2
	c := e.connector(t, s)
	ns := make([]*notification, 6)
	for i := range ns {
		ns[i] = note(fmt.Sprint("Q-", i), 1, quote(i))
	}
	errs := c.DeliverBatch(t.Context(), ns)
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("first chunk: %v %v", errs[0], errs[1])
	}
	for i := 2; i < 6; i++ {
		ce := asError(t, errs[i])
		if ce.Class != connectors.Retryable || ce.Code != "REQUEST_LIMIT_EXCEEDED" || ce.RetryAfter != DefaultDailyWait {
			t.Fatalf("notification %d: %v wait %s", i, ce, ce.RetryAfter)
		}
	}
	// The third chunk was not sent: the limit answer applies to it too.
	if n := len(e.sim.Calls()); n != 3 {
		t.Fatalf("%d calls (token + 2), want 3", n)
	}
	used, limit, ok := c.Usage()
	if !ok || used != 1 || limit != 1 {
		t.Fatalf("Usage() = %d, %d, %v", used, limit, ok)
	}
}

func TestLongRequestCap(t *testing.T) {
	e := startSim(t, sfsim.Config{LongRequestThreshold: 50 * time.Millisecond, Faults: sfsim.Faults{LongRequestCap: 1}})
	c := e.connector(t, e.settings(ModeUpsert))
	if err := c.Deliver(t.Context(), note("Q-0", 1, quote(0))); err != nil { // token
		t.Fatal(err)
	}
	if err := e.sim.UpdateFaults(func(f *sfsim.Faults) { f.SlowRate, f.SlowLatency = 1, sfsim.Duration(time.Second) }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var slowErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		slowErr = c.Deliver(t.Context(), note("Q-slow", 1, quote(1)))
	}()
	for deadline := time.Now().Add(5 * time.Second); e.sim.InFlight() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow delivery never reached the fake")
		}
	}
	time.Sleep(100 * time.Millisecond) // past the 50 ms long-request threshold
	err := c.Deliver(t.Context(), note("Q-1", 1, quote(1)))
	wg.Wait()
	if slowErr != nil {
		t.Fatalf("slow delivery: %v", slowErr)
	}
	ce := asError(t, err)
	if ce.Class != connectors.Retryable || ce.Code != "REQUEST_LIMIT_EXCEEDED" || ce.RetryAfter != DefaultConcurrentWait {
		t.Fatalf("got %v wait %s", ce, ce.RetryAfter)
	}
}

func TestUsageFromLimitInfo(t *testing.T) {
	e := startSim(t, sfsim.Config{Faults: sfsim.Faults{DailyLimit: 15000}})
	c := e.connector(t, e.settings(ModeUpsert))
	if _, _, ok := c.Usage(); ok {
		t.Fatal("Usage reported before any response")
	}
	for i := range 3 {
		if err := c.Deliver(t.Context(), note(fmt.Sprint("Q-", i), 1, quote(i))); err != nil {
			t.Fatal(err)
		}
	}
	used, limit, ok := c.Usage()
	if !ok || used != 3 || limit != 15000 {
		t.Fatalf("Usage() = %d, %d, %v; want 3, 15000, true", used, limit, ok)
	}
	var _ connectors.UsageReporter = c
}

func TestPlatformEvents(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		e := startSim(t, sfsim.Config{})
		c := e.connector(t, e.settings(ModePlatformEvent))
		if c.MaxBatch() != 1 {
			t.Fatalf("MaxBatch %d, want 1 without platform_event_collections", c.MaxBatch())
		}
		if err := c.Deliver(t.Context(), note("Q-1", 4, quote(10))); err != nil {
			t.Fatalf("publish: %v", err)
		}
		ev := e.sim.Records("Quote_Change__e")
		if len(ev) != 1 || ev[0].Fields["Quote_Id__c"] != "Q-1" || ev[0].Fields["Fanout_Notification_Id__c"] != "Q-1-v4" || ev[0].Fields["Fanout_Version__c"] != json.Number("4") {
			t.Fatalf("events %+v", ev)
		}
		calls := e.sim.Calls()
		if last := calls[len(calls)-1]; last.Method != "POST" || last.Path != "/services/data/v66.0/sobjects/Quote_Change__e/" || last.Status != 201 {
			t.Fatalf("call %+v", last)
		}
		errs := c.DeliverBatch(t.Context(), []*notification{note("Q-2", 1, quote(1)), note("Q-3", 1, quote(1))})
		if errs[0] != nil || errs[1] != nil || e.sim.APICalls() != 3 {
			t.Fatalf("one call per event: %v, %d calls", errs, e.sim.APICalls())
		}
	})
	t.Run("collections", func(t *testing.T) {
		e := startSim(t, sfsim.Config{})
		s := e.settings(ModePlatformEvent)
		s.Batch.PlatformEventCollections = true
		c := e.connector(t, s)
		ns := make([]*notification, 5)
		for i := range ns {
			ns[i] = note(fmt.Sprint("Q-", i), 1, quote(i))
		}
		for i, err := range c.DeliverBatch(t.Context(), ns) {
			if err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
		}
		if e.sim.APICalls() != 1 || len(e.sim.Records("Quote_Change__e")) != 5 {
			t.Fatalf("%d calls, %d events", e.sim.APICalls(), len(e.sim.Records("Quote_Change__e")))
		}
	})
	t.Run("hourly limit", func(t *testing.T) {
		e := startSim(t, sfsim.Config{Faults: sfsim.Faults{EventHourlyLimit: 1}})
		c := e.connector(t, e.settings(ModePlatformEvent))
		if err := c.Deliver(t.Context(), note("Q-1", 1, quote(1))); err != nil {
			t.Fatal(err)
		}
		ce := asError(t, c.Deliver(t.Context(), note("Q-2", 1, quote(1))))
		if ce.Class != connectors.Retryable || ce.Code != "LIMIT_EXCEEDED" || ce.RetryAfter != DefaultEventHourlyWait {
			t.Fatalf("got %v wait %s", ce, ce.RetryAfter)
		}
	})
}

func TestInstanceURLIsAPIBase(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	sim, err := sfsim.New(sfsim.Config{ClientID: testClientID, ClientSecret: testSecret, InstanceURL: fmt.Sprintf("http://127.0.0.1:%d", port)})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })

	e := &env{sim: sim, base: fmt.Sprintf("http://localhost:%d", port), logs: &syncBuffer{}}
	c := e.connector(t, e.settings(ModeUpsert))
	if err := c.Deliver(t.Context(), note("Q-1", 1, quote(1))); err != nil {
		t.Fatal(err)
	}
	calls := sim.Calls()
	if len(calls) != 2 || !strings.HasPrefix(calls[0].Host, "localhost:") || !strings.HasPrefix(calls[1].Host, "127.0.0.1:") {
		t.Fatalf("token call should go to login_url and API call to instance_url: %+v", calls)
	}
}

func TestFactoryFromYAML(t *testing.T) {
	t.Setenv("SF_TEST_SECRET", testSecret)
	e := startSim(t, sfsim.Config{})
	doc := fmt.Sprintf(`
login_url: %s
auth:
  type: client_credentials
  client_id: %s
  client_secret_env: SF_TEST_SECRET
mode: upsert
object: Quote__c
external_id_field: Quote_Ext_Id__c
fields:
  Amount__c: amount
batch:
  max_records: 50
timeout: 5s
max_attempts: 2
retry_after:
  daily: 1h
`, e.base, testClientID)
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
		t.Fatal(err)
	}
	decode := func(v any) error {
		var buf bytes.Buffer
		if err := yaml.NewEncoder(&buf).Encode(&node); err != nil {
			return err
		}
		d := yaml.NewDecoder(&buf)
		d.KnownFields(true)
		return d.Decode(v)
	}
	reg := connectors.Default()
	if !reg.Has(TypeName) {
		t.Fatal("salesforce is not registered")
	}
	conn, err := reg.Open(t.Context(), connectors.Config{Name: "sf", Type: TypeName, Decode: decode, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bc, ok := conn.(connectors.BatchConnector)
	if !ok || bc.MaxBatch() != 50 {
		t.Fatalf("want a BatchConnector with MaxBatch 50, got %T", conn)
	}
	if c := conn.(*Connector); c.cfg.Timeout != 5*time.Second || c.cfg.MaxAttempts != 2 || c.cfg.RetryAfter.Daily != time.Hour || c.cfg.RetryAfter.Concurrent != DefaultConcurrentWait {
		t.Fatalf("settings %+v", c.cfg.Settings)
	}
	if err := conn.Deliver(t.Context(), note("Q-1", 1, quote(7))); err != nil {
		t.Fatal(err)
	}
	_, err = reg.Open(t.Context(), connectors.Config{Name: "sf", Type: TypeName, Decode: func(v any) error {
		d := yaml.NewDecoder(strings.NewReader("login_url: x\nbogus: 1\n"))
		d.KnownFields(true)
		return d.Decode(v)
	}})
	if err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown field: %v", err)
	}
}

// TestIDsStayOneSegment: an aggregate id is data, never path syntax. Ids
// full of '/', '%', '?', '#', dot segments, spaces and Unicode reach the
// simulator over real HTTP as one percent-encoded segment, and the record
// lands under exactly that external id.
func TestIDsStayOneSegment(t *testing.T) {
	ids := []string{
		"a/b", "../../sobjects/Account/x", "..", ".", "%2F", "100%", "q?x=1", "frag#1",
		"with space", "ünïcødé-引号", "a/../b", "./a", "%2e%2e", "+plus&amp;=",
	}
	e := startSim(t, sfsim.Config{})
	c := e.connector(t, e.settings(ModeUpsert))
	for i, id := range ids {
		t.Run(id, func(t *testing.T) {
			if err := c.Deliver(t.Context(), note(id, int64(i+1), quote(i))); err != nil {
				t.Fatalf("deliver %q: %v", id, err)
			}
			calls := e.sim.Calls()
			last := calls[len(calls)-1]
			prefix := "/services/data/" + c.cfg.APIVersion + "/sobjects/Quote__c/Quote_Ext_Id__c/"
			if !strings.HasPrefix(last.EscapedPath, prefix) {
				t.Fatalf("the simulator routed %q, want a path under %q", last.EscapedPath, prefix)
			}
			seg := strings.TrimPrefix(last.EscapedPath, prefix)
			if strings.Contains(seg, "/") {
				t.Fatalf("id %q became several segments: %q", id, seg)
			}
			if got, err := url.PathUnescape(seg); err != nil || got != id {
				t.Fatalf("segment %q decodes to %q (%v), want %q", seg, got, err, id)
			}
		})
	}
	found := map[string]bool{}
	for _, r := range e.sim.Records("Quote__c") {
		if v, ok := r.Fields["Quote_Ext_Id__c"].(string); ok {
			found[v] = true
		}
	}
	for _, id := range ids {
		if !found[id] {
			t.Errorf("no record with external id %q", id)
		}
	}
}
