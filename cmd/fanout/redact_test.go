package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
