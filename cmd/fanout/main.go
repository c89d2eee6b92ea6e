// Command fanout is the notification fan-out gateway: one binary, one
// subcommand per role.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/fanout-dev/fanout/internal/redact"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

// exitConfig is the exit status for a configuration error.
const exitConfig = 2

type command struct {
	name    string
	summary string
	help    string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what a command gets from the process.
type env struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	getenv         func(string) string
}

// usageError is a bad command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// configError is a bad configuration (exit status 2).
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

func commands() []command {
	return []command{
		{name: "projector", summary: "consume source events, write the READ model and the outbox", help: helpProjector, run: runProjector},
		{name: "relay", summary: "publish the outbox to the notifications topic (one active relay by lease)", help: helpRelay, run: runRelay},
		{name: "worker", summary: "deliver the notifications routed to one connector (--connector NAME)", help: helpWorker, run: runWorker},
		{name: "admin", summary: "the admin API and console: connectors, pause, dead letters, replay", help: helpAdmin, run: runAdmin},
		{name: "simulate", summary: "run a local Logic Apps or Salesforce simulator", help: helpSimulate, run: runSimulate},
		{name: "dev", summary: "the whole pipeline in one process on embedded defaults", help: helpDev, run: runDev},
		{name: "send", summary: "produce source events from a file or stdin", help: helpSend, run: runSend},
		{name: "run", summary: "projector and relay in one process, against real Kafka and MongoDB", help: helpRun, run: runBoth},
		{name: "config", summary: "config check: validate a configuration file without connecting", help: helpConfig, run: runConfig},
		{name: "schema", summary: "schema notification: print the notification contract as a JSON Schema", help: helpSchema, run: runSchema},
		{name: "deploy", summary: "deploy render: Kubernetes manifests for the configured connectors", help: helpDeploy, run: runDeploy},
		{name: "trace", summary: "trace ID: every stage and delivery attempt of one event (or --aggregate), from the admin API", help: helpTrace, run: runTrace},
		{name: "status", summary: "status [CONNECTOR]: connectors' pause, workers, breaker, lag and dead letters, from the admin API", help: helpStatus, run: runStatus},
		{name: "dlq", summary: "dlq list|show|replay CONNECTOR: dead letters, and their replay (a dry run without --yes)", help: helpDLQ, run: runDLQ},
		{name: "pause", summary: "pause CONNECTOR: stop delivering to a connector, through the admin API", help: helpPause, run: runPause},
		{name: "resume", summary: "resume CONNECTOR: deliver to a paused connector again", help: helpResume, run: runResume},
		{name: "version", summary: "print the version and the modules built in", help: helpVersion, run: runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], &env{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// Main runs the command line args and returns the exit status.
func Main(ctx context.Context, args []string, e *env) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 {
			for _, c := range cmds {
				if c.name == args[1] {
					fmt.Fprint(e.stdout, c.help)
					return 0
				}
			}
		}
		printUsage(e.stdout, cmds)
		if len(args) == 0 {
			return exitConfig
		}
		return 0
	}
	for _, c := range cmds {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		var ue usageError
		var ce configError
		var xe exitCodeError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &xe):
			fmt.Fprintf(e.stderr, "fanout %s: %s\n", c.name, redact.Credentials(xe.msg))
			return xe.code
		case errors.As(err, &ue):
			fmt.Fprintf(e.stderr, "fanout %s: %s\n", c.name, redact.Credentials(ue.msg))
			return exitConfig
		case errors.As(err, &ce):
			fmt.Fprintf(e.stderr, "fanout %s: %s\n", c.name, redact.Credentials(ce.err.Error()))
			return exitConfig
		default:
			fmt.Fprintf(e.stderr, "fanout %s: %s\n", c.name, redact.Credentials(err.Error()))
			return 1
		}
	}
	fmt.Fprintf(e.stderr, "fanout: unknown command %q\n\n", args[0])
	printUsage(e.stderr, cmds)
	return exitConfig
}

func printUsage(w io.Writer, cmds []command) {
	fmt.Fprint(w, "fanout turns domain events into reliable notifications to downstream systems.\n\nusage: fanout <command> [flags]\n\ncommands:\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'fanout <command> --help' for a command's flags.\n")
}

func runVersion(_ context.Context, e *env, args []string) error {
	fs := newFlagSet("version", e, helpVersion)
	if err := fs.Parse(args); err != nil {
		return err
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintf(e.stdout, "fanout %s\n", version)
		return nil
	}
	writeVersion(e.stdout, version, bi)
	return nil
}

const helpVersion = `usage: fanout version

Prints fanout's version, the Go version it was built with, the build
settings that matter (tags, -trimpath, the VCS revision) and every module
linked into the binary with its version and checksum, from the build
information Go embeds (debug.ReadBuildInfo): check an image against
advisories with it, or with govulncheck -mode binary.
`

// writeVersion writes the version, build settings and modules of bi.
func writeVersion(w io.Writer, v string, bi *debug.BuildInfo) {
	if v == "devel" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Fprintf(w, "fanout %s (%s)\n", v, bi.GoVersion)
	for _, s := range bi.Settings {
		switch s.Key {
		case "-tags", "-trimpath", "CGO_ENABLED", "GOOS", "GOARCH", "vcs.revision", "vcs.time", "vcs.modified":
			fmt.Fprintf(w, "  build %s=%s\n", s.Key, s.Value)
		}
	}
	for _, m := range bi.Deps {
		line := "  dep " + m.Path + " " + m.Version
		if m.Replace != nil {
			line += " => " + m.Replace.Path + " " + m.Replace.Version
			m = m.Replace
		}
		if m.Sum != "" {
			line += " " + m.Sum
		}
		fmt.Fprintln(w, line)
	}
}

func newFlagSet(name string, e *env, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(e.stdout, help)
		var b strings.Builder
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(e.stderr)
		if b.Len() > 0 {
			fmt.Fprint(e.stdout, "\nflags:\n"+b.String())
		}
	}
	return fs
}
