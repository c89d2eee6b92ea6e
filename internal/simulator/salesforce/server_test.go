package salesforce

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testClientID     = "sim-client"
	testClientSecret = "sim-secret-value"
)

// start runs a fake on 127.0.0.1:0 for the test.
func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.ClientID == "" {
		cfg.ClientID, cfg.ClientSecret = testClientID, testClientSecret
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Start(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, base
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func do(t *testing.T, method, u, token string, body any) result {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, b}
}

func postForm(t *testing.T, u string, form url.Values, basicUser, basicPass string) result {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, b}
}

func token(t *testing.T, base string) string {
	t.Helper()
	r := postForm(t, base+"/services/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {testClientID}, "client_secret": {testClientSecret}}, "", "")
	if r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	var tok map[string]any
	r.json(t, &tok)
	return tok["access_token"].(string)
}

func errCode(t *testing.T, r result) string {
	t.Helper()
	var arr []map[string]any
	if err := json.Unmarshal(r.body, &arr); err != nil || len(arr) == 0 {
		t.Fatalf("want an error array, got %d %s", r.status, r.body)
	}
	c, _ := arr[0]["errorCode"].(string)
	return c
}

func TestTokenClientCredentials(t *testing.T) {
	s, base := start(t, Config{})
	tests := []struct {
		name       string
		form       url.Values
		user, pass string
		faults     func(*Faults)
		wantStatus int
		wantError  string
		wantDesc   string
	}{
		{name: "form", form: url.Values{"grant_type": {"client_credentials"}, "client_id": {testClientID}, "client_secret": {testClientSecret}}, wantStatus: 200},
		{name: "basic", form: url.Values{"grant_type": {"client_credentials"}}, user: testClientID, pass: testClientSecret, wantStatus: 200},
		{name: "bad secret", form: url.Values{"grant_type": {"client_credentials"}, "client_id": {testClientID}, "client_secret": {"nope"}}, wantStatus: 400, wantError: "invalid_grant", wantDesc: "authentication failure"},
		{name: "wrong host", form: url.Values{"grant_type": {"client_credentials"}, "client_id": {testClientID}, "client_secret": {testClientSecret}}, faults: func(f *Faults) { f.WrongHost = true }, wantStatus: 400, wantError: "invalid_grant", wantDesc: "request not supported on this domain"},
		{name: "unknown grant", form: url.Values{"grant_type": {"password"}}, wantStatus: 400, wantError: "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.faults != nil {
				if err := s.UpdateFaults(tt.faults); err != nil {
					t.Fatal(err)
				}
				defer s.UpdateFaults(func(f *Faults) { f.WrongHost = false })
			}
			r := postForm(t, base+"/services/oauth2/token", tt.form, tt.user, tt.pass)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			var body map[string]any
			r.json(t, &body)
			if tt.wantStatus != 200 {
				if body["error"] != tt.wantError || (tt.wantDesc != "" && body["error_description"] != tt.wantDesc) {
					t.Fatalf("body %s, want error %s %q", r.body, tt.wantError, tt.wantDesc)
				}
				return
			}
			for _, k := range []string{"access_token", "instance_url", "id", "token_type", "issued_at", "signature", "scope"} {
				if _, ok := body[k]; !ok {
					t.Errorf("token response lacks %s: %s", k, r.body)
				}
			}
			for _, k := range []string{"expires_in", "refresh_token"} {
				if _, ok := body[k]; ok {
					t.Errorf("token response has %s, which Salesforce never sends", k)
				}
			}
			if body["instance_url"] != base || body["token_type"] != "Bearer" {
				t.Errorf("instance_url %v token_type %v", body["instance_url"], body["token_type"])
			}
			if _, isString := body["issued_at"].(string); !isString {
				t.Errorf("issued_at must be a string of epoch ms: %s", r.body)
			}
		})
	}
}

// signJWT builds an RS256 assertion.
func signJWT(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	cb, _ := json.Marshal(claims)
	c := base64.RawURLEncoding.EncodeToString(cb)
	sum := sha256.Sum256([]byte(h + "." + c))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return h + "." + c + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestTokenJWTBearer(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, base := start(t, Config{ClientID: testClientID, JWTPublicKey: &key.PublicKey, JWTUsername: "bot@acme.example"})
	now := time.Now().Unix()
	good := func() map[string]any {
		return map[string]any{"iss": testClientID, "sub": "bot@acme.example", "aud": "https://login.salesforce.com", "exp": now + 170}
	}
	tests := []struct {
		name     string
		key      *rsa.PrivateKey
		mutate   func(map[string]any)
		wantDesc string
	}{
		{name: "valid", key: key},
		{name: "aud array", key: key, mutate: func(c map[string]any) { c["aud"] = []string{"https://test.salesforce.com"} }},
		{name: "prn wins over sub", key: key, mutate: func(c map[string]any) { c["sub"] = "x"; c["prn"] = "bot@acme.example" }},
		{name: "bad signature", key: other, wantDesc: "invalid assertion"},
		{name: "wrong iss", key: key, mutate: func(c map[string]any) { c["iss"] = "nope" }, wantDesc: "client identifier invalid"},
		{name: "wrong aud", key: key, mutate: func(c map[string]any) { c["aud"] = "https://example.com" }, wantDesc: "audience is invalid"},
		{name: "wrong user", key: key, mutate: func(c map[string]any) { c["sub"] = "eve" }, wantDesc: "user hasn't approved this consumer"},
		{name: "exp too far", key: key, mutate: func(c map[string]any) { c["exp"] = now + 3600 }, wantDesc: "invalid assertion: exp must be within 3 minutes"},
		{name: "expired", key: key, mutate: func(c map[string]any) { c["exp"] = now - 10 }, wantDesc: "expired authorization code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			if tt.mutate != nil {
				tt.mutate(c)
			}
			r := postForm(t, base+"/services/oauth2/token", url.Values{"grant_type": {JWTBearerGrant}, "assertion": {signJWT(t, tt.key, c)}}, "", "")
			var body map[string]any
			r.json(t, &body)
			if tt.wantDesc == "" {
				if r.status != 200 || body["access_token"] == nil {
					t.Fatalf("status %d %s", r.status, r.body)
				}
				return
			}
			if r.status != 400 || body["error"] != "invalid_grant" || body["error_description"] != tt.wantDesc {
				t.Fatalf("got %d %s, want 400 invalid_grant %q", r.status, r.body, tt.wantDesc)
			}
		})
	}
}

// clock is a test clock that only moves when told.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

func TestSessionExpiryAndRevocation(t *testing.T) {
	var clk clock
	s, base := start(t, Config{SessionTTL: time.Hour, Now: clk.now})
	u := base + "/services/data/v66.0/sobjects/Quote__c/Ext__c/Q1"
	tok := token(t, base)
	if r := do(t, "PATCH", u, tok, map[string]any{"A__c": 1}); r.status != 201 {
		t.Fatalf("upsert: %d %s", r.status, r.body)
	}
	clk.advance(time.Hour)
	r := do(t, "PATCH", u, tok, map[string]any{"A__c": 1})
	if r.status != 401 || string(r.body) != `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]` {
		t.Fatalf("expired session: %d %s", r.status, r.body)
	}
	tok = token(t, base)
	s.RevokeSessions()
	if r := do(t, "PATCH", u, tok, map[string]any{"A__c": 1}); r.status != 401 {
		t.Fatalf("revoked session: %d %s", r.status, r.body)
	}
	tok = token(t, base)
	if r := do(t, "POST", base+"/_sim/revoke", "", nil); r.status != 204 {
		t.Fatalf("/_sim/revoke: %d", r.status)
	}
	if r := do(t, "PATCH", u, tok, map[string]any{"A__c": 1}); r.status != 401 {
		t.Fatalf("revoked over HTTP: %d %s", r.status, r.body)
	}
}

func TestUpsert(t *testing.T) {
	s, base := start(t, Config{Objects: map[string]ObjectSpec{"Account": {ExternalIDFields: []string{"Ext__c"}}}})
	tok := token(t, base)
	s.Seed("Dup__c", map[string]any{"Ext__c": "D"})
	s.Seed("Dup__c", map[string]any{"Ext__c": "D"})
	p := base + "/services/data/v66.0/sobjects/"
	tests := []struct {
		name         string
		updateStatus int
		url          string
		body         any
		wantStatus   int
		wantCode     string
		wantCreated  any
	}{
		{name: "create", url: p + "Quote__c/Ext__c/Q1", body: map[string]any{"A__c": 1}, wantStatus: 201, wantCreated: true},
		{name: "update 204", url: p + "Quote__c/Ext__c/Q1", body: map[string]any{"A__c": 2}, wantStatus: 204},
		{name: "update 200", updateStatus: 200, url: p + "Quote__c/Ext__c/Q1", body: map[string]any{"A__c": 3}, wantStatus: 200, wantCreated: false},
		{name: "declared standard object", url: p + "Account/Ext__c/A1", body: map[string]any{"Name": "Acme"}, wantStatus: 201, wantCreated: true},
		{name: "several matches", url: p + "Dup__c/Ext__c/D", body: map[string]any{"A__c": 1}, wantStatus: 300},
		{name: "unknown object", url: p + "Nope/Ext__c/X", body: map[string]any{"A__c": 1}, wantStatus: 404, wantCode: "NOT_FOUND"},
		{name: "unknown ext field", url: p + "Account/Other__c/X", body: map[string]any{"Name": "x"}, wantStatus: 404, wantCode: "NOT_FOUND"},
		{name: "Id in body", url: p + "Quote__c/Ext__c/Q2", body: map[string]any{"Id": "a0B"}, wantStatus: 400, wantCode: "INVALID_FIELD_FOR_INSERT_UPDATE"},
		{name: "ext field in body", url: p + "Quote__c/Ext__c/Q2", body: map[string]any{"Ext__c": "Q2"}, wantStatus: 400, wantCode: "INVALID_FIELD"},
		{name: "unknown field", url: p + "Quote__c/Ext__c/Q2", body: map[string]any{"amount": 1}, wantStatus: 400, wantCode: "INVALID_FIELD"},
		{name: "nested value", url: p + "Quote__c/Ext__c/Q2", body: map[string]any{"A__c": map[string]any{"x": 1}}, wantStatus: 400, wantCode: "JSON_PARSER_ERROR"},
		{name: "bad json", url: p + "Quote__c/Ext__c/Q2", body: "{", wantStatus: 400, wantCode: "JSON_PARSER_ERROR"},
		{name: "escaped value", url: p + "Quote__c/Ext__c/" + url.PathEscape("a/b c"), body: map[string]any{"A__c": 1}, wantStatus: 201, wantCreated: true},
		{name: "unsupported version", url: base + "/services/data/v99.0/sobjects/Quote__c/Ext__c/Q3", body: map[string]any{"A__c": 1}, wantStatus: 404, wantCode: "NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			us := tt.updateStatus
			if us == 0 {
				us = 204
			}
			if err := s.UpdateFaults(func(f *Faults) { f.UpdateStatus = us }); err != nil {
				t.Fatal(err)
			}
			r := do(t, "PATCH", tt.url, tok, tt.body)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			if tt.wantCode != "" {
				if c := errCode(t, r); c != tt.wantCode {
					t.Fatalf("errorCode %s, want %s", c, tt.wantCode)
				}
			}
			if tt.wantCreated != nil {
				var res map[string]any
				r.json(t, &res)
				if res["created"] != tt.wantCreated || res["success"] != true {
					t.Fatalf("body %s", r.body)
				}
			}
			if tt.wantStatus == 300 {
				var urls []string
				r.json(t, &urls)
				if len(urls) != 2 {
					t.Fatalf("300 body %s", r.body)
				}
			}
		})
	}
	recs := s.Records("Quote__c")
	if len(recs) != 2 || recs[0].Fields["A__c"] != json.Number("3") || recs[0].Fields["Ext__c"] != "Q1" || recs[0].Updates != 2 {
		t.Fatalf("records %+v", recs)
	}
	if recs[1].Fields["Ext__c"] != "a/b c" {
		t.Fatalf("escaped ext id stored as %v", recs[1].Fields["Ext__c"])
	}
	if st := s.Stats("Quote__c"); st.Created != 2 || st.Updated != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCollectionsUpsert(t *testing.T) {
	s, base := start(t, Config{Faults: Faults{RejectField: "A__c", RejectValue: "bad"}})
	tok := token(t, base)
	u := base + "/services/data/v66.0/composite/sobjects/Quote__c/Ext__c"
	rec := func(ext string, a any) map[string]any {
		return map[string]any{"attributes": map[string]string{"type": "Quote__c"}, "Ext__c": ext, "A__c": a, "Fanout_Notification_Id__c": "n-" + ext}
	}
	type res struct {
		ID      string `json:"id"`
		Success bool   `json:"success"`
		Created *bool  `json:"created"`
		Errors  []struct {
			StatusCode string `json:"statusCode"`
		} `json:"errors"`
	}

	t.Run("too many", func(t *testing.T) {
		recs := make([]map[string]any, 201)
		for i := range recs {
			recs[i] = rec(fmt.Sprint(i), 1)
		}
		r := do(t, "PATCH", u, tok, map[string]any{"allOrNone": false, "records": recs})
		if r.status != 400 || errCode(t, r) != "EXCEEDED_ID_LIMIT" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("allOrNone rolls back", func(t *testing.T) {
		r := do(t, "PATCH", u, tok, map[string]any{"allOrNone": true, "records": []any{rec("R1", 1), rec("R2", "bad")}})
		var out []res
		r.json(t, &out)
		if r.status != 200 || len(out) != 2 || out[0].Success || out[0].Errors[0].StatusCode != "ALL_OR_NONE_OPERATION_ROLLED_BACK" || out[1].Errors[0].StatusCode != "FIELD_CUSTOM_VALIDATION_EXCEPTION" {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if n := len(s.Records("Quote__c")); n != 0 {
			t.Fatalf("rollback left %d records", n)
		}
	})
	t.Run("partial success", func(t *testing.T) {
		s.Seed("Quote__c", map[string]any{"Ext__c": "OLD"})
		r := do(t, "PATCH", u, tok, map[string]any{"allOrNone": false, "records": []any{rec("R1", 1), rec("R2", "bad"), rec("OLD", 2), rec("D", 1), rec("D", 2)}})
		var out []res
		r.json(t, &out)
		if r.status != 200 || len(out) != 5 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if !out[0].Success || out[0].Created == nil || !*out[0].Created {
			t.Errorf("R1: %+v", out[0])
		}
		if out[1].Success || out[1].Errors[0].StatusCode != "FIELD_CUSTOM_VALIDATION_EXCEPTION" {
			t.Errorf("R2: %+v", out[1])
		}
		if !out[2].Success || out[2].Created == nil || *out[2].Created {
			t.Errorf("OLD: %+v", out[2])
		}
		if out[3].Success || out[3].Errors[0].StatusCode != "DUPLICATE_EXTERNAL_ID" || out[4].Success {
			t.Errorf("duplicates in one request: %+v %+v", out[3], out[4])
		}
		calls := s.Calls()
		last := calls[len(calls)-1]
		if !last.APICall || last.Records != 5 || len(last.NotificationIDs) != 5 || last.NotificationIDs[0] != "n-R1" {
			t.Errorf("call record %+v", last)
		}
	})
	t.Run("record fault script", func(t *testing.T) {
		if err := s.UpdateFaults(func(f *Faults) {
			f.Rules = []Rule{{Code: "UNABLE_TO_LOCK_ROW", Count: 1, Target: TargetRecord}}
		}); err != nil {
			t.Fatal(err)
		}
		r := do(t, "PATCH", u, tok, map[string]any{"records": []any{rec("L1", 1), rec("L2", 1)}})
		var out []res
		r.json(t, &out)
		if out[0].Success || out[0].Errors[0].StatusCode != "UNABLE_TO_LOCK_ROW" || !out[1].Success {
			t.Fatalf("%s", r.body)
		}
	})
}

func TestPlatformEvents(t *testing.T) {
	s, base := start(t, Config{Faults: Faults{EventHourlyLimit: 3}})
	tok := token(t, base)
	u := base + "/services/data/v66.0/sobjects/Quote_Change__e/"
	for i := range 2 {
		r := do(t, "POST", u, tok, map[string]any{"Fanout_Notification_Id__c": fmt.Sprint("n", i)})
		var out struct {
			ID      string `json:"id"`
			Success bool   `json:"success"`
			Errors  []struct {
				StatusCode string `json:"statusCode"`
				Message    string `json:"message"`
			} `json:"errors"`
		}
		r.json(t, &out)
		if r.status != 201 || !out.Success || len(out.Errors) != 1 || out.Errors[0].StatusCode != "OPERATION_ENQUEUED" || len(out.Errors[0].Message) != 36 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	r := do(t, "POST", base+"/services/data/v66.0/composite/sobjects", tok, map[string]any{"records": []any{
		map[string]any{"attributes": map[string]string{"type": "Quote_Change__e"}, "A__c": 1},
		map[string]any{"attributes": map[string]string{"type": "Quote_Change__e"}, "A__c": 2},
	}})
	var out []map[string]any
	r.json(t, &out)
	if r.status != 200 || out[0]["success"] != true || out[1]["success"] != false {
		t.Fatalf("collections publish past the hourly limit: %d %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), "LIMIT_EXCEEDED") {
		t.Fatalf("want LIMIT_EXCEEDED: %s", r.body)
	}
	r = do(t, "POST", u, tok, map[string]any{"A__c": 1})
	if r.status != 400 || errCode(t, r) != "LIMIT_EXCEEDED" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if n := len(s.Records("Quote_Change__e")); n != 3 {
		t.Fatalf("published %d events, want 3", n)
	}
}

func TestLimitsAndHeaders(t *testing.T) {
	s, base := start(t, Config{Faults: Faults{DailyLimit: 3}})
	tok := token(t, base)
	u := base + "/services/data/v66.0/sobjects/Quote__c/Ext__c/Q1"
	var last result
	for i := 1; i <= 4; i++ {
		last = do(t, "PATCH", u, tok, map[string]any{"A__c": i})
		if last.header.Get("Retry-After") != "" {
			t.Fatal("the fake must never send Retry-After")
		}
		want := fmt.Sprintf("api-usage=%d/3", min(i, 3))
		if got := last.header.Get("Sforce-Limit-Info"); got != want {
			t.Fatalf("call %d: Sforce-Limit-Info %q, want %q", i, got, want)
		}
	}
	if last.status != 403 || string(last.body) != `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]` {
		t.Fatalf("over the daily limit: %d %s", last.status, last.body)
	}
	if s.APICalls() != 3 {
		t.Fatalf("APICalls %d, want 3", s.APICalls())
	}
	s.Reset()
	if r := do(t, "PATCH", u, tok, map[string]any{"A__c": 1}); r.status != 201 || s.APICalls() != 1 {
		t.Fatalf("after Reset: %d %s, api calls %d", r.status, r.body, s.APICalls())
	}
}

func TestLongRequestCap(t *testing.T) {
	s, base := start(t, Config{LongRequestThreshold: 50 * time.Millisecond, Faults: Faults{LongRequestCap: 1}})
	tok := token(t, base)
	if err := s.UpdateFaults(func(f *Faults) { f.SlowRate, f.SlowLatency = 1, Duration(time.Second) }); err != nil {
		t.Fatal(err)
	}
	u := base + "/services/data/v66.0/sobjects/Quote__c/Ext__c/"
	var wg sync.WaitGroup
	wg.Add(1)
	var slow result
	go func() {
		defer wg.Done()
		slow = do(t, "PATCH", u+"S", tok, map[string]any{"A__c": 1})
	}()
	waitInFlight(t, s)
	time.Sleep(100 * time.Millisecond) // past the 50 ms threshold
	r := do(t, "PATCH", u+"F", tok, map[string]any{"A__c": 1})
	wg.Wait()
	if r.status != 403 || !strings.Contains(string(r.body), "ConcurrentPerOrgLongTxn Limit exceeded.") {
		t.Fatalf("over the long-request cap: %d %s", r.status, r.body)
	}
	if slow.status != 201 {
		t.Fatalf("slow call: %d %s", slow.status, slow.body)
	}
}

// waitInFlight waits until the fake serves a request.
func waitInFlight(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.InFlight() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow request never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFaults(t *testing.T) {
	s, base := start(t, Config{})
	tok := token(t, base)
	u := base + "/services/data/v66.0/sobjects/Quote__c/Ext__c/Q1"
	post := func(js string) {
		t.Helper()
		if r := do(t, "POST", base+"/_sim/faults", "", js); r.status != 200 {
			t.Fatalf("/_sim/faults: %d %s", r.status, r.body)
		}
	}
	tests := []struct {
		name   string
		faults string
		want   []int
		codes  []string
	}{
		{"next 2 calls lock", `{"rules":[{"code":"UNABLE_TO_LOCK_ROW","count":2}]}`, []int{400, 400, 204}, []string{"UNABLE_TO_LOCK_ROW", "UNABLE_TO_LOCK_ROW", ""}},
		{"503 by rate", `{"rules":[],"fail_rate":1}`, []int{503, 503}, []string{"SERVER_UNAVAILABLE", "SERVER_UNAVAILABLE"}},
		{"outage window", `{"fail_rate":0,"outage_for":"1m"}`, []int{503}, []string{"SERVER_UNAVAILABLE"}},
		{"validation codes", `{"outage_until":"0001-01-01T00:00:00Z","rules":[{"code":"DUPLICATE_VALUE","count":1},{"code":"REQUIRED_FIELD_MISSING","count":1},{"code":"MALFORMED_ID","count":1},{"code":"INVALID_FIELD","count":1},{"code":"FIELD_CUSTOM_VALIDATION_EXCEPTION","count":1}]}`,
			[]int{400, 400, 400, 400, 400, 204}, []string{"DUPLICATE_VALUE", "REQUIRED_FIELD_MISSING", "MALFORMED_ID", "INVALID_FIELD", "FIELD_CUSTOM_VALIDATION_EXCEPTION", ""}},
	}
	do(t, "PATCH", u, tok, map[string]any{"A__c": 0}) // create
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			post(tt.faults)
			for i, want := range tt.want {
				r := do(t, "PATCH", u, tok, map[string]any{"A__c": 1})
				if r.status != want {
					t.Fatalf("call %d: %d %s, want %d", i, r.status, r.body, want)
				}
				if tt.codes[i] != "" && errCode(t, r) != tt.codes[i] {
					t.Fatalf("call %d: %s, want %s", i, r.body, tt.codes[i])
				}
			}
		})
	}
	if r := do(t, "DELETE", base+"/_sim/faults", "", nil); r.status != 200 {
		t.Fatal(r.status)
	}
	if f := s.Faults(); len(f.Rules) != 0 || f.FailRate != 0 || f.UpdateStatus != 204 {
		t.Fatalf("DELETE /_sim/faults: %+v", f)
	}

	var calls []Call
	do(t, "GET", base+"/_sim/calls", "", nil).json(t, &calls)
	if len(calls) < 10 || calls[0].Path != "/services/oauth2/token" || calls[0].APICall {
		t.Fatalf("calls %+v", calls[:1])
	}
	var recs struct {
		Created int      `json:"created"`
		Updated int      `json:"updated"`
		Records []Record `json:"records"`
	}
	do(t, "GET", base+"/_sim/records/Quote__c", "", nil).json(t, &recs)
	if recs.Created != 1 || recs.Updated != 2 || len(recs.Records) != 1 {
		t.Fatalf("records %+v", recs)
	}
	if r := do(t, "POST", base+"/_sim/faults", "", `{"update_status":201}`); r.status != 400 {
		t.Fatalf("invalid faults accepted: %d", r.status)
	}
}

func TestCommand(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyFile := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Command(ctx, []string{"-addr", "127.0.0.1:0", "-client-id", testClientID, "-client-secret", testClientSecret,
			"-jwt-public-key", keyFile, "-daily-limit", "5", "-update-status", "200"}, pw)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSpace(line)
	tok := token(t, base)
	r := do(t, "PATCH", base+"/services/data/v66.0/sobjects/Quote__c/Ext__c/Q", tok, map[string]any{"A__c": 1})
	if r.status != 201 || r.header.Get("Sforce-Limit-Info") != "api-usage=1/5" {
		t.Fatalf("%d %s %v", r.status, r.body, r.header)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Command did not return after cancel")
	}
	if err := Command(t.Context(), []string{"-update-status", "201"}, io.Discard); err == nil {
		t.Fatal("want an error for -update-status 201")
	}
}

func TestClientSecretReplaced(t *testing.T) {
	s, base := start(t, Config{})
	token := func(secret string) int {
		return postForm(t, base+"/services/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {testClientID}, "client_secret": {secret}}, "", "").status
	}
	if st := token(testClientSecret); st != 200 {
		t.Fatalf("old secret before the change: %d", st)
	}
	s.SetClientSecret("replaced-secret")
	if st := token(testClientSecret); st != 400 {
		t.Fatalf("old secret after SetClientSecret: %d, want 400", st)
	}
	if st := token("replaced-secret"); st != 200 {
		t.Fatalf("new secret: %d", st)
	}
	// The same over the control endpoint, for a fake in another process.
	r := do(t, http.MethodPost, base+"/_sim/client_secret", "", map[string]string{"client_secret": "third-secret"})
	if r.status != http.StatusNoContent {
		t.Fatalf("control endpoint: %d %s", r.status, r.body)
	}
	if st := token("replaced-secret"); st != 400 {
		t.Fatalf("second secret after the control call: %d, want 400", st)
	}
	if st := token("third-secret"); st != 200 {
		t.Fatalf("third secret: %d", st)
	}
}

func TestRemoveDotSegments(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/services/data/v66.0/sobjects/Q__c/F__c/..", "/services/data/v66.0/sobjects/Q__c/"},
		{"/services/data/v66.0/sobjects/Q__c/F__c/.", "/services/data/v66.0/sobjects/Q__c/F__c/"},
		{"/a/b/../c", "/a/c"},
		{"/a/./b", "/a/b"},
		{"/a/%2E%2E/b", "/a/%2E%2E/b"},
		{"/..", "/"},
		{"/a/...", "/a/..."},
	}
	for _, tt := range tests {
		if got := removeDotSegments(tt.in); got != tt.want {
			t.Errorf("removeDotSegments(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
