// Package connectors is fanout's extension point for downstream systems.
//
// A connector turns one notification into a call to one downstream system
// (an Azure Logic Apps trigger, Salesforce, a plain webhook, ...). Connector
// types register a Factory under a type name, in the spirit of database/sql
// drivers; the configuration then names a type for every connector instance,
// and one type may back several instances (two Logic Apps workflows, say).
//
// Connectors never retry on their own beyond what their HTTP transport does in
// one Deliver call, never sleep for a circuit breaker and never write dead
// letters: the delivery package does all of that, driven by the *Error a
// connector returns. A connector therefore only has to say what happened and
// how to classify it.
package connectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/fanout-dev/fanout/internal/secret"
)

// Notification is one change to deliver. Its fields come from the record's
// headers and value as published by the relay.
type Notification struct {
	// ID is the stable idempotency key of the notification: the same on every
	// attempt and every replay. Connectors must pass it to the target
	// (x-ms-client-tracking-id, webhook-id, an external id field, ...).
	ID string
	// Key is the aggregate id (the Kafka record key).
	Key string
	// Type is the event type, e.g. "quote_created".
	Type string
	// Source is the CloudEvents source of the notification.
	Source string
	// Version is the aggregate version this notification describes.
	Version int64
	// Time is the domain commit time of the change.
	Time time.Time
	// Priority and TriggerType come from the routing decision.
	Priority    string
	TriggerType string
	// Body is the notification envelope as JSON (the Kafka record value).
	Body []byte
	// Attempt counts delivery attempts of this notification to this
	// connector, starting at 1; it keeps counting across replays.
	Attempt int
	// TraceParent is the W3C traceparent of the notification, if any.
	TraceParent string
	// Projection names the projection the notification comes from
	// (quotes, orders, ...); Key is unique within it. Connectors may map
	// each projection to its own endpoint or object.
	Projection string
}

// Class says what the delivery layer should do with a failed delivery.
type Class int

const (
	// Retryable failures (network errors, timeouts, 5xx, 429, lock
	// contention) are retried with backoff and count against the breaker.
	Retryable Class = iota + 1
	// Permanent failures (validation errors, unknown fields) will fail the
	// same way again: the notification goes to the dead letters at once.
	Permanent
	// Reauthenticate failures mean the credentials expired; the connector
	// has already dropped its token and the next attempt fetches a new one.
	Reauthenticate
	// Halt failures say the endpoint or the credentials are wrong, not the
	// record (a rotated key, a disabled workflow, a refused OAuth client, a
	// redirect, a persistent TLS or DNS failure). Every record would fail
	// the same way, so the connector stops rather than dead-lettering the
	// stream, and resumes by itself once the endpoint answers again.
	Halt
)

// String returns the class name used in dead-letter headers and metrics.
func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	case Reauthenticate:
		return "reauthenticate"
	case Halt:
		return "halt"
	default:
		return "unknown"
	}
}

// Error is the error a connector returns for a failed delivery. Its message
// must never contain a secret (a Logic Apps sig, a token, a client secret).
type Error struct {
	Class Class
	// Status is the HTTP status of the last response, 0 if none came.
	Status int
	// Code is the downstream's error code when it gave one, e.g.
	// "INVALID_SESSION_ID" or "TriggerInputSchemaMismatch".
	Code string
	// RetryAfter is how long the downstream asked to wait (already capped),
	// 0 when it did not say.
	RetryAfter time.Duration
	// Message describes the failure, free of secrets.
	Message string
	// Err is the underlying error, if any; it must be free of secrets too.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	msg := e.Class.String()
	if e.Status != 0 {
		msg += " status " + strconv.Itoa(e.Status)
	}
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Classify returns the class of err: the class of the *Error in its chain, or
// Retryable for any other error (a failure we cannot explain is retried, never
// dropped).
func Classify(err error) Class {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Class
	}
	return Retryable
}

// Connector delivers notifications to one downstream system.
type Connector interface {
	// Deliver sends n. It returns nil once the downstream acknowledged it,
	// or an error, preferably an *Error, that says how to classify it.
	Deliver(ctx context.Context, n *Notification) error
	// Close releases the connector's resources.
	Close() error
}

// BatchConnector is implemented by connectors that can deliver several
// notifications in one call (Salesforce sObject Collections).
type BatchConnector interface {
	Connector
	// DeliverBatch sends ns in as few calls as it can and returns one result
	// per notification, in order: a failure of one does not fail the others.
	DeliverBatch(ctx context.Context, ns []*Notification) []error
	// MaxBatch is the largest batch DeliverBatch accepts.
	MaxBatch() int
}

// UsageReporter is implemented by connectors that know the downstream's API
// usage (Salesforce's Sforce-Limit-Info).
type UsageReporter interface {
	// Usage returns the latest known usage and limit; ok is false when no
	// response has reported them yet.
	Usage() (used, limit int64, ok bool)
}

// Config is what a factory receives to build one connector instance.
type Config struct {
	// Name is the instance name from the configuration, e.g. "logic_apps".
	Name string
	// Type is the registered type name, e.g. "logicapps".
	Type string
	// Decode decodes the instance's type-specific settings into v (a
	// pointer to a struct with yaml tags). Unknown fields are an error.
	Decode func(v any) error
	// Logger is the logger to use; never log secrets with it.
	Logger *slog.Logger
	// MaxInFlight is the most deliveries the worker runs at once
	// (delivery.max_in_flight); HTTP connectors keep that many idle
	// connections so that a busy worker reuses them instead of dialling.
	// 0 leaves the connector's default.
	MaxInFlight int
	// Secrets resolves secret settings (inline, *_env, *_file); its file
	// values follow their files and reload on SIGHUP. nil still resolves
	// them, without the SIGHUP reload.
	Secrets *secret.Store
}

// Factory builds a connector instance from its configuration. It should
// validate the settings and return an error naming the field and the fix.
type Factory func(ctx context.Context, cfg Config) (Connector, error)

// Registry maps connector type names to factories.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{factories: make(map[string]Factory)}
}

// Register makes a connector type available under name. It panics if name
// is empty, f is nil or name is already registered, as database/sql does:
// both are programming errors found at start.
func (r *Registry) Register(name string, f Factory) {
	if name == "" || f == nil {
		panic("connectors: Register with empty name or nil factory")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.factories[name]; dup {
		panic("connectors: Register called twice for type " + name)
	}
	r.factories[name] = f
}

// Open builds a connector of the type cfg.Type.
func (r *Registry) Open(ctx context.Context, cfg Config) (Connector, error) {
	r.mu.RLock()
	f, ok := r.factories[cfg.Type]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("connector %q: unknown type %q (known types: %v)", cfg.Name, cfg.Type, r.Types())
	}
	c, err := f(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connector %q (type %s): %w", cfg.Name, cfg.Type, err)
	}
	return c, nil
}

// Has reports whether a type is registered.
func (r *Registry) Has(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.factories[name]
	return ok
}

// Types returns the registered type names, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// defaultRegistry is the registry behind the package-level Register, the one
// piece of package state fanout keeps: like database/sql's driver list, it
// lets a connector package register itself from init without the core
// knowing it exists.
var defaultRegistry = NewRegistry()

// Register registers a connector type in the default registry. Connector
// packages call it from init; a binary imports them for their side effect.
func Register(name string, f Factory) { defaultRegistry.Register(name, f) }

// Default returns the default registry.
func Default() *Registry { return defaultRegistry }
