package salesforce

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// ProjectionSettings override, for the notifications of one projection,
// the settings that address and fill a record. Empty fields are taken
// from the connector's top-level settings; Fields, when given, replaces
// the top-level fields whole (another object has other fields), and an
// explicit empty mapping (fields: {}) copies the payload's scalars.
type ProjectionSettings struct {
	// Object and ExternalIDField address the upserted records (upsert
	// mode); the external id value is the notification key, the
	// aggregate id, unique within the projection.
	Object          string `yaml:"object"`
	ExternalIDField string `yaml:"external_id_field"`
	// Event is the platform event to publish (platform_event mode).
	Event string `yaml:"event"`
	// Fields maps Salesforce field names to sources, as the top-level
	// fields does.
	Fields map[string]string `yaml:"fields"`
	// NotificationIDField and VersionField name the fields that receive
	// the notification id and the aggregate version on this object.
	NotificationIDField string `yaml:"notification_id_field"`
	VersionField        string `yaml:"version_field"`
}

// mapping is how the notifications of one projection (or the default)
// become records: where they go and which fields they carry.
type mapping struct {
	// field is the settings prefix for messages: "" for the top-level
	// settings, "projections.NAME." for a projection's.
	field               string
	object              string // upsert mode
	extField            string // upsert mode
	event               string // platform_event mode
	fields              []fieldMapping
	notificationIDField string
	versionField        string
	// reserved are the fields the connector sets itself, skipped when
	// the payload is copied without a fields mapping.
	reserved map[string]struct{}
}

// target names the sObject type the mapping's records are of: the
// object in upsert mode, the event otherwise.
func (m *mapping) target() string {
	if m.object != "" {
		return m.object
	}
	return m.event
}

// batchGroup identifies the notifications that may share one sObject
// Collections call: Salesforce takes one object type (and external id
// field) per upsert call.
func (m *mapping) batchGroup() string { return m.target() + "/" + m.extField }

// projectionNameRE is what fanout accepts as a projection name (see the
// top-level projections: list); a key that cannot be one is a typo.
var projectionNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// mappingFor returns the mapping of n's projection, or the default.
func (c *Connector) mappingFor(n *notification) *mapping {
	if m, ok := c.cfg.byProjection[n.Projection]; ok {
		return m
	}
	return c.cfg.def
}

// resolveProjections validates the projections entries over the
// top-level settings.
func (r *resolved) resolveProjections() error {
	if len(r.Projections) == 0 {
		return nil
	}
	names := make([]string, 0, len(r.Projections))
	for name := range r.Projections {
		names = append(names, name)
	}
	sort.Strings(names)
	r.byProjection = make(map[string]*mapping, len(names))
	for _, name := range names {
		p := r.Projections[name]
		prefix := "projections." + name + "."
		if !projectionNameRE.MatchString(name) {
			return fmt.Errorf("projections: %q is not a projection name: use the name: of an entry of the top-level projections: list (a lower-case letter, then a-z, 0-9, _ or -)", name)
		}
		if p.Object == "" && p.ExternalIDField == "" && p.Event == "" && p.Fields == nil && p.NotificationIDField == "" && p.VersionField == "" {
			return fmt.Errorf("projections.%s sets nothing: give object, external_id_field, event, fields, notification_id_field or version_field, or remove the entry (its notifications then use the top-level settings)", name)
		}
		merged := ProjectionSettings{
			Object: or(p.Object, r.Object), ExternalIDField: or(p.ExternalIDField, r.ExternalIDField), Event: or(p.Event, r.Event),
			Fields:              p.Fields,
			NotificationIDField: or(p.NotificationIDField, r.NotificationIDField), VersionField: or(p.VersionField, r.VersionField),
		}
		if p.Fields == nil {
			merged.Fields = r.Fields
		}
		m, err := resolveMapping(prefix, r.Mode, merged)
		if err != nil {
			return err
		}
		r.byProjection[name] = m
	}
	return nil
}

// or returns a, or b when a is empty.
func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// resolveMapping validates one complete mapping; prefix ("" or
// "projections.NAME.") goes in front of every setting its errors name.
func resolveMapping(prefix, mode string, p ProjectionSettings) (*mapping, error) {
	m := &mapping{field: prefix, notificationIDField: p.NotificationIDField, versionField: p.VersionField}
	switch mode {
	case ModeUpsert:
		if !apiNameRE.MatchString(p.Object) {
			return nil, fmt.Errorf("%sobject %q: upsert mode needs the sObject API name, e.g. Quote__c", prefix, p.Object)
		}
		if !apiNameRE.MatchString(p.ExternalIDField) || p.ExternalIDField == "Id" {
			return nil, fmt.Errorf("%sexternal_id_field %q: upsert mode needs the API name of an external id field, e.g. Quote_Ext_Id__c", prefix, p.ExternalIDField)
		}
		if p.Event != "" {
			return nil, fmt.Errorf("%sevent is only for mode platform_event; remove it", prefix)
		}
		m.object, m.extField = p.Object, p.ExternalIDField
	case ModePlatformEvent:
		if !apiNameRE.MatchString(p.Event) || !strings.HasSuffix(p.Event, "__e") {
			return nil, fmt.Errorf("%sevent %q: platform_event mode needs the event API name, ending in __e, e.g. Quote_Change__e", prefix, p.Event)
		}
		if p.Object != "" || p.ExternalIDField != "" {
			return nil, fmt.Errorf("%sobject and %sexternal_id_field are only for mode upsert; remove them", prefix, prefix)
		}
		m.event = p.Event
	}
	for _, f := range []struct{ name, v string }{{"notification_id_field", m.notificationIDField}, {"version_field", m.versionField}} {
		if !apiNameRE.MatchString(f.v) || f.v == "Id" || f.v == m.extField {
			return nil, fmt.Errorf("%s%s %q: want a field API name other than Id and the external id field", prefix, f.name, f.v)
		}
	}
	if m.notificationIDField == m.versionField {
		return nil, fmt.Errorf("%snotification_id_field and %sversion_field must differ", prefix, prefix)
	}
	reserved := map[string]string{
		"Id":                  "Salesforce refuses Id in an upsert body",
		m.notificationIDField: "it is notification_id_field, set by the connector",
		m.versionField:        "it is version_field, set by the connector",
	}
	if m.extField != "" {
		reserved[m.extField] = "it is the external id field, whose value is the notification key"
	}
	m.reserved = make(map[string]struct{}, len(reserved))
	for k := range reserved {
		m.reserved[k] = struct{}{}
	}
	var err error
	if m.fields, err = parseMappings(prefix, p.Fields, reserved); err != nil {
		return nil, err
	}
	return m, nil
}
