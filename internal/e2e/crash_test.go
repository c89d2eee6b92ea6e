package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is a fanout role running as a child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

func startRole(t *testing.T, bin, cfgPath, role string, extraEnv ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), role+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, role, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), extraEnv...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: role, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s (pid %d) log tail:\n%s", role, p.pid(), b)
		}
	})
	return p
}

func (p *proc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.done <- nil // let a second kill return at once
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// TestCrashes runs the projector and the relay as child processes and
// SIGKILLs them at random points, 20 rounds, restarting each time. No
// notification may be lost or arrive ahead of its READ model write;
// duplicates are allowed and counted.
func TestCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs child processes for about a minute; skipped with -short")
	}
	e := newEnv(t)
	bin := fanoutBinary(t)
	cfgPath := e.writeConfig(t)
	// Static membership: a restarted projector takes its partitions back
	// at once instead of waiting for the dead member's session to expire.
	instance := "FANOUT_GROUPS_PROJECTOR_INSTANCE_ID=crash-projector"
	// The shortest lease the configuration allows (produce_timeout + 500ms
	// <= lease_ttl/4), so that a restarted relay takes over from its killed
	// predecessor within a round or two.
	shortLease := []string{"FANOUT_RELAY_LEASE_TTL=6s", "FANOUT_RELAY_PRODUCE_TIMEOUT=1s"}
	w := genWorkload(3000, 300, 7)
	c := collect(t, e)
	rng := rand.New(rand.NewPCG(7, 7))
	const rounds = 20
	chunk := (len(w.events) + rounds - 1) / rounds
	kills := map[string]int{}
	var proj, relay *proc
	for round := range rounds {
		lo, hi := round*chunk, min((round+1)*chunk, len(w.events))
		produceEvents(t, e.brokers, e.cfg.Topics.Events, w.events[lo:hi])
		if proj == nil {
			proj = startRole(t, bin, cfgPath, "projector", instance)
		}
		if relay == nil {
			relay = startRole(t, bin, cfgPath, "relay", shortLease...)
		}
		time.Sleep(time.Duration(1000+rng.IntN(3000)) * time.Millisecond)
		// Kill the projector, the relay or both; a survivor carries on
		// into the next round.
		switch rng.IntN(3) {
		case 0:
			proj.kill()
			proj = nil
			kills["projector"]++
		case 1:
			relay.kill()
			relay = nil
			kills["relay"]++
		default:
			proj.kill()
			relay.kill()
			proj, relay = nil, nil
			kills["both"]++
		}
		backlog, _, _ := e.st.OutboxBacklog(context.Background(), time.Now())
		t.Logf("round %d: %d notifications received, outbox backlog %d", round, len(c.snapshot()), backlog)
	}
	t.Logf("after %d rounds (kills %v): %d of %d notifications received so far", rounds, kills, len(c.snapshot()), len(w.expected))
	if proj == nil {
		startRole(t, bin, cfgPath, "projector", instance)
	}
	if relay == nil {
		startRole(t, bin, cfgPath, "relay", shortLease...)
	}
	c.waitFor(t, w.expected, 3*time.Minute)
	checkReadModel(t, e.st, w)
	recs := c.snapshot()
	dups := checkOrder(t, recs)
	for _, r := range recs {
		if _, ok := w.expected[r.id]; !ok {
			t.Errorf("unexpected notification %s", r.id)
		}
	}
	t.Logf("all %d notifications delivered; %d duplicates (same id) out of %d records", len(w.expected), dups, len(recs))
}

// TestRelayFailover kills the relay that holds the lease while events flow:
// the standby takes over, nothing is lost, per-key order holds, and no
// record published under the old lease token follows one published under
// the new token in any partition.
func TestRelayFailover(t *testing.T) {
	e := newEnv(t)
	bin := fanoutBinary(t)
	cfgPath := e.writeConfig(t)
	w := genWorkload(2000, 200, 11)
	c := collect(t, e)
	startRole(t, bin, cfgPath, "projector")
	relays := []*proc{startRole(t, bin, cfgPath, "relay"), startRole(t, bin, cfgPath, "relay")}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		chunk := len(w.events) / 20
		for i := 0; i < len(w.events) && ctx.Err() == nil; i += chunk {
			produceEvents(t, e.brokers, e.cfg.Topics.Events, w.events[i:min(i+chunk, len(w.events))])
			time.Sleep(300 * time.Millisecond)
		}
	}()

	// Wait until notifications flow, then kill the lease holder.
	deadline := time.Now().Add(time.Minute)
	for len(c.snapshot()) < 200 {
		if time.Now().After(deadline) {
			t.Fatal("no notifications flowing before the failover")
		}
		time.Sleep(50 * time.Millisecond)
	}
	l, err := e.st.ReadLease(context.Background(), e.cfg.Relay.LeaseName)
	if err != nil || l == nil {
		t.Fatalf("read lease: %v %v", l, err)
	}
	var leader, standby *proc
	for _, r := range relays {
		if strings.Contains(l.Holder, "-"+strconv.Itoa(r.pid())+"-") {
			leader = r
		} else {
			standby = r
		}
	}
	if leader == nil {
		t.Fatalf("lease holder %q is neither relay", l.Holder)
	}
	killedAt := time.Now()
	leader.kill()
	t.Logf("killed leader pid %d (token %d) after %d notifications", leader.pid(), l.Token, len(c.snapshot()))

	// The standby must take over within the lease TTL plus its check.
	var took time.Duration
	for {
		nl, err := e.st.ReadLease(context.Background(), e.cfg.Relay.LeaseName)
		if err == nil && nl != nil && nl.Token > l.Token {
			took = time.Since(killedAt)
			if !strings.Contains(nl.Holder, "-"+strconv.Itoa(standby.pid())+"-") {
				t.Fatalf("lease went to %q, not the standby", nl.Holder)
			}
			break
		}
		if time.Since(killedAt) > e.cfg.Relay.LeaseTTL+5*time.Second {
			t.Fatalf("standby did not take over within %v", e.cfg.Relay.LeaseTTL+5*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("standby took over %v after the kill (lease_ttl %v)", took.Round(time.Millisecond), e.cfg.Relay.LeaseTTL)
	<-produced
	c.waitFor(t, w.expected, 2*time.Minute)
	recs := c.snapshot()
	dups := checkOrder(t, recs)

	// Fencing: within a partition, tokens never go down.
	high := map[int32]int64{}
	sawNew := false
	for _, r := range sortedByOffset(recs) {
		if r.token < high[r.partition] {
			t.Errorf("partition %d offset %d: published under token %d after token %d (zombie relay)", r.partition, r.offset, r.token, high[r.partition])
		}
		high[r.partition] = max(high[r.partition], r.token)
		if r.token > l.Token {
			sawNew = true
		}
	}
	if !sawNew {
		t.Error("no record published under the new lease token")
	}
	t.Logf("failover: %d notifications, %d duplicates", len(w.expected), dups)
}

func sortedByOffset(recs []received) []received {
	out := append([]received(nil), recs...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].partition != out[j].partition {
			return out[i].partition < out[j].partition
		}
		return out[i].offset < out[j].offset
	})
	return out
}

// TestSIGTERM: the projector and the relay stop cleanly on SIGTERM (exit
// status 0, group left, lease released) while events flow, and what they
// committed is not lost.
func TestSIGTERM(t *testing.T) {
	e := newEnv(t)
	bin := fanoutBinary(t)
	cfgPath := e.writeConfig(t)
	w := genWorkload(1000, 100, 5)
	c := collect(t, e)
	proj := startRole(t, bin, cfgPath, "projector")
	relay := startRole(t, bin, cfgPath, "relay")
	produceEvents(t, e.brokers, e.cfg.Topics.Events, w.events[:500])
	for len(c.snapshot()) < 50 {
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range []*proc{proj, relay} {
		start := time.Now()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.done:
			p.done <- err
			if err != nil {
				t.Errorf("%s exited with %v after SIGTERM", p.name, err)
			}
			t.Logf("%s stopped %v after SIGTERM", p.name, time.Since(start).Round(time.Millisecond))
		case <-time.After(20 * time.Second):
			t.Fatalf("%s still running 20 s after SIGTERM", p.name)
		}
	}
	// The lease was released: a new relay takes over at once.
	l, err := e.st.ReadLease(context.Background(), e.cfg.Relay.LeaseName)
	if err != nil || l == nil || !l.Released {
		t.Fatalf("lease after SIGTERM: %+v %v", l, err)
	}
	produceEvents(t, e.brokers, e.cfg.Topics.Events, w.events[500:])
	startRole(t, bin, cfgPath, "projector")
	startRole(t, bin, cfgPath, "relay")
	c.waitFor(t, w.expected, 2*time.Minute)
	checkOrder(t, c.snapshot())
}
