package logicapps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Schema is the subset of JSON Schema that a Request trigger's "Schema
// Validation" setting enforces in the cases fanout cares about: type,
// properties, required, additionalProperties (false or a schema) and
// items, at any depth. Other keywords are accepted and ignored.
type Schema struct {
	Type                 schemaType         `json:"type,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	AdditionalProperties json.RawMessage    `json:"additionalProperties,omitempty"`
	Items                *Schema            `json:"items,omitempty"`

	additional      *Schema // parsed AdditionalProperties when it is a schema
	noAdditional    bool    // AdditionalProperties is false
	additionalReady bool
}

// schemaType is "type" as a single name or a list of names.
type schemaType []string

// UnmarshalJSON accepts a type name or a list of them.
func (t *schemaType) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*t = schemaType{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("schema type must be a string or a list of strings")
	}
	*t = many
	return nil
}

// MarshalJSON writes a single type as a string.
func (t schemaType) MarshalJSON() ([]byte, error) {
	if len(t) == 1 {
		return json.Marshal(t[0])
	}
	return json.Marshal([]string(t))
}

// ParseSchema parses a JSON schema document.
func ParseSchema(doc []byte) (*Schema, error) {
	var s Schema
	if err := json.Unmarshal(doc, &s); err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	if err := s.prepare(); err != nil {
		return nil, err
	}
	return &s, nil
}

// prepare resolves additionalProperties in s and its children.
func (s *Schema) prepare() error {
	if s == nil || s.additionalReady {
		return nil
	}
	s.additionalReady = true
	if len(s.AdditionalProperties) > 0 {
		var b bool
		if json.Unmarshal(s.AdditionalProperties, &b) == nil {
			s.noAdditional = !b
		} else {
			var sub Schema
			if err := json.Unmarshal(s.AdditionalProperties, &sub); err != nil {
				return fmt.Errorf("schema additionalProperties: %w", err)
			}
			s.additional = &sub
		}
	}
	for _, p := range s.Properties {
		if err := p.prepare(); err != nil {
			return err
		}
	}
	if err := s.additional.prepare(); err != nil {
		return err
	}
	return s.Items.prepare()
}

// Validate checks the JSON document body against s and returns the
// violations in the style of the messages Logic Apps shows (Newtonsoft
// JSON Schema wording), or nil when it conforms.
func (s *Schema) Validate(body []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{"Invalid JSON: " + err.Error()}
	}
	var errs []string
	s.validate(v, "", &errs)
	return errs
}

func (s *Schema) validate(v any, path string, errs *[]string) {
	if s == nil {
		return
	}
	at := ""
	if path != "" {
		at = " Path '" + path + "'."
	}
	if len(s.Type) > 0 && !s.Type.matches(v) {
		*errs = append(*errs, fmt.Sprintf("Invalid type. Expected %s but got %s.%s", s.Type.describe(), jsonKind(v), at))
		return
	}
	switch x := v.(type) {
	case map[string]any:
		var missing []string
		for _, r := range s.Required {
			if _, ok := x[r]; !ok {
				missing = append(missing, r)
			}
		}
		if len(missing) > 0 {
			*errs = append(*errs, fmt.Sprintf("Required properties are missing from object: %s.%s", strings.Join(missing, ", "), at))
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			child := joinPath(path, k)
			if p, ok := s.Properties[k]; ok {
				p.validate(x[k], child, errs)
				continue
			}
			switch {
			case s.noAdditional:
				*errs = append(*errs, fmt.Sprintf("Property '%s' has not been defined and the schema does not allow additional properties. Path '%s'.", k, child))
			case s.additional != nil:
				s.additional.validate(x[k], child, errs)
			}
		}
	case []any:
		for i, item := range x {
			s.Items.validate(item, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// matches reports whether v is of one of the types.
func (t schemaType) matches(v any) bool {
	for _, name := range t {
		switch name {
		case "object":
			if _, ok := v.(map[string]any); ok {
				return true
			}
		case "array":
			if _, ok := v.([]any); ok {
				return true
			}
		case "string":
			if _, ok := v.(string); ok {
				return true
			}
		case "boolean":
			if _, ok := v.(bool); ok {
				return true
			}
		case "null":
			if v == nil {
				return true
			}
		case "number":
			if _, ok := v.(json.Number); ok {
				return true
			}
		case "integer":
			if n, ok := v.(json.Number); ok {
				if f, err := n.Float64(); err == nil && f == math.Trunc(f) {
					return true
				}
			}
		}
	}
	return false
}

// describe renders the expected type(s) as Newtonsoft does: "String",
// "Object, Null".
func (t schemaType) describe() string {
	out := make([]string, len(t))
	for i, n := range t {
		out[i] = titleCase(n)
	}
	return strings.Join(out, ", ")
}

func jsonKind(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "Object"
	case []any:
		return "Array"
	case string:
		return "String"
	case bool:
		return "Boolean"
	case nil:
		return "Null"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "Integer"
		}
		return "Float"
	}
	return "Unknown"
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
