package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CPUShare is the CPU time the machine's processes spent during one run,
// by group, in milliseconds per event: which of the store (FerretDB and the
// PostgreSQL under it), the broker and the process running the roles a
// figure is bound by. Read from /proc/<pid>/stat (utime + stime); empty
// where /proc is not there.
type CPUShare struct {
	// FerretDB, Postgres, Kafka and Roles are ms of CPU per event; Other
	// is every other process (the load generator's tools, other users).
	FerretDB float64 `json:"ferretdb_ms_per_event"`
	Postgres float64 `json:"postgres_ms_per_event"`
	Kafka    float64 `json:"kafka_ms_per_event"`
	Roles    float64 `json:"bench_process_ms_per_event"`
	Other    float64 `json:"other_ms_per_event"`
}

// cpuTicks is a snapshot of CPU ticks by group.
type cpuTicks map[string]float64

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// sampleCPU reads every process's CPU ticks, grouped.
func sampleCPU() cpuTicks {
	out := cpuTicks{}
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		comm := s[open+1 : closing]
		f := strings.Fields(s[closing+1:])
		if len(f) < 13 {
			continue
		}
		// Fields after the comm: state is 0, utime 11, stime 12.
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		out[cpuGroup(pid, self, comm)] += ut + st
	}
	return out
}

func cpuGroup(pid, self int, comm string) string {
	switch {
	case pid == self:
		return "roles"
	case strings.HasPrefix(comm, "fanout-ferret"), strings.HasPrefix(comm, "ferretdb"):
		return "ferretdb"
	case strings.HasPrefix(comm, "postgres"):
		return "postgres"
	case comm == "java":
		return "kafka"
	default:
		return "other"
	}
}

// share is the CPU spent since before, per event.
func (before cpuTicks) share(events int) *CPUShare {
	if len(before) == 0 || events <= 0 {
		return nil
	}
	now := sampleCPU()
	ms := func(g string) float64 {
		return max(0, now[g]-before[g]) * 1000 / clockTicks / float64(events)
	}
	return &CPUShare{FerretDB: ms("ferretdb"), Postgres: ms("postgres"), Kafka: ms("kafka"), Roles: ms("roles"), Other: ms("other")}
}

// Total is the CPU of every group, per event.
func (c *CPUShare) Total() float64 {
	if c == nil {
		return 0
	}
	return c.FerretDB + c.Postgres + c.Kafka + c.Roles + c.Other
}

// String prints the shares, for logs and tables.
func (c *CPUShare) String() string {
	if c == nil {
		return "?"
	}
	return "FerretDB " + strconv.FormatFloat(c.FerretDB, 'f', 2, 64) + ", PostgreSQL " + strconv.FormatFloat(c.Postgres, 'f', 2, 64) +
		", Kafka " + strconv.FormatFloat(c.Kafka, 'f', 2, 64) + ", roles " + strconv.FormatFloat(c.Roles, 'f', 2, 64) +
		", other " + strconv.FormatFloat(c.Other, 'f', 2, 64) + " (total " + strconv.FormatFloat(c.Total(), 'f', 2, 64) + ")"
}
