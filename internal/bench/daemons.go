package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// daemon is a server process this driver owns (a private broker or
// store): started, stopped and started again on the same data.
type daemon struct {
	name  string
	argv  []string
	dir   string
	ready func(ctx context.Context, out string) error

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

// start runs the process and waits until ready says it serves.
func (d *daemon) start(ctx context.Context, timeout time.Duration) error {
	d.mu.Lock()
	if d.cmd != nil {
		d.mu.Unlock()
		return nil
	}
	d.starts++
	out := filepath.Join(d.dir, fmt.Sprintf("%s-%d.out", d.name, d.starts))
	f, err := os.Create(out)
	if err != nil {
		d.mu.Unlock()
		return fmt.Errorf("%s: log: %w", d.name, err)
	}
	cmd := exec.Command(d.argv[0], d.argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		d.mu.Unlock()
		return fmt.Errorf("%s: start: %w", d.name, err)
	}
	done := make(chan struct{})
	d.cmd, d.done = cmd, done
	d.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		f.Close()
		d.mu.Lock()
		if d.cmd == cmd {
			d.cmd = nil
		}
		d.mu.Unlock()
		close(done)
	}()

	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := d.ready(rctx, out)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited during start: %s", d.name, tail(out, 2000))
		case <-rctx.Done():
			d.stop(10 * time.Second)
			return fmt.Errorf("%s not ready within %v (%v): %s", d.name, timeout, err, tail(out, 2000))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, waits up to grace, then kills; it returns once the
// process is gone.
func (d *daemon) stop(grace time.Duration) {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Broker is a private single-node Apache Kafka (KRaft) from the jars
// deploy/local/kafka.sh fetches. Its PLAINTEXT listener is advertised at
// another address (a toxiproxy link in front of it), so that every client
// that bootstraps there keeps going through the link; its DIRECT listener
// is advertised as itself, for the driver's own clients.
type Broker struct {
	d          daemon
	directAddr string
}

// kafkaLibs returns the libs dir of the newest Kafka fetched whole.
func kafkaLibs() (string, error) {
	cache := os.Getenv("FANOUT_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "fanout")
	}
	versions := strings.Fields(envOr("FANOUT_KAFKA_VERSION", "4.4.0 4.3.1 4.2.0 4.1.1 4.0.0"))
	for _, v := range versions {
		d := filepath.Join(cache, "kafka-"+v, "libs")
		if _, err := os.Stat(filepath.Join(d, ".complete")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no Kafka jars in %s (run deploy/local/kafka.sh fetch)", cache)
}

// StartBroker formats a data dir under dir and starts the broker;
// advertised is the address clients of the PLAINTEXT listener are sent to.
func StartBroker(ctx context.Context, log io.Writer, root, dir, advertised string, port int) (*Broker, error) {
	if _, err := kafkaLibs(); err != nil {
		if err := runScript(ctx, root, log, "kafka", "fetch"); err != nil {
			return nil, err
		}
	}
	libs, err := kafkaLibs()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("java"); err != nil {
		return nil, errors.New("java not found (apt-get install openjdk-17-jre-headless)")
	}
	direct, err := freePort()
	if err != nil {
		return nil, err
	}
	ctrl, err := freePort()
	if err != nil {
		return nil, err
	}
	kdir := filepath.Join(dir, "kafka")
	if err := os.MkdirAll(filepath.Join(kdir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("kafka dir: %w", err)
	}
	props := fmt.Sprintf(`process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[3]d
listeners=PLAINTEXT://127.0.0.1:%[1]d,DIRECT://127.0.0.1:%[2]d,CONTROLLER://127.0.0.1:%[3]d
advertised.listeners=PLAINTEXT://%[4]s,DIRECT://127.0.0.1:%[2]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=DIRECT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,DIRECT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=%[5]s
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
`, port, direct, ctrl, advertised, filepath.Join(kdir, "data"))
	propsPath := filepath.Join(kdir, "server.properties")
	if err := os.WriteFile(propsPath, []byte(props), 0o644); err != nil {
		return nil, fmt.Errorf("server.properties: %w", err)
	}
	log4j := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders><File name="file" fileName="%s" append="true"><PatternLayout pattern="[%%d] %%p %%m (%%c)%%n"/></File></Appenders>
  <Loggers>
    <Root level="warn"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.server.KafkaRaftServer" level="info"/>
  </Loggers>
</Configuration>
`, filepath.Join(kdir, "server.log"))
	if err := os.WriteFile(filepath.Join(kdir, "log4j2.xml"), []byte(log4j), 0o644); err != nil {
		return nil, fmt.Errorf("log4j2.xml: %w", err)
	}
	jopts := []string{"-cp", filepath.Join(libs, "*"), "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + filepath.Join(kdir, "log4j2.xml"), "-Dlog4j2.disable.jmx=true"}
	format := exec.CommandContext(ctx, "java", append(append([]string{"-Xmx256m", "-XX:TieredStopAtLevel=1"}, jopts...),
		"kafka.tools.StorageTool", "format", "-t", clusterID(), "-c", propsPath)...)
	if out, err := format.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("format kafka data dir: %w: %s", err, out)
	}
	b := &Broker{directAddr: fmt.Sprintf("127.0.0.1:%d", direct)}
	b.d = daemon{name: "kafka", dir: kdir,
		argv: append(append([]string{"java", "-Xmx512m", "-Xms128m", "-XX:+UseG1GC"}, jopts...), "kafka.Kafka", propsPath),
		ready: func(ctx context.Context, _ string) error {
			cl, err := kgo.NewClient(kgo.SeedBrokers(b.directAddr))
			if err != nil {
				return fmt.Errorf("kafka client: %w", err)
			}
			defer cl.Close()
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := cl.Ping(pctx); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			return nil
		}}
	if err := b.d.start(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	return b, nil
}

// DirectAddr is the listener the driver's own clients use.
func (b *Broker) DirectAddr() string { return b.directAddr }

// Restart stops the broker (controlled shutdown) and starts it again on
// the same data, returning how long it was down.
func (b *Broker) Restart(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	b.d.stop(30 * time.Second)
	if err := b.d.start(ctx, 90*time.Second); err != nil {
		return time.Since(t0), err
	}
	return time.Since(t0), nil
}

// Stop stops the broker.
func (b *Broker) Stop() { b.d.stop(30 * time.Second) }

// clusterID is a Kafka Uuid string: 16 random bytes, base64url, no
// padding, not starting with '-'.
func clusterID() string {
	for i := 0; i < 100; i++ {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id := base64.RawURLEncoding.EncodeToString(b[:])
		if !strings.HasPrefix(id, "-") {
			return id
		}
	}
	return "fanoutBenchClusterA0AA"
}

// Ferret is a private FerretDB (deploy/local/ferretdb's wrapper) on the
// PostgreSQL of deploy/local: stopping and starting it keeps the data,
// which lives in PostgreSQL.
type Ferret struct {
	d    daemon
	addr string
}

// StartFerret builds the wrapper if needed and starts it on a free port.
func StartFerret(ctx context.Context, log io.Writer, root, dir, pgURL string) (*Ferret, error) {
	if err := runScript(ctx, root, log, "ferretdb", "build"); err != nil {
		return nil, err
	}
	cache := os.Getenv("FANOUT_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "fanout")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	f := &Ferret{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	fdir := filepath.Join(dir, "ferretdb")
	if err := os.MkdirAll(fdir, 0o755); err != nil {
		return nil, fmt.Errorf("ferretdb dir: %w", err)
	}
	f.d = daemon{name: "ferretdb", dir: fdir,
		argv: []string{filepath.Join(cache, "bin", "fanout-ferretdb"), "-listen", f.addr, "-handler", "postgresql",
			"-postgresql-url", pgURL, "-log-level", "error"},
		ready: func(_ context.Context, out string) error {
			b, _ := os.ReadFile(out)
			if !strings.Contains(string(b), "mongodb://") {
				return errors.New("no URI printed yet")
			}
			return nil
		}}
	if err := f.d.start(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	return f, nil
}

// Addr is the store's address.
func (f *Ferret) Addr() string { return f.addr }

// Restart stops the store and starts it again, returning how long it was
// down.
func (f *Ferret) Restart(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	f.d.stop(15 * time.Second)
	if err := f.d.start(ctx, 60*time.Second); err != nil {
		return time.Since(t0), err
	}
	return time.Since(t0), nil
}

// Stop stops the store.
func (f *Ferret) Stop() { f.d.stop(15 * time.Second) }
