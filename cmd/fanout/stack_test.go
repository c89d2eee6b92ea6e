package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/sync/errgroup"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/secret/secrettest"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// syncBuffer collects the log output of every role of a stack.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testStack is the whole pipeline in this process, started the way
// `fanout dev` starts it (startRoles), with both simulators, real secrets
// and admin tokens, all logs collected.
type testStack struct {
	cfg     *config.Config
	brokers []string
	la      *lasim.Server
	sf      *sfsim.Server
	admin   string // base URL of the admin listener
	logs    *syncBuffer
	secrets map[string]string // what must never be logged, by name
	st      *store.Store
	stop    func() error
}

const stackAdminToken = "stack-ops-token-5f1d0c9a7e3b42d8"

// stackOptions vary the stack of startStackWith.
type stackOptions struct {
	// secretDir, if set, makes the connectors read the Logic Apps callback
	// URL and the Salesforce client secret from files there (la-url,
	// sf-secret) instead of the environment.
	secretDir string
	// delivery is extra YAML for the delivery block.
	delivery string
}

func startStack(t *testing.T) *testStack {
	t.Helper()
	return startStackWith(t, stackOptions{})
}

func startStackWith(t *testing.T, o stackOptions) *testStack {
	t.Helper()
	s := &testStack{brokers: testenv.Kafka(t), logs: &syncBuffer{}}
	uri := testenv.Mongo(t)

	la, err := lasim.New(lasim.Config{Key: "la-signing-key-" + testenv.Database(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := la.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = la.Close() })
	s.la = la
	laURL := la.CallbackURL("quotes", "manual", false)
	u, err := url.Parse(laURL)
	if err != nil || u.Query().Get("sig") == "" {
		t.Fatalf("simulator callback URL %q has no sig", laURL)
	}
	sfSecret := "sf-client-secret-" + testenv.Database(t)
	sf, err := sfsim.New(sfsim.Config{ClientID: "fanout-test", ClientSecret: sfSecret})
	if err != nil {
		t.Fatal(err)
	}
	sfURL, err := sf.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sf.Close() })
	s.sf = sf
	s.secrets = map[string]string{"logic apps sig": u.Query().Get("sig"), "salesforce client secret": sfSecret, "admin token": stackAdminToken}

	laSettings := "{url_env: T_LA_URL, max_attempts: 1}"
	sfSecretSetting := "client_secret_env: T_SF_SECRET"
	if o.secretDir != "" {
		secrettest.Write(t, filepath.Join(o.secretDir, "la-url"), laURL)
		secrettest.Write(t, filepath.Join(o.secretDir, "sf-secret"), sfSecret)
		laSettings = fmt.Sprintf("{url_file: %q, max_attempts: 1}", filepath.Join(o.secretDir, "la-url"))
		sfSecretSetting = fmt.Sprintf("client_secret_file: %q", filepath.Join(o.secretDir, "sf-secret"))
	}
	events := testenv.Topic(t, "events")
	notif := testenv.Topic(t, "notif")
	y := fmt.Sprintf(`
kafka: {brokers: [%q], session_timeout: 6s}
topics:
  events: %s
  events_dlq: %s.dlq
  notifications: %s
  dlq_prefix: %s.dlq.
  retry_prefix: %s.retry.
groups: {projector: %s, worker_prefix: %s-}
mongo: {uri: %q, database: %s, timeout: 20s}
relay: {lease_ttl: 6s, produce_timeout: 1s}
connectors:
  logic_apps:
    type: logicapps
    settings: %s
  salesforce:
    type: salesforce
    settings:
      login_url: %q
      allow_http: true
      auth: {type: client_credentials, client_id: fanout-test, %s}
      mode: upsert
      object: Quote__c
      external_id_field: Quote_Ext_Id__c
      fields: {Amount__c: amount, Currency__c: currency}
routing:
  default: {targets: [logic_apps], priority: normal}
  rules:
    - {name: created, event_types: [quote_created], targets: [logic_apps, salesforce], priority: high}
delivery:
  max_attempts: 2
  min_backoff: 20ms
  max_backoff: 100ms
  revoke_timeout: 3s
  delivered_flush: 200ms
%s
admin:
  listen: 127.0.0.1:0
  tokens: [{name: ops, token_env: T_ADMIN_OPS, scopes: [read, operate]}]
log: {level: debug, format: json}
`, s.brokers[0], events, events, notif, notif, notif, testenv.Topic(t, "proj"), testenv.Topic(t, "w"), uri, testenv.Database(t), laSettings, sfURL, sfSecretSetting, o.delivery)
	vars := map[string]string{"T_LA_URL": laURL, "T_SF_SECRET": sfSecret, "T_ADMIN_OPS": stackAdminToken}
	// Connectors read their *_env variables from the process.
	t.Setenv("T_LA_URL", laURL)
	t.Setenv("T_SF_SECRET", sfSecret)
	e := &env{stdout: io.Discard, stderr: s.logs, stdin: strings.NewReader(""), getenv: func(k string) string { return vars[k] }}
	c := config.Default()
	if err := config.Parse([]byte(y), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s.cfg = &c
	for _, tp := range []string{c.Topics.Events, c.Topics.EventsDLQ, c.Topics.Notifications} {
		testenv.CreateTopic(t, s.brokers, tp, 3)
	}
	for n := range c.Connectors {
		testenv.CreateTopic(t, s.brokers, c.DLQTopic(n), 2)
		testenv.CreateTopic(t, s.brokers, c.RetryTopic(n), 2)
	}

	ctx, cancel := context.WithCancel(context.Background())
	log := newLogger(s.cfg, e, "dev")
	st, err := openStore(ctx, s.cfg, e, "test")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s.st = st
	g, gctx := errgroup.WithContext(ctx)
	obs, err := startRoles(gctx, g, s.cfg, e, st, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s.admin = strings.TrimSuffix(adminURL(gctx, s.cfg, obs), "/")
	var once sync.Once
	var stopErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			done := make(chan error, 1)
			go func() { done <- g.Wait() }()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("the stack did not stop within 30 s")
			}
			_ = st.Drop(context.Background())
			_ = st.Close(context.Background())
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			l := s.logs.String()
			if len(l) > 8000 {
				l = l[len(l)-8000:]
			}
			t.Logf("log tail:\n%s", l)
		}
	})
	return s
}

// sendEvents produces source events (JSON objects) keyed by quote_id.
func (s *testStack) sendEvents(t *testing.T, evs ...map[string]any) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.DefaultProduceTopic(s.cfg.Topics.Events))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(ev["quote_id"].(string)), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// get calls the admin API with the stack's token.
func (s *testStack) get(t *testing.T, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+stackAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// laDelivered returns the ids the Logic Apps simulator accepted.
func (s *testStack) laDelivered() map[string]int {
	out := map[string]int{}
	for _, c := range s.la.Calls() {
		if c.Status >= 200 && c.Status < 300 {
			out[c.TrackingID]++
		}
	}
	return out
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStack runs the pipeline as fanout dev does, with a Logic Apps
// simulator that refuses everything at first: the documented metrics are
// on /metrics, a replay started from the console (in headless Chromium)
// reaches the simulator once the fault is fixed, and no secret (the Logic
// Apps sig, the Salesforce client secret, the admin token) appears in any
// log line of the run.
func TestStack(t *testing.T) {
	s := startStack(t)
	if err := s.la.SetFaults(lasim.Faults{Mode: lasim.ModeResponse, Status: 400, Body: `{"error":{"code":"InvalidQuote","message":"no"}}`}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	s.sendEvents(t,
		map[string]any{"id": "st-1", "event_type": "quote_created", "quote_id": "SQ1", "version": 1, "timestamp": now, "amount": 10, "currency": "INR"},
		map[string]any{"id": "st-2", "event_type": "quote_created", "quote_id": "SQ2", "version": 1, "timestamp": now, "amount": 20, "currency": "EUR"},
	)
	waitUntil(t, 60*time.Second, "two logic_apps dead letters and two Salesforce upserts", func() bool {
		var c struct {
			DeadLetters int64 `json:"dead_letters"`
		}
		s.get(t, "/v1/connectors/logic_apps", &c)
		ok := 0
		for _, call := range s.sf.Calls() {
			if call.Method == "PATCH" && call.Status < 300 {
				ok += max(call.Records, 1) // one upsert, or a Collections batch
			}
		}
		return c.DeadLetters == 2 && ok >= 2
	})

	t.Run("metrics", func(t *testing.T) { checkDocumentedMetrics(t, s) })

	if err := s.la.SetFaults(lasim.Faults{}); err != nil {
		t.Fatal(err)
	}
	t.Run("console", func(t *testing.T) { consoleReplay(t, s) })

	t.Run("audit", func(t *testing.T) { checkAudit(t, s) })

	t.Run("no secrets in logs", func(t *testing.T) {
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
		logs := s.logs.String()
		for _, want := range []string{`"msg":"notification dead-lettered"`, `"msg":"admin listener started"`, `"msg":"worker started"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("the logs lack %s: the check below would prove nothing", want)
			}
		}
		lines := 0
		sc := bufio.NewScanner(strings.NewReader(logs))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines++
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("log line is not JSON: %s", sc.Text())
			}
		}
		for name, secret := range s.secrets {
			for _, form := range []string{secret, url.QueryEscape(secret)} {
				if strings.Contains(logs, form) {
					t.Errorf("the %s appears in the logs", name)
				}
			}
		}
		t.Logf("%d log lines checked for %d secrets", lines, len(s.secrets))
	})
}

// post calls a POST route of the admin API with the stack's token.
func (s *testStack) post(t *testing.T, path, body string) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+stackAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
}

// checkAudit makes operate calls (pause, resume, a dry-run replay) and
// checks the audit collection itself: every record says who (the token's
// name), what, when and from where, and no secret of the stack (the admin
// token above all, the Logic Apps sig, the Salesforce client secret)
// appears in any record, nor on /metrics.
func checkAudit(t *testing.T, s *testStack) {
	s.post(t, "/v1/connectors/logic_apps/pause", `{"reason": "audit check"}`)
	s.post(t, "/v1/connectors/logic_apps/resume", `{}`)
	s.post(t, "/v1/connectors/logic_apps/replay", `{"filter": {}, "dry_run": true}`)
	recs, err := s.st.AuditRecords(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]bool{}
	var all strings.Builder
	for _, raw := range recs {
		var r store.AuditRecord
		if err := bson.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		actions[r.Action] = true
		if r.Who != "ops" || r.At.IsZero() || r.Action == "" || r.Connector == "" {
			t.Errorf("audit record %s: who %q, at %v, action %q, connector %q; want the token's name, a time, the action and the connector", r.ID, r.Who, r.At, r.Action, r.Connector)
		}
		if host, _, err := net.SplitHostPort(r.Remote); err != nil || net.ParseIP(host) == nil {
			t.Errorf("audit record %s: remote %q, want the client's address", r.ID, r.Remote)
		}
		all.WriteString(raw.String())
		all.WriteByte('\n')
	}
	for _, a := range []string{"pause", "resume", "replay"} {
		if !actions[a] {
			t.Errorf("no audit record of %s (have %v)", a, actions)
		}
	}
	resp, err := http.Get(s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for name, secret := range s.secrets {
		for _, form := range []string{secret, url.QueryEscape(secret)} {
			if strings.Contains(all.String(), form) {
				t.Errorf("the %s appears in the audit collection", name)
			}
			if strings.Contains(string(metrics), form) {
				t.Errorf("the %s appears on /metrics", name)
			}
		}
	}
	t.Logf("%d audit records and %d bytes of metrics checked for %d secrets", len(recs), len(metrics), len(s.secrets))
}

// metricName matches a metric name in back quotes in the documentation.
var metricName = regexp.MustCompile("`(fanout_(?:delivery|projector|relay|outbox)_[a-z_]+)`")

// checkDocumentedMetrics holds docs/operations.md ("Metrics") and /metrics
// together: every documented name is exported, and every fanout_delivery_
// metric exported is documented.
func checkDocumentedMetrics(t *testing.T, s *testStack) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Metrics\n")
	if !ok {
		t.Fatal("docs/operations.md has no Metrics section")
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	documented := map[string]bool{}
	for _, m := range metricName.FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	if len(documented) < 30 {
		t.Fatalf("only %d metric names found in the Metrics section", len(documented))
	}
	// The lag and usage series appear once partitions are held and
	// Salesforce has answered: scrape until every documented name shows.
	var exported map[string]bool
	var missing []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		exported = map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
				exported[f[2]] = true
			} else if len(f) >= 2 && !strings.HasPrefix(line, "#") {
				exported[strings.SplitN(f[0], "{", 2)[0]] = true
			}
		}
		missing = missing[:0]
		for n := range documented {
			if !exported[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	sort.Strings(missing)
	for _, n := range missing {
		t.Errorf("%s is documented but not on /metrics", n)
	}
	for n := range exported {
		if strings.HasPrefix(n, "fanout_delivery_") && !documented[n] && !strings.HasSuffix(n, "_bucket") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") {
			t.Errorf("%s is on /metrics but not documented in docs/operations.md", n)
		}
	}
}

// chromiumPath finds a Chromium or Chrome binary.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// consoleReplay drives the console in headless Chromium: token entry,
// pause and resume, the dead letters of logic_apps filtered to one key,
// inspect, a dry run, then the replay; the replayed notification reaches
// the Logic Apps simulator, and the other dead letter is left alone.
func consoleReplay(t *testing.T, s *testStack) {
	bin := chromiumPath()
	if bin == "" {
		t.Skip("chromium is not installed (apt-get install -y chromium, or .ci/run does it): skipping the console test")
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
	)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first action starts the browser, which lives as long as its
	// context: no timeout on that one.
	if err := chromedp.Do(bctx, chromedp.Navigate(s.admin+"/")); err != nil {
		t.Fatalf("open the console: %v", err)
	}
	ctx, cancelT := context.WithTimeout(bctx, 90*time.Second)
	defer cancelT()
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			html, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("console: %s: %v\npage text:\n%s", what, err, html)
		}
	}
	// textHas waits until the element's text contains substr.
	textHas := func(sel, substr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](fmt.Sprintf(`(function(){ const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, substr),
			chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))
	}
	la := `#connectors tr[data-connector="logic_apps"]`
	shot := screenshotter(t, bctx)
	step("enter the token",
		chromedp.EmulateViewport(1400, 1000),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), stackAdminToken),
		chromedp.Click(chromedp.ID("save-token")),
		chromedp.WaitVisible(chromedp.CSS(la+" button.show-dlq")),
		textHas(la+" td.dead-letters", "2"),
	)
	// The pipeline view: a row per stage, the figures as the roles
	// published them (the projector and relay statuses, the workers'
	// ledgers by class) and the broker reports them.
	pl := `#pipeline tr.stage`
	step("the pipeline view",
		textHas(pl+`[data-stage="source"] td.figures`, "lag 0"),
		textHas(pl+`[data-stage="source"] td.figures`, "per partition p0: 0, p1: 0, p2: 0"),
		textHas(pl+`[data-stage="projector"] td.figures`, "projected 2"),
		textHas(pl+`[data-stage="projector"] td.figures`, "stale 0"),
		textHas(pl+`[data-stage="outbox"] td.figures`, "backlog 0"),
		textHas(pl+`[data-stage="relay"] td.state`, "leading"),
		textHas(pl+`[data-stage="relay"] td.figures`, "holder "),
		textHas(pl+`[data-stage="connector"][data-connector="logic_apps"] td.figures`, "dead letters 2 (since start: permanent 2)"),
		textHas(pl+`[data-stage="connector"][data-connector="logic_apps"] td.state`, "breaker closed"),
		textHas(pl+`[data-stage="connector"][data-connector="salesforce"] td.figures`, " ms (last "),
	)
	shot("01-pipeline")
	// The charts are SVG the admin draws from its samples (every 5 s):
	// wait until the lines have points.
	chartHas := func(connector string, minPoints int, series ...string) chromedp.Action[chromedp.Void] {
		b, _ := json.Marshal(series)
		return chromedp.Poll[chromedp.Void](fmt.Sprintf(`(function(){
			const svg = document.querySelector('#charts div.chart[data-connector=%q] svg');
			if (!svg) return false;
			return %s.every(name => { const p = svg.querySelector('path.series[data-series="' + name + '"]');
				if (!p) return false;
				const n = +p.dataset.points, d = p.getAttribute("d");
				return n >= %d && /^M[0-9.]+ [0-9.]+/.test(d) && d.split(/[ML]/).length - 1 === n; }); })()`, connector, b, minPoints),
			chromedp.WithPollingTimeout(40*time.Second), chromedp.WithPollingInterval(250*time.Millisecond))
	}
	step("the charts",
		chartHas("logic_apps", 2, "deliveries", "dead_letters", "lag"),
		chartHas("salesforce", 2, "deliveries", "lag"),
		textHas(`#charts div.chart[data-connector="logic_apps"] svg`, "dead letters per second"),
	)
	shot("02-charts")
	step("pause and resume",
		chromedp.Click(chromedp.CSS(la+" button.pause")),
		chromedp.WaitVisible(chromedp.CSS(la+" button.resume")),
		chromedp.Click(chromedp.CSS(la+" button.resume")),
		chromedp.WaitVisible(chromedp.CSS(la+" button.pause")),
	)
	var paused bool
	s.get(t, "/v1/connectors/logic_apps", &struct {
		Paused *bool `json:"paused"`
	}{&paused})
	if paused {
		t.Fatal("logic_apps still paused after resume from the console")
	}
	step("filter the dead letters to SQ1",
		chromedp.Click(chromedp.CSS(la+" button.show-dlq")),
		chromedp.WaitVisible(chromedp.CSS("#dlq tr.dead-letter")),
		chromedp.SendKeys(chromedp.ID("f-key"), "SQ1"),
		chromedp.SendKeys(chromedp.ID("f-reason"), "invalidquote"),
		chromedp.Click(chromedp.ID("dlq-load")),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#dlq tr.dead-letter").length === 1 && document.querySelector("#dlq td.key").textContent === "SQ1"`,
			chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)),
	)
	step("inspect",
		chromedp.Click(chromedp.CSS("#dlq tr.dead-letter button.inspect")),
		textHas("#detail", `"id": "st-1"`),
		textHas("#detail", `"error_class": "permanent"`),
		textHas("#detail-error", "permanent, HTTP 400"),
		textHas("#detail-record", `"quote_id": "SQ1"`),
	)
	shot("03-dead-letter")
	step("dry run",
		chromedp.Click(chromedp.CSS("#dlq input.pick")),
		chromedp.Click(chromedp.ID("dry-run")),
		textHas("#replay-summary", "1 of 1 would be replayed"),
		chromedp.Poll[chromedp.Void](`!document.getElementById("confirm-replay").disabled`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	shot("04-dry-run")
	time.Sleep(500 * time.Millisecond)
	if s.laDelivered()["st-1"] != 0 {
		t.Fatal("the dry run delivered st-1")
	}
	step("replay",
		chromedp.Click(chromedp.ID("confirm-replay")),
		textHas("#replay-summary", "1 of 1 replayed to "+s.cfg.RetryTopic("logic_apps")),
	)
	waitUntil(t, 30*time.Second, "st-1 at the Logic Apps simulator", func() bool { return s.laDelivered()["st-1"] == 1 })
	time.Sleep(500 * time.Millisecond)
	if n := s.laDelivered()["st-2"]; n != 0 {
		t.Errorf("st-2 was not selected but reached the simulator %d times", n)
	}
	step("the dead letter shows as replayed",
		textHas("#dlq tr.dead-letter td.replayed", "yes (ops)"),
	)
	shot("05-replayed")
	// The replayed delivery's latency reaches the chart once sampled.
	step("the replayed delivery in the chart", chartHas("logic_apps", 1, "p99"))
	// The trace is written about every second: search again until the
	// replayed delivery shows.
	step("trace st-1 from its dead letter",
		chromedp.Click(chromedp.CSS("#dlq tr.dead-letter button.trace")),
		chromedp.Poll[chromedp.Void](`(function(){
			const ok = document.getElementById("trace-summary").textContent.includes("logic_apps: delivered after") &&
				document.getElementById("trace").textContent.includes("by ops");
			if (!ok) document.getElementById("trace-search").click();
			return ok; })()`, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(500*time.Millisecond)),
		textHas("#trace", "HTTP 400"),
		textHas("#trace", "published"),
	)
	shot("06-trace")
}

// screenshotter returns a function that saves a full-page screenshot of
// the browser of ctx as NAME.png in $FANOUT_TEST_ARTIFACTS (created if
// need be; .ci/run sets it) or else in a temporary directory of the
// test. A screenshot that fails is logged, not fatal: it is evidence, not
// the test.
func screenshotter(t *testing.T, ctx context.Context) func(name string) {
	dir := os.Getenv("FANOUT_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else {
		dir = filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("screenshots: %v", err)
	}
	return func(name string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("screenshot %s: %v", name, err)
			return
		}
		path := filepath.Join(dir, "console-"+name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Logf("screenshot %s: %v", name, err)
			return
		}
		t.Logf("screenshot %s", path)
	}
}
