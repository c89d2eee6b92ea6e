package salesforce

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fanout-dev/fanout/connectors"
)

// fieldMapping is one parsed entry of Settings.Fields.
type fieldMapping struct {
	field string
	// meta names a notification attribute ("id", "key", ...) when the
	// source starts with "@".
	meta string
	// root is true for "$."-paths, resolved from the envelope root rather
	// than from its payload.
	root bool
	path []string
}

// metaSources lists the notification attributes a mapping can name with "@".
const metaSources = "@id, @key, @projection, @type, @source, @version, @time, @priority, @trigger_type"

// parseMappings validates the fields setting; prefix ("" or
// "projections.NAME.") names where it is. reserved are the field names
// the connector sets itself, with the reason.
func parseMappings(prefix string, m map[string]string, reserved map[string]string) ([]fieldMapping, error) {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]fieldMapping, 0, len(m))
	for _, name := range names {
		src := strings.TrimSpace(m[name])
		if !apiNameRE.MatchString(name) {
			return nil, fmt.Errorf("%sfields: %q is not a Salesforce field API name", prefix, name)
		}
		if why, ok := reserved[name]; ok {
			return nil, fmt.Errorf("%sfields: %s cannot be mapped: %s", prefix, name, why)
		}
		fm := fieldMapping{field: name}
		switch {
		case strings.HasPrefix(src, "@"):
			fm.meta = strings.TrimPrefix(src, "@")
			if _, ok := metaValue(&notification{Type: "x", Source: "x", Time: time.Unix(1, 0), Priority: "x", TriggerType: "x", Projection: "x"}, fm.meta); !ok {
				return nil, fmt.Errorf("%sfields.%s: unknown source %q; notification attributes are %s", prefix, name, src, metaSources)
			}
		case strings.HasPrefix(src, "$."):
			fm.root = true
			src = strings.TrimPrefix(src, "$.")
			fallthrough
		default:
			if src == "" {
				return nil, fmt.Errorf("%sfields.%s: empty source; give a payload key such as amount, a path such as profile_snapshot.email, $.event_type or @key", prefix, name)
			}
			fm.path = strings.Split(src, ".")
			for _, p := range fm.path {
				if p == "" {
					return nil, fmt.Errorf("%sfields.%s: source %q has an empty path segment", prefix, name, m[name])
				}
			}
		}
		out = append(out, fm)
	}
	return out, nil
}

// permanent builds a Permanent error for a notification the connector can
// never turn into a record.
func permanent(format string, args ...any) *connectors.Error {
	return &connectors.Error{Class: connectors.Permanent, Message: fmt.Sprintf(format, args...)}
}

// buildFields turns a notification into the Salesforce fields of its
// record under mapping m: the mapped (or default) fields, then the
// notification id and version fields.
func buildFields(m *mapping, n *notification) (map[string]any, error) {
	out := make(map[string]any, len(m.fields)+2)
	needBody := len(m.fields) == 0
	for _, fm := range m.fields {
		needBody = needBody || fm.meta == ""
	}
	var env map[string]any
	if needBody {
		d := json.NewDecoder(bytes.NewReader(n.Body))
		d.UseNumber()
		if err := d.Decode(&env); err != nil {
			return nil, permanent("notification body is not a JSON object: %v", err)
		}
	}
	payload, _ := env["payload"].(map[string]any)

	if len(m.fields) == 0 {
		for k, v := range payload {
			if _, reserved := m.reserved[k]; reserved {
				continue
			}
			switch v.(type) {
			case nil, string, bool, json.Number:
				out[k] = v
			}
		}
	}
	for _, fm := range m.fields {
		var v any
		var ok bool
		switch {
		case fm.meta != "":
			v, ok = metaValue(n, fm.meta)
		case fm.root:
			v, ok = lookup(env, fm.path)
		default:
			v, ok = lookup(payload, fm.path)
		}
		if !ok {
			continue // absent: leave the Salesforce field unchanged
		}
		switch v.(type) {
		case map[string]any, []any:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, permanent("%sfields.%s: encode nested value: %v", m.field, fm.field, err)
			}
			v = string(b)
		}
		out[fm.field] = v
	}
	out[m.notificationIDField] = n.ID
	out[m.versionField] = n.Version
	return out, nil
}

// notification is connectors.Notification, named here for brevity.
type notification = connectors.Notification

// metaValue returns a notification attribute.
func metaValue(n *notification, name string) (any, bool) {
	switch name {
	case "id":
		return n.ID, true
	case "key":
		return n.Key, true
	case "projection":
		return n.Projection, n.Projection != ""
	case "type":
		return n.Type, n.Type != ""
	case "source":
		return n.Source, n.Source != ""
	case "version":
		return n.Version, true
	case "time":
		if n.Time.IsZero() {
			return nil, false
		}
		return n.Time.UTC().Format(time.RFC3339Nano), true
	case "priority":
		return n.Priority, n.Priority != ""
	case "trigger_type":
		return n.TriggerType, n.TriggerType != ""
	}
	return nil, false
}

// lookup follows a dotted path through objects (and arrays, by index).
func lookup(v any, path []string) (any, bool) {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[p]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}
