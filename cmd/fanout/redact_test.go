package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/config"
)

// TestCredentialsRedacted: a URI or connection string with credentials
// never reaches a log line or an error message in full: not when it is
// misplaced in the configuration (a URI-style broker, an Event Hubs
// connection string pasted as the broker), not when a role logs an error
// carrying it, not with the SASL password or the store URI's password
// anywhere in a line.
func TestCredentialsRedacted(t *testing.T) {
	const pw, key, sasl = "Hunter2Secret", "KEYSECRETabc123=", "SaslPassw0rd-x"
	for _, broker := range []string{
		"sasl_ssl://svc:" + pw + "@broker:9093",
		"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + key,
	} {
		vars := map[string]string{"FANOUT_KAFKA_BROKERS": broker}
		for _, args := range [][]string{{"config", "check"}, {"projector"}} {
			code, out, errOut := run(t, "", vars, args...)
			if code != exitConfig {
				t.Errorf("%v with broker %q: exit %d, want %d", args, broker, code, exitConfig)
			}
			if strings.Contains(out+errOut, pw) || strings.Contains(out+errOut, key) {
				t.Errorf("%v: the credential is printed:\n%s%s", args, out, errOut)
			}
		}
	}

	var b bytes.Buffer
	cfg := config.Default()
	cfg.Log.Format = "json"
	cfg.Mongo.URIEnv = "T_MONGO_URI"
	cfg.Kafka.SASL.PasswordEnv = "T_SASL"
	vars := map[string]string{"T_MONGO_URI": "mongodb://fanout:" + pw + "@db:27017/", "T_SASL": sasl}
	log := newLogger(&cfg, &env{stderr: &b, getenv: func(k string) string { return vars[k] }}, "test")
	log.Error("store unreachable at mongodb://fanout:"+pw+"@db:27017/", "err", errors.New("dial mongodb://fanout:"+pw+"@db:27017/: refused"),
		"detail", "sasl auth with "+sasl+" failed", "uri", vars["T_MONGO_URI"])
	if out := b.String(); strings.Contains(out, pw) || strings.Contains(out, sasl) || !strings.Contains(out, "db:27017") {
		t.Errorf("log line not redacted (or lost the host): %s", out)
	}
}

// TestConfigCheckWarnsInlineSecrets: a secret-looking value written into
// the file itself (it would sit in a ConfigMap, a repository, a backup) is
// a warning of config check, naming the field and the *_env fix, never the
// value; the configuration stays valid (exit 0).
func TestConfigCheckWarnsInlineSecrets(t *testing.T) {
	const sig, pw, secret, hdr = "INLINESIGabc", "InlineSaslPw1", "InlineClientSecret1", "InlineHeaderTok1"
	yaml := `kafka:
  sasl: {mechanism: PLAIN, username: svc, password: ` + pw + `}
connectors:
  la:
    type: logicapps
    settings:
      url: "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01&sv=1.0&sig=` + sig + `"
  hook:
    type: webhook
    settings:
      url: https://hooks.example.com/in
      headers: {X-Api-Key: "` + hdr + `", X-Trace: "${TRACE_ID}"}
      auth: {type: oauth2, token_url: "https://login.example.com/token", client_id: fanout, client_secret: ` + secret + `}
routing:
  default: {targets: [la, hook]}
`
	p := filepath.Join(t.TempDir(), "inline.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRACE_ID", "trace-from-env") // connectors read ${VAR} from the process
	code, out, errOut := run(t, "", nil, "config", "check", "--config", p)
	all := out + errOut
	if code != 0 {
		t.Fatalf("exit %d, want 0 (warnings only):\n%s", code, all)
	}
	for _, field := range []string{"kafka.sasl.password", "connectors.la.settings.url", "connectors.hook.settings.auth.client_secret", "connectors.hook.settings.headers.X-Api-Key"} {
		if !strings.Contains(errOut, "warning") || !strings.Contains(errOut, field) {
			t.Errorf("no warning naming %s:\n%s", field, all)
		}
	}
	if strings.Contains(errOut, "X-Trace") {
		t.Errorf("a header from ${VAR} is flagged:\n%s", errOut)
	}
	for _, v := range []string{sig, pw, secret, hdr} {
		if strings.Contains(all, v) {
			t.Errorf("the output shows the value %s:\n%s", v, all)
		}
	}
	// A file with secrets only through *_env fields has no warning.
	code, out, errOut = run(t, "", nil, "config", "check")
	if code != 0 || strings.Contains(errOut, "warning") {
		t.Errorf("defaults: exit %d, %s%s", code, out, errOut)
	}
}

// TestFileSecretsRedacted: secrets read from files (kafka.sasl.
// password_file, mongo.uri_file, admin.tokens[].token_file,
// source.registry.password_file) are redacted
// by value in every log line like those from the environment, and a file's
// new content is redacted once it is rotated (the logger follows the file,
// as the roles do), the old content still too.
func TestFileSecretsRedacted(t *testing.T) {
	const sasl, pw, tok, rotated = "FileSaslPassw0rd", "FileMongoPw99", "file-admin-token-0123456789", "rotated-admin-token-9876543210"
	const reg, regRotated = "FileRegistryPw-1", "RotatedRegistryPw-2"
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p+".new", []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := config.Default()
	cfg.Log.Format = "json"
	cfg.Kafka.SASL = config.SASL{Mechanism: "PLAIN", Username: "svc", PasswordFile: write("sasl", sasl)}
	cfg.Mongo.URIFile = write("uri", "mongodb://fanout:"+pw+"@db:27017/")
	cfg.Admin.Tokens = []config.AdminToken{{Name: "ops", TokenFile: write("token", tok), Scopes: []string{"read"}}}
	cfg.Source.Registry = config.Registry{URL: "https://registry.example", Username: "fanout", PasswordFile: write("registry", reg)}
	var b syncBuffer
	log := newLogger(&cfg, &env{stderr: &b, getenv: func(string) string { return "" }}, "test")
	log.Error("auth with "+sasl+" failed", "uri", "mongodb://fanout:"+pw+"@db:27017/", "token", tok, "registry", reg)
	if out := b.String(); strings.Contains(out, sasl) || strings.Contains(out, pw) || strings.Contains(out, tok) || strings.Contains(out, reg) || !strings.Contains(out, "db:27017") {
		t.Errorf("log line not redacted (or lost the host): %s", out)
	}
	write("token", rotated)
	write("registry", regRotated)
	// The logger looks at the file every few seconds: wait for it to
	// redact the new token.
	deadline := time.Now().Add(20 * time.Second)
	for {
		before := len(b.String())
		log.Info("presented " + rotated + " and " + tok + ", registry " + regRotated + " and " + reg)
		out := b.String()[before:]
		if !strings.Contains(out, rotated) && !strings.Contains(out, regRotated) {
			if strings.Contains(out, tok) || strings.Contains(out, reg) {
				t.Errorf("the former token is no longer redacted: %s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated token or registry password is still logged 20 s after the change: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConfigCheckSecretFromTwoSources: a secret given both through *_env
// and *_file is an error of config check (exit 2) naming the fields, since
// which of the two a role used would be a guess; one token_file that
// cannot be read is an error too, naming the setting and the path.
func TestConfigCheckSecretFromTwoSources(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "ops-token")
	if err := os.WriteFile(tokenFile, []byte("ops-token-from-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, admin, want string
		code              int
	}{
		{"file", `{name: ops, token_file: ` + tokenFile + `, scopes: [read]}`, "configuration is valid", 0},
		{"env and file", `{name: ops, token_env: T_OPS, token_file: ` + tokenFile + `, scopes: [read]}`, "admin.tokens[0](ops).token_file: token_env and token_file are both set", exitConfig},
		{"missing file", `{name: ops, token_file: ` + filepath.Join(dir, "nope") + `, scopes: [read]}`, "admin.tokens[0](ops).token_file: stat " + filepath.Join(dir, "nope"), exitConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "fanout.yaml")
			y := "admin:\n  listen: 0.0.0.0:9464\n  tokens:\n    - " + tc.admin + "\n"
			if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := run(t, "", map[string]string{"T_OPS": "ops-token-from-env-0123456789"}, "config", "check", "--config", p)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Errorf("exit %d, want %d with %q:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
			if strings.Contains(out+errOut, "0123456789") {
				t.Errorf("config check shows a token:\n%s%s", out, errOut)
			}
		})
	}
	// The same for a connector's secret and the SASL password.
	for _, tc := range []struct{ name, yaml, want string }{
		{"connector", "connectors:\n  la:\n    type: logicapps\n    settings: {url_env: T_LA, url_file: " + tokenFile + "}\nrouting:\n  default: {targets: [la]}\n", "url_env and url_file are both set"},
		{"sasl", "kafka:\n  sasl: {mechanism: PLAIN, username: u, password_env: T_PW, password_file: " + tokenFile + "}\n", "kafka.sasl.password_env and kafka.sasl.password_file are set"},
		{"missing uri_file", "mongo: {uri_file: " + filepath.Join(dir, "no-uri") + "}\n", "mongo.uri_file: stat " + filepath.Join(dir, "no-uri")},
		{"missing password_file", "kafka:\n  sasl: {mechanism: PLAIN, username: u, password_file: " + filepath.Join(dir, "no-pw") + "}\n", "kafka.sasl.password_file: stat " + filepath.Join(dir, "no-pw")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "fanout.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := run(t, "", nil, "config", "check", "--config", p)
			if code != exitConfig || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want %d with %q:\n%s%s", code, exitConfig, tc.want, out, errOut)
			}
		})
	}
}
