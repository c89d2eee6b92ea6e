package config

import (
	"bytes"
	"errors"
	"io"

	"go.yaml.in/yaml/v3"
)

// A connector's delivery block overrides the global delivery block field
// by field: what it leaves out comes from the global block as the file
// and the environment set it, not from the built-in defaults. Parse keeps
// each override's YAML and mergeDeliveryOverrides decodes it over a copy
// of the global block; Load merges again after the environment overrides.

// deliveryOverrides reads the connectors' delivery blocks from data.
func deliveryOverrides(data []byte) (map[string]*yaml.Node, error) {
	var doc struct {
		Connectors map[string]struct {
			Delivery yaml.Node `yaml:"delivery"`
		} `yaml:"connectors"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	out := make(map[string]*yaml.Node)
	for name, c := range doc.Connectors {
		if c.Delivery.Kind == yaml.MappingNode {
			node := c.Delivery
			out[name] = &node
		}
	}
	return out, nil
}

// mergeDeliveryOverrides sets each connector's delivery to the global
// block with the connector's own fields over it.
func (c *Config) mergeDeliveryOverrides() error {
	for name, node := range c.deliveryNodes {
		conn, ok := c.Connectors[name]
		if !ok {
			continue
		}
		d := c.Delivery
		if err := node.Decode(&d); err != nil {
			return &Errors{List: []FieldError{{Field: "connectors." + name + ".delivery", Problem: yamlProblem(err), Fix: "correct the YAML; fanout.example.yaml lists every field"}}}
		}
		conn.Delivery = &d
		c.Connectors[name] = conn
	}
	return nil
}
