package logicapps

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/transport"
	"github.com/fanout-dev/fanout/internal/secret"
)

// endpoint is one callback URL of the connector: the top-level url, or a
// projection's or trigger type's.
type endpoint struct {
	// field is the setting that gives the URL ("url_env",
	// "projections.orders.url_file", ...), for messages.
	field string
	value *secret.Value
	// target caches the checked URL by the version of value it came from
	// (a url_file may change under us).
	target atomic.Pointer[target]
}

// target is an endpoint's callback URL in use, checked.
type target struct {
	version uint64
	raw     string
	sig     string
	err     error
}

// projectionEndpoints are the URLs of one projection: its own (nil when
// it only has trigger types) and its trigger types'.
type projectionEndpoints struct {
	def       *endpoint
	byTrigger map[string]*endpoint
}

// projectionNameRE is what fanout accepts as a projection name (see the
// top-level projections: list); a key that cannot be one is a typo.
var projectionNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// endpointFor returns the callback URL of n, the most specific first: the
// projection's for n's trigger type, the projection's, the trigger
// type's, then the top-level url. Notifications without a projection or
// trigger type (records from before either) take the url.
func (r *resolved) endpointFor(n *connectors.Notification) *endpoint {
	if p, ok := r.byProjection[n.Projection]; ok {
		if e, ok := p.byTrigger[n.TriggerType]; ok {
			return e
		}
		if p.def != nil {
			return p.def
		}
	}
	if e, ok := r.byTrigger[n.TriggerType]; ok {
		return e
	}
	return r.def
}

// current returns the endpoint's callback URL, re-checked when the secret
// value it comes from changed.
func (e *endpoint) current(r *resolved) *target {
	raw, version := e.value.Get()
	if t := e.target.Load(); t != nil && t.version == version {
		return t
	}
	t := &target{version: version, raw: strings.TrimSpace(raw)}
	if u, err := r.checkURL(e.field, raw); err != nil {
		t.err = err
	} else {
		t.sig = u.Query().Get("sig")
	}
	e.target.Store(t)
	return t
}

// sigs returns the current sig of every callback URL, so that a call to
// one can scrub all of them from what it reports.
func (r *resolved) sigs() []string {
	out := make([]string, 0, len(r.endpoints))
	for _, e := range r.endpoints {
		if t := e.current(r); t.sig != "" {
			out = append(out, t.sig)
		}
	}
	return out
}

// resolveEndpoints loads and checks the top-level url and the projections'
// and trigger types' URLs. Errors name the setting and never the sig;
// warnings about an unusual but possibly valid URL go to log.
func (r *resolved) resolveEndpoints(name string, s Settings, log *slog.Logger, secrets *secret.Store) error {
	var err error
	r.def, err = r.newEndpoint(name, "", s.topURL(), log, secrets)
	switch {
	case errors.Is(err, secret.ErrUnset):
		return errors.New("url is required: set url, url_env or url_file to the trigger's callback URL (portal: the trigger's HTTP URL; API: listCallbackUrl); it serves the notifications that projections and trigger_types do not route elsewhere")
	case err != nil:
		return err
	}
	if r.byTrigger, err = r.triggerEndpoints(name, "", s.TriggerTypes, log, secrets); err != nil {
		return err
	}
	if len(s.Projections) == 0 {
		return nil
	}
	r.byProjection = make(map[string]*projectionEndpoints, len(s.Projections))
	for _, pname := range sortedKeys(s.Projections) {
		p := s.Projections[pname]
		prefix := "projections." + pname + "."
		if !projectionNameRE.MatchString(pname) {
			return fmt.Errorf("projections: %q is not a projection name: use the name: of an entry of the top-level projections: list (a lower-case letter, then a-z, 0-9, _ or -)", pname)
		}
		if !p.set() && len(p.TriggerTypes) == 0 {
			return fmt.Errorf("projections.%s sets no URL: give url, url_env or url_file, or trigger_types, or remove the entry (its notifications then take trigger_types or url)", pname)
		}
		pe := &projectionEndpoints{}
		if p.set() {
			if pe.def, err = r.newEndpoint(name, prefix, p.URLSettings, log, secrets); err != nil {
				return err
			}
		}
		if pe.byTrigger, err = r.triggerEndpoints(name, prefix, p.TriggerTypes, log, secrets); err != nil {
			return err
		}
		r.byProjection[pname] = pe
	}
	return nil
}

// topURL returns the top-level url, url_env and url_file.
func (s Settings) topURL() URLSettings {
	return URLSettings{URL: s.URL, URLEnv: s.URLEnv, URLFile: s.URLFile}
}

// triggerEndpoints resolves a trigger_types map; prefix is "" or
// "projections.NAME.".
func (r *resolved) triggerEndpoints(name, prefix string, m map[string]URLSettings, log *slog.Logger, secrets *secret.Store) (map[string]*endpoint, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]*endpoint, len(m))
	for _, tt := range sortedKeys(m) {
		if strings.TrimSpace(tt) == "" || strings.TrimSpace(tt) != tt {
			return nil, fmt.Errorf("%strigger_types: %q is not a trigger type: use a trigger_type of the routing rules, without surrounding spaces", prefix, tt)
		}
		e, err := r.newEndpoint(name, prefix+"trigger_types."+tt+".", m[tt], log, secrets)
		if errors.Is(err, secret.ErrUnset) {
			return nil, fmt.Errorf("%strigger_types.%s sets no URL: give url, url_env or url_file, or remove the entry", prefix, tt)
		}
		if err != nil {
			return nil, err
		}
		out[tt] = e
	}
	return out, nil
}

// newEndpoint loads one callback URL given under prefix, checks it and
// logs what looks wrong with it.
func (r *resolved) newEndpoint(name, prefix string, u URLSettings, log *slog.Logger, secrets *secret.Store) (*endpoint, error) {
	v, err := secrets.Resolve(secret.Source{Name: "url", Prefix: prefix, Inline: u.URL, Env: u.URLEnv, File: u.URLFile})
	if err != nil {
		return nil, err
	}
	e := &endpoint{value: v}
	switch {
	case u.URLFile != "":
		e.field = prefix + "url_file"
	case u.URLEnv != "":
		e.field = prefix + "url_env"
	default:
		e.field = prefix + "url"
	}
	parsed, err := r.checkURL(e.field, v.Current())
	if err != nil {
		return nil, err
	}
	q := parsed.Query()
	switch r.auth {
	case AuthSAS:
		for _, k := range []string{"api-version", "sp", "sv"} {
			if q.Get(k) == "" {
				log.Warn("logicapps: callback URL lacks a SAS query parameter; the trigger will likely refuse the call",
					"connector", name, "field", e.field, "parameter", k, "url", transport.RedactURL(parsed))
			}
		}
	case AuthEntra:
		if q.Get("api-version") == "" {
			log.Warn("logicapps: callback URL has no api-version query parameter; the trigger will likely refuse the call",
				"connector", name, "field", e.field, "url", transport.RedactURL(parsed))
		}
	}
	if !consumptionPath.MatchString(parsed.Path) && !standardPath.MatchString(parsed.Path) {
		log.Warn("logicapps: callback URL path has neither the Consumption shape /workflows/{id}/triggers/{trigger}/paths/invoke nor the Standard shape /api/{workflow}/triggers/{trigger}/invoke",
			"connector", name, "field", e.field, "url", transport.RedactURL(parsed))
	}
	if parsed.Scheme == "http" && !isLoopback(parsed.Hostname()) {
		log.Warn("logicapps: callback URL uses plain http: its credential travels in clear",
			"connector", name, "field", e.field, "url", transport.RedactURL(parsed))
	}
	r.endpoints = append(r.endpoints, e)
	return e, nil
}

// sortedKeys returns m's keys sorted, so that the first error reported is
// the same on every start.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
