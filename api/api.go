// Package api holds the OpenAPI 3 description of fanout's admin API
// (openapi.json, written by hand), embedded so that the admin listener
// serves it at /openapi.json and tests can hold it against the routes.
package api

import (
	_ "embed"
	"slices"
)

//go:embed openapi.json
var document []byte

// Document returns the OpenAPI description (a copy: callers may keep or
// change it).
func Document() []byte { return slices.Clone(document) }
