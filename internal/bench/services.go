package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Services are the real broker and store the benchmarks run on: those
// already answering (or named by FANOUT_TEST_KAFKA_BROKERS and
// FANOUT_TEST_MONGO_URI), else started with deploy/local's scripts and
// stopped again by Stop, as deploy/local/test.sh does.
type Services struct {
	Brokers  []string
	MongoURI string

	root    string
	log     io.Writer
	started []string
}

// EnsureServices returns the services to use, starting what does not
// answer yet. root is the repository root (for deploy/local).
func EnsureServices(ctx context.Context, root string, log io.Writer) (*Services, error) {
	s := &Services{root: root, log: log}
	kafkaPort := envOr("FANOUT_KAFKA_PORT", "19092")
	ferretPort := envOr("FANOUT_FERRETDB_PORT", "27018")
	pgPort := envOr("FANOUT_PG_PORT", "15432")

	if b := os.Getenv("FANOUT_TEST_KAFKA_BROKERS"); b != "" {
		s.Brokers = strings.Split(b, ",")
	} else {
		s.Brokers = []string{"127.0.0.1:" + kafkaPort}
		if portOpen("127.0.0.1:" + kafkaPort) {
			fmt.Fprintf(log, "kafka: 127.0.0.1:%s answers; using it\n", kafkaPort)
		} else if err := s.script(ctx, "kafka", "start"); err != nil {
			s.Stop()
			return nil, err
		}
	}
	if u := os.Getenv("FANOUT_TEST_MONGO_URI"); u != "" {
		s.MongoURI = u
	} else {
		s.MongoURI = "mongodb://127.0.0.1:" + ferretPort + "/"
		if portOpen("127.0.0.1:" + ferretPort) {
			fmt.Fprintf(log, "ferretdb: 127.0.0.1:%s answers; using it\n", ferretPort)
		} else {
			if !portOpen("127.0.0.1:" + pgPort) {
				if err := s.script(ctx, "postgres", "start"); err != nil {
					s.Stop()
					return nil, err
				}
			}
			if err := s.script(ctx, "ferretdb", "start"); err != nil {
				s.Stop()
				return nil, err
			}
		}
	}
	return s, nil
}

// script runs deploy/local/<svc>.sh <verb>, noting a started service.
func (s *Services) script(ctx context.Context, svc, verb string) error {
	fmt.Fprintf(s.log, "%s: %s (deploy/local/%s.sh)\n", svc, verb, svc)
	if err := runScript(ctx, s.root, s.log, svc, verb); err != nil {
		return err
	}
	if verb == "start" {
		s.started = append(s.started, svc)
	}
	return nil
}

// Stop stops the services this process started, newest first.
func (s *Services) Stop() {
	for i := len(s.started) - 1; i >= 0; i-- {
		if err := runScript(context.Background(), s.root, s.log, s.started[i], "stop"); err != nil {
			fmt.Fprintf(s.log, "stopping %s: %v\n", s.started[i], err)
		}
	}
	s.started = nil
}

// runScript runs one deploy/local script with its output to log.
func runScript(ctx context.Context, root string, log io.Writer, svc string, args ...string) error {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "deploy", "local", svc+".sh")}, args...)...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("deploy/local/%s.sh %s: %w", svc, strings.Join(args, " "), err)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func portOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FindRoot returns the directory of fanout's go.mod, searching upwards
// from the working directory.
func FindRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for i := 0; i < 32; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/fanout-dev/fanout\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("not inside the fanout repository (no go.mod of github.com/fanout-dev/fanout above the working directory)")
}

// BuildFanout builds cmd/fanout into dir and returns the binary's path.
func BuildFanout(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "fanout")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/fanout")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/fanout: %w\n%s", err, out)
	}
	return bin, nil
}

// Machine describes where a run happened, for the report.
type Machine struct {
	CPUs      int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	MemoryGiB string `json:"memory_gib"`
	Go        string `json:"go"`
	Kafka     string `json:"kafka"`
	FerretDB  string `json:"ferretdb"`
	Postgres  string `json:"postgresql"`
	OS        string `json:"os"`
}

// DescribeMachine gathers the machine's and the services' versions; what
// cannot be found reads "unknown".
func DescribeMachine(ctx context.Context, root string, brokers []string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		CPUModel: "unknown", MemoryGiB: "unknown", Kafka: "unknown", FerretDB: "unknown", Postgres: "unknown"}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPUModel = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
		m.MemoryGiB = fmt.Sprintf("%.1f", kb/1024/1024)
	}
	m.Kafka = kafkaVersion(ctx, brokers)
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "github.com/FerretDB/FerretDB" {
				m.FerretDB = f[1] + " (embedded in deploy/local/ferretdb, PostgreSQL backend)"
			}
		}
	}
	if bin := pgBin(); bin != "" {
		if out, err := exec.CommandContext(ctx, filepath.Join(bin, "postgres"), "--version").Output(); err == nil {
			m.Postgres = strings.TrimSpace(string(out))
		}
	}
	return m
}

// kafkaVersion reads the exact version from the running local broker's
// class path when it is deploy/local's, else guesses from ApiVersions.
func kafkaVersion(ctx context.Context, brokers []string) string {
	run := envOr("FANOUT_RUN", "/tmp/fanout-run")
	if b, err := os.ReadFile(filepath.Join(run, "kafka", "kafka.pid")); err == nil {
		if cmdline, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(b)), "cmdline")); err == nil {
			if v := versionFromClasspath(string(cmdline)); v != "" {
				return "Apache Kafka " + v + " (KRaft, one node, deploy/local/kafka.sh)"
			}
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return "unknown"
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	vs, err := kadm.NewClient(cl).ApiVersions(cctx)
	if err != nil {
		return "unknown"
	}
	for _, v := range vs.Sorted() {
		if v.Err == nil {
			return "Apache Kafka " + v.VersionGuess() + " (guessed from ApiVersions)"
		}
	}
	return "unknown"
}

// versionFromClasspath finds ".../kafka-4.4.0/libs" in a java command line.
func versionFromClasspath(cmdline string) string {
	i := strings.Index(cmdline, "/kafka-")
	if i < 0 {
		return ""
	}
	rest := cmdline[i+len("/kafka-"):]
	if j := strings.Index(rest, "/libs"); j > 0 {
		return rest[:j]
	}
	return ""
}

// pgBin is the newest /usr/lib/postgresql/*/bin, as postgres.sh picks it.
func pgBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return a > b
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d
		}
	}
	return ""
}

// procField returns the value of the first "name: value" line of a /proc
// file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
