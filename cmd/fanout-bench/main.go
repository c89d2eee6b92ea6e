// Command fanout-bench drives fanout's benchmarks and chaos runs against
// the real broker and store of deploy/local (`make bench`, `make chaos`,
// `make chaos-long`).
//
//	fanout-bench bench [-only B1,B3] [-scale 1] [-docs docs]
//	fanout-bench chaos [-events 20000] [-aggregates 2000] [-duration 90s] ...
//
// bench writes docs/benchmarks.md, docs/benchmarks.json and the SVG plots.
// chaos prints the ledger and exits 1 on any violation.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fanout-dev/fanout/internal/bench"
)

const usage = `usage: fanout-bench bench|chaos [flags]

  bench   B1-B9 on the real broker and store, each beside its baseline;
          writes docs/benchmarks.md, docs/benchmarks.json and SVG plots
  chaos   every role as a child process, random SIGKILLs, a broker and a
          store restart, cut and slow links, faulty downstreams; prints the
          ledger and exits 1 on any violation

Run 'fanout-bench bench -h' or 'fanout-bench chaos -h' for the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr)
	case "chaos":
		err = runChaos(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "fanout-bench: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "fanout-bench %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "fanout-bench %s: %v\n", args[0], err)
		return 1
	}
}

// usageError is a bad command line (exit status 2).
type usageError struct{ msg string }

// Error implements error.
func (e usageError) Error() string { return e.msg }

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "comma-separated benchmarks to run (B1,...,B9); default all")
	scale := fs.Float64("scale", 1, "multiply every count and duration (0.2 for a quick look)")
	docs := fs.String("docs", "docs", "directory for benchmarks.md, benchmarks.json and the plots (relative to the repository root; empty: none)")
	smoke := fs.Bool("smoke", false, "the short CI form (make bench-smoke): B1's direct pair and B7 at 1,000 documents, failing when a figure's ratio to its same-run baseline falls below half its reference; -only and -scale are ignored")
	bin := fs.String("bin", "", "fanout binary to run as child processes (default: build ./cmd/fanout)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	root, err := bench.FindRoot()
	if err != nil {
		return err
	}
	o := bench.BenchOptions{Root: root, Bin: *bin, Scale: *scale, Log: stdout, Smoke: *smoke,
		Command: strings.TrimSpace("make bench " + benchArgs(args))}
	if *docs != "" {
		o.DocsDir = *docs
		if !filepath.IsAbs(o.DocsDir) {
			o.DocsDir = filepath.Join(root, o.DocsDir)
		}
	}
	for _, b := range strings.Split(*only, ",") {
		if b = strings.ToUpper(strings.TrimSpace(b)); b != "" {
			o.Only = append(o.Only, b)
		}
	}
	start := time.Now()
	rep, err := bench.RunBench(ctx, o)
	if rep != nil {
		fmt.Fprintf(stdout, "\n%s\n", bench.RenderMarkdown(rep))
		if o.DocsDir != "" {
			var written []string
			for _, f := range []string{"benchmarks.md", "benchmarks.json", bench.PlotB2, bench.PlotB5} {
				if st, err := os.Stat(filepath.Join(o.DocsDir, f)); err == nil && !st.ModTime().Before(start) {
					written = append(written, filepath.Join(o.DocsDir, f))
				}
			}
			fmt.Fprintf(stdout, "written: %s\n", strings.Join(written, ", "))
		}
	}
	return err
}

// benchArgs renders the flags for the report's command line.
func benchArgs(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return "BENCH_ARGS='" + strings.Join(args, " ") + "'"
}

func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := bench.DefaultChaos()
	fs.IntVar(&d.Events, "events", d.Events, "source events to produce")
	fs.IntVar(&d.Aggregates, "aggregates", d.Aggregates, "aggregates the events spread over")
	fs.DurationVar(&d.Duration, "duration", d.Duration, "chaos window: kills, restarts, cuts and delays happen within it")
	fs.DurationVar(&d.Settle, "settle", d.Settle, "how long to wait after the window for every notification to arrive")
	fs.DurationVar(&d.KillMin, "kill-min", d.KillMin, "shortest pause between two role kills")
	fs.DurationVar(&d.KillMax, "kill-max", d.KillMax, "longest pause between two role kills")
	fs.DurationVar(&d.PauseFor, "pause", d.PauseFor, "length of each SIGSTOP pause (projector, active relay, busy worker); 0: none")
	fs.Uint64Var(&d.Seed, "seed", d.Seed, "random seed (kills, faults, workload)")
	fs.BoolVar(&d.Blackholes, "blackholes", d.Blackholes, "also blackhole links (toxiproxy timeout toxic: bytes lost mid-stream, which TCP never does)")
	fs.BoolVar(&d.Transactional, "transactional", d.Transactional, "run the relays with relay.transactional (the broker fences a zombie leader)")
	fs.StringVar(&d.LogLevel, "log-level", "info", "log level of the roles (debug logs every skipped stale event)")
	fs.BoolVar(&d.SingleProjection, "single-projection", d.SingleProjection, "one projection from the top-level source: and routing: (no projections: list), as before projections; default: quotes, orders and invoices")
	bin := fs.String("bin", "", "fanout binary (default: build ./cmd/fanout)")
	keep := fs.Bool("keep", false, "keep the run directory (logs of every role, broker and store)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	root, err := bench.FindRoot()
	if err != nil {
		return err
	}
	d.Root, d.Bin, d.Log, d.Keep = root, *bin, stdout, *keep
	start := time.Now()
	res, err := bench.RunChaos(ctx, d)
	if res != nil {
		fmt.Fprintf(stdout, "\n%s\n", res.Ledger())
		fmt.Fprintf(stdout, "chaos run took %v\n", time.Since(start).Round(time.Second))
	}
	if err != nil {
		return err
	}
	if v := res.Violations(); len(v) > 0 {
		return fmt.Errorf("%d violation(s); first: %s", len(v), v[0])
	}
	fmt.Fprintln(stdout, "chaos: no violation")
	return nil
}
