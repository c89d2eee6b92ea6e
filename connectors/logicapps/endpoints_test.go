package logicapps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/secret/secrettest"
	sim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
)

// laURL is a syntactically good Consumption callback URL with sig.
func laURL(workflow, sig string) string {
	return fmt.Sprintf("https://prod-01.westeurope.logic.azure.com/workflows/%s/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%%2Ftriggers%%2Fmanual%%2Frun&sv=1.0&sig=%s", workflow, sig)
}

// TestEndpointPrecedence: the most specific URL wins: the projection's for
// the trigger type, the projection's, the trigger type's, then url.
func TestEndpointPrecedence(t *testing.T) {
	t.Setenv("LA_ORDERS_URL", laURL("orders", "SIGORDERS0123456789"))
	doc := fmt.Sprintf(`url: %q
trigger_types:
  quote_lifecycle: {url: %q}
  shared: {url: %q}
projections:
  orders:
    url_env: LA_ORDERS_URL
    trigger_types:
      order_cancelled: {url: %q}
  customers:
    trigger_types:
      vip: {url: %q}
`, laURL("default", "SIGDEFAULT0123456789"), laURL("lifecycle", "SIGLIFECYCLE0123456789"), laURL("shared", "SIGSHARED0123456789"),
		laURL("orders-cancelled", "SIGCANCELLED0123456789"), laURL("customers-vip", "SIGVIP0123456789"))
	var s Settings
	if err := strictYAML(doc)(&s); err != nil {
		t.Fatal(err)
	}
	r, err := resolve("x", s, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		projection, triggerType string
		wantField               string
	}{
		{"", "", "url"},
		{"", "quote_lifecycle", "trigger_types.quote_lifecycle.url"},
		{"quotes", "", "url"},
		{"quotes", "quote_lifecycle", "trigger_types.quote_lifecycle.url"},
		{"quotes", "other", "url"},
		{"orders", "", "projections.orders.url_env"},
		{"orders", "order_cancelled", "projections.orders.trigger_types.order_cancelled.url"},
		{"orders", "quote_lifecycle", "projections.orders.url_env"}, // the projection's URL beats a trigger type's
		{"orders", "shared", "projections.orders.url_env"},
		{"customers", "vip", "projections.customers.trigger_types.vip.url"},
		{"customers", "shared", "trigger_types.shared.url"}, // no URL of its own: trigger type, then url
		{"customers", "", "url"},
		{"quotes", "order_cancelled", "url"}, // another projection's trigger types do not apply
	}
	for _, tt := range tests {
		t.Run(tt.projection+"/"+tt.triggerType, func(t *testing.T) {
			got := r.endpointFor(&connectors.Notification{Projection: tt.projection, TriggerType: tt.triggerType})
			if got.field != tt.wantField {
				t.Fatalf("URL from %s, want %s", got.field, tt.wantField)
			}
		})
	}
	if len(r.endpoints) != 6 {
		t.Fatalf("%d endpoints, want 6", len(r.endpoints))
	}
	if sigs := r.sigs(); len(sigs) != 6 {
		t.Fatalf("sigs to scrub: %d, want 6", len(sigs))
	}
	// Printing the settings shows no sig.
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "settings", s, "projections", s.Projections, "orders", s.Projections["orders"])
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%#v", s.Projections),
		fmt.Sprintf("%v", s.Projections), fmt.Sprintf("%v", s.TriggerTypes), fmt.Sprintf("%#v", s.TriggerTypes), logged.String()} {
		if strings.Contains(out, "SIG") {
			t.Fatalf("settings print a sig: %s", out)
		}
	}
}

// TestEndpointConfigErrors: a bad per-projection or per-trigger-type URL
// fails at start, naming its own setting, and never quoting a sig.
func TestEndpointConfigErrors(t *testing.T) {
	good := laURL("abc", "SECRETSIGVALUE0123456789")
	noSig := "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01"
	t.Setenv("LA_ORDERS_URL", laURL("orders", "SECRETORDERSSIG0123456789"))
	t.Setenv("LA_EMPTY", "")
	entra := "auth: entra\ntenant_id: t\nclient_id: c\nclient_secret: s3cr3t-value\n"
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"only projections, no url", "projections:\n  orders: {url_env: LA_ORDERS_URL}\n", []string{"url is required", "projections and trigger_types"}},
		{"projection url and url_env", fmt.Sprintf("url: %q\nprojections:\n  orders: {url: %q, url_env: LA_ORDERS_URL}\n", good, good),
			[]string{"projections.orders.url and projections.orders.url_env are both set"}},
		{"projection url_env unset", fmt.Sprintf("url: %q\nprojections:\n  orders: {url_env: LA_NOPE}\n", good),
			[]string{"projections.orders.url_env", "LA_NOPE"}},
		{"projection url_env empty", fmt.Sprintf("url: %q\nprojections:\n  orders: {url_env: LA_EMPTY}\n", good),
			[]string{"projections.orders.url_env", "LA_EMPTY"}},
		{"projection url_file missing", fmt.Sprintf("url: %q\nprojections:\n  orders: {url_file: /nonexistent/orders}\n", good),
			[]string{"projections.orders.url_file", "/nonexistent/orders", "no such file"}},
		{"projection url without sig", fmt.Sprintf("url: %q\nprojections:\n  orders: {url: %q}\n", good, noSig),
			[]string{"projections.orders.url ", "no sig"}},
		{"trigger type url without sig", fmt.Sprintf("url: %q\ntrigger_types:\n  quote_lifecycle: {url: %q}\n", good, noSig),
			[]string{"trigger_types.quote_lifecycle.url ", "no sig"}},
		{"projection trigger type url_file missing", fmt.Sprintf("url: %q\nprojections:\n  orders:\n    trigger_types:\n      cancelled: {url_file: /nonexistent/c}\n", good),
			[]string{"projections.orders.trigger_types.cancelled.url_file", "no such file"}},
		{"entra with a sig in a projection url", fmt.Sprintf("url: %q\n%sprojections:\n  orders: {url_env: LA_ORDERS_URL}\n", noSig, entra),
			[]string{"projections.orders.url_env", "carries a sig", "entra"}},
		{"entra with a sig in a trigger type url", fmt.Sprintf("url: %q\n%strigger_types:\n  x: {url: %q}\n", noSig, entra, good),
			[]string{"trigger_types.x.url ", "carries a sig"}},
		{"projection without url", fmt.Sprintf("url: %q\nprojections:\n  orders: {}\n", good),
			[]string{"projections.orders sets no URL", "remove the entry"}},
		{"trigger type without url", fmt.Sprintf("url: %q\ntrigger_types:\n  quote_lifecycle: {}\n", good),
			[]string{"trigger_types.quote_lifecycle sets no URL"}},
		{"projection trigger type without url", fmt.Sprintf("url: %q\nprojections:\n  orders:\n    trigger_types:\n      x: {}\n", good),
			[]string{"projections.orders.trigger_types.x sets no URL"}},
		{"not a projection name", fmt.Sprintf("url: %q\nprojections:\n  Orders: {url_env: LA_ORDERS_URL}\n", good),
			[]string{`projections: "Orders" is not a projection name`}},
		{"empty trigger type", fmt.Sprintf("url: %q\ntrigger_types:\n  \"\": {url: %q}\n", good, good),
			[]string{"trigger_types:", "is not a trigger type"}},
		{"unknown key in a projection", fmt.Sprintf("url: %q\nprojections:\n  orders: {urlenv: LA_ORDERS_URL}\n", good),
			[]string{"urlenv"}},
		{"unknown key in a trigger type", fmt.Sprintf("url: %q\ntrigger_types:\n  x: {url: %q, auth: entra}\n", good, good),
			[]string{"auth"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := open(t, tt.doc, slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, sec := range []string{"SECRETSIGVALUE0123456789", "SECRETORDERSSIG0123456789", "s3cr3t-value"} {
				if strings.Contains(err.Error(), sec) {
					t.Errorf("error leaks a secret: %v", err)
				}
			}
		})
	}
}

// routedNote is a notification of a projection and trigger type.
func routedNote(projection, triggerType, key string, v int) *connectors.Notification {
	n := notification(fmt.Sprintf("%s/%s-v%d", projection, key, v))
	n.Projection, n.TriggerType, n.Key, n.Version = projection, triggerType, key, int64(v)
	return n
}

// TestProjectionsToTheirWorkflows: over real HTTP, interleaved
// notifications of two projections with the same aggregate ids reach each
// projection's workflow, in order per key, with their projection in
// ce-fanoutprojection; a trigger type's URL and a projection's trigger
// type's URL take theirs. A halt names the setting of the URL that failed,
// and no sig of any URL shows up in an error or a log line.
func TestProjectionsToTheirWorkflows(t *testing.T) {
	s, base := startSim(t, sim.Config{})
	sink := &logSink{}
	store := secret.NewStore(sink.logger(), time.Hour)
	quotesURL := sim.SignURL(base, simKey, "quotes-wf", "manual", false)
	ordersURL := sim.SignURL(base, simKey, "orders-wf", "manual", false)
	lifecycleURL := sim.SignURL(base, simKey, "lifecycle-wf", "manual", true)
	cancelURL := sim.SignURL(base, simKey, "orders-cancel-wf", "manual", false)
	t.Setenv("LA_TEST_ORDERS_URL", ordersURL)
	cancelFile := filepath.Join(t.TempDir(), "cancel-url")
	secrettest.Write(t, cancelFile, cancelURL)
	doc := fmt.Sprintf(`url: %q
min_backoff: 1ms
max_backoff: 2ms
trigger_types:
  quote_lifecycle: {url: %q}
projections:
  orders:
    url_env: LA_TEST_ORDERS_URL
    trigger_types:
      order_cancelled: {url_file: %s}
`, quotesURL, lifecycleURL, cancelFile)
	c, err := connectors.Default().Open(context.Background(), connectors.Config{
		Name: "logic_apps", Type: TypeName, Decode: strictYAML(doc), Logger: sink.logger(), Secrets: store,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	sent := []*connectors.Notification{
		routedNote("quotes", "", "A", 1), routedNote("orders", "", "A", 1), routedNote("orders", "", "A", 2),
		routedNote("quotes", "", "B", 1), routedNote("quotes", "", "A", 2), routedNote("orders", "", "B", 1),
		routedNote("orders", "", "A", 3), routedNote("quotes", "", "A", 3),
		routedNote("quotes", "quote_lifecycle", "C", 1), routedNote("orders", "quote_lifecycle", "C", 1),
		routedNote("orders", "order_cancelled", "A", 4), routedNote("", "", "D", 1),
	}
	for _, n := range sent {
		if err := c.Deliver(ctx, n); err != nil {
			t.Fatalf("%s: %v", n.ID, err)
		}
	}
	got := make(map[string][]string) // workflow -> tracking ids in arrival order
	for _, call := range s.Calls() {
		if call.Status != 202 {
			t.Fatalf("call %s answered %d %s", call.Path, call.Status, call.Code)
		}
		id := call.TrackingID
		if p, _, ok := strings.Cut(id, "/"); ok && p != "" && call.Header.Get("Ce-Fanoutprojection") != p {
			t.Errorf("%s: ce-fanoutprojection %q", id, call.Header.Get("Ce-Fanoutprojection"))
		}
		got[call.Workflow] = append(got[call.Workflow], id)
	}
	want := map[string][]string{
		"quotes-wf":        {"quotes/A-v1", "quotes/B-v1", "quotes/A-v2", "quotes/A-v3", "/D-v1"},
		"orders-wf":        {"orders/A-v1", "orders/A-v2", "orders/B-v1", "orders/A-v3", "orders/C-v1"},
		"lifecycle-wf":     {"quotes/C-v1"},
		"orders-cancel-wf": {"orders/A-v4"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("calls per workflow:\n got %v\nwant %v", got, want)
	}
	if h := s.Calls()[len(s.Calls())-1].Header; h.Get("Ce-Fanoutprojection") != "" {
		t.Errorf("a notification without a projection got ce-fanoutprojection %q", h.Get("Ce-Fanoutprojection"))
	}

	var errTexts []string
	halt := func(n *connectors.Notification, wantStatus int, wantField string) {
		t.Helper()
		err := c.Deliver(ctx, n)
		var ce *connectors.Error
		if !errors.As(err, &ce) || ce.Class != connectors.Halt || ce.Status != wantStatus {
			t.Fatalf("%s: %v, want halt %d", n.ID, err, wantStatus)
		}
		if !strings.Contains(ce.Message, wantField) {
			t.Fatalf("%s: %q does not name %s", n.ID, ce.Message, wantField)
		}
		errTexts = append(errTexts, err.Error())
	}
	// A disabled workflow halts naming the setting of its URL; the
	// other projections' workflows still answer.
	s.SetWorkflowEnabled("orders-wf", false)
	halt(routedNote("orders", "", "A", 5), 409, "projections.orders.url_env")
	if err := c.Deliver(ctx, routedNote("quotes", "", "A", 4)); err != nil {
		t.Fatalf("quotes while orders-wf is disabled: %v", err)
	}
	s.SetWorkflowEnabled("orders-wf", true)
	// A regenerated access key invalidates every sig; each URL's halt
	// names its own setting; a new callback URL in the file brings the
	// order_cancelled route back without a restart.
	s.RotateKey("regenerated-key")
	halt(routedNote("orders", "order_cancelled", "A", 5), 401, "projections.orders.trigger_types.order_cancelled.url_file")
	halt(routedNote("quotes", "quote_lifecycle", "C", 2), 401, "trigger_types.quote_lifecycle.url")
	halt(routedNote("quotes", "", "A", 5), 401, "update url")
	newCancelURL := s.CallbackURL("orders-cancel-wf", "manual", false)
	secrettest.Write(t, cancelFile, newCancelURL)
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := c.Deliver(ctx, routedNote("orders", "order_cancelled", "A", 5)); err != nil {
		t.Fatalf("after the new url_file: %v", err)
	}
	// url_file now holds a URL without sig: that route halts at once,
	// naming its setting, with no call made.
	calls := len(s.Calls())
	secrettest.Write(t, cancelFile, strings.Split(newCancelURL, "&sig=")[0])
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	halt(routedNote("orders", "order_cancelled", "A", 6), 0, "projections.orders.trigger_types.order_cancelled.url_file")
	if len(s.Calls()) != calls {
		t.Fatal("a call went out with an unusable URL")
	}

	// The point of it all: no sig of any URL anywhere.
	logs := sink.String()
	if !strings.Contains(logs, "delivered") || !strings.Contains(logs, "delivery failed") {
		t.Fatalf("expected debug logs, got:\n%s", logs)
	}
	for _, u := range []string{quotesURL, ordersURL, lifecycleURL, cancelURL, newCancelURL} {
		sig := sigOf(t, u)
		if strings.Contains(logs, sig) {
			t.Errorf("sig of %s found in the logs", transportRedacted(u))
		}
		for _, e := range errTexts {
			if strings.Contains(e, sig) {
				t.Errorf("sig of %s found in error %q", transportRedacted(u), e)
			}
		}
	}
}

// transportRedacted shows a URL in a test failure without its sig.
func transportRedacted(u string) string {
	head, _, _ := strings.Cut(u, "?")
	return head
}

// TestEveryURLScrubbed: a downstream message that quotes another
// route's sig is scrubbed too, since every call scrubs every sig.
func TestEveryURLScrubbed(t *testing.T) {
	s, base := startSim(t, sim.Config{})
	quotesURL := sim.SignURL(base, simKey, "quotes-wf", "manual", false)
	ordersURL := sim.SignURL(base, simKey, "orders-wf", "manual", false)
	ordersSig := sigOf(t, ordersURL)
	body := `{"error":{"code":"BadRequest","message":"saw sig ` + ordersSig + ` somewhere"}}`
	if err := s.SetFaults(sim.Faults{Script: []sim.Step{{Status: 400, Body: body}}}); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf("url: %q\nprojections:\n  orders: {url: %q}\n", quotesURL, ordersURL)
	c, err := open(t, doc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Deliver(context.Background(), routedNote("quotes", "", "A", 1))
	if connectors.Classify(err) != connectors.Permanent {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), ordersSig) || !strings.Contains(err.Error(), "REDACTED") {
		t.Fatalf("another route's sig in the error: %v", err)
	}
	if !slices.ContainsFunc(s.Calls(), func(c sim.Call) bool { return c.Workflow == "quotes-wf" }) {
		t.Fatal("the quotes workflow was not called")
	}
}
