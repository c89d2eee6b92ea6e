package delivery_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// buildBinary builds cmd/fanout once per test binary.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "fanout-delivery-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "fanout")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fanout")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// child is a worker running as a child process.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startChild(t *testing.T, bin, cfgPath, connector string) *child {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "worker.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "worker", "--connector", connector, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); f.Close(); close(c.done) }()
	t.Cleanup(func() {
		c.signal(syscall.SIGKILL)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("worker pid %d log tail:\n%s", cmd.Process.Pid, b)
		}
	})
	return c
}

func (c *child) signal(sig syscall.Signal) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(sig)
	<-c.done
}

// TestWorkerSIGKILL kills a worker process in the middle of delivering and
// starts another: every routed notification is delivered at least once,
// and a notification delivered twice carries the same id both times.
func TestWorkerSIGKILL(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "logic_apps", "logicapps", nil)
	sim, _ := laSim(t, e.name, lasim.Config{Faults: lasim.Faults{Latency: lasim.Duration(20 * time.Millisecond)}})
	ns := notes(100, 12, "K")
	var all []note
	for i, n := range ns {
		all = append(all, n)
		if i%7 == 0 {
			all = append(all, note{key: n.key, id: "elsewhere-" + n.id, targets: []string{"other"}})
		}
	}
	e.produce(t, all...)

	cfgPath := filepath.Join(t.TempDir(), "fanout.yaml")
	y := fmt.Sprintf(`kafka:
  brokers: [%q]
  session_timeout: 6s
topics:
  notifications: %s
  dlq_prefix: %s
groups:
  worker_prefix: %s
mongo:
  uri: %q
  database: %s
connectors:
  logic_apps:
    type: logicapps
    settings:
      url: %q
      max_attempts: 1
  other: {type: webhook}
delivery:
  max_in_flight: 16
  min_backoff: 20ms
  max_backoff: 200ms
  revoke_timeout: 2s
  delivered_flush: 200ms
log:
  level: info
  format: text
`, e.brokers[0], e.cfg.Topics.Notifications, e.cfg.Topics.DLQPrefix, e.cfg.Groups.WorkerPrefix,
		testenv.Mongo(t), testenv.Database(t), sim.CallbackURL("wf1", "manual", false))
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}

	first := startChild(t, bin, cfgPath, e.name)
	waitFor(t, time.Minute, "deliveries under way", func() bool { return len(delivered(laCalls(t, sim))) >= len(ns)/4 })
	// Kill once some progress is committed (about every second), so that
	// the second worker both skips and redelivers.
	waitFor(t, 30*time.Second, "a first commit", func() bool {
		time.Sleep(50 * time.Millisecond)
		return e.committedLag(t) < int64(len(all))
	})
	first.signal(syscall.SIGKILL)
	killedAt := len(delivered(laCalls(t, sim)))
	lagAtKill := e.committedLag(t)
	second := startChild(t, bin, cfgPath, e.name)
	waitFor(t, 90*time.Second, "every notification delivered", func() bool { return len(delivered(laCalls(t, sim))) == len(ns) })
	second.signal(syscall.SIGTERM)

	calls := laCalls(t, sim)
	got := delivered(calls)
	want := make(map[string]note, len(ns))
	for _, n := range ns {
		want[n.id] = n
	}
	dups := 0
	for id, n := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected notification %s delivered", id)
		}
		dups += n - 1
	}
	for _, c := range calls {
		if c.id != c.bodyID || c.id != fmt.Sprintf("%s-v%d", c.key, c.version) {
			t.Errorf("call for %s v%d carried tracking id %s and body id %s", c.key, c.version, c.id, c.bodyID)
		}
	}
	t.Logf("killed after %d of %d notifications (%d of %d records left uncommitted); all delivered, %d delivered twice (same id)",
		killedAt, len(ns), lagAtKill, len(all), dups)
	waitFor(t, 10*time.Second, "the second worker's final commit", func() bool { return e.committedLag(t) == 0 })
}
