package salesforce

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Command runs the fake as a program: it parses args (without the program
// name), serves until ctx is done and prints its base URL as the first line
// of stdout so that scripts and tests in other processes can find it.
// A fanout binary can mount it as a subcommand.
func Command(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("salesforce-sim", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var (
		addr          = fs.String("addr", "127.0.0.1:0", "listen address")
		clientID      = fs.String("client-id", "fanout-sim-client", "connected app consumer key (client_id, JWT iss)")
		clientSecret  = fs.String("client-secret", "", "connected app consumer secret for client_credentials (default: $SF_SIM_CLIENT_SECRET)")
		jwtKey        = fs.String("jwt-public-key", "", "PEM file (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE) that verifies JWT bearer assertions; empty refuses the flow")
		jwtAudience   = fs.String("jwt-audience", "", "comma-separated accepted JWT aud values (default https://login.salesforce.com,https://test.salesforce.com)")
		jwtUser       = fs.String("jwt-username", "", "only JWT sub accepted (default: any)")
		instanceURL   = fs.String("instance-url", "", "instance_url returned by the token endpoint (default: the URL the client used)")
		sessionTTL    = fs.Duration("session-ttl", DefaultSessionTTL, "access token lifetime, then 401 INVALID_SESSION_ID")
		dailyLimit    = fs.Int64("daily-limit", DefaultDailyLimit, "rolling 24 h API request allocation (<=0: unlimited)")
		eventLimit    = fs.Int64("event-hourly-limit", DefaultEventHourlyLimit, "rolling 1 h platform event publishing allocation (<=0: unlimited)")
		latency       = fs.Duration("latency", 0, "delay of every API call")
		jitter        = fs.Duration("jitter", 0, "random extra delay of every API call, up to this")
		slowRate      = fs.Float64("slow-rate", 0, "probability that a call takes -slow-latency instead")
		slowLatency   = fs.Duration("slow-latency", 25*time.Second, "delay of slow calls (> 20 s makes them long-running)")
		failRate      = fs.Float64("fail-rate", 0, "probability that an API call fails with 503")
		rejectField   = fs.String("reject-field", "", "records whose field equals -reject-value fail with FIELD_CUSTOM_VALIDATION_EXCEPTION")
		rejectValue   = fs.String("reject-value", "", "see -reject-field")
		updateStatus  = fs.Int("update-status", 204, "status of an upsert that updates: 200 or 204")
		longCap       = fs.Int("long-request-cap", DefaultLongRequestCap, "concurrent long-running requests allowed (<=0: unlimited)")
		longThreshold = fs.Duration("long-request-threshold", DefaultLongRequestThreshold, "duration from which a request is long-running")
		extIDFields   = fs.String("external-id-fields", "", "comma-separated external id fields accepted on custom objects (default: any __c field)")
		notifField    = fs.String("notification-id-field", DefaultNotificationIDField, "record field whose values are recorded as notification ids")
		wrongHost     = fs.Bool("wrong-host", false, "refuse client_credentials as login.salesforce.com does (request not supported on this domain)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("salesforce simulator: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("salesforce simulator: unexpected arguments %q", fs.Args())
	}
	secret := *clientSecret
	if secret == "" {
		secret = os.Getenv("SF_SIM_CLIENT_SECRET")
	}
	cfg := Config{
		ClientID:             *clientID,
		ClientSecret:         secret,
		JWTUsername:          *jwtUser,
		InstanceURL:          *instanceURL,
		SessionTTL:           *sessionTTL,
		LongRequestThreshold: *longThreshold,
		NotificationIDField:  *notifField,
		ExternalIDFields:     splitList(*extIDFields),
		JWTAudiences:         splitList(*jwtAudience),
		Faults: Faults{
			FailRate:         *failRate,
			RejectField:      *rejectField,
			RejectValue:      *rejectValue,
			UpdateStatus:     *updateStatus,
			WrongHost:        *wrongHost,
			Latency:          Duration(*latency),
			Jitter:           Duration(*jitter),
			SlowRate:         *slowRate,
			SlowLatency:      Duration(*slowLatency),
			DailyLimit:       nonZero(*dailyLimit),
			EventHourlyLimit: nonZero(*eventLimit),
			LongRequestCap:   int(nonZero(int64(*longCap))),
		},
	}
	if *jwtKey != "" {
		b, err := os.ReadFile(*jwtKey)
		if err != nil {
			return fmt.Errorf("salesforce simulator: -jwt-public-key: %w", err)
		}
		pub, err := ParseRSAPublicKey(b)
		if err != nil {
			return fmt.Errorf("salesforce simulator: -jwt-public-key %s: %w", *jwtKey, err)
		}
		cfg.JWTPublicKey = pub
	}
	s, err := New(cfg)
	if err != nil {
		return err
	}
	base, err := s.Start(ctx, *addr)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := fmt.Fprintln(stdout, base); err != nil {
		return fmt.Errorf("salesforce simulator: print base URL: %w", err)
	}
	<-ctx.Done()
	return nil
}

// nonZero maps "unlimited" (<= 0) to -1, since 0 in Config means default.
func nonZero(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
