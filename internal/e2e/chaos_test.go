package e2e

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/bench"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestChaos is the short form of `make chaos` (about two minutes): every
// role as a child process against a broker and a store of its own behind
// toxiproxy links, random SIGKILLs, one broker and one store restart, cut
// and slow links, simulators answering 5xx, 429 and timeouts, and records
// built to fail permanently, over three projections (quotes; orders and
// invoices sharing a topic) whose aggregate and event ids repeat. It fails
// on any ledger violation, each keyed by (projection, aggregate id): a
// notification neither delivered nor dead-lettered for an injected
// permanent error, versions going backwards at a target, a notification
// ahead of its own projection's READ model write, one change under two
// ids, a notification at another projection's workflow or object, a READ
// model collection not at its projection's final state.
//
// It starts its own broker (from the jars deploy/local/kafka.sh fetches)
// because restarting the shared one would break the tests running beside
// it; it runs where FANOUT_TEST_KAFKA_BROKERS says the deploy/local
// services are in use (`make test` sets it).
func TestChaos(t *testing.T) {
	if os.Getenv(testenv.EnvKafkaBrokers) == "" {
		t.Skipf("chaos test needs the real broker's jars and Java (deploy/local/kafka.sh) to run a broker of its own and restart it: "+
			"set %s (as `make test` does) to run it, or run `make chaos`", testenv.EnvKafkaBrokers)
	}
	if testing.Short() {
		t.Skip("chaos test runs for about two minutes; skipped with -short")
	}
	root, err := bench.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := fanoutBinary(t)
	// With the relay's idempotent producer: the workers' lease-token fence
	// is the only zombie fence, as on Event Hubs. FANOUT_CHAOS_TRANSACTIONAL=1
	// runs the transactional producer too (the broker fences a zombie
	// leader); `make chaos CHAOS_ARGS=-transactional` is its long form.
	variants := []bool{false}
	if os.Getenv("FANOUT_CHAOS_TRANSACTIONAL") == "1" {
		variants = append(variants, true)
	}
	for _, transactional := range variants {
		name := "idempotent"
		if transactional {
			name = "transactional"
		}
		t.Run(name, func(t *testing.T) {
			o := bench.ShortChaos()
			o.Root, o.Bin, o.Transactional = root, bin, transactional
			lw := &lineLogger{t: t}
			o.Log = lw
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			res, err := bench.RunChaos(ctx, o)
			lw.close()
			if res != nil {
				t.Logf("\n%s", res.Ledger())
			}
			if err != nil {
				t.Fatalf("chaos run: %v", err)
			}
			for _, v := range res.Violations() {
				t.Error(v)
			}
		})
	}
}

// lineLogger sends whole lines to t.Log until closed.
type lineLogger struct {
	t      *testing.T
	mu     sync.Mutex
	buf    bytes.Buffer
	closed bool
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line)
			break
		}
		l.t.Log(strings.TrimRight(line, "\n"))
	}
	return len(p), nil
}

func (l *lineLogger) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.t.Log(l.buf.String())
	}
	l.closed = true
}
