//go:build !fanout_nodev

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/redact"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
)

const helpDev = `usage: fanout dev [flags]

Runs the whole pipeline in one process on embedded defaults: an embedded
Kafka-protocol broker (kfake), an embedded MongoDB-compatible store (FerretDB
on SQLite in --data), the projector, the relay, one delivery worker per
connector, the admin API and console (on admin.listen, 127.0.0.1:9464 by
default; without admin.tokens it answers this machine only, no token
needed), and local Logic Apps and Salesforce simulators the connectors
call over real HTTP. It prints where everything is. Ctrl-C stops it all.

  --generate 20     produce 20 sample quote events a second (creates,
                    updates, duplicates, and a few the Salesforce simulator
                    rejects, so dead letters appear)
  --kafka / --mongo use real servers instead of the embedded ones
  --config FILE     use your configuration instead of the built-in one
  --open            open the admin console in a browser (xdg-open or open)

Log lines are cut to their key facts in dev mode (attribute values over
200 characters end in "..."); roles run on their own log in full.
`

// devFlags are fanout dev's flags.
type devFlags struct {
	config     string
	data       string
	ephemeral  bool
	generate   float64
	kafka      string
	mongo      string
	kafkaAddr  string
	mongoAddr  string
	rejectRate float64
	open       bool
}

func runDev(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("dev", e, helpDev)
	var f devFlags
	fs.StringVar(&f.config, "config", "", "configuration file; default: built-in, routing sample events to both simulators")
	fs.StringVar(&f.data, "data", ".fanout-dev", "data directory of the embedded broker and store")
	fs.BoolVar(&f.ephemeral, "ephemeral", false, "use a temporary data directory, removed at exit")
	fs.Float64Var(&f.generate, "generate", 0, "produce sample quote events at this rate per second (0: none)")
	fs.StringVar(&f.kafka, "kafka", "", "comma-separated brokers of a real Kafka instead of the embedded broker")
	fs.StringVar(&f.mongo, "mongo", "", "URI of a real MongoDB instead of the embedded store")
	fs.StringVar(&f.kafkaAddr, "kafka-listen", "127.0.0.1:0", "address of the embedded broker")
	fs.StringVar(&f.mongoAddr, "mongo-listen", "127.0.0.1:0", "address of the embedded store")
	fs.Float64Var(&f.rejectRate, "reject-rate", 0.03, "share of generated events the Salesforce simulator rejects")
	fs.BoolVar(&f.open, "open", false, "open the admin console in a browser")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}

	dir := f.data
	if f.ephemeral {
		d, err := os.MkdirTemp("", "fanout-dev-")
		if err != nil {
			return fmt.Errorf("create temporary data directory: %w", err)
		}
		dir = d
		defer os.RemoveAll(d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)

	// Simulators.
	laKey := randomHex(16)
	la, err := lasim.New(lasim.Config{Key: laKey})
	if err != nil {
		return fmt.Errorf("logic apps simulator: %w", err)
	}
	laURL, err := la.Start(gctx, "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("start logic apps simulator: %w", err)
	}
	defer la.Close()
	sfID, sfSecret := "fanout-dev-"+randomHex(4), randomHex(16)
	sf, err := sfsim.New(sfsim.Config{ClientID: sfID, ClientSecret: sfSecret, Faults: sfsim.Faults{RejectField: "Currency__c", RejectValue: "XXX"}})
	if err != nil {
		return fmt.Errorf("salesforce simulator: %w", err)
	}
	sfURL, err := sf.Start(gctx, "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("start salesforce simulator: %w", err)
	}
	defer sf.Close()

	// Configuration.
	var cfg *config.Config
	if f.config != "" {
		cfg, err = config.Load(f.config, e.getenv)
		if err != nil {
			return configError{err}
		}
	} else {
		y := fmt.Sprintf(devConfig, la.CallbackURL("quotes", "manual", false), sfURL, sfID, sfSecret)
		c := config.Default()
		if err := config.Parse([]byte(y), &c); err != nil {
			return fmt.Errorf("built-in dev configuration: %w", err)
		}
		if err := config.ApplyEnv(&c, e.getenv); err != nil {
			return configError{err}
		}
		cfg = &c
	}
	if f.config == "" || f.kafka != "" {
		cfg.Kafka.Brokers = nil
	}
	if err := cfg.CheckAdminExposure(); err != nil {
		return configError{err}
	}

	// Broker.
	topics := []string{cfg.Topics.Events, cfg.Topics.EventsDLQ, cfg.Topics.Notifications, cfg.RelayDLQTopic()}
	for name := range cfg.Connectors {
		topics = append(topics, cfg.DLQTopic(name), cfg.RetryTopic(name))
	}
	switch {
	case f.kafka != "":
		cfg.Kafka.Brokers = strings.Split(f.kafka, ",")
	case f.config != "" && len(cfg.Kafka.Brokers) > 0 && e.getenv("FANOUT_KAFKA_BROKERS") != "":
	default:
		port, err := portOf(f.kafkaAddr)
		if err != nil {
			return usageError{"--kafka-listen: " + err.Error()}
		}
		kdir := filepath.Join(dir, "kafka")
		if err := os.MkdirAll(kdir, 0o755); err != nil {
			return fmt.Errorf("create broker directory: %w", err)
		}
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.AllowAutoTopicCreation(),
			kfake.DefaultNumPartitions(6), kfake.SeedTopics(6, topics...), kfake.DataDir(kdir))
		if err != nil {
			return fmt.Errorf("start embedded broker: %w", err)
		}
		defer cluster.Close()
		cfg.Kafka.Brokers = cluster.ListenAddrs()
	}

	// Store.
	switch {
	case f.mongo != "":
		cfg.Mongo.URI = f.mongo
	default:
		sdir := filepath.Join(dir, "ferretdb")
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			return fmt.Errorf("create store directory: %w", err)
		}
		fdb, err := ferretdb.New(&ferretdb.Config{
			Listener:  ferretdb.ListenerConfig{TCP: f.mongoAddr},
			Handler:   "sqlite",
			SQLiteURL: "file:" + sdir + "/",
			Logger:    slog.New(slog.DiscardHandler),
		})
		if err != nil {
			return fmt.Errorf("start embedded store: %w", err)
		}
		fctx, fstop := context.WithCancel(context.WithoutCancel(ctx))
		fdone := make(chan struct{})
		go func() { defer close(fdone); fdb.Run(fctx) }()
		defer func() { fstop(); <-fdone }()
		cfg.Mongo.URI = fdb.MongoDBURI()
	}
	cfg.Mongo.URIEnv, cfg.Mongo.URIFile = "", "" // dev picks the store itself
	if err := cfg.Validate(); err != nil {
		return configError{err}
	}

	log := newLogger(cfg, e, "dev", shortAttrs(devAttrMax))
	st, err := openStore(gctx, cfg, e, "dev")
	if err != nil {
		return err
	}
	defer st.Close(context.Background())

	fmt.Fprintf(e.stdout, `fanout dev is running. Ctrl-C stops everything.

  Kafka broker     %s   (any Kafka client: kcat -b %s -L)
  topics           events %s, notifications %s, dead letters %s<connector>
  MongoDB store    %s   (mongosh or any driver; database %s, READ model %s)
  Logic Apps sim   %s   (calls: %s/_sim/calls)
  Salesforce sim   %s   (calls: %s/_sim/calls, records: %s/_sim/records/Quote__c)
  data directory   %s

Send an event (from this checkout; go install ./cmd/fanout puts fanout on your PATH):
  echo '{"id":"e1","event_type":"quote_created","quote_id":"Q1","version":1,"amount":5000,"currency":"INR"}' | go run ./cmd/fanout send --brokers %s

`, strings.Join(cfg.Kafka.Brokers, ","), cfg.Kafka.Brokers[0], cfg.Topics.Events, cfg.Topics.Notifications, cfg.Topics.DLQPrefix,
		redact.Credentials(cfg.Mongo.URI), cfg.Mongo.Database, cfg.Mongo.Collections.Domain,
		laURL, laURL, sfURL, sfURL, sfURL, dir, cfg.Kafka.Brokers[0])

	obs, err := startRoles(gctx, g, cfg, e, st, log)
	if err != nil {
		return err
	}
	if u := adminURL(gctx, cfg, obs); u != "" {
		access := "no token needed from this machine (no admin.tokens configured)"
		if len(cfg.Admin.Tokens) > 0 {
			access = "tokens of admin.tokens"
		}
		fmt.Fprintf(e.stdout, "  Admin and console   %s   (API %sv1/connectors, %sopenapi.json; %s)\n\n", u, u, u, access)
		if f.open {
			openBrowser(gctx, e, u)
		}
	}
	if f.generate > 0 && f.rejectRate > 0 {
		fmt.Fprintf(e.stdout, "Sample data: about %.0f%% of the generated events are built to be refused by the Salesforce simulator (currency XXX);\n"+
			"their WARN \"notification dead-lettered\" lines are expected, and the dead letters can be replayed from the console.\n\n", f.rejectRate*100)
	}
	if f.generate > 0 {
		g.Go(func() error { return generate(gctx, cfg, f.generate, f.rejectRate, log) })
	}
	err = g.Wait()
	log.Info("fanout dev stopped")
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// devConfig is the built-in configuration of fanout dev; brokers and store
// are filled in at start.
const devConfig = `
connectors:
  logic_apps:
    type: logicapps
    settings:
      url: %q
  salesforce:
    type: salesforce
    settings:
      login_url: %q
      allow_http: true
      auth:
        type: client_credentials
        client_id: %q
        client_secret: %q
      mode: upsert
      object: Quote__c
      external_id_field: Quote_Ext_Id__c
      fields:
        Amount__c: amount
        Currency__c: currency
        User_Id__c: user_id
        Event_Type__c: "@type"
routing:
  default: {targets: [logic_apps], priority: normal, trigger_type: quote_lifecycle}
  rules:
    - name: lifecycle
      event_types: [quote_created, quote_accepted, quote_rejected]
      targets: [logic_apps, salesforce]
      priority: high
    - name: large-updates
      event_types: [quote_updated]
      fields: {currency: XXX}
      targets: [logic_apps, salesforce]
relay:
  lease_ttl: 10s
  produce_timeout: 2s
delivery:
  breaker: {consecutive_failures: 5, open_timeout: 5s, half_open_probes: 1}
  max_elapsed: 1h
log:
  level: info
  format: text
`

// generate produces sample quote events at rate per second until ctx ends.
func generate(ctx context.Context, cfg *config.Config, rate, rejectRate float64, log *slog.Logger) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.DefaultProduceTopic(cfg.Topics.Events), kgo.AllowAutoTopicCreation())
	if err != nil {
		return fmt.Errorf("generator: %w", err)
	}
	defer cl.Close()
	type quote struct{ version int64 }
	quotes := map[string]*quote{}
	var last []byte
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	run := randomHex(3)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		var value []byte
		var key string
		r := mrand.Float64()
		if last != nil && r < 0.05 {
			value = last // a duplicate delivery of the previous event
			var ev map[string]any
			_ = json.Unmarshal(value, &ev)
			key, _ = ev["quote_id"].(string)
		} else {
			id := fmt.Sprintf("Q-%s-%03d", run, mrand.IntN(200))
			q, ok := quotes[id]
			typ := "quote_updated"
			if !ok {
				q = &quote{}
				quotes[id] = q
				typ = "quote_created"
			} else if mrand.Float64() < 0.1 {
				typ = "quote_accepted"
			}
			q.version++
			cur := []string{"INR", "EUR", "USD"}[mrand.IntN(3)]
			if mrand.Float64() < rejectRate {
				cur = "XXX" // the Salesforce simulator rejects it: a dead letter
			}
			value, _ = json.Marshal(map[string]any{
				"id": fmt.Sprintf("evt-%s-%d", run, n), "event_type": typ, "quote_id": id, "version": q.version,
				"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "user_id": fmt.Sprintf("U%d", mrand.IntN(50)),
				"amount": mrand.IntN(100000), "currency": cur,
			})
			key = id
		}
		last = value
		cl.Produce(ctx, &kgo.Record{Key: []byte(key), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil && ctx.Err() == nil {
				log.Warn("generator: produce failed", "err", err)
			}
		})
	}
}

func portOf(addr string) (int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	if host != "127.0.0.1" && host != "localhost" && host != "::1" {
		return 0, fmt.Errorf("the embedded broker listens on loopback only, not %q", host)
	}
	return strconv.Atoi(p)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		x, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
		return x.String()
	}
	return hex.EncodeToString(b)
}

// devAttrMax bounds an attribute value on fanout dev's log lines: a
// terminal line keeps its key facts (the error's first 200 characters).
const devAttrMax = 200

// shortAttrs cuts string and error attribute values to at most max bytes,
// on a rune boundary, marking the cut with "...".
func shortAttrs(max int) func(groups []string, a slog.Attr) slog.Attr {
	return func(_ []string, a slog.Attr) slog.Attr {
		var s string
		switch a.Value.Kind() {
		case slog.KindString:
			s = a.Value.String()
		case slog.KindAny:
			err, ok := a.Value.Any().(error)
			if !ok {
				return a
			}
			s = err.Error()
		default:
			return a
		}
		if len(s) <= max {
			return a
		}
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return slog.String(a.Key, s[:cut]+"...")
	}
}

// openBrowser opens url with the desktop's opener, or says why it cannot;
// it waits at most a few seconds for the opener to hand over.
func openBrowser(ctx context.Context, e *env, url string) {
	var opener string
	for _, c := range []string{"xdg-open", "open"} {
		if p, err := exec.LookPath(c); err == nil {
			opener = p
			break
		}
	}
	if opener == "" {
		fmt.Fprintf(e.stdout, "  --open: no xdg-open or open here; open %s yourself\n\n", url)
		return
	}
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := exec.CommandContext(octx, opener, url).Run(); err != nil {
		fmt.Fprintf(e.stdout, "  --open: %s %s failed (%v); open it yourself\n\n", opener, url, err)
	}
}
