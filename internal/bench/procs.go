package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Role is one fanout role running as a child process of the built binary,
// restartable after a kill. Its output goes to a log file in dir.
type Role struct {
	// Name identifies the role in reports: projector, relay-1,
	// worker-logic_apps, ...
	Name string
	bin  string
	args []string
	env  []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// starts and kills count restarts for the report; exits counts the
	// times it ended without being killed.
	starts, kills, exits int
	pauses               int
	killing              bool
}

// NewRole describes a role; Start runs it.
func NewRole(name, bin, dir string, env []string, args ...string) *Role {
	return &Role{Name: name, bin: bin, args: args, env: env, log: filepath.Join(dir, name+".log")}
}

// Start starts the process unless it is running.
func (r *Role) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	f, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("role %s: log: %w", r.Name, err)
	}
	cmd := exec.Command(r.bin, r.args...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Stdout, cmd.Stderr = f, f
	// The child dies with this process, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(f, "\n==== fanout-bench: start %s at %s\n", r.Name, time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("role %s: start: %w", r.Name, err)
	}
	done := make(chan struct{})
	r.cmd, r.done = cmd, done
	r.starts++
	go func() {
		_ = cmd.Wait()
		f.Close()
		r.mu.Lock()
		if r.cmd == cmd {
			if !r.killing {
				r.exits++
			}
			r.cmd = nil
		}
		r.mu.Unlock()
		close(done)
	}()
	return nil
}

// Running reports whether the process is alive.
func (r *Role) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd != nil
}

// Pid returns the process id, 0 when not running.
func (r *Role) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Kill sends SIGKILL and waits for the process to end.
func (r *Role) Kill() { r.signal(syscall.SIGKILL, 0, true) }

// Pause stops the process with SIGSTOP for d, as a GC pause, CPU
// starvation or a frozen VM would, then resumes it with SIGCONT (unless it
// was killed and restarted meanwhile). It returns false if the role was
// not running.
func (r *Role) Pause(d time.Duration) bool {
	r.mu.Lock()
	cmd := r.cmd
	if cmd != nil {
		r.pauses++
	}
	r.mu.Unlock()
	if cmd == nil || cmd.Process.Signal(syscall.SIGSTOP) != nil {
		return false
	}
	time.Sleep(d)
	r.mu.Lock()
	if r.cmd == cmd {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	r.mu.Unlock()
	return true
}

// Pauses returns how often the role was paused.
func (r *Role) Pauses() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pauses
}

// Stop sends SIGTERM, waits up to grace, then kills.
func (r *Role) Stop(grace time.Duration) { r.signal(syscall.SIGTERM, grace, false) }

func (r *Role) signal(sig syscall.Signal, grace time.Duration, count bool) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	if cmd == nil {
		r.mu.Unlock()
		return
	}
	r.killing = true
	if count {
		r.kills++
	}
	r.mu.Unlock()
	_ = cmd.Process.Signal(sig)
	if sig != syscall.SIGKILL {
		select {
		case <-done:
		case <-time.After(grace):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	} else {
		<-done
	}
	r.mu.Lock()
	r.killing = false
	r.mu.Unlock()
}

// Counts returns how often the role was started, killed, and ended on its
// own.
func (r *Role) Counts() (starts, kills, exits int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts, r.kills, r.exits
}

// LogTail returns the last n bytes of the role's log.
func (r *Role) LogTail(n int) string {
	b, err := os.ReadFile(r.log)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Memory reads the process's resident set size now and at its peak
// (VmRSS and VmHWM of /proc/<pid>/status), in KiB.
func (r *Role) Memory() (rss, peak int64, err error) {
	pid := r.Pid()
	if pid == 0 {
		return 0, 0, errors.New("role " + r.Name + " is not running")
	}
	return procMemory(pid)
}

// procMemory reads VmRSS and VmHWM of a process, in KiB.
func procMemory(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/%d/status: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			peak = n
		}
	}
	return rss, peak, nil
}
