package memlimit

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/fanout-dev/fanout/internal/config"
)

func TestDecide(t *testing.T) {
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if v, ok := m[p]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	noEnv := func(string) string { return "" }
	v2 := "/sys/fs/cgroup/memory.max"
	v1 := "/sys/fs/cgroup/memory/memory.limit_in_bytes"
	cases := []struct {
		name   string
		mem    config.Memory
		files  map[string]string
		want   int64
		source string
	}{
		{"explicit", config.Memory{LimitBytes: 64 << 20, ContainerRatio: 0.8}, map[string]string{v2: "536870912\n"}, 64 << 20, SourceConfig},
		{"off", config.Memory{LimitBytes: -1, ContainerRatio: 0.8}, map[string]string{v2: "536870912\n"}, 0, SourceNone},
		{"cgroup v2", config.Memory{ContainerRatio: 0.8}, map[string]string{v2: "536870912\n"}, 429496729, SourceContainer},
		{"cgroup v2 without a limit", config.Memory{ContainerRatio: 0.8}, map[string]string{v2: "max\n"}, 0, SourceNone},
		{"cgroup v1", config.Memory{ContainerRatio: 0.5}, map[string]string{v1: "268435456\n"}, 128 << 20, SourceContainer},
		{"cgroup v1 without a limit", config.Memory{ContainerRatio: 0.8}, map[string]string{v1: "9223372036854771712\n"}, 0, SourceNone},
		{"no cgroup", config.Memory{ContainerRatio: 0.8}, nil, 0, SourceNone},
		{"garbage", config.Memory{ContainerRatio: 0.8}, map[string]string{v2: "lots"}, 0, SourceNone},
		{"tiny container keeps the floor", config.Memory{ContainerRatio: 0.8}, map[string]string{v2: "1048576"}, config.MinMemoryLimit, SourceContainer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Decide(c.mem, noEnv, files(c.files))
			if got.Bytes != c.want || got.Source != c.source {
				t.Errorf("Decide = %d from %s, want %d from %s", got.Bytes, got.Source, c.want, c.source)
			}
		})
	}
}

// TestDecideEnvWins: GOMEMLIMIT, which the runtime applied at start, is
// left alone whatever the configuration says.
func TestDecideEnvWins(t *testing.T) {
	getenv := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "100MiB"
		}
		return ""
	}
	got := Decide(config.Memory{LimitBytes: 64 << 20, ContainerRatio: 0.8}, getenv, func(string) ([]byte, error) { return nil, errors.New("unused") })
	if got.Source != SourceEnv {
		t.Errorf("source %s, want %s", got.Source, SourceEnv)
	}
}
