// Package memlimit sets a role's Go runtime soft memory limit
// (runtime/debug.SetMemoryLimit) from memory.limit_bytes, or from the
// container's memory limit, unless GOMEMLIMIT is set.
package memlimit

import (
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/fanout-dev/fanout/internal/config"
)

// Sources of a limit, as Setting.Source names them.
const (
	SourceEnv       = "GOMEMLIMIT"
	SourceConfig    = "memory.limit_bytes"
	SourceContainer = "container"
	SourceNone      = "none"
)

// Where a container's memory limit is read: cgroup v2, then v1.
const (
	cgroupV2File = "/sys/fs/cgroup/memory.max"
	cgroupV1File = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
)

// noLimitAbove is where a cgroup v1 limit means "none": v1 writes the
// largest page-aligned int64 when nothing is set.
const noLimitAbove = 1 << 60

// Setting is a decided limit: Bytes (0 for none) and where it came from.
// ContainerBytes is the container's limit when one was read.
type Setting struct {
	Bytes          int64
	Source         string
	ContainerBytes int64
}

// Decide returns the limit for m: GOMEMLIMIT when set (the runtime applied
// it at start), else memory.limit_bytes when positive, else, when it is 0,
// m.ContainerRatio of the container's limit read with readFile from the
// cgroup files; otherwise none.
func Decide(m config.Memory, getenv func(string) string, readFile func(string) ([]byte, error)) Setting {
	if getenv != nil && strings.TrimSpace(getenv("GOMEMLIMIT")) != "" {
		// The runtime parsed it; report what it holds.
		return Setting{Bytes: debug.SetMemoryLimit(-1), Source: SourceEnv}
	}
	switch {
	case m.LimitBytes > 0:
		return Setting{Bytes: m.LimitBytes, Source: SourceConfig}
	case m.LimitBytes < 0:
		return Setting{Source: SourceNone}
	}
	c := containerLimit(readFile)
	if c <= 0 {
		return Setting{Source: SourceNone}
	}
	ratio := m.ContainerRatio
	if !(ratio > 0 && ratio <= 1) {
		ratio = config.Default().Memory.ContainerRatio
	}
	return Setting{Bytes: max(int64(float64(c)*ratio), config.MinMemoryLimit), Source: SourceContainer, ContainerBytes: c}
}

// containerLimit is the container's memory limit in bytes, 0 for none.
func containerLimit(readFile func(string) ([]byte, error)) int64 {
	if readFile == nil {
		return 0
	}
	for _, f := range []string{cgroupV2File, cgroupV1File} {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= noLimitAbove {
			return 0
		}
		return n
	}
	return 0
}

// Apply sets s with debug.SetMemoryLimit. GOMEMLIMIT is left as the
// runtime applied it, and none sets no limit (the runtime's default).
func Apply(s Setting) {
	switch s.Source {
	case SourceConfig, SourceContainer:
		debug.SetMemoryLimit(s.Bytes)
	case SourceNone:
		debug.SetMemoryLimit(math.MaxInt64)
	}
}
