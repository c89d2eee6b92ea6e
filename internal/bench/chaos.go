package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/envelope"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
	"github.com/fanout-dev/fanout/internal/store"
)

// ChaosOptions configure RunChaos.
type ChaosOptions struct {
	// Root is the repository root; Bin the fanout binary (built when
	// empty); Log receives progress lines; Keep keeps the run directory
	// (it is kept anyway when something went wrong).
	Root, Bin string
	Log       io.Writer
	Keep      bool
	// Events over Aggregates are produced during the first three quarters
	// of Duration, the chaos window; Settle bounds the wait afterwards.
	Events, Aggregates int
	Duration, Settle   time.Duration
	// KillMin and KillMax bound the pause between two SIGKILLs.
	KillMin, KillMax time.Duration
	// PauseFor is how long a SIGSTOP lasts before its SIGCONT: longer
	// than the session timeout (6 s) and the relay's lease TTL (6 s), so
	// that the paused process wakes up as a zombie. Three pauses run in
	// the window, beside the SIGKILLs: the projector, the relay holding
	// the lease, and a worker with calls in flight (0: no pauses).
	PauseFor time.Duration
	// PermanentEvery marks about one event in PermanentEvery to fail
	// permanently at one target (0: none).
	PermanentEvery int
	// Blackholes adds toxiproxy's timeout toxic to the link faults: bytes
	// swallowed while connections stay up, then the stream resumes with
	// data missing, which no TCP network does (off by default; see Link).
	Blackholes bool
	// Transactional runs the relays with relay.transactional: the broker
	// fences a zombie leader's produce besides the workers' lease-token
	// fence.
	Transactional bool
	// LogLevel is the roles' log level (default info; debug logs every
	// skipped stale event, for diagnosing a lost notification).
	LogLevel string
	// SingleProjection runs the configuration without a projections:
	// list (top-level source: and routing:), one READ model, as before
	// projections; by default the run serves three projections (see
	// ChaosProjections).
	SingleProjection bool
	Seed             uint64
}

// ChaosProjections are the projections of a chaos run: quotes on the
// events topic, and orders and invoices sharing a second topic, told
// apart by event type. Their aggregate ids and event ids repeat across
// projections (A00001 and evt-7 exist in each). Every quote and invoice
// goes to Logic Apps, every order to Salesforce; creations and the events
// built to fail go to both. Each has its own READ model collection, Logic
// Apps workflow and Salesforce object.
func ChaosProjections(events, shared string) []SetupProjection {
	return []SetupProjection{
		{Name: "quotes", AggregateType: "quote", IDField: "quote_id", Topic: events, Collection: "quotes_read",
			Primary: RouteLogicApps, SFObject: "Quote__c", SFExternalID: "Quote_Ext_Id__c"},
		{Name: "orders", AggregateType: "order", IDField: "order_id", Topic: shared, EventTypes: []string{"order_created", "order_updated"},
			Collection: "orders_read", Primary: RouteSalesforce, SFObject: "Order__c", SFExternalID: "Order_Ext_Id__c"},
		{Name: "invoices", AggregateType: "invoice", IDField: "invoice_id", Topic: shared, EventTypes: []string{"invoice_created", "invoice_updated"},
			Collection: "invoices_read", Primary: RouteLogicApps, SFObject: "Invoice__c", SFExternalID: "Invoice_Ext_Id__c"},
	}
}

// chaosShare weighs a chaos projection's events and aggregates: half
// quotes, a third orders, a sixth invoices.
func chaosShare(name string) int {
	switch name {
	case "quotes":
		return 3
	case "orders":
		return 2
	}
	return 1
}

// DefaultChaos is `make chaos`: 20,000 events over 2,000 aggregates.
func DefaultChaos() ChaosOptions {
	return ChaosOptions{Events: 20000, Aggregates: 2000, Duration: 120 * time.Second, Settle: 5 * time.Minute,
		KillMin: 2 * time.Second, KillMax: 5 * time.Second, PauseFor: 9 * time.Second, PermanentEvery: 200, Seed: 1}
}

// ShortChaos is the CI form, about two minutes.
func ShortChaos() ChaosOptions {
	o := DefaultChaos()
	o.Events, o.Aggregates, o.Duration, o.Settle = 5000, 500, 75*time.Second, 3*time.Minute
	return o
}

// Connector timeouts of the chaos run: an injected timeout holds a call
// for chaosTimeout + 500 ms, so the connector gives up first.
const chaosTimeout = 2 * time.Second

// ChaosResult is what a chaos run observed.
type ChaosResult struct {
	Options ChaosOptions
	Dir     string
	// Expected counts the notifications due per target; Permanent those
	// built to fail there.
	Expected, Permanent map[string]int
	Targets             map[string]*TargetLedger
	// Projections names the run's projections (none with
	// SingleProjection); ByProjection holds each target's ledger per
	// projection (target -> projection -> ledger), the rows the ledger
	// prints above each target's total.
	Projections  []string
	ByProjection map[string]map[string]*TargetLedger
	// Kills, Starts and Exits count per role: SIGKILLs, starts, and ends
	// the harness did not cause; Pauses the SIGSTOP/SIGCONT pauses.
	Kills, Starts, Exits, Pauses map[string]int
	// Fenced counts, per connector, the records the workers dropped as
	// out of date: by the version fence (stale_dropped) and by the relay
	// lease-token fence (lease_fenced), summed over every worker process
	// from its last published status (a killed one's last second or two
	// may be missing).
	Fenced               map[string]FenceCounts
	BrokerDown           time.Duration
	StoreDown            time.Duration
	BrokerRestarts       int
	StoreRestarts        int
	KafkaLink, StoreLink LinkStats
	ReadModelBad         []string
	ReadModelChecked     int
	// ReadModels counts, per projection, the aggregates checked and those
	// not at their last version; ReadModelLeaked lists documents in a
	// projection's collection that are none of its aggregates.
	ReadModels      map[string][2]int
	ReadModelLeaked []string
	// SettledIn is how long after the window every notification was
	// accounted for; TimedOut is true when the settle time ran out first.
	SettledIn  time.Duration
	TimedOut   bool
	Elapsed    time.Duration
	violations []string
}

// FenceCounts are the records a connector's workers fenced, by layer.
type FenceCounts struct{ StaleDropped, LeaseFenced int64 }

// LinkStats counts the toxics applied to a link.
type LinkStats struct{ Cuts, Delays, Stalls, Blackholes int }

// TargetLedger is the ledger of one target.
type TargetLedger struct {
	Expected, Delivered, DeadPermanent, Missing, Duplicates int
	// Permanent counts the notifications due that were built to fail.
	Permanent int
	// Calls counts calls with notifications the simulator saw (after the
	// driver's injections); ServerErrors those it answered 5xx.
	Calls, ServerErrors int
	Injected            Injected
	OrderViolations     []string
	// FinalBehind lists aggregates whose last accepted call at the target
	// carried an older version than the last one due there.
	FinalBehind []string
	Durability  []string
	Unverified  int
	Checked     int
	// CheckLag is how long after arrival the durability checks read the
	// READ model; Overloaded counts calls left unchecked because the
	// checkers were behind.
	CheckLag    Dist
	Overloaded  int
	IDConflicts []string
	Unexpected  []string
	// DeadOther are dead letters without an injected permanent error.
	DeadOther []string
	// AcceptedPermanent are notifications built to fail that the target
	// accepted.
	AcceptedPermanent []string
	MissingIDs        []string
	// WrongProjection lists notifications that reached the target (Logic
	// Apps workflow, Salesforce object) of another projection, or named
	// another projection than their body's.
	WrongProjection []string
}

// Violations lists every breach of the ledger's rules.
func (r *ChaosResult) Violations() []string { return r.violations }

// dlqEntry is one dead letter read back.
type dlqEntry struct{ id, class string }

// chaos is one run's moving parts.
type chaos struct {
	o      ChaosOptions
	dir    string
	log    io.Writer
	rng    *rand.Rand
	res    *ChaosResult
	broker *Broker
	ferret *Ferret
	toxi   *Toxi
	kLink  *Link
	sLink  *Link
	roles  []*Role
	sims   *Sims
	names  Names
	// projs are the run's projections (nil with SingleProjection).
	projs []SetupProjection

	// roleMu is held while a role is killed and restarted, so that the
	// supervisor never takes a kill for a crash.
	roleMu   sync.Mutex
	mu       sync.Mutex
	dlq      map[string][]dlqEntry // connector -> dead letters
	restarts sync.WaitGroup
	// paused stops the supervisor from restarting roles while the run
	// shuts them down.
	paused bool
	// stopped holds the roles in a SIGSTOP pause: no SIGKILL for them
	// until they are resumed.
	stopped map[*Role]bool
	pauses  sync.WaitGroup
}

func (c *chaos) logf(format string, args ...any) {
	fmt.Fprintf(c.log, "[%s] chaos: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// RunChaos runs the chaos scenario and returns its ledger; the error is
// for a run that could not be carried out, violations are in the result.
func RunChaos(ctx context.Context, o ChaosOptions) (*ChaosResult, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.KillMax < o.KillMin {
		o.KillMax = o.KillMin
	}
	dir, err := os.MkdirTemp("", "fanout-chaos-")
	if err != nil {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	c := &chaos{o: o, dir: dir, log: o.Log, rng: rand.New(rand.NewPCG(o.Seed, 99)), dlq: map[string][]dlqEntry{},
		stopped: map[*Role]bool{},
		res: &ChaosResult{Options: o, Dir: dir, Targets: map[string]*TargetLedger{}, Kills: map[string]int{},
			Starts: map[string]int{}, Exits: map[string]int{}, Pauses: map[string]int{}, Fenced: map[string]FenceCounts{}}}
	start := time.Now()
	err = c.run(ctx)
	c.res.Elapsed = time.Since(start)
	if err != nil || len(c.res.violations) > 0 || o.Keep {
		c.logf("run directory kept: %s (role, broker and store logs)", dir)
	} else {
		_ = os.RemoveAll(dir)
	}
	if err != nil {
		return c.res, err
	}
	return c.res, nil
}

func (c *chaos) run(ctx context.Context) error {
	o := c.o
	runStart := time.Now()
	bin := o.Bin
	if bin == "" {
		c.logf("building cmd/fanout")
		var err error
		if bin, err = BuildFanout(ctx, o.Root, c.dir); err != nil {
			return err
		}
	}
	// PostgreSQL of deploy/local for the private FerretDB.
	pgPort := envOr("FANOUT_PG_PORT", "15432")
	if !portOpen("127.0.0.1:" + pgPort) {
		c.logf("starting PostgreSQL (deploy/local/postgres.sh)")
		if err := runScript(ctx, o.Root, c.log, "postgres", "start"); err != nil {
			return err
		}
		defer func() { _ = runScript(context.Background(), o.Root, c.log, "postgres", "stop") }()
	}
	pgURL := envOr("FANOUT_FERRETDB_PG_URL", "postgres://postgres@127.0.0.1:"+pgPort+"/ferretdb")

	// Links first: the broker must advertise the Kafka link's address.
	c.toxi = NewToxi()
	defer c.toxi.Close()
	// A broker or store restart still running on an error path ends once
	// the deferred stops below have run.
	defer c.restarts.Wait()
	kport, err := freePort()
	if err != nil {
		return err
	}
	if c.kLink, err = c.toxi.Link("kafka", fmt.Sprintf("127.0.0.1:%d", kport)); err != nil {
		return err
	}
	c.logf("starting a private Apache Kafka (roles reach it through toxiproxy at %s)", c.kLink.Addr())
	if c.broker, err = StartBroker(ctx, c.log, o.Root, c.dir, c.kLink.Addr(), kport); err != nil {
		return err
	}
	defer c.broker.Stop()
	c.logf("starting a private FerretDB on PostgreSQL")
	if c.ferret, err = StartFerret(ctx, c.log, o.Root, c.dir, pgURL); err != nil {
		return err
	}
	defer c.ferret.Stop()
	if c.sLink, err = c.toxi.Link("store", c.ferret.Addr()); err != nil {
		return err
	}
	direct := []string{c.broker.DirectAddr()}

	c.names = NewNames("chaos-"+time.Now().UTC().Format("150405")+"-"+randomHex(2), "c")
	topics := c.names.Topics(RouteLogicApps, RouteSalesforce)
	if !o.SingleProjection {
		shared := c.names.Events + "-shared"
		c.projs = ChaosProjections(c.names.Events, shared)
		topics = append(topics, shared)
	}
	if err := CreateTopics(ctx, direct, Partitions, topics...); err != nil {
		return err
	}
	st, err := OpenStore(ctx, "mongodb://"+c.ferret.Addr()+"/", c.names.Database, nil)
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_ = st.Drop(dctx)
		_ = st.Close(dctx)
		cancel()
	}()
	vb := newKeyVersions(st, 24, c.projs)

	// Simulators: their own 5xx, the driver's 429s and timeouts, and
	// permanent refusals (Salesforce: currency XXX; Logic Apps: schema).
	c.sims, err = StartSims(ctx, SimOptions{
		LAFaults: lasim.Faults{FailRate: 0.10, FailStatuses: []int{500, 502, 503, 504}},
		SFFaults: sfsim.Faults{FailRate: 0.10},
		Check:    vb, Seed: o.Seed,
	})
	if err != nil {
		return err
	}
	defer c.sims.Close()
	var rps []RecorderProjection
	for i, p := range c.projs {
		c.projs[i].LogicAppsURL = c.sims.LogicAppsURL(p.Name)
		rps = append(rps, RecorderProjection{Name: p.Name, AggregateType: p.AggregateType, IDField: p.IDField, Workflow: p.Name,
			SFObject: p.SFObject, SFExternalID: p.SFExternalID})
	}
	for _, rec := range []*Recorder{c.sims.LARec, c.sims.SFRec} {
		rec.SetFaults(Faults{ThrottleRate: 0.05, TimeoutRate: 0.01, Delay: chaosTimeout + 500*time.Millisecond})
		if len(rps) > 0 {
			rec.SetProjections(rps)
		}
	}

	setup := c.sims.Setup(Setup{Brokers: []string{c.kLink.Addr()}, MongoURI: "mongodb://" + c.sLink.Addr() + "/", Names: c.names,
		Routing: RouteChaos, SFMaxRecords: 200, ConnectorTimeout: chaosTimeout, LeaseTTL: 6 * time.Second, ProduceTimeout: time.Second, Transactional: o.Transactional,
		SessionTimeout: 6 * time.Second, MongoTimeout: 10 * time.Second, LogLevel: strOr(o.LogLevel, "info"), Projections: c.projs,
		Delivery: "    max_in_flight: 32\n    min_backoff: 100ms\n    max_backoff: 2s\n    revoke_timeout: 5s\n    takeover_grace: 5s\n    breaker: {consecutive_failures: 5, open_timeout: 2s, half_open_probes: 1}\n"})
	if _, err := setup.Config(); err != nil {
		return err
	}
	cfgPath := filepath.Join(c.dir, "fanout.yaml")
	if err := setup.WriteConfig(cfgPath); err != nil {
		return err
	}
	env := setup.Env()
	c.roles = []*Role{
		NewRole("projector", bin, c.dir, append(env, "FANOUT_GROUPS_PROJECTOR_INSTANCE_ID=chaos-projector"), "projector", "--config", cfgPath),
		NewRole("relay-1", bin, c.dir, env, "relay", "--config", cfgPath),
		NewRole("relay-2", bin, c.dir, env, "relay", "--config", cfgPath),
		NewRole("worker-logic_apps", bin, c.dir, env, "worker", "--connector", RouteLogicApps, "--config", cfgPath),
		NewRole("worker-salesforce", bin, c.dir, env, "worker", "--connector", RouteSalesforce, "--config", cfgPath),
	}
	defer func() {
		c.mu.Lock()
		c.paused = true
		c.mu.Unlock()
		for _, r := range c.roles {
			r.Stop(15 * time.Second)
		}
	}()
	for _, r := range c.roles {
		if err := r.Start(); err != nil {
			return err
		}
	}

	wo := WorkloadOptions{Events: o.Events, Aggregates: o.Aggregates, Seed: o.Seed, DupStalePct: 5, PermanentEvery: o.PermanentEvery}
	for _, p := range c.projs {
		wo.Projections = append(wo.Projections, WorkloadProjection{Name: p.Name, Type: p.AggregateType, Share: chaosShare(p.Name)})
		c.res.Projections = append(c.res.Projections, p.Name)
	}
	w := GenWorkload(wo)
	expect := expectations(w, c.projs)
	c.res.Expected, c.res.Permanent = map[string]int{}, map[string]int{}
	perProj := map[string]int{}
	for _, e := range expect {
		c.res.Expected[e.target]++
		if e.permanent {
			c.res.Permanent[e.target]++
		}
	}
	for _, ev := range w.Events {
		perProj[ev.Proj]++
	}
	c.logf("workload: %d events over %d aggregates (%d duplicates, %d stale); notifications due: logic_apps %d (%d built to fail), salesforce %d (%d built to fail)",
		len(w.Events), len(w.Final), w.Dups, w.Stale, c.res.Expected[RouteLogicApps], c.res.Permanent[RouteLogicApps],
		c.res.Expected[RouteSalesforce], c.res.Permanent[RouteSalesforce])
	if len(c.projs) > 0 {
		parts := make([]string, 0, len(c.projs))
		for _, p := range c.projs {
			parts = append(parts, fmt.Sprintf("%s %d (topic %s)", p.Name, perProj[p.Name], p.Topic))
		}
		c.logf("projections, events each: %s; aggregate and event ids repeat across projections", strings.Join(parts, ", "))
	}

	// Background work, each with an owner: the DLQ reader, the producer,
	// the supervisor.
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() { stopBg(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); c.readDLQ(bg, direct) }()
	produceErr := make(chan error, 1)
	rate := float64(len(w.Events)) / (0.75 * o.Duration.Seconds())
	wg.Add(1)
	go func() {
		defer wg.Done()
		if len(c.projs) == 0 {
			_, err := ProduceEvents(bg, direct, c.names.Events, w.Events, rate)
			produceErr <- err
			return
		}
		topics, fields := map[string]string{}, map[string]string{}
		for _, p := range c.projs {
			topics[p.Name], fields[p.Name] = p.Topic, p.IDField
		}
		produceErr <- ProduceProjected(bg, direct, topics, fields, w.Events, rate)
	}()
	wg.Add(1)
	go func() { defer wg.Done(); c.supervise(bg) }()

	c.logf("chaos window %v: producing at %.0f events/s; SIGKILL every %v-%v, SIGSTOP for %v of the projector, the active relay and a busy worker, one broker and one store restart, link cuts and delays",
		o.Duration, rate, o.KillMin, o.KillMax, o.PauseFor)
	if err := c.window(ctx, st); err != nil {
		return err
	}
	c.pauses.Wait()
	c.restarts.Wait()
	for _, l := range []*Link{c.kLink, c.sLink} {
		if err := l.Heal(); err != nil {
			return err
		}
	}
	c.logf("window over; links healed; waiting up to %v for every notification", o.Settle)
	select {
	case err := <-produceErr:
		if err != nil {
			return fmt.Errorf("producing the workload: %w", err)
		}
		produceErr <- nil
	case <-time.After(o.Settle):
		return errors.New("the producer did not finish")
	case <-ctx.Done():
		return fmt.Errorf("chaos: %w", ctx.Err())
	}
	c.settle(ctx, expect)
	c.mu.Lock()
	c.paused = true
	c.mu.Unlock()
	for _, r := range c.roles {
		r.Stop(15 * time.Second)
	}
	// Dead letters produced just before the stop still need reading, and
	// the last durability checks running.
	time.Sleep(2 * time.Second)
	for _, rec := range []*Recorder{c.sims.LARec, c.sims.SFRec} {
		if !rec.Flush(2 * time.Minute) {
			c.logf("durability checks of %s still queued after 2 minutes; they count as unverified", rec.target)
		}
	}
	stopBg()
	wg.Wait()
	c.ledger(ctx, w, expect, st)
	c.fenced(ctx, st, runStart)
	return nil
}

// fenced sums the fence counters the workers published.
func (c *chaos) fenced(ctx context.Context, st *store.Store, since time.Time) {
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, conn := range []string{RouteLogicApps, RouteSalesforce} {
		sts, err := st.WorkerStatuses(fctx, conn, since)
		if err != nil {
			c.logf("read the worker statuses of %s: %v", conn, err)
			continue
		}
		var f FenceCounts
		for _, s := range sts {
			f.StaleDropped += s.Ledger.StaleDropped
			f.LeaseFenced += s.Ledger.LeaseFenced
		}
		c.res.Fenced[conn] = f
	}
}

// pause SIGSTOPs r for PauseFor on its own goroutine (owned by c.pauses);
// the kill schedule spares it meanwhile.
func (c *chaos) pause(r *Role, why string) {
	c.mu.Lock()
	if c.stopped[r] {
		c.mu.Unlock()
		return
	}
	c.stopped[r] = true
	c.mu.Unlock()
	c.logf("SIGSTOP %s (%s) for %v", r.Name, why, c.o.PauseFor)
	c.pauses.Add(1)
	go func() {
		defer c.pauses.Done()
		ok := r.Pause(c.o.PauseFor)
		c.mu.Lock()
		delete(c.stopped, r)
		c.mu.Unlock()
		if ok {
			c.logf("SIGCONT %s", r.Name)
		} else {
			c.logf("%s was not running: no pause", r.Name)
		}
	}()
}

// activeRelay returns the relay role holding the lease, found by the
// process id in the holder's name (host-pid-random), or nil.
func (c *chaos) activeRelay(ctx context.Context, st *store.Store) *Role {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := st.ReadLease(lctx, "relay")
	if err != nil || l == nil {
		return nil
	}
	for _, r := range c.roles {
		if strings.HasPrefix(r.Name, "relay") && r.Pid() != 0 && strings.Contains(l.Holder, "-"+strconv.Itoa(r.Pid())+"-") {
			return r
		}
	}
	return nil
}

// pauseBusyWorker pauses a worker, chosen at random, the moment its
// target receives its next call: it is paused with that call in flight.
func (c *chaos) pauseBusyWorker() {
	target, rec := RouteLogicApps, c.sims.LARec
	if c.rng.IntN(2) == 1 {
		target, rec = RouteSalesforce, c.sims.SFRec
	}
	for _, r := range c.roles {
		if r.Name == "worker-"+target {
			rec.OnNextCall(func() { c.pause(r, "worker with a call in flight") })
		}
	}
}

// expectation is one notification due at one target. id and key are
// qualified by the projection (Event.Ref, Event.KeyRef), as the recorders
// qualify what they receive.
type expectation struct {
	id, target string
	key        string
	proj       string
	version    int64
	permanent  bool
}

// expectations applies RouteChaos (without projections) or each
// projection's routing (SetupProjection.Routes) to the workload.
func expectations(w *Workload, projs []SetupProjection) []expectation {
	var out []expectation
	ids := make([]string, 0, len(w.Expected))
	for id := range w.Expected {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	byName := map[string]SetupProjection{}
	for _, p := range projs {
		byName[p.Name] = p
	}
	for _, id := range ids {
		ev := w.Expected[id]
		e := expectation{id: id, key: ev.KeyRef(), proj: ev.Proj, version: ev.Version}
		la, sf := true, ev.Type == "quote_created" || ev.Cur == RejectedCurrency
		if p, ok := byName[ev.Proj]; ok {
			la, sf = p.Routes(RouteLogicApps, ev.Type, ev.Cur, ev.Amount), p.Routes(RouteSalesforce, ev.Type, ev.Cur, ev.Amount)
		}
		if la {
			e.target, e.permanent = RouteLogicApps, ev.Amount == BadAmount
			out = append(out, e)
		}
		if sf {
			e.target, e.permanent = RouteSalesforce, ev.Cur == RejectedCurrency
			out = append(out, e)
		}
	}
	return out
}

// window runs the chaos schedule for the window's length: kills, link
// toxics, and (in their own goroutines, so kills go on meanwhile) one
// broker and one store restart.
func (c *chaos) window(ctx context.Context, st *store.Store) error {
	o := c.o
	start := time.Now()
	end := start.Add(o.Duration)
	nextKill := start.Add(c.between(o.KillMin, o.KillMax))
	nextLink := start.Add(c.between(3*time.Second, 6*time.Second))
	brokerAt, storeAt := start.Add(o.Duration*35/100), start.Add(o.Duration*65/100)
	// heal holds the ends of the link toxics in force.
	type pendingHeal struct {
		at time.Time
		fn func()
	}
	var heal []pendingHeal
	brokerDone, storeDone := false, false
	// Three pauses, each well inside the window: the projector, the
	// relay holding the lease, a worker with calls in flight.
	var pauseAt []time.Time
	if o.PauseFor > 0 {
		pauseAt = []time.Time{start.Add(o.Duration * 20 / 100), start.Add(o.Duration * 45 / 100), start.Add(o.Duration * 70 / 100)}
	}
	pauseNo := 0
	// Victims come in shuffled rounds, so that every role dies about as
	// often as the others and none is spared by chance.
	var victims []*Role
	for now := time.Now(); now.Before(end); now = time.Now() {
		if ctx.Err() != nil {
			return fmt.Errorf("chaos: %w", ctx.Err())
		}
		if !now.Before(nextKill) {
			if len(victims) == 0 {
				for _, i := range c.rng.Perm(len(c.roles)) {
					victims = append(victims, c.roles[i])
				}
			}
			r := victims[0]
			victims = victims[1:]
			c.mu.Lock()
			stopped := c.stopped[r]
			c.mu.Unlock()
			if stopped {
				// In a pause: it must wake up as a zombie, not die.
				nextKill = now.Add(200 * time.Millisecond)
				continue
			}
			c.roleMu.Lock()
			r.Kill()
			c.logf("SIGKILL %s", r.Name)
			err := r.Start()
			c.roleMu.Unlock()
			if err != nil {
				return err
			}
			nextKill = now.Add(c.between(o.KillMin, o.KillMax))
		}
		if pauseNo < len(pauseAt) && !now.Before(pauseAt[pauseNo]) {
			var r *Role
			var why string
			switch pauseNo {
			case 0:
				r, why = c.roles[0], "projector"
			case 1:
				r, why = c.activeRelay(ctx, st), "relay holding the lease"
			default:
				c.pauseBusyWorker()
				pauseNo++
				continue
			}
			// The lease may point at a relay just killed until the standby
			// takes over (lease_ttl): keep looking for up to 30 s.
			if r != nil {
				c.pause(r, why)
				pauseNo++
			} else if now.After(pauseAt[pauseNo].Add(30 * time.Second)) {
				c.logf("no %s found to pause", why)
				pauseNo++
			}
		}
		if !brokerDone && !now.Before(brokerAt) {
			brokerDone = true
			c.restart(ctx, "broker", c.broker.Restart, &c.res.BrokerDown, &c.res.BrokerRestarts)
		}
		if !storeDone && !now.Before(storeAt) {
			storeDone = true
			c.restart(ctx, "store", c.ferret.Restart, &c.res.StoreDown, &c.res.StoreRestarts)
		}
		if !now.Before(nextLink) {
			l := c.kLink
			if c.rng.IntN(2) == 0 {
				l = c.sLink
			}
			d := c.between(time.Second, 3*time.Second)
			kinds := 3
			if o.Blackholes {
				kinds = 4
			}
			switch c.rng.IntN(kinds) {
			case 0:
				c.logf("cut %s link for %v", l.name, d.Round(time.Millisecond))
				l.Cut()
				heal = append(heal, pendingHeal{now.Add(d), func() {
					if err := l.Restore(); err != nil {
						c.logf("restore %s link: %v", l.name, err)
					}
				}})
			case 1:
				lat := c.between(50*time.Millisecond, 250*time.Millisecond)
				c.logf("delay %s link by %v for %v", l.name, lat.Round(time.Millisecond), (2 * d).Round(time.Millisecond))
				if err := l.SetLatency(lat, lat/4); err != nil {
					return err
				}
				heal = append(heal, pendingHeal{now.Add(2 * d), func() { _ = l.SetLatency(0, 0) }})
			case 2:
				c.logf("stall %s link for %v", l.name, d.Round(time.Millisecond))
				if err := l.Stall(d); err != nil {
					return err
				}
				heal = append(heal, pendingHeal{now.Add(d), func() { _ = l.SetLatency(0, 0) }})
			default:
				c.logf("blackhole %s link for %v", l.name, d.Round(time.Millisecond))
				if err := l.Blackhole(true); err != nil {
					return err
				}
				heal = append(heal, pendingHeal{now.Add(d), func() { _ = l.Blackhole(false) }})
			}
			nextLink = now.Add(d + c.between(3*time.Second, 7*time.Second))
		}
		kept := heal[:0]
		for _, h := range heal {
			if now.Before(h.at) {
				kept = append(kept, h)
				continue
			}
			h.fn()
		}
		heal = kept
		time.Sleep(100 * time.Millisecond)
	}
	for _, h := range heal {
		h.fn()
	}
	return nil
}

// restart runs a broker or store restart in its own goroutine (owned by
// c.restarts), recording how long it was down.
func (c *chaos) restart(ctx context.Context, what string, fn func(context.Context) (time.Duration, error), down *time.Duration, count *int) {
	c.logf("restarting the %s", what)
	c.restarts.Add(1)
	go func() {
		defer c.restarts.Done()
		d, err := fn(ctx)
		c.mu.Lock()
		*down, *count = d, *count+1
		c.mu.Unlock()
		if err != nil {
			c.logf("%s restart FAILED after %v: %v", what, d.Round(time.Millisecond), err)
			return
		}
		c.logf("%s back after %v", what, d.Round(time.Millisecond))
	}()
}

func (c *chaos) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(c.rng.Int64N(int64(hi-lo)))
}

// supervise restarts roles that ended on their own (a role may give up
// when the store or the broker is away for long), until ctx ends. It also
// empties the simulators' own call logs now and then: the recorders keep
// the ledger, and a long run would otherwise hold every request body.
func (c *chaos) supervise(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if i%60 == 59 {
			c.sims.ClearSimLogs()
		}
		c.mu.Lock()
		paused := c.paused
		c.mu.Unlock()
		if paused {
			continue
		}
		c.roleMu.Lock()
		for _, r := range c.roles {
			if !r.Running() {
				c.logf("%s ended on its own; restarting it", r.Name)
				if err := r.Start(); err != nil {
					c.logf("restart %s: %v", r.Name, err)
				}
			}
		}
		c.roleMu.Unlock()
	}
}

// readDLQ reads both connectors' dead-letter topics from the start until
// ctx ends.
func (c *chaos) readDLQ(ctx context.Context, brokers []string) {
	topics := map[string]string{c.names.DLQPrefix + RouteLogicApps: RouteLogicApps, c.names.DLQPrefix + RouteSalesforce: RouteSalesforce}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(c.names.DLQPrefix+RouteLogicApps, c.names.DLQPrefix+RouteSalesforce),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		c.logf("dead-letter reader: %v", err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		for _, r := range fs.Records() {
			class, _ := envelope.Header(r, envelope.HeaderDLQErrorClass)
			m := envelope.ParseMeta(r)
			id := m.ID
			if len(c.projs) > 0 {
				// Event ids repeat across projections: qualify them as
				// the recorders and the expectations do.
				id = m.Projection + "/" + m.ID
			}
			c.mu.Lock()
			conn := topics[r.Topic]
			c.dlq[conn] = append(c.dlq[conn], dlqEntry{id: id, class: class})
			c.mu.Unlock()
		}
	}
}

// dead returns the dead letters of connector by id.
func (c *chaos) dead(connector string) map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]string{}
	for _, e := range c.dlq[connector] {
		out[e.id] = append(out[e.id], e.class)
	}
	return out
}

// settle waits until every notification is delivered or dead-lettered,
// or the settle time is up, logging progress.
func (c *chaos) settle(ctx context.Context, expect []expectation) {
	start := time.Now()
	deadline := start.Add(c.o.Settle)
	defer func() { c.res.SettledIn = time.Since(start) }()
	lastLog := time.Time{}
	for {
		pending := map[string]int{}
		deadLA, deadSF := c.dead(RouteLogicApps), c.dead(RouteSalesforce)
		for _, e := range expect {
			rec, dead := c.sims.LARec, deadLA
			if e.target == RouteSalesforce {
				rec, dead = c.sims.SFRec, deadSF
			}
			if !rec.HasAccepted(e.id) && len(dead[e.id]) == 0 {
				pending[e.target]++
			}
		}
		if pending[RouteLogicApps]+pending[RouteSalesforce] == 0 {
			c.logf("every notification is delivered or dead-lettered")
			return
		}
		if time.Since(lastLog) > 10*time.Second {
			c.logf("pending: logic_apps %d, salesforce %d", pending[RouteLogicApps], pending[RouteSalesforce])
			lastLog = time.Now()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.logf("settle time is up: logic_apps %d, salesforce %d still pending", pending[RouteLogicApps], pending[RouteSalesforce])
			c.res.TimedOut = true
			return
		}
		time.Sleep(time.Second)
	}
}

// ledger checks the rules and fills the result.
func (c *chaos) ledger(ctx context.Context, w *Workload, expect []expectation, st *store.Store) {
	res := c.res
	for _, r := range c.roles {
		s, k, e := r.Counts()
		res.Starts[r.Name], res.Kills[r.Name], res.Exits[r.Name] = s, k, e
		res.Pauses[r.Name] = r.Pauses()
	}
	res.KafkaLink = LinkStats{c.kLink.Cuts, c.kLink.Delays, c.kLink.Stalls, c.kLink.Blackholes}
	res.StoreLink = LinkStats{c.sLink.Cuts, c.sLink.Delays, c.sLink.Stalls, c.sLink.Blackholes}
	byTarget := map[string][]expectation{}
	for _, e := range expect {
		byTarget[e.target] = append(byTarget[e.target], e)
	}
	violate := func(format string, args ...any) {
		res.violations = append(res.violations, fmt.Sprintf(format, args...))
	}
	res.ByProjection = map[string]map[string]*TargetLedger{}
	for _, target := range []string{RouteLogicApps, RouteSalesforce} {
		rec := c.sims.LARec
		if target == RouteSalesforce {
			rec = c.sims.SFRec
		}
		rs := rec.Receipts()
		dead := c.dead(target)
		tl := targetLedger(target, rs, byTarget[target], dead, res.TimedOut)
		tl.Injected, tl.Overloaded = rec.Injected(), rec.Overloaded()
		res.Targets[target] = tl
		// The same ledger per projection, for the printout: ids and keys
		// are qualified by projection, so each row is a subset of the
		// total's receipts, expectations and dead letters.
		if len(c.projs) > 0 {
			res.ByProjection[target] = map[string]*TargetLedger{}
			for _, p := range c.projs {
				var prs []Receipt
				for _, rc := range rs {
					if rc.Projection == p.Name {
						prs = append(prs, rc)
					}
				}
				var pes []expectation
				for _, e := range byTarget[target] {
					if e.proj == p.Name {
						pes = append(pes, e)
					}
				}
				pdead := map[string][]string{}
				for id, cl := range dead {
					if strings.HasPrefix(id, p.Name+"/") {
						pdead[id] = cl
					}
				}
				res.ByProjection[target][p.Name] = targetLedger(target, prs, pes, pdead, res.TimedOut)
			}
		}
		for _, m := range tl.MissingIDs {
			violate("%s: %s", target, m)
		}
		for _, m := range tl.AcceptedPermanent {
			violate("%s: %s was built to fail permanently but was accepted", target, m)
		}
		for _, m := range tl.OrderViolations {
			violate("%s: order: %s", target, m)
		}
		for _, m := range tl.FinalBehind {
			violate("%s: final state behind the last version: %s", target, m)
		}
		for _, m := range tl.Durability {
			violate("%s: ahead of its data: %s", target, m)
		}
		for _, m := range tl.IDConflicts {
			violate("%s: one change under two ids: %s", target, m)
		}
		for _, m := range tl.Unexpected {
			violate("%s: %s delivered but never due (a stale or duplicate event was published)", target, m)
		}
		for _, m := range tl.WrongProjection {
			violate("%s: wrong projection: %s", target, m)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if len(c.projs) == 0 {
		c.checkReadModel(rctx, st, w, store.ReadModel{}, "", violate)
	} else {
		for _, p := range c.projs {
			c.checkReadModel(rctx, st, w, store.ReadModel{Collection: p.Collection}, p.Name, violate)
		}
	}
	for _, m := range res.ReadModelBad {
		violate("READ model: %s", m)
	}
	sort.Strings(res.ReadModelLeaked)
	for _, m := range res.ReadModelLeaked {
		violate("READ model: %s", m)
	}
}

// checkReadModel checks that rm ends at the last version of every
// aggregate of projection proj ("" without projections) and, with
// projections, holds no other document (no projection's aggregates leak
// into another's collection).
func (c *chaos) checkReadModel(ctx context.Context, st *store.Store, w *Workload, rm store.ReadModel, proj string, violate func(string, ...any)) {
	res := c.res
	var keys []string // bare aggregate ids
	for _, ev := range w.Final {
		if ev.Proj == proj {
			keys = append(keys, ev.QuoteID)
		}
	}
	sort.Strings(keys)
	final := func(id string) Event {
		if proj == "" {
			return w.Final[id]
		}
		return w.Final[proj+":"+id]
	}
	label := func(id string) string {
		if proj == "" {
			return id
		}
		return proj + ":" + id
	}
	checked, bad := 0, 0
	for i := 0; i < len(keys); i += 500 {
		part := keys[i:min(i+500, len(keys))]
		vs, err := st.VersionsIn(ctx, rm, part)
		if err != nil {
			violate("read the READ model %s: %v", strOr(rm.Collection, "(default)"), err)
			break
		}
		for _, k := range part {
			checked++
			if want := final(k).Version; vs[k] != want {
				bad++
				res.ReadModelBad = append(res.ReadModelBad, fmt.Sprintf("%s at v%d, want v%d", label(k), vs[k], want))
			}
		}
	}
	if proj != "" {
		docs, err := st.AllDomainIn(ctx, rm)
		if err != nil {
			violate("read the READ model %s: %v", rm.Collection, err)
		}
		for id := range docs {
			if _, due := w.Final[proj+":"+id]; !due {
				res.ReadModelLeaked = append(res.ReadModelLeaked, fmt.Sprintf("%s (collection %s) holds %s, which is no %s aggregate", proj, rm.Collection, id, proj))
			}
		}
		if res.ReadModels == nil {
			res.ReadModels = map[string][2]int{}
		}
		res.ReadModels[proj] = [2]int{checked, bad}
	}
	res.ReadModelChecked += checked
}

// targetLedger checks one target's receipts (rs, in arrival order)
// against the notifications due there and the dead letters of its
// connector; the caller adds the recorder's injection counts.
func targetLedger(target string, rs []Receipt, due []expectation, dead map[string][]string, timedOut bool) *TargetLedger {
	first, dups, order, conflicts := analyzeReceipts(rs)
	tl := &TargetLedger{Expected: len(due), Duplicates: dups, OrderViolations: order, IDConflicts: conflicts}
	var lags []time.Duration
	seq := map[int64]bool{}
	wrong := map[string]bool{}
	for _, rc := range rs {
		if !seq[rc.Seq] {
			seq[rc.Seq] = true
			tl.Calls++
			if rc.Status >= 500 {
				tl.ServerErrors++
			}
		}
		if rc.Misrouted != "" && !wrong[rc.ID] {
			wrong[rc.ID] = true
			tl.WrongProjection = append(tl.WrongProjection, fmt.Sprintf("%s (key %s v%d): %s", rc.ID, rc.Key, rc.Version, rc.Misrouted))
		}
		if !rc.Checked {
			continue
		}
		if rc.ReadModel < 0 {
			tl.Unverified++
			continue
		}
		tl.Checked++
		lags = append(lags, rc.CheckLag)
		if rc.ReadModel < rc.Version {
			tl.Durability = append(tl.Durability, fmt.Sprintf("%s (key %s v%d) reached %s while the READ model was at v%d",
				rc.ID, rc.Key, rc.Version, target, rc.ReadModel))
		}
	}
	sort.Strings(tl.WrongProjection)
	tl.CheckLag = Summarize(lags)
	// Each target must end on every aggregate's last version due there:
	// the last accepted call per key (in arrival order; rs is sorted by
	// Seq) carries it. A late call of an old version after the newest one
	// (a zombie's) leaves the target behind.
	final := map[string]Receipt{}
	for _, rc := range rs {
		if rc.OK {
			final[rc.Key] = rc
		}
	}
	wantFinal := map[string]int64{}
	for _, e := range due {
		if !e.permanent && e.version > wantFinal[e.key] {
			wantFinal[e.key] = e.version
		}
	}
	for k, v := range wantFinal {
		if got, ok := final[k]; ok && got.Version < v {
			how := ""
			if got.Injected != "" {
				how = ", a call the driver delayed past the client's " + got.Injected
			}
			tl.FinalBehind = append(tl.FinalBehind, fmt.Sprintf("key %s ends at v%d (%s%s), want v%d", k, got.Version, got.ID, how, v))
		}
	}
	sort.Strings(tl.FinalBehind)
	dueIDs := map[string]bool{}
	permanentDue := map[string]bool{}
	for _, e := range due {
		dueIDs[e.id] = true
		if e.permanent {
			tl.Permanent++
			permanentDue[e.id] = true
		}
		_, delivered := first[e.id]
		permanentDLQ := false
		for _, cl := range dead[e.id] {
			if cl == envelope.ClassPermanent {
				permanentDLQ = true
			}
		}
		switch {
		case e.permanent && permanentDLQ:
			tl.DeadPermanent++
		case e.permanent && delivered:
			tl.AcceptedPermanent = append(tl.AcceptedPermanent, e.id)
		case delivered:
			tl.Delivered++
		default:
			tl.Missing++
			why := "never delivered"
			if timedOut {
				why = "not delivered when the settle time ran out"
			}
			if len(dead[e.id]) > 0 {
				why = "dead-lettered as " + strings.Join(dead[e.id], ",") + " without an injected permanent error"
			}
			tl.MissingIDs = append(tl.MissingIDs, fmt.Sprintf("%s (key %s v%d): %s", e.id, e.key, e.version, why))
		}
	}
	for id, classes := range dead {
		if !permanentDue[id] {
			tl.DeadOther = append(tl.DeadOther, id+" ("+strings.Join(classes, ",")+")")
		}
	}
	sort.Strings(tl.DeadOther)
	for id := range first {
		if !dueIDs[id] {
			tl.Unexpected = append(tl.Unexpected, id)
		}
	}
	sort.Strings(tl.Unexpected)
	return tl
}

// Ledger renders the result as the table `make chaos` prints: with
// projections, one row per target and projection, then the target's
// total (the injected 429s and timeouts are counted per target only).
func (r *ChaosResult) Ledger() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	o := r.Options
	p("chaos ledger: %d events over %d aggregates, window %v, seed %d, relay transactional %t, %v in all\n", o.Events, o.Aggregates, o.Duration, o.Seed, o.Transactional, r.Elapsed.Round(time.Second))
	if len(r.Projections) > 0 {
		p("projections: %s (aggregate and event ids repeat across them)\n", strings.Join(r.Projections, ", "))
	}
	p("\n| target | projection | due | delivered | dead-lettered (injected permanent) | missing | duplicates (same id) | order violations | ahead of READ model | checked (read p50 / p99 after arrival) | unverified (store away) | one change, two ids | never due | wrong projection | other dead letters | calls | 5xx from sim | 429 (+Retry-After) | timeouts |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	row := func(t, proj string, tl *TargetLedger, injected bool) {
		inj := "- | -"
		if injected {
			inj = fmt.Sprintf("%d (+%d) | %d", tl.Injected.Throttled, tl.Injected.ThrottledRetryAfter, tl.Injected.TimedOut)
		}
		p("| %s | %s | %d | %d | %d of %d | %d | %d | %d | %d | %d (%s / %s) | %d | %d | %d | %d | %d | %d | %d | %s |\n", t, proj, tl.Expected, tl.Delivered,
			tl.DeadPermanent, tl.Permanent, tl.Missing, tl.Duplicates, len(tl.OrderViolations), len(tl.Durability), tl.Checked,
			msLabel(tl.CheckLag.P50), msLabel(tl.CheckLag.P99), tl.Unverified,
			len(tl.IDConflicts), len(tl.Unexpected), len(tl.WrongProjection), len(tl.DeadOther), tl.Calls, tl.ServerErrors, inj)
	}
	for _, t := range []string{RouteLogicApps, RouteSalesforce} {
		tl := r.Targets[t]
		if tl == nil {
			continue
		}
		for _, proj := range r.Projections {
			if pl := r.ByProjection[t][proj]; pl != nil {
				row(t, proj, pl, false)
			}
		}
		total := "all"
		if len(r.Projections) == 0 {
			total = "-"
		}
		row(t, total, tl, true)
	}
	p("\n| role | starts | SIGKILLs | SIGSTOP pauses (%v) | ended on its own |\n|---|---|---|---|---|\n", o.PauseFor)
	names := make([]string, 0, len(r.Starts))
	for n := range r.Starts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p("| %s | %d | %d | %d | %d |\n", n, r.Starts[n], r.Kills[n], r.Pauses[n], r.Exits[n])
	}
	if r.TimedOut {
		p("\nsettle: the %v settle time ran out with notifications still pending\n", o.Settle)
	} else {
		p("\nsettle: every notification accounted for %v after the window\n", r.SettledIn.Round(time.Second))
	}
	p("broker restarts: %d (down %v); store restarts: %d (down %v)\n", r.BrokerRestarts, r.BrokerDown.Round(time.Millisecond), r.StoreRestarts, r.StoreDown.Round(time.Millisecond))
	p("kafka link: %d cuts, %d delays, %d stalls, %d blackholes; store link: %d cuts, %d delays, %d stalls, %d blackholes\n",
		r.KafkaLink.Cuts, r.KafkaLink.Delays, r.KafkaLink.Stalls, r.KafkaLink.Blackholes,
		r.StoreLink.Cuts, r.StoreLink.Delays, r.StoreLink.Stalls, r.StoreLink.Blackholes)
	p("READ model: %d of %d aggregates at their last version", r.ReadModelChecked-len(r.ReadModelBad), r.ReadModelChecked)
	if len(r.Projections) > 0 {
		parts := make([]string, 0, len(r.Projections))
		for _, proj := range r.Projections {
			cb := r.ReadModels[proj]
			parts = append(parts, fmt.Sprintf("%s %d of %d", proj, cb[0]-cb[1], cb[0]))
		}
		p(" (%s); documents of no aggregate of their collection's projection: %d", strings.Join(parts, ", "), len(r.ReadModelLeaked))
	}
	p("\n")
	for _, t := range []string{RouteLogicApps, RouteSalesforce} {
		if tl := r.Targets[t]; tl != nil {
			p("%s: final state: %d aggregates behind their last version; fenced by the worker: %d stale (version fence), %d zombie relay writes (lease-token fence)\n",
				t, len(tl.FinalBehind), r.Fenced[t].StaleDropped, r.Fenced[t].LeaseFenced)
		}
	}
	for _, t := range []string{RouteLogicApps, RouteSalesforce} {
		if tl := r.Targets[t]; tl != nil && len(tl.DeadOther) > 0 {
			p("%s: dead letters without an injected permanent error (delivered anyway, so no loss): %s\n", t, strings.Join(first(tl.DeadOther, 10), "; "))
		}
	}
	if len(r.violations) == 0 {
		p("\nverdict: no violation\n")
	} else {
		p("\nverdict: %d violation(s):\n", len(r.violations))
		for _, v := range first(r.violations, 30) {
			p("  - %s\n", v)
		}
		if len(r.violations) > 30 {
			p("  ... and %d more\n", len(r.violations)-30)
		}
	}
	return b.String()
}

func first(ss []string, n int) []string { return ss[:min(n, len(ss))] }

// keyVersions serves the simulators' durability checks one key at a time:
// a find by _id equality, which FerretDB answers in a few milliseconds,
// while a find with _id $in (store.Versions) took about 250 ms there at
// 2,000 aggregates, even for one key (B2's probe measures both), which made
// the check, not the pipeline, the bottleneck of the first chaos runs.
type keyVersions struct {
	st *store.Store
	// rms are the projections' READ models by name; keys are then
	// projection:aggregate id (nil: bare ids in the default READ model).
	rms map[string]store.ReadModel
	// sem bounds the queries in flight, so that checks do not swamp the
	// store the pipeline is using.
	sem chan struct{}
}

func newKeyVersions(st *store.Store, parallel int, projs []SetupProjection) *keyVersions {
	k := &keyVersions{st: st, sem: make(chan struct{}, parallel)}
	if len(projs) > 0 {
		k.rms = map[string]store.ReadModel{}
		for _, p := range projs {
			k.rms[p.Name] = store.ReadModel{Collection: p.Collection}
		}
	}
	return k
}

// domain reads key's READ model document: from its projection's
// collection when keys are projection:aggregate id.
func (k *keyVersions) domain(ctx context.Context, key string) (bson.M, error) {
	if k.rms == nil {
		return k.st.Domain(ctx, key)
	}
	name, id, _ := strings.Cut(key, ":")
	rm, ok := k.rms[name]
	if !ok {
		return nil, nil // a notification of no known projection: reads as v0
	}
	return k.st.DomainIn(ctx, rm, id)
}

// Versions implements VersionReader.
func (k *keyVersions) Versions(ctx context.Context, keys []string) (map[string]int64, error) {
	var (
		mu       sync.Mutex
		out      = make(map[string]int64, len(keys))
		firstErr error
		wg       sync.WaitGroup
	)
	for _, key := range keys {
		select {
		case k.sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, fmt.Errorf("durability check: %w", ctx.Err())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-k.sem }()
			doc, err := k.domain(ctx, key)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			out[key] = versionOf(doc["version"])
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("durability check: %w", firstErr)
	}
	return out, nil
}

// versionOf reads a version field decoded from BSON (0 when absent).
func versionOf(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case float64:
		return int64(x)
	}
	return 0
}
