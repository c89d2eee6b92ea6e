package main

import (
	"bytes"
	"errors"
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
