package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/config"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"

	// The connector types the benchmarks open in this process.
	_ "github.com/fanout-dev/fanout/connectors/logicapps"
	_ "github.com/fanout-dev/fanout/connectors/salesforce"
)

// laSchema makes the Logic Apps simulator refuse a notification whose
// payload.amount is not a number (BadAmount), as a trigger with schema
// validation on does: 400 TriggerInputSchemaMismatch, a permanent failure.
const laSchema = `{"type":"object","properties":{"payload":{"type":"object","properties":{"amount":{"type":"number"}}}}}`

// SimOptions configure StartSims.
type SimOptions struct {
	// Latency and Jitter delay every accepted call of both simulators.
	Latency, Jitter time.Duration
	// LAFaults and SFFaults are the simulators' own faults; latency set
	// above is added to them.
	LAFaults lasim.Faults
	SFFaults sfsim.Faults
	// Check, if set, reads READ model versions when a call arrives.
	Check VersionReader
	Seed  uint64
}

// Sims are the Logic Apps and Salesforce simulators of a scenario, each
// behind a Recorder, served on loopback ports of this process.
type Sims struct {
	LA    *lasim.Server
	SF    *sfsim.Server
	LARec *Recorder
	SFRec *Recorder
	// LAURL is the signed callback URL; SFURL is the login URL.
	LAURL, SFURL   string
	SFID, SFSecret string
	// laBase and laKey sign further callback URLs (LogicAppsURL).
	laBase, laKey string
	servers       []*http.Server
	wg            sync.WaitGroup
	closeOnce     sync.Once
}

// StartSims starts both simulators.
func StartSims(ctx context.Context, o SimOptions) (*Sims, error) {
	key := randomHex(16)
	schema, err := lasim.ParseSchema([]byte(laSchema))
	if err != nil {
		return nil, fmt.Errorf("logic apps schema: %w", err)
	}
	laf := o.LAFaults
	laf.Latency += lasim.Duration(o.Latency)
	laf.Jitter += lasim.Duration(o.Jitter)
	la, err := lasim.New(lasim.Config{Key: key, Schema: schema, Faults: laf, Seed: o.Seed + 1})
	if err != nil {
		return nil, fmt.Errorf("logic apps simulator: %w", err)
	}
	sff := o.SFFaults
	sff.Latency += sfsim.Duration(o.Latency)
	sff.Jitter += sfsim.Duration(o.Jitter)
	if sff.RejectField == "" {
		sff.RejectField, sff.RejectValue = "Currency__c", RejectedCurrency
	}
	if sff.DailyLimit == 0 {
		sff.DailyLimit = -1 // unlimited: the benchmarks make more calls than an org's day
	}
	s := &Sims{LA: la, SFID: "fanout-bench-" + randomHex(4), SFSecret: randomHex(16)}
	sf, err := sfsim.New(sfsim.Config{ClientID: s.SFID, ClientSecret: s.SFSecret, Faults: sff, MaxCalls: 20000})
	if err != nil {
		return nil, fmt.Errorf("salesforce simulator: %w", err)
	}
	s.SF = sf
	s.LARec = NewRecorder(RouteLogicApps, la, o.Check, o.Seed+2)
	s.SFRec = NewRecorder(RouteSalesforce, sf, o.Check, o.Seed+3)
	laBase, err := s.serve(ctx, s.LARec)
	if err != nil {
		return nil, err
	}
	sfBase, err := s.serve(ctx, s.SFRec)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.laBase, s.laKey = laBase, key
	s.LAURL = lasim.SignURL(laBase, key, "quotes", "manual", false)
	s.SFURL = sfBase
	return s, nil
}

// LogicAppsURL returns a signed callback URL of workflow on the Logic Apps
// simulator, behind its recorder.
func (s *Sims) LogicAppsURL(workflow string) string {
	return lasim.SignURL(s.laBase, s.laKey, workflow, "manual", false)
}

// serve serves h on a free loopback port and returns its base URL.
func (s *Sims) serve(ctx context.Context, h http.Handler) (string, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("simulator listener: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(ln) // ErrServerClosed after Close
	}()
	return "http://" + ln.Addr().String(), nil
}

// Close stops both simulators and waits for their servers.
func (s *Sims) Close() {
	s.closeOnce.Do(func() {
		for _, r := range []*Recorder{s.LARec, s.SFRec} {
			if r != nil {
				r.Close()
			}
		}
		_ = s.LA.Close()
		if s.SF != nil {
			_ = s.SF.Close()
		}
		for _, srv := range s.servers {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
			cancel()
		}
		s.wg.Wait()
	})
}

// ClearSimLogs empties the simulators' own call logs (the recorders keep
// the ledger), so that a long run does not hold every request body.
func (s *Sims) ClearSimLogs() {
	rec := httptest.NewRecorder()
	s.LA.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/_sim/calls", nil))
}

// Setup fills the connector settings of su with the simulators'.
func (s *Sims) Setup(su Setup) Setup {
	su.LogicAppsURL, su.SFLoginURL, su.SFClientID, su.SFSecret = s.LAURL, s.SFURL, s.SFID, s.SFSecret
	return su
}

// OpenConnector builds connector name of cfg, as `fanout worker` does.
func OpenConnector(ctx context.Context, cfg *config.Config, name string, log *slog.Logger) (connectors.Connector, error) {
	cc, ok := cfg.Connectors[name]
	if !ok {
		return nil, fmt.Errorf("connector %q is not configured", name)
	}
	settings := cc.Settings
	c, err := connectors.Default().Open(ctx, connectors.Config{
		Name: name, Type: cc.Type, Logger: log.With("connector", name),
		MaxInFlight: cfg.DeliveryFor(name).MaxInFlight,
		Decode: func(v any) error {
			if settings.Kind == 0 {
				return errors.New("no settings")
			}
			if err := settings.Decode(v); err != nil {
				return fmt.Errorf("connectors.%s.settings: %w", name, err)
			}
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open connector %s: %w", name, err)
	}
	return c, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
