// Package registry reads source record values framed for a schema
// registry (the Confluent wire format: magic byte 0, a 4-byte big-endian
// schema id, then the body) and turns them into JSON, so that they go
// through the same strict checks as plain JSON events.
//
// Schemas are fetched with GET /schemas/ids/{id} of the Confluent REST
// API and cached by id for the life of the process (an id's schema never
// changes). Avro schemas are parsed with hamba/avro and bodies decoded by a
// bounded decoder of this package (avro.go); JSON Schema bodies
// are JSON, validated against the registry's schema; Protobuf schemas are
// compiled with protocompile and bodies (after the message-index path)
// decoded with dynamicpb (protobuf.go). Schemas with references are not
// supported: such records are dead-lettered as unsupported_schema.
package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/eventschema"
	"github.com/fanout-dev/fanout/internal/secret"
)

// Error is a value that can never be decoded: the caller dead-letters it
// with Reason (a constant of internal/envelope).
type Error struct {
	Reason string
	Detail string
}

func (e *Error) Error() string { return e.Reason + ": " + e.Detail }

func permanent(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Decoded is a framed value turned into JSON.
type Decoded struct {
	// SchemaID is the registry id from the frame.
	SchemaID int
	// JSON is the body as JSON: an Avro value converted, or a JSON Schema
	// body as sent.
	JSON []byte
	// Schema, for a JSON Schema body, is its registry schema: the caller
	// validates the strictly decoded body against it.
	Schema *eventschema.Schema
}

// schema is one registry schema, ready to decode with.
type schema struct {
	avro  avro.Schema
	json  *eventschema.Schema
	proto protoreflect.FileDescriptor
	// unsupported, when set, is why records of this id are dead-lettered.
	unsupported string
}

// Client decodes framed values with a registry's schemas. It is safe for
// concurrent use.
type Client struct {
	cl *sr.Client

	mu    sync.Mutex
	cache map[int]*schema
}

// Option configures New.
type Option func(*options)

type options struct {
	secrets *secret.Store
}

// WithSecrets registers the password_file value with secrets, so that its
// Reload (on SIGHUP) re-reads the file at once; without it the file is
// still followed, by a stat every secret.DefaultInterval.
func WithSecrets(s *secret.Store) Option {
	return func(o *options) { o.secrets = s }
}

// New returns a client for the registry of cfg; getenv reads
// password_env. It does not contact the registry. A password from
// password_file follows its file: every request carries the password the
// file holds then, so a rotated password is used with no restart.
func New(cfg config.Registry, getenv func(string) string, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	srOpts := []sr.ClientOpt{
		sr.URLs(cfg.URL),
		sr.HTTPClient(&http.Client{Timeout: timeout}),
		sr.UserAgent("fanout"),
	}
	if cfg.Username != "" {
		pass, err := cfg.PasswordValue(o.secrets, getenv)
		if err != nil {
			return nil, err
		}
		// Not sr.BasicAuth, which keeps the password it was given: the
		// header is set per request from the file's current content.
		user := cfg.Username
		srOpts = append(srOpts, sr.PreReq(func(req *http.Request) error {
			req.SetBasicAuth(user, pass.Current())
			return nil
		}))
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("source.registry.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("source.registry.ca_file: %s holds no PEM certificate", cfg.CAFile)
		}
		srOpts = append(srOpts, sr.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	cl, err := sr.NewClient(srOpts...)
	if err != nil {
		return nil, fmt.Errorf("source.registry: %w", err)
	}
	return &Client{cl: cl, cache: make(map[int]*schema)}, nil
}

// Decode reads one framed value. An *Error means it can never be decoded
// (dead-letter it); any other error is the registry being unreachable or
// failing, and the same value may decode later (retry it).
func (c *Client) Decode(ctx context.Context, value []byte) (*Decoded, error) {
	id, body, err := (&sr.ConfluentHeader{}).DecodeID(value)
	if err != nil {
		return nil, permanent(envelope.ReasonNotFramed, "value does not start with the schema-registry frame (magic byte 0 and a 4-byte schema id)")
	}
	s, err := c.schema(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case s.unsupported != "":
		return nil, permanent(envelope.ReasonUnsupportedSchema, "schema id %d: %s", id, s.unsupported)
	case s.json != nil:
		return &Decoded{SchemaID: id, JSON: body, Schema: s.json}, nil
	}
	var v any
	if s.proto != nil {
		v, err = decodeProto(s.proto, body)
	} else {
		v, err = decodeAvro(s.avro, body)
	}
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			return nil, permanent(pe.Reason, "schema id %d: %v", id, err)
		}
		return nil, permanent(envelope.ReasonUndecodableBody, "schema id %d: %v", id, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, permanent(envelope.ReasonUndecodableBody, "schema id %d: re-encode as JSON: %v", id, err)
	}
	return &Decoded{SchemaID: id, JSON: j}, nil
}

// schema returns the schema of id, from the cache or the registry. Only
// schemas are cached, never a miss: a registry that did not know an id a
// moment ago (a replica behind) may know it now.
func (c *Client) schema(ctx context.Context, id int) (*schema, error) {
	c.mu.Lock()
	s, ok := c.cache[id]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	got, err := c.cl.SchemaByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		// Only the registry's own "schema not found" is final: a 404
		// without it is a wrong URL (every record would be lost to the
		// DLQ), so it is retried like an outage.
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound && re.ErrorCode == sr.ErrSchemaNotFound.Code {
			return nil, permanent(envelope.ReasonUnknownSchemaID, "schema id %d: the registry has no such schema (%d %s)", id, re.ErrorCode, re.Message)
		}
		return nil, fmt.Errorf("fetch schema id %d from the registry: %w", id, err)
	}
	// Compiling is CPU work only; a cancelled batch must not make a
	// schema look broken (that would be cached).
	s = compile(context.WithoutCancel(ctx), id, got)
	c.mu.Lock()
	c.cache[id] = s
	c.mu.Unlock()
	return s, nil
}

func compile(ctx context.Context, id int, got sr.Schema) *schema {
	if len(got.References) > 0 {
		return &schema{unsupported: fmt.Sprintf("it references %d other schemas, which fanout does not resolve", len(got.References))}
	}
	switch got.Type {
	case sr.TypeAvro:
		a, err := avro.ParseWithCache(got.Schema, "", &avro.SchemaCache{})
		if err != nil {
			return &schema{unsupported: fmt.Sprintf("Avro schema does not parse: %v", err)}
		}
		return &schema{avro: a}
	case sr.TypeJSON:
		j, err := eventschema.CompileText("registry/schemas/ids/"+strconv.Itoa(id), []byte(got.Schema))
		if err != nil {
			return &schema{unsupported: fmt.Sprintf("JSON Schema does not compile: %v", err)}
		}
		return &schema{json: j}
	case sr.TypeProtobuf:
		fd, err := compileProto(ctx, id, got.Schema)
		if err != nil {
			return &schema{unsupported: fmt.Sprintf("Protobuf schema does not compile: %v", err)}
		}
		return &schema{proto: fd}
	default:
		return &schema{unsupported: fmt.Sprintf("schema type %s is not supported (Avro, JSON Schema and Protobuf are)", got.Type)}
	}
}
