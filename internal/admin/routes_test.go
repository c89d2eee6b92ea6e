package admin_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/api"
	"github.com/fanout-dev/fanout/internal/admin"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/observe"
)

// offlineServer returns an admin server registered on an observe server,
// with no store and a Kafka client that never connects: enough for routing
// and authentication, which answer before either is used.
func offlineServer(t *testing.T, edit func(*config.Config), env map[string]string) (*admin.Server, *observe.Server) {
	t.Helper()
	cfg := config.Default()
	cfg.Connectors = map[string]config.Connector{"logic_apps": {Type: "logicapps"}}
	cfg.Routing.Default.Targets = []string{"logic_apps"}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	obs := observe.NewServer(slog.New(slog.DiscardHandler))
	srv, err := admin.New(admin.Options{Config: &cfg, KafkaOptions: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")},
		Getenv: func(k string) string { return env[k] }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.Register(obs)
	return srv, obs
}

// TestRoutesMatchOpenAPI holds the route table, the routes registered on
// the admin listener and api/openapi.json together, method and path, both
// ways.
func TestRoutesMatchOpenAPI(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.Document(), &doc); err != nil {
		t.Fatalf("api/openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q, want 3.x", doc.OpenAPI)
	}
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			switch m {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				described[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	table := map[string]bool{}
	for _, r := range admin.Routes() {
		table[r.Method+" "+r.Path] = true
	}
	for k := range table {
		if !described[k] {
			t.Errorf("route %s is not in api/openapi.json", k)
		}
	}
	for k := range described {
		if !table[k] {
			t.Errorf("api/openapi.json describes %s, which the admin listener does not serve", k)
		}
	}

	// Every route of the table is registered, and nothing else answers.
	_, obs := offlineServer(t, nil, nil)
	mux, ok := obs.Handler().(*http.ServeMux)
	if !ok {
		t.Fatalf("observe handler is a %T, want *http.ServeMux", obs.Handler())
	}
	example := func(path string) string {
		r := strings.NewReplacer("{name}", "logic_apps", "{partition}", "0", "{offset}", "7", "{file}", "app.js")
		return r.Replace(path)
	}
	for _, r := range admin.Routes() {
		req := httptest.NewRequest(r.Method, example(r.Path), nil)
		_, pattern := mux.Handler(req)
		want := r.Method + " " + r.Path
		if r.Path == "/" {
			want = r.Method + " /{$}"
		}
		if pattern != want {
			t.Errorf("%s %s is served by pattern %q, want %q", r.Method, example(r.Path), pattern, want)
		}
	}
	for _, p := range []string{"/v1/nothing", "/v1/connectors/x/unknown", "/anything"} {
		if _, pattern := mux.Handler(httptest.NewRequest("GET", p, nil)); pattern != "" {
			t.Errorf("GET %s matched %q; want no route", p, pattern)
		}
	}

	// The description names each route's scope (and operate where it
	// implies it), so clients know which token to send.
	for _, r := range admin.Routes() {
		raw := doc.Paths[r.Path][strings.ToLower(r.Method)]
		var op struct {
			Security []map[string][]string `json:"security"`
		}
		if err := json.Unmarshal(raw, &op); err != nil {
			t.Fatalf("%s %s: %v", r.Method, r.Path, err)
		}
		var got []string
		for _, req := range op.Security {
			got = append(got, req["bearer"]...)
		}
		switch {
		case r.Scope == "" && len(got) > 0:
			t.Errorf("%s %s needs no token, but the description asks for %v", r.Method, r.Path, got)
		case r.Scope != "" && !slices.Contains(got, r.Scope):
			t.Errorf("%s %s needs scope %s, the description says %v", r.Method, r.Path, r.Scope, got)
		case (r.Scope == config.ScopePause || r.Scope == config.ScopeReplay) && !slices.Contains(got, config.ScopeOperate):
			t.Errorf("%s %s: the description does not say operate is enough (%v)", r.Method, r.Path, got)
		}
	}

	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("%d routes: %s", len(keys), strings.Join(keys, ", "))
}
