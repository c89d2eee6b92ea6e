package salesforce

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"go.yaml.in/yaml/v3"
)

func validSettings() Settings {
	return Settings{
		LoginURL:        "https://acme.my.salesforce.com",
		Auth:            AuthSettings{Type: AuthClientCredentials, ClientID: "id", ClientSecret: "secret"},
		Mode:            ModeUpsert,
		Object:          "Quote__c",
		ExternalIDField: "Quote_Ext_Id__c",
	}
}

func TestSettingsValidation(t *testing.T) {
	dir := t.TempDir()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := filepath.Join(dir, "good.pem")
	os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	ecKey := filepath.Join(dir, "bad.pem")
	os.WriteFile(ecKey, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	t.Setenv("SF_UNIT_EMPTY", "")

	tests := []struct {
		name    string
		mutate  func(*Settings)
		wantErr string
	}{
		{name: "valid", mutate: func(*Settings) {}},
		{name: "no login_url", mutate: func(s *Settings) { s.LoginURL = "" }, wantErr: "login_url is required"},
		{name: "login_url with path", mutate: func(s *Settings) { s.LoginURL = "https://acme.my.salesforce.com/services/oauth2/token" }, wantErr: "only scheme and host"},
		{name: "plain http", mutate: func(s *Settings) { s.LoginURL = "http://acme.example.com" }, wantErr: "plain http"},
		{name: "plain http allowed", mutate: func(s *Settings) { s.LoginURL, s.AllowHTTP = "http://sfsim:8080", true }},
		{name: "http loopback", mutate: func(s *Settings) { s.LoginURL = "http://127.0.0.1:9999" }},
		{name: "login.salesforce.com with client credentials", mutate: func(s *Settings) { s.LoginURL = "https://login.salesforce.com" }, wantErr: "request not supported on this domain"},
		{name: "bad api version", mutate: func(s *Settings) { s.APIVersion = "66.0" }, wantErr: "api_version"},
		{name: "api version", mutate: func(s *Settings) { s.APIVersion = "v67.0" }},
		{name: "no mode", mutate: func(s *Settings) { s.Mode = "" }, wantErr: "mode"},
		{name: "no object", mutate: func(s *Settings) { s.Object = "" }, wantErr: "object"},
		{name: "no ext field", mutate: func(s *Settings) { s.ExternalIDField = "" }, wantErr: "external_id_field"},
		{name: "event without __e", mutate: func(s *Settings) {
			s.Mode, s.Object, s.ExternalIDField, s.Event = ModePlatformEvent, "", "", "Quote_Change__c"
		}, wantErr: "__e"},
		{name: "event with object", mutate: func(s *Settings) { s.Mode, s.Event = ModePlatformEvent, "Quote_Change__e" }, wantErr: "only for mode upsert"},
		{name: "no auth type", mutate: func(s *Settings) { s.Auth.Type = "" }, wantErr: "auth.type"},
		{name: "no client id", mutate: func(s *Settings) { s.Auth.ClientID = "" }, wantErr: "client_id"},
		{name: "no secret", mutate: func(s *Settings) { s.Auth.ClientSecret = "" }, wantErr: "client_secret_env"},
		{name: "both secrets", mutate: func(s *Settings) { s.Auth.ClientSecretEnv = "X" }, wantErr: "auth.client_secret and auth.client_secret_env are both set"},
		{name: "empty secret env", mutate: func(s *Settings) { s.Auth.ClientSecret, s.Auth.ClientSecretEnv = "", "SF_UNIT_EMPTY" }, wantErr: "SF_UNIT_EMPTY is not set or empty"},
		{name: "jwt", mutate: func(s *Settings) {
			s.Auth = AuthSettings{Type: AuthJWTBearer, ClientID: "id", Username: "u", PrivateKeyFile: good}
		}},
		{name: "jwt bad key", mutate: func(s *Settings) {
			s.Auth = AuthSettings{Type: AuthJWTBearer, ClientID: "id", Username: "u", PrivateKeyFile: ecKey}
		}, wantErr: "neither a PKCS#1 nor a PKCS#8"},
		{name: "jwt no user", mutate: func(s *Settings) { s.Auth = AuthSettings{Type: AuthJWTBearer, ClientID: "id", PrivateKeyFile: good} }, wantErr: "auth.username"},
		{name: "jwt with secret", mutate: func(s *Settings) {
			s.Auth = AuthSettings{Type: AuthJWTBearer, ClientID: "id", Username: "u", PrivateKeyFile: good, ClientSecret: "x"}
		}, wantErr: "no client secret"},
		{name: "max_records too big", mutate: func(s *Settings) { s.Batch.MaxRecords = 201 }, wantErr: "batch.max_records"},
		{name: "max_attempts", mutate: func(s *Settings) { s.MaxAttempts = 11 }, wantErr: "max_attempts"},
		{name: "map Id", mutate: func(s *Settings) { s.Fields = map[string]string{"Id": "x"} }, wantErr: "Id cannot be mapped"},
		{name: "map ext field", mutate: func(s *Settings) { s.Fields = map[string]string{"Quote_Ext_Id__c": "x"} }, wantErr: "external id field"},
		{name: "map notification field", mutate: func(s *Settings) { s.Fields = map[string]string{"Fanout_Notification_Id__c": "@id"} }, wantErr: "notification_id_field"},
		{name: "unknown meta", mutate: func(s *Settings) { s.Fields = map[string]string{"A__c": "@attempt"} }, wantErr: "unknown source"},
		{name: "empty path", mutate: func(s *Settings) { s.Fields = map[string]string{"A__c": "a..b"} }, wantErr: "empty path segment"},
		{name: "bad field name", mutate: func(s *Settings) { s.Fields = map[string]string{"a-b": "x"} }, wantErr: "not a Salesforce field API name"},
		{name: "same reserved fields", mutate: func(s *Settings) { s.VersionField = DefaultNotificationIDField }, wantErr: "must differ"},
		{name: "event collections in upsert mode", mutate: func(s *Settings) { s.Batch.PlatformEventCollections = true }, wantErr: "platform_event_collections"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSettings()
			tt.mutate(&s)
			_, err := New(t.Context(), "t", s, nil)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") && strings.Contains(err.Error(), string(validSettings().Auth.ClientSecret)+"\"") {
				t.Fatalf("error quotes the secret: %v", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := New(t.Context(), "t", validSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := c.cfg
	if got.APIVersion != "v66.0" || got.Batch.MaxRecords != 200 || got.MaxAttempts != 3 || got.Timeout != 30*time.Second ||
		got.NotificationIDField != "Fanout_Notification_Id__c" || got.VersionField != "Fanout_Version__c" ||
		got.RetryAfter.Concurrent != 30*time.Second || got.RetryAfter.Daily != 5*time.Minute || got.RetryAfter.EventHourly != 10*time.Minute {
		t.Fatalf("defaults: %+v", got.Settings)
	}
	if JWTExpiry > 3*time.Minute {
		t.Fatal("Salesforce refuses JWT assertions expiring more than 3 minutes ahead")
	}
}

func TestSecretIsRedacted(t *testing.T) {
	var s Settings
	if err := yaml.Unmarshal([]byte("auth:\n  client_secret: hunter2\n"), &s); err != nil {
		t.Fatal(err)
	}
	if string(s.Auth.ClientSecret) != "hunter2" {
		t.Fatalf("yaml decode gave %q", string(s.Auth.ClientSecret))
	}
	j, _ := json.Marshal(s)
	y, _ := yaml.Marshal(s)
	var sb strings.Builder
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("x", "settings", s, "secret", s.Auth.ClientSecret)
	slog.New(slog.NewTextHandler(&sb, nil)).Info("x", "settings", s, "secret", s.Auth.ClientSecret)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%s|%q|%x", s.Auth.ClientSecret, s.Auth.ClientSecret, s.Auth.ClientSecret), string(j), string(y), sb.String()} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret printed: %s", out)
		}
	}
}

func TestBuildFields(t *testing.T) {
	body := `{"id":"n1","event_type":"quote_created","routing":{"priority":"high"},
	  "payload":{"amount":5000,"big":12345678901234567890,"currency":"INR","paid":true,"note":null,
	  "profile_snapshot":{"name":"Jane","email":"jane@example.com"},"items":[{"sku":"A1"},{"sku":"B2"}],
	  "Id":"x","Quote_Ext_Id__c":"y"}}`
	n := &notification{ID: "n1", Key: "Q1", Type: "quote_created", Version: 7, Time: time.Date(2025, 7, 14, 10, 0, 0, 0, time.UTC), Priority: "high", Body: []byte(body)}
	tests := []struct {
		name    string
		fields  map[string]string
		body    string
		want    map[string]any
		wantErr string
	}{
		{
			name: "explicit mapping",
			fields: map[string]string{
				"Amount__c": "amount", "Big__c": "big", "Email__c": "profile_snapshot.email", "Sku__c": "items.1.sku",
				"Type__c": "$.event_type", "Priority__c": "$.routing.priority", "Key__c": "@key", "At__c": "@time",
				"Snapshot__c": "profile_snapshot", "Note__c": "note", "Missing__c": "nope.deeper", "Src__c": "@source",
			},
			want: map[string]any{
				"Amount__c": json.Number("5000"), "Big__c": json.Number("12345678901234567890"), "Email__c": "jane@example.com",
				"Sku__c": "B2", "Type__c": "quote_created", "Priority__c": "high", "Key__c": "Q1", "At__c": "2025-07-14T10:00:00Z",
				"Snapshot__c": `{"email":"jane@example.com","name":"Jane"}`, "Note__c": nil,
				"Fanout_Notification_Id__c": "n1", "Fanout_Version__c": int64(7),
			},
		},
		{
			name: "default copies top-level scalars",
			want: map[string]any{
				"amount": json.Number("5000"), "big": json.Number("12345678901234567890"), "currency": "INR", "paid": true, "note": nil,
				"Fanout_Notification_Id__c": "n1", "Fanout_Version__c": int64(7),
			},
		},
		{name: "meta only needs no body", fields: map[string]string{"Key__c": "@key"}, body: "not json",
			want: map[string]any{"Key__c": "Q1", "Fanout_Notification_Id__c": "n1", "Fanout_Version__c": int64(7)}},
		{name: "bad body", fields: map[string]string{"A__c": "amount"}, body: "not json", wantErr: "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSettings()
			s.Fields = tt.fields
			c, err := New(t.Context(), "t", s, nil)
			if err != nil {
				t.Fatal(err)
			}
			nn := *n
			if tt.body != "" {
				nn.Body = []byte(tt.body)
			}
			got, err := buildFields(c.mappingFor(&nn), &nn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || connectors.Classify(err) != connectors.Permanent {
					t.Fatalf("error %v, want a permanent one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d fields %v, want %d", len(got), got, len(tt.want))
			}
			for k, v := range tt.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %#v, want %#v", k, g, v)
				}
			}
		})
	}
}

func TestParseLimitInfo(t *testing.T) {
	tests := []struct {
		in     string
		want   LimitInfo
		wantOK bool
	}{
		{"api-usage=10018/100000", LimitInfo{Used: 10018, Max: 100000}, true},
		{"api-usage=18/15000; api-bursts=1/750", LimitInfo{Used: 18, Max: 15000, BurstsUsed: 1, BurstsMax: 750, HasBursts: true}, true},
		{" api-usage = 5 / 10 ,per-app-api-usage=2/50(appName=x)", LimitInfo{Used: 5, Max: 10}, true},
		{"api-bursts=1/750", LimitInfo{BurstsUsed: 1, BurstsMax: 750, HasBursts: true}, false},
		{"api-usage=abc/10", LimitInfo{}, false},
		{"", LimitInfo{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseLimitInfo(tt.in)
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("ParseLimitInfo(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestClassifyResponse(t *testing.T) {
	c, err := New(t.Context(), "t", validSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		status    int
		body      string
		wantClass connectors.Class
		wantCode  string
		wantWait  time.Duration
	}{
		{"lock", 400, `[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]`, connectors.Retryable, "UNABLE_TO_LOCK_ROW", 0},
		{"json parser", 400, `[{"message":"Unexpected character","errorCode":"JSON_PARSER_ERROR"}]`, connectors.Permanent, "JSON_PARSER_ERROR", 0},
		{"invalid field", 400, `[{"message":"No such column","errorCode":"INVALID_FIELD"}]`, connectors.Permanent, "INVALID_FIELD", 0},
		{"invalid type halts", 400, `[{"message":"sObject type 'X' is not supported","errorCode":"INVALID_TYPE"}]`, connectors.Halt, "INVALID_TYPE", 0},
		{"api disabled halts", 403, `[{"message":"The REST API is not enabled for this Organization.","errorCode":"API_DISABLED_FOR_ORG"}]`, connectors.Halt, "API_DISABLED_FOR_ORG", 0},
		{"record access is permanent", 403, `[{"message":"insufficient access rights on object id","errorCode":"INSUFFICIENT_ACCESS_OR_READONLY"}]`, connectors.Permanent, "INSUFFICIENT_ACCESS_OR_READONLY", 0},
		{"410 halts", 410, ``, connectors.Halt, "", 0},
		{"redirect halts", 302, ``, connectors.Halt, "", 0},
		{"session", 401, `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`, connectors.Reauthenticate, "INVALID_SESSION_ID", 0},
		{"daily", 403, `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`, connectors.Retryable, "REQUEST_LIMIT_EXCEEDED", DefaultDailyWait},
		{"concurrent", 403, `[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`, connectors.Retryable, "REQUEST_LIMIT_EXCEEDED", DefaultConcurrentWait},
		{"other 403 halts", 403, `[{"message":"insufficient access","errorCode":"INSUFFICIENT_ACCESS"}]`, connectors.Halt, "INSUFFICIENT_ACCESS", 0},
		{"event limit", 400, `[{"message":"hourly","errorCode":"LIMIT_EXCEEDED"}]`, connectors.Retryable, "LIMIT_EXCEEDED", DefaultEventHourlyWait},
		{"not found halts", 404, `[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]`, connectors.Halt, "NOT_FOUND", 0},
		{"multiple", 300, `["/services/data/v66.0/sobjects/Quote__c/a0B1","/services/data/v66.0/sobjects/Quote__c/a0B2"]`, connectors.Permanent, "", 0},
		{"503 html", 503, `<html>down</html>`, connectors.Retryable, "", 0},
		{"500 array", 500, `[{"message":"boom","errorCode":"UNKNOWN_EXCEPTION"}]`, connectors.Retryable, "UNKNOWN_EXCEPTION", 0},
		{"single object body", 400, `{"message":"bad","errorCode":"MALFORMED_ID"}`, connectors.Permanent, "MALFORMED_ID", 0},
		{"empty 400", 400, ``, connectors.Permanent, "", 0},
		{"429", 429, ``, connectors.Retryable, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := c.classifyResponse("PATCH /x", tt.status, []byte(tt.body))
			if e.Class != tt.wantClass || e.Code != tt.wantCode || e.RetryAfter != tt.wantWait || e.Status != tt.status {
				t.Fatalf("got %v (class %v code %q wait %s)", e, e.Class, e.Code, e.RetryAfter)
			}
		})
	}
}

func TestClassifyRecord(t *testing.T) {
	c, err := New(t.Context(), "t", validSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		errs []apiError
		want connectors.Class
	}{
		{"validation", []apiError{{StatusCode: "FIELD_CUSTOM_VALIDATION_EXCEPTION", Message: "no"}}, connectors.Permanent},
		{"duplicate ext id", []apiError{{StatusCode: "DUPLICATE_EXTERNAL_ID"}}, connectors.Permanent},
		{"lock", []apiError{{StatusCode: "UNABLE_TO_LOCK_ROW"}}, connectors.Retryable},
		{"rolled back", []apiError{{StatusCode: "ALL_OR_NONE_OPERATION_ROLLED_BACK"}}, connectors.Retryable},
		{"no reason", nil, connectors.Retryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.classifyRecord(200, tt.errs); got.Class != tt.want {
				t.Fatalf("got %v", got)
			}
		})
	}
}

func TestChunks(t *testing.T) {
	s := validSettings()
	s.Batch.MaxRecords = 3
	c, err := New(t.Context(), "t", s, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"A", "B", "A", "C", "D", "E", "A", "B"}
	items := make([]item, len(keys))
	for i, k := range keys {
		items[i] = item{i: i, n: &notification{Key: k}}
	}
	var got []string
	for _, ch := range c.chunks(items) {
		var ks []string
		for _, it := range ch {
			ks = append(ks, fmt.Sprint(it.n.Key, it.i))
		}
		got = append(got, strings.Join(ks, ","))
	}
	want := []string{"A0,B1,C3", "A2,D4,E5", "A6,B7"}
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Fatalf("chunks %q, want %q", got, want)
	}
}
