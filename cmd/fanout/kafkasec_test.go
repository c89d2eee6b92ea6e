package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/kafkaconf"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// secureSetup is one run's configuration file for a security listener of
// the real broker, with its Logic Apps simulator and the environment the
// roles read their secrets from.
type secureSetup struct {
	path   string // the YAML file the roles load
	cfg    *config.Config
	vars   map[string]string
	la     *lasim.Server
	events string
}

// kafkaBlock is the kafka: section an operator would write for listener,
// secrets by reference: the PLAIN password from an environment variable
// (as for Azure Event Hubs), the SCRAM password from a file (a mounted
// Kubernetes Secret), the client key from a file.
func kafkaBlock(t *testing.T, sec testenv.KafkaSecurity, listener string, vars map[string]string) string {
	t.Helper()
	switch listener {
	case testenv.ListenerPlain:
		vars["T_KAFKA_PASSWORD"] = sec.PlainPassword
		return fmt.Sprintf(`kafka:
  brokers: [%q]
  session_timeout: 6s
  tls: {enabled: true, ca_file: %q}
  sasl: {mechanism: PLAIN, username: %q, password_env: T_KAFKA_PASSWORD}
`, sec.SASLSSL, sec.File("ca.pem"), sec.PlainUser)
	case testenv.ListenerScram:
		pf := filepath.Join(t.TempDir(), "kafka-password")
		if err := os.WriteFile(pf, []byte(sec.ScramPassword+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`kafka:
  brokers: [%q]
  session_timeout: 6s
  tls: {enabled: true, ca_file: %q}
  sasl: {mechanism: SCRAM-SHA-512, username: %q, password_file: %q}
`, sec.SASLSSL, sec.File("ca.pem"), sec.ScramUser, pf)
	case testenv.ListenerMTLS:
		return fmt.Sprintf(`kafka:
  brokers: [%q]
  session_timeout: 6s
  tls: {enabled: true, ca_file: %q, cert_file: %q, key_file: %q}
`, sec.SSL, sec.File("ca.pem"), sec.File("client.pem"), sec.File("client.key"))
	}
	t.Fatalf("unknown listener %s", listener)
	return ""
}

// newSecureSetup writes the configuration of a projector, a relay and a
// Logic Apps worker that reach Kafka only through listener; edit changes
// the kafka: section before it is written.
func newSecureSetup(t *testing.T, sec testenv.KafkaSecurity, listener string, edit func(kafka string) string) *secureSetup {
	t.Helper()
	s := &secureSetup{vars: map[string]string{}}
	la, err := lasim.New(lasim.Config{Key: "la-signing-key-" + testenv.Database(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := la.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = la.Close() })
	s.la = la
	s.vars["T_LA_URL"] = la.CallbackURL("quotes", "manual", false)
	t.Setenv("T_LA_URL", s.vars["T_LA_URL"])

	kafka := kafkaBlock(t, sec, listener, s.vars)
	if edit != nil {
		kafka = edit(kafka)
	}
	s.events = testenv.Topic(t, "events")
	notif := testenv.Topic(t, "notif")
	y := kafka + fmt.Sprintf(`topics:
  events: %s
  events_dlq: %s.dlq
  notifications: %s
  dlq_prefix: %s.dlq.
  retry_prefix: %s.retry.
groups: {projector: %s, worker_prefix: %s-}
mongo: {uri: %q, database: %s, timeout: 20s}
relay: {lease_ttl: 6s, produce_timeout: 1s}
connectors:
  logic_apps:
    type: logicapps
    settings: {url_env: T_LA_URL, max_attempts: 3}
routing:
  default: {targets: [logic_apps], priority: normal}
delivery: {max_attempts: 3, min_backoff: 20ms, max_backoff: 100ms, revoke_timeout: 3s, delivered_flush: 200ms}
admin: {listen: 127.0.0.1:0}
log: {level: info, format: json}
`, s.events, s.events, notif, notif, notif, testenv.Topic(t, "proj"), testenv.Topic(t, "w"), testenv.Mongo(t), testenv.Database(t))
	s.path = filepath.Join(t.TempDir(), "fanout.yaml")
	if err := os.WriteFile(s.path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(s.path, s.getenv)
	if err != nil {
		t.Fatalf("load %s: %v", s.path, err)
	}
	s.cfg = cfg
	// Topics are created over the plaintext listener of the same broker:
	// the test is about the roles' own clients.
	brokers := testenv.Kafka(t)
	for _, tp := range []string{cfg.Topics.Events, cfg.Topics.EventsDLQ, cfg.Topics.Notifications, cfg.DLQTopic("logic_apps"), cfg.RetryTopic("logic_apps")} {
		testenv.CreateTopic(t, brokers, tp, 2)
	}
	return s
}

func (s *secureSetup) getenv(k string) string { return s.vars[k] }

// roleRun is one role started through Main, as the binary starts it.
type roleRun struct {
	name   string
	stderr *syncBuffer
	done   chan struct{} // closed when Main returned
	code   int           // Main's exit status, once done
}

func (s *secureSetup) start(ctx context.Context, args ...string) *roleRun {
	r := &roleRun{name: args[0], stderr: &syncBuffer{}, done: make(chan struct{})}
	e := &env{stdout: io.Discard, stderr: r.stderr, stdin: strings.NewReader(""), getenv: s.getenv}
	go func() {
		defer close(r.done)
		r.code = Main(ctx, append(args, "-config", s.path), e)
	}()
	return r
}

// waitListening waits until the role's admin listener is up, which it
// starts after its store and its Kafka startup check.
func (r *roleRun) waitListening(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(r.stderr.String(), `"msg":"admin listener started"`) {
		select {
		case <-r.done:
			t.Fatalf("%s exited at start with %d: %s", r.name, r.code, tail(r.stderr.String()))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no admin listener after 60 s: %s", r.name, tail(r.stderr.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKafkaSecurityPipeline runs a projector, a relay and a Logic Apps
// worker, each started by Main from a configuration file, against the real
// broker over each security listener (PLAIN over TLS, SCRAM-SHA-512 over
// TLS, mutual TLS), and sees events produced over the same listener reach
// the Logic Apps simulator.
func TestKafkaSecurityPipeline(t *testing.T) {
	sec := testenv.RequireKafkaSecurity(t)
	for _, listener := range []string{testenv.ListenerPlain, testenv.ListenerScram, testenv.ListenerMTLS} {
		t.Run(listener, func(t *testing.T) {
			s := newSecureSetup(t, sec, listener, nil)
			ctx, cancel := context.WithCancel(context.Background())
			var roles []*roleRun
			var once sync.Once
			stop := func() {
				once.Do(func() {
					cancel()
					for _, r := range roles {
						select {
						case <-r.done:
							if r.code != 0 {
								t.Errorf("%s exited with %d: %s", r.name, r.code, tail(r.stderr.String()))
							}
						case <-time.After(30 * time.Second):
							t.Errorf("%s did not stop within 30 s", r.name)
						}
					}
				})
			}
			t.Cleanup(stop)
			// One at a time, each past its store setup: FerretDB 1.24 on
			// PostgreSQL drops connections that create the same indexes
			// concurrently ("slice bounds out of range" in its log).
			for _, args := range [][]string{{"projector"}, {"relay"}, {"worker", "--connector", "logic_apps"}} {
				r := s.start(ctx, args...)
				roles = append(roles, r)
				r.waitListening(t)
			}

			kopts, err := kafkaconf.Options(s.cfg, "test-producer", s.getenv, nil)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := kgo.NewClient(append(kopts, kgo.DefaultProduceTopic(s.events))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			now := time.Now().UTC().Format(time.RFC3339Nano)
			const n = 5
			for i := range n {
				qid := fmt.Sprintf("%s-Q%d", listener, i)
				b, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("%s-e%d", listener, i), "event_type": "quote_created", "quote_id": qid, "version": 1, "timestamp": now, "amount": 10 + i, "currency": "EUR"})
				if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(qid), Value: b}).FirstErr(); err != nil {
					t.Fatalf("produce over %s: %v", listener, err)
				}
			}
			deadline := time.Now().Add(90 * time.Second)
			for delivered(s.la) < n {
				for _, r := range roles {
					select {
					case <-r.done:
						t.Fatalf("%s exited early with %d: %s", r.name, r.code, tail(r.stderr.String()))
					default:
					}
				}
				if time.Now().After(deadline) {
					for _, r := range roles {
						t.Logf("%s log tail:\n%s", r.name, tail(r.stderr.String()))
					}
					t.Fatalf("%d of %d notifications reached Logic Apps after 90 s", delivered(s.la), n)
				}
				time.Sleep(100 * time.Millisecond)
			}
			stop()
			if p := s.vars["T_KAFKA_PASSWORD"]; p != "" {
				for _, r := range roles {
					if strings.Contains(r.stderr.String(), p) {
						t.Errorf("the %s log shows the Kafka password", r.name)
					}
				}
			}
		})
	}
}

// delivered counts the distinct notifications the simulator accepted.
func delivered(la *lasim.Server) int {
	ids := map[string]bool{}
	for _, c := range la.Calls() {
		if c.Status >= 200 && c.Status < 300 {
			ids[c.TrackingID] = true
		}
	}
	return len(ids)
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}

// TestRolesRefuseBadKafkaCredentials: a wrong password, an unknown CA and
// an expired client certificate end every role at start with exit status
// 2 and an error naming the kafka.* setting, instead of a role that keeps
// running and retrying without saying why.
func TestRolesRefuseBadKafkaCredentials(t *testing.T) {
	sec := testenv.RequireKafkaSecurity(t)
	cases := []struct {
		name     string
		listener string
		edit     func(string) string
		role     []string
		want     string
	}{
		{"wrong PLAIN password", testenv.ListenerPlain, nil, []string{"relay"}, "kafka.sasl.password: authentication failed"},
		{"wrong SCRAM password", testenv.ListenerScram, nil, []string{"worker", "--connector", "logic_apps"}, "kafka.sasl.password: authentication failed"},
		{"unknown CA", testenv.ListenerPlain, func(k string) string {
			return strings.Replace(k, sec.File("ca.pem"), sec.File("other-ca.pem"), 1)
		}, []string{"projector"}, "kafka.tls.ca_file: the broker's certificate is signed by an unknown authority"},
		{"expired client certificate", testenv.ListenerMTLS, func(k string) string {
			k = strings.Replace(k, sec.File("client.pem"), sec.File("client-expired.pem"), 1)
			return strings.Replace(k, sec.File("client.key"), sec.File("client-expired.key"), 1)
		}, []string{"admin"}, "kafka.tls.cert_file: the client certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSecureSetup(t, sec, tc.listener, tc.edit)
			if strings.HasPrefix(tc.name, "wrong") {
				// Break the password where the configuration takes it from.
				if _, ok := s.vars["T_KAFKA_PASSWORD"]; ok {
					s.vars["T_KAFKA_PASSWORD"] = "not-the-password"
				} else if err := os.WriteFile(s.cfg.Kafka.SASL.PasswordFile, []byte("not-the-password\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r := s.start(ctx, tc.role...)
			select {
			case <-r.done:
			case <-time.After(40 * time.Second):
				t.Fatalf("%s did not return 20 s after its context ended", r.name)
			}
			out := r.stderr.String()
			if code := r.code; ctx.Err() != nil || code != exitConfig || !strings.Contains(out, tc.want) {
				t.Fatalf("%s: exit %d (context: %v), want %d before the 20 s context ends, with %q in:\n%s", r.name, r.code, ctx.Err(), exitConfig, tc.want, tail(out))
			}
			if strings.Contains(out, "not-the-password") {
				t.Errorf("the error shows the password: %s", out)
			}
			t.Logf("%s", strings.TrimSpace(out[strings.LastIndex(out, "fanout "+r.name+":"):]))
		})
	}
}
