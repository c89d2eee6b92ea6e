package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
)

// RoleMemory is one child process's memory over a B6 window.
type RoleMemory struct {
	Role string `json:"role"`
	// PeakRSSMiB is VmHWM at the end of the window; MaxSampledMiB the
	// highest VmRSS seen by the once-a-second sampler.
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
	MaxSampledMiB float64 `json:"max_sampled_rss_mib"`
	FinalRSSMiB   float64 `json:"final_rss_mib"`
}

// B6Result is B6: peak memory of each role with a backlog and the breaker
// open.
type B6Result struct {
	EventsBacklog        int          `json:"events_backlog"`
	NotificationsBacklog int          `json:"notifications_backlog"`
	Seconds              float64      `json:"window_s"`
	Roles                []RoleMemory `json:"roles"`
	// Idle is the baseline: the same roles for IdleSeconds with nothing
	// to do and healthy simulators.
	Idle        []RoleMemory `json:"idle_roles"`
	IdleSeconds float64      `json:"idle_window_s"`
	// RelayPublished counts notifications the relay added during the
	// window; SimCalls counts the calls the simulators saw (all refused:
	// the breakers hold the rest back).
	RelayPublished int64 `json:"relay_published"`
	LogicAppsCalls int   `json:"logic_apps_calls"`
	SFCalls        int   `json:"salesforce_calls"`
}

func (r *runner) b6(ctx context.Context) error {
	backlog := r.n(200000, 10000)
	window := r.d(60*time.Second, 20*time.Second)
	idle := r.d(20*time.Second, 10*time.Second)
	res := &B6Result{EventsBacklog: backlog, NotificationsBacklog: backlog, Seconds: window.Seconds(), IdleSeconds: idle.Seconds()}
	r.rep.B6 = res

	// Baseline: the roles with nothing to do.
	var err error
	res.Idle, err = r.b6Run(ctx, "b6idle", idle, SimOptions{Seed: 29}, func(*scenario) error { return nil })
	if err != nil {
		return fmt.Errorf("idle roles: %w", err)
	}
	for _, m := range res.Idle {
		r.logf("B6 idle %-18s peak RSS (VmHWM) %6.1f MiB", m.Role, m.PeakRSSMiB)
	}

	outage := SimOptions{
		LAFaults: lasim.Faults{Script: []lasim.Step{{For: lasim.Duration(time.Hour), Status: 503}}},
		SFFaults: sfsim.Faults{OutageUntil: time.Now().Add(time.Hour)},
		Seed:     31,
	}
	var before int64
	res.Roles, err = r.b6Run(ctx, "b6", window, outage, func(s *scenario) error {
		r.logf("B6: producing %d events and %d notifications", backlog, backlog)
		w := GenWorkload(WorkloadOptions{Events: backlog, Aggregates: backlog / 10, Seed: 31})
		if _, err := ProduceEvents(ctx, s.setup.Brokers, s.names.Events, w.Events, 0); err != nil {
			return err
		}
		if err := ProduceNotifications(ctx, s.setup.Brokers, s.names.Notifications, roundEvents("b6n", backlog/10, 10, 37),
			[]string{RouteLogicApps, RouteSalesforce}); err != nil {
			return err
		}
		before, err = endOffsets(ctx, s.setup.Brokers, s.names.Notifications)
		return err
	}, func(s *scenario, sm *Sims) error {
		after, err := endOffsets(ctx, s.setup.Brokers, s.names.Notifications)
		if err != nil {
			return err
		}
		res.RelayPublished = after - before
		res.LogicAppsCalls, res.SFCalls = len(sm.LARec.Receipts()), len(sm.SFRec.Receipts())
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range res.Roles {
		r.logf("B6 %-18s peak RSS (VmHWM) %6.1f MiB, final %6.1f MiB", m.Role, m.PeakRSSMiB, m.FinalRSSMiB)
	}
	r.logf("B6 relay published %d notifications during the window; simulator calls with notifications during the outage: logic apps %d, salesforce %d",
		res.RelayPublished, res.LogicAppsCalls, res.SFCalls)
	return nil
}

// b6Run prepares a scenario with prepare, runs the projector, the relay,
// both workers and the admin API as child processes for window, and returns their
// memory; after, if given, runs before the roles stop.
func (r *runner) b6Run(ctx context.Context, name string, window time.Duration, so SimOptions, prepare func(*scenario) error,
	after ...func(*scenario, *Sims) error) ([]RoleMemory, error) {
	sims, err := StartSims(ctx, so)
	if err != nil {
		return nil, err
	}
	defer sims.Close()
	s, err := r.newScenario(ctx, name+"-"+randomHex(2), "", nil, sims)
	if err != nil {
		return nil, err
	}
	defer s.close()
	s.setup.Routing = RouteBoth
	s.setup.SFMaxRecords = 200
	if _, err := s.config(); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(r.dir, name+".yaml")
	if err := s.setup.WriteConfig(cfgPath); err != nil {
		return nil, err
	}
	if err := prepare(s); err != nil {
		return nil, err
	}
	env := s.setup.Env()
	roles := []*Role{
		NewRole(name+"-projector", r.bin, r.dir, env, "projector", "--config", cfgPath),
		NewRole(name+"-relay", r.bin, r.dir, env, "relay", "--config", cfgPath),
		NewRole(name+"-worker-logic_apps", r.bin, r.dir, env, "worker", "--connector", RouteLogicApps, "--config", cfgPath),
		NewRole(name+"-worker-salesforce", r.bin, r.dir, env, "worker", "--connector", RouteSalesforce, "--config", cfgPath),
		NewRole(name+"-admin", r.bin, r.dir, env, "admin", "--config", cfgPath),
	}
	defer func() {
		for _, ro := range roles {
			ro.Stop(15 * time.Second)
		}
	}()
	for _, ro := range roles {
		if err := ro.Start(); err != nil {
			return nil, err
		}
	}
	maxSampled := make([]int64, len(roles))
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		for i, ro := range roles {
			if rss, _, err := ro.Memory(); err == nil {
				maxSampled[i] = max(maxSampled[i], rss)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("b6: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
	var out []RoleMemory
	for i, ro := range roles {
		rss, peak, err := ro.Memory()
		if err != nil {
			return nil, fmt.Errorf("%w (it exited during the window; log tail: %s)", err, ro.LogTail(2000))
		}
		out = append(out, RoleMemory{Role: strings.TrimPrefix(ro.Name, name+"-"), PeakRSSMiB: float64(peak) / 1024,
			MaxSampledMiB: float64(maxSampled[i]) / 1024, FinalRSSMiB: float64(rss) / 1024})
	}
	for _, f := range after {
		if err := f(s, sims); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// endOffsets sums the end offsets of topic's partitions.
func endOffsets(ctx context.Context, brokers []string, topic string) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return 0, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).ListEndOffsets(cctx, topic)
	if err != nil {
		return 0, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	var n int64
	offs.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n, nil
}
