package connectors

import (
	"bytes"
	"errors"
	"io"

	"go.yaml.in/yaml/v3"
)

// DecodeStrict decodes a YAML node into v and rejects keys v has no field
// for, so that a misspelt setting fails at start instead of silently
// keeping its default. Factories get it through Config.Decode; connector
// packages use it for nested settings with custom unmarshalling.
func DecodeStrict(n *yaml.Node, v any) error {
	if n == nil || n.Kind == 0 {
		return nil
	}
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
