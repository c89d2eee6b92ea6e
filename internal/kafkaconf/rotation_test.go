package kafkaconf

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestSASLPasswordFileRotation: with kafka.sasl.password_file, a client
// authenticates every new connection with the file's current content. On
// the real broker's SASL_SSL listener a SCRAM-SHA-512 user's password is
// changed (as an operator rotates it: broker first, then the mounted
// Secret); the client built before the change opens its produce connection
// after it, with the new password, with no restart. The old password no
// longer authenticates.
func TestSASLPasswordFileRotation(t *testing.T) {
	sec := testenv.RequireKafkaSecurity(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// A user of this test's own, so the broker's shared users keep their
	// passwords; users are managed over the plaintext listener.
	plain, err := kgo.NewClient(kgo.SeedBrokers(testenv.Kafka(t)...))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	adm := kadm.NewClient(plain)
	user := "rotate-" + testenv.Database(t)
	setPassword := func(pw string) {
		t.Helper()
		res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: user, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: pw}})
		if err == nil {
			for _, r := range res {
				if r.Err != nil {
					err = r.Err
				}
			}
		}
		if err != nil {
			t.Fatalf("set the SCRAM password of %s: %v", user, err)
		}
	}
	const (
		oldPassword = "old-scram-password-0123456789"
		newPassword = "new-scram-password-9876543210"
	)
	setPassword(oldPassword)
	t.Cleanup(func() {
		_, _ = adm.AlterUserSCRAMs(context.Background(), []kadm.DeleteSCRAM{{User: user, Mechanism: kadm.ScramSha512}}, nil)
	})

	file := filepath.Join(t.TempDir(), "kafka-password")
	write := func(pw string) {
		t.Helper()
		if err := os.WriteFile(file+".new", []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".new", file); err != nil {
			t.Fatal(err)
		}
	}
	write(oldPassword)
	cfg := config.Default()
	cfg.Kafka.Brokers = []string{sec.SASLSSL}
	cfg.Kafka.TLS = config.TLS{Enabled: true, CAFile: sec.File("ca.pem")}
	cfg.Kafka.SASL = config.SASL{Mechanism: "SCRAM-SHA-512", Username: user, PasswordFile: file}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// The store looks at the file at every authentication (SIGHUP's
	// Reload is tested in internal/secret and cmd/fanout).
	secrets := secret.NewStore(nil, time.Nanosecond)
	opts, err := Options(&cfg, "rotation-test", nil, secrets)
	if err != nil {
		t.Fatal(err)
	}
	topic := testenv.Topic(t, "rotation")
	testenv.CreateTopic(t, testenv.Kafka(t), topic, 1)
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(topic), kgo.RecordRetries(2))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Metadata over the old password: the client's first connection.
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("ping with the first password: %v", err)
	}

	setPassword(newPassword)
	write(newPassword)

	// franz-go produces over a connection of its own, opened now: it must
	// authenticate with the new password.
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	if err := cl.ProduceSync(pctx, &kgo.Record{Value: []byte("after rotation")}).FirstErr(); err != nil {
		t.Fatalf("produce on a new connection after the rotation: %v", err)
	}
	// And the broker really refuses the old one: a client that still
	// holds it is refused.
	stale := cfg
	stale.Kafka.SASL = config.SASL{Mechanism: "SCRAM-SHA-512", Username: user, Password: oldPassword}
	sopts, err := Options(&stale, "rotation-test-stale", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stale.Kafka.StartupCheckTimeout = 20 * time.Second
	if err := Check(ctx, &stale, sopts); err == nil {
		t.Fatal("the old password still authenticates: the rotation proved nothing")
	}
}
