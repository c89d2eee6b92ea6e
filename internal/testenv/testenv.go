// Package testenv gives tests the servers they need: a Kafka cluster and a
// MongoDB-compatible store. Only tests import it.
//
// Kafka: the brokers in FANOUT_TEST_KAFKA_BROKERS (a real broker; `make test`
// starts Apache Kafka on 127.0.0.1:19092 and sets it), else an in-process kfake
// cluster per test. kfake speaks the protocol but is a fake: tests of failure,
// ordering under rebalances or performance call RequireRealKafka.
//
// MongoDB: the URI in FANOUT_TEST_MONGO_URI (`make test` runs FerretDB on
// PostgreSQL; point it at a real MongoDB to run the suite there), else an
// embedded FerretDB on SQLite in a temporary directory per test. FerretDB is not
// MongoDB (no transactions, no change streams, lost concurrent updates): tests
// that need what it lacks skip with StoreKind in the message.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Environment variables read by this package.
const (
	// EnvKafkaBrokers holds comma-separated seed brokers of a real Kafka.
	EnvKafkaBrokers = "FANOUT_TEST_KAFKA_BROKERS"
	// EnvMongoURI holds the URI of an external MongoDB-compatible server.
	EnvMongoURI = "FANOUT_TEST_MONGO_URI"
	// EnvFerretDBLog sets the embedded FerretDB's log level
	// (debug, info, warn, error; default error: at warn it dumps every
	// command error, e.g. the driver's endSessions). Its log goes to t.Log.
	EnvFerretDBLog = "FANOUT_TEST_FERRETDB_LOG"
)

// RealKafka reports whether tests run against a real Kafka (EnvKafkaBrokers is set).
func RealKafka() bool {
	return len(envBrokers()) > 0
}

// RequireRealKafka skips the test unless EnvKafkaBrokers names a real broker.
func RequireRealKafka(t testing.TB) {
	t.Helper()
	if !RealKafka() {
		t.Skipf("needs a real Kafka broker (kfake is not enough here): set %s=host:port, "+
			"or run `make test`, which starts Apache Kafka on 127.0.0.1:19092", EnvKafkaBrokers)
	}
}

func envBrokers() []string {
	var out []string
	for _, b := range strings.Split(os.Getenv(EnvKafkaBrokers), ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Kafka returns seed brokers: those of EnvKafkaBrokers, or those of a new
// in-process kfake cluster (one broker, auto topic creation, 6 partitions by
// default) that is closed when the test ends.
func Kafka(t testing.TB) []string {
	t.Helper()
	if b := envBrokers(); len(b) > 0 {
		return b
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(6),
	)
	if err != nil {
		t.Fatalf("testenv: starting kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// KafkaKind describes the Kafka in use, for log and skip messages.
func KafkaKind() string {
	if b := envBrokers(); len(b) > 0 {
		return "external: " + strings.Join(b, ",")
	}
	return "kfake (in-process)"
}

// CreateTopic creates topic with the given number of partitions (replication
// factor 1; an existing topic is accepted) and waits until metadata shows all
// its partitions with a leader.
func CreateTopic(t testing.TB, brokers []string, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("testenv: kafka client: %v", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for {
		resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			break
		}
		// The controller may still be settling right after a broker start.
		if !kerr.IsRetriable(err) || ctx.Err() != nil {
			t.Fatalf("testenv: creating topic %q: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	var last string
	for {
		md, err := adm.Metadata(ctx, topic)
		if err == nil {
			td, ok := md.Topics[topic]
			switch {
			case !ok:
				last = "topic missing"
			case td.Err != nil:
				last = td.Err.Error()
			case int32(len(td.Partitions)) < partitions:
				last = fmt.Sprintf("%d of %d partitions", len(td.Partitions), partitions)
			default:
				ready := true
				for _, p := range td.Partitions {
					if p.Err != nil || p.Leader < 0 {
						ready = false
						last = fmt.Sprintf("partition %d: leader %d, err %v", p.Partition, p.Leader, p.Err)
						break
					}
				}
				if ready {
					return
				}
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: topic %q not ready in metadata: %s", topic, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Mongo returns a MongoDB URI: EnvMongoURI, or that of an embedded FerretDB on
// SQLite in a temporary directory, stopped when the test ends.
func Mongo(t testing.TB) string {
	t.Helper()
	if uri := strings.TrimSpace(os.Getenv(EnvMongoURI)); uri != "" {
		return uri
	}

	dir := t.TempDir() // removed after the Cleanup below has stopped FerretDB
	lw := &testLogWriter{t: t}
	logger := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: ferretLogLevel()}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
	})
	if err != nil {
		t.Fatalf("testenv: starting embedded FerretDB: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("testenv: embedded FerretDB did not stop within 30 s")
		}
		lw.close()
	})
	return f.MongoDBURI()
}

// StoreKind describes the store that Mongo returns, for skip messages, e.g.
// "ferretdb-sqlite (embedded)" or "external: db.example:27017" (no credentials).
func StoreKind() string {
	uri := strings.TrimSpace(os.Getenv(EnvMongoURI))
	if uri == "" {
		return "ferretdb-sqlite (embedded)"
	}
	return "external: " + redactedHosts(uri)
}

// redactedHosts returns the host list of a MongoDB URI without scheme,
// credentials, path or options.
func redactedHosts(uri string) string {
	s := uri
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "(no host)"
	}
	return s
}

func ferretLogLevel() slog.Level {
	switch strings.ToLower(os.Getenv(EnvFerretDBLog)) {
	case "debug":
		return slog.LevelDebug
	case "info":
		return slog.LevelInfo
	case "warn":
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// testLogWriter sends log lines to t.Log until closed (t.Log after the test
// has ended panics, and server goroutines may outlive it).
type testLogWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log("ferretdb: " + strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

var _ io.Writer = (*testLogWriter)(nil)

// Database returns a database name unique to this test run: "t_", the test
// name in [a-z0-9_], and a random suffix; at most 63 characters (PostgreSQL's
// limit for the schema FerretDB makes of it).
func Database(t testing.TB) string {
	t.Helper()
	const maxLen = 63
	suffix := "_" + randHex(4)
	name := sanitize(t.Name(), func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
	}, '_')
	if room := maxLen - len("t_") - len(suffix); len(name) > room {
		name = strings.TrimRight(name[:room], "_")
	}
	return "t_" + name + suffix
}

// Topic returns a topic name unique to this test run: prefix, the test name
// and a random suffix, in [a-z0-9-] (plus '.' and '_' kept from prefix).
func Topic(t testing.TB, prefix string) string {
	t.Helper()
	const maxLen = 200 // Kafka allows 249
	p := sanitize(prefix, func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
	}, '-')
	if len(p) > 120 {
		p = p[:120]
	}
	if p != "" {
		p += "-"
	}
	suffix := "-" + randHex(4)
	name := sanitize(t.Name(), func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
	}, '-')
	if room := maxLen - len(p) - len(suffix); len(name) > room {
		name = strings.TrimRight(name[:room], "-")
	}
	if name == "" {
		return strings.TrimSuffix(p, "-") + suffix
	}
	return p + name + suffix
}

// sanitize lowercases letters unless keep accepts them as they are, replaces
// other runs of characters by one sep, and trims sep at both ends.
func sanitize(s string, keep func(rune) bool, sep byte) string {
	var b strings.Builder
	pendingSep := false
	for _, r := range s {
		if !keep(r) {
			if lr := toLowerASCII(r); keep(lr) {
				r = lr
			}
		}
		if keep(r) {
			if pendingSep && b.Len() > 0 {
				b.WriteByte(sep)
			}
			pendingSep = false
			b.WriteRune(r)
			continue
		}
		pendingSep = true
	}
	return b.String()
}

func toLowerASCII(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + ('a' - 'A')
	}
	return r
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
