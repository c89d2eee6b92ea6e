// Package eventschema checks source events against the JSON Schemas
// configured per event type (source.schemas). Schemas are compiled once,
// at start, so a broken schema stops the process before it consumes.
package eventschema

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Set holds the compiled schema of each event type that has one.
type Set struct {
	byType  map[string]*jsonschema.Schema
	printer *message.Printer
}

// CompileError says which event type's schema failed to compile.
type CompileError struct {
	EventType string
	Path      string
	Err       error
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("schema of %s (%s): %v", e.EventType, e.Path, e.Err)
}

func (e *CompileError) Unwrap() error { return e.Err }

// Compile reads and compiles the schema files, keyed by event type. It
// returns every type whose schema cannot be read or compiled. References
// ($ref) may point at other local files only: nothing is fetched over the
// network while validating.
func Compile(files map[string]string) (*Set, []*CompileError) {
	s := &Set{byType: make(map[string]*jsonschema.Schema, len(files)), printer: message.NewPrinter(language.English)}
	types := make([]string, 0, len(files))
	for t := range files {
		types = append(types, t)
	}
	sort.Strings(types)
	var errs []*CompileError
	for _, t := range types {
		path := files[t]
		sch, err := compileFile(path)
		if err != nil {
			errs = append(errs, &CompileError{EventType: t, Path: path, Err: err})
			continue
		}
		s.byType[t] = sch
	}
	return s, errs
}

func compileFile(path string) (*jsonschema.Schema, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve path: %w", err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{"file": jsonschema.FileLoader{}})
	url := "file://" + filepath.ToSlash(abs)
	if err := c.AddResource(url, doc); err != nil {
		return nil, err
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, err
	}
	return sch, nil
}

// Has reports whether eventType has a schema.
func (s *Set) Has(eventType string) bool {
	if s == nil {
		return false
	}
	_, ok := s.byType[eventType]
	return ok
}

// Violation is an event that fails its type's schema: where in the event
// and which keyword.
type Violation struct {
	// InstancePath is a JSON Pointer into the event ("" is the whole event).
	InstancePath string
	// Keyword is the failing keyword, e.g. "minimum".
	Keyword string
	// SchemaPath is a JSON Pointer to the failing keyword in the schema
	// file, e.g. "/properties/amount/minimum".
	SchemaPath string
	// Message is the validator's explanation.
	Message string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("at %q: keyword %s (schema #%s): %s", v.InstancePath, v.Keyword, v.SchemaPath, v.Message)
}

// Validate checks a decoded event (as encoding/json decodes it with
// UseNumber) against its type's schema. Types without a schema pass.
func (s *Set) Validate(eventType string, event any) *Violation {
	if s == nil {
		return nil
	}
	sch, ok := s.byType[eventType]
	if !ok {
		return nil
	}
	return violation(sch.Validate(event), s.printer)
}

// Schema is one compiled JSON Schema that came from elsewhere than a
// file, e.g. a schema registry.
type Schema struct {
	sch     *jsonschema.Schema
	printer *message.Printer
}

// CompileText compiles a JSON Schema document held in memory; name only
// identifies it in messages. Its references ($ref) may only point inside
// the document: nothing is loaded from files or the network.
func CompileText(name string, text []byte) (*Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{})
	url := "mem:///" + name
	if err := c.AddResource(url, doc); err != nil {
		return nil, err
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, err
	}
	return &Schema{sch: sch, printer: message.NewPrinter(language.English)}, nil
}

// Validate checks a decoded value (as encoding/json decodes it with
// UseNumber) against the schema.
func (s *Schema) Validate(v any) *Violation {
	return violation(s.sch.Validate(v), s.printer)
}

func violation(err error, printer *message.Printer) *Violation {
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &Violation{Keyword: "(validator)", Message: err.Error()}
	}
	// The deepest first cause is the most specific: "amount" is below its
	// minimum, rather than "the object failed properties".
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	ptr := ""
	for _, tok := range ve.InstanceLocation {
		ptr += "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(tok)
	}
	kw := strings.Join(ve.ErrorKind.KeywordPath(), "/")
	msg := ve.ErrorKind.LocalizedString(printer)
	schemaPath := ""
	if i := strings.IndexByte(ve.SchemaURL, '#'); i >= 0 {
		schemaPath = ve.SchemaURL[i+1:]
	}
	if kw != "" {
		schemaPath += "/" + kw
	}
	return &Violation{InstancePath: ptr, Keyword: kw, SchemaPath: schemaPath, Message: msg}
}
