package logicapps

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// onOff is a boolean flag that also accepts "on" and "off".
type onOff bool

// String implements flag.Value.
func (b *onOff) String() string {
	if b != nil && bool(*b) {
		return "on"
	}
	return "off"
}

// Set implements flag.Value.
func (b *onOff) Set(s string) error {
	switch strings.ToLower(s) {
	case "on", "true", "1", "yes":
		*b = true
	case "off", "false", "0", "no":
		*b = false
	default:
		return fmt.Errorf("want on or off, got %q", s)
	}
	return nil
}

// IsBoolFlag lets "-retry-after" alone mean on.
func (b *onOff) IsBoolFlag() bool { return true }

// clientsFlag collects repeated -client id:secret flags.
type clientsFlag map[string]string

// String implements flag.Value, hiding the secrets.
func (c clientsFlag) String() string {
	ids := make([]string, 0, len(c))
	for id := range c {
		ids = append(ids, id+":***")
	}
	return strings.Join(ids, ",")
}

// Set implements flag.Value.
func (c clientsFlag) Set(s string) error {
	id, secret, ok := strings.Cut(s, ":")
	if !ok || id == "" || secret == "" {
		return errors.New("want client_id:client_secret")
	}
	c[id] = secret
	return nil
}

// Command runs the simulator as a command-line program: it parses args
// (without the program name), serves until ctx is done, and prints its
// base URL and an example callback URL for workflow "wf1", trigger
// "manual" to stdout. Run it with -h for the flags.
func Command(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("logicapps-sim", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var (
		addr        = fs.String("addr", "127.0.0.1:7071", "listen address")
		key         = fs.String("key", "sim-signing-key", "SAS signing key for sig (see CanonicalString)")
		latency     = fs.Duration("latency", 0, "latency added to every accepted call")
		jitter      = fs.Duration("jitter", 0, "random extra latency, uniform in [0, jitter]")
		failRate    = fs.Float64("fail-rate", 0, "fraction (0..1) of calls answered 500, 502 (HTML) or 503")
		throttle    = fs.Float64("throttle-rate", 0, "fraction (0..1) of calls answered 429 WorkflowRequestsThrottled")
		retryAfter  onOff
		mode        = fs.String("mode", string(ModeAccepted), "accepted (202, no Response action) or response (Response action)")
		status      = fs.Int("status", 200, "status of the Response action in -mode response (2xx, 4xx or 5xx)")
		body        = fs.String("body", "", "body of the Response action in -mode response")
		timeout     = fs.Duration("timeout", DefaultTimeout, "delay after which the caller gets 504")
		schemaFile  = fs.String("schema", "", "JSON schema file: turns on schema validation")
		budget      = fs.Int("budget", 0, "invokes allowed per workflow per 5 minutes (0 = unlimited)")
		window      = fs.Duration("budget-window", DefaultBudgetWindow, "window of -budget")
		concurrency = fs.Int("concurrency", 0, "concurrent calls allowed per workflow (0 = unlimited)")
		maxBody     = fs.Int64("max-body", DefaultMaxBody, "largest accepted body in bytes")
		workflows   = fs.String("workflows", "", "comma-separated known workflows (empty = any)")
		bearer      = fs.String("bearer-token", "", "static bearer token accepted instead of sig")
		seed        = fs.Uint64("seed", 0, "seed for random faults (0 = random)")
	)
	clients := clientsFlag{}
	fs.Var(&retryAfter, "retry-after", "send Retry-After on 429 and 503: on or off")
	fs.Var(clients, "client", "client_id:client_secret accepted by the token endpoint (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	cfg := Config{
		Key:          *key,
		Timeout:      *timeout,
		MaxBody:      *maxBody,
		Budget:       *budget,
		BudgetWindow: *window,
		Concurrency:  *concurrency,
		BearerToken:  *bearer,
		Seed:         *seed,
		Faults: Faults{
			Mode:         Mode(*mode),
			Status:       *status,
			Body:         *body,
			Latency:      Duration(*latency),
			Jitter:       Duration(*jitter),
			FailRate:     *failRate,
			ThrottleRate: *throttle,
			RetryAfter:   bool(retryAfter),
		},
	}
	if len(clients) > 0 {
		cfg.Clients = clients
	}
	if *workflows != "" {
		for _, w := range strings.Split(*workflows, ",") {
			if w = strings.TrimSpace(w); w != "" {
				cfg.Workflows = append(cfg.Workflows, w)
			}
		}
	}
	if *schemaFile != "" {
		doc, err := os.ReadFile(*schemaFile)
		if err != nil {
			return fmt.Errorf("read -schema: %w", err)
		}
		if cfg.Schema, err = ParseSchema(doc); err != nil {
			return fmt.Errorf("-schema %s: %w", *schemaFile, err)
		}
	}
	srv, err := New(cfg)
	if err != nil {
		return err
	}
	base, err := srv.Start(ctx, *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "logicapps simulator listening on %s\n", base)
	fmt.Fprintf(stdout, "callback URL (workflow wf1, trigger manual): %s\n", srv.CallbackURL("wf1", "manual", false))
	fmt.Fprintf(stdout, "standard callback URL: %s\n", srv.CallbackURL("wf1", "manual", true))
	fmt.Fprintf(stdout, "token endpoint: %s/tokens/{tenant}/oauth2/v2.0/token; calls: %s/_sim/calls; faults: %s/_sim/faults\n", base, base, base)
	fmt.Fprintf(stdout, "mode %s, timeout %s, retry-after %s, budget %s\n", cfg.Faults.Mode, cfg.Timeout, retryAfter.String(), budgetString(cfg.Budget))
	<-ctx.Done()
	return srv.Close()
}

func budgetString(n int) string {
	if n == 0 {
		return "unlimited"
	}
	return strconv.Itoa(n) + " per window"
}

// compile-time check that the flag helpers satisfy flag.Value.
var (
	_ flag.Value = (*onOff)(nil)
	_ flag.Value = clientsFlag(nil)
)
