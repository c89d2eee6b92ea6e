// Package registrytest is a stand-in schema registry for tests: an HTTP
// server that answers the Confluent REST API call fanout makes,
// GET /schemas/ids/{id}, with recorded response bodies in the documented
// format (recorded/<id>.json), and its documented errors: 404 with error
// code 40403 for an unknown id, 401 for bad credentials, and 5xx when
// told to fail.
//
// No real registry can run on the test machines (see docs/architecture.md,
// "Schema-registry framed events"); this server is what the decode path
// is tested against.
package registrytest

import (
	"context"
	"embed"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

//go:embed recorded/*.json
var recorded embed.FS

// Recorded schema ids (recorded/<id>.json).
const (
	// AvroQuoteEvent is an Avro record: ids, version, a timestamp-millis,
	// a nullable double, an enum, an array of records and a map.
	AvroQuoteEvent = 1
	// JSONQuoteEvent is a JSON Schema (draft-07) of a quote event.
	JSONQuoteEvent = 2
	// ProtoQuoteEvent is a Protobuf (proto3) schema: QuoteEvent, with a
	// google.protobuf.Timestamp, an optional double, an enum, a nested
	// repeated message and a map.
	ProtoQuoteEvent = 3
	// AvroWithReference is an Avro schema that references another
	// subject's schema (the "references" member).
	AvroWithReference = 4
)

// ProtoQuote is a QuoteEvent of ProtoQuoteEvent, framed (message index
// [0]). A nil amount leaves the optional field unset.
func ProtoQuote(t testing.TB, id, eventType, quoteID string, version int64, at time.Time, amount *float64) []byte {
	t.Helper()
	name := "quote.proto"
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
		Accessor: protocompile.SourceAccessorFromMap(map[string]string{name: string(Schema(t, ProtoQuoteEvent))}),
	})}
	files, err := c.Compile(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	md := files[0].Messages().ByName("QuoteEvent")
	m := dynamicpb.NewMessage(md)
	set := func(f string, v protoreflect.Value) { m.Set(md.Fields().ByName(protoreflect.Name(f)), v) }
	set("id", protoreflect.ValueOfString(id))
	set("event_type", protoreflect.ValueOfString(eventType))
	set("quote_id", protoreflect.ValueOfString(quoteID))
	set("version", protoreflect.ValueOfInt64(version))
	set("timestamp", protoreflect.ValueOfMessage(timestamppb.New(at).ProtoReflect()))
	if amount != nil {
		set("amount", protoreflect.ValueOfFloat64(*amount))
	}
	set("currency", protoreflect.ValueOfEnum(1))
	lines := m.NewField(md.Fields().ByName("lines")).List()
	line := dynamicpb.NewMessage(md.Messages().ByName("Line"))
	line.Set(line.Descriptor().Fields().ByName("sku"), protoreflect.ValueOfString("A-1"))
	line.Set(line.Descriptor().Fields().ByName("qty"), protoreflect.ValueOfInt32(2))
	lines.Append(protoreflect.ValueOfMessage(line))
	set("lines", protoreflect.ValueOfList(lines))
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	// Message index [0] is written as the single varint 0.
	return Frame(ProtoQuoteEvent, append([]byte{0}, b...))
}

// Registry is a running stand-in registry.
type Registry struct {
	URL      string
	User     string
	Password string

	mu       sync.Mutex
	failNext int
	failCode int
	requests map[string]int
	badAuth  int
}

var idPath = regexp.MustCompile(`^/schemas/ids/([0-9]+)$`)

// Start runs a stand-in registry until the test ends. With a non-empty
// user, every request must carry these basic-auth credentials.
func Start(t testing.TB, user, password string) *Registry {
	r := &Registry{User: user, Password: password, requests: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// StartTLS is Start over HTTPS with a certificate of its own; it returns
// the path of a PEM file of that certificate, for source.registry.ca_file.
func StartTLS(t testing.TB, user, password string) (*Registry, string) {
	r := &Registry{User: user, Password: password, requests: map[string]int{}}
	srv := httptest.NewTLSServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	ca := filepath.Join(t.TempDir(), "registry-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return r, ca
}

// Schema returns the recorded schema text of id, as the registry would
// hold it (the "schema" member of the recorded body).
func Schema(t testing.TB, id int) []byte {
	t.Helper()
	b, err := recorded.ReadFile(fmt.Sprintf("recorded/%d.json", id))
	if err != nil {
		t.Fatalf("no recorded schema %d: %v", id, err)
	}
	var body struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("recorded schema %d: %v", id, err)
	}
	return []byte(body.Schema)
}

// Frame prefixes body with the Confluent wire-format header of id.
func Frame(id int, body []byte) []byte {
	b := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(b[1:], uint32(id))
	return append(b, body...)
}

// FailNext makes the next n requests answer status (e.g. 503) with the
// registry's error body.
func (r *Registry) FailNext(n, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext, r.failCode = n, status
}

// Requests returns how many requests reached path (any outcome).
func (r *Registry) Requests(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[path]
}

// SetPassword changes the password the registry accepts from now on, as
// an operator rotating the registry's credentials does.
func (r *Registry) SetPassword(password string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Password = password
}

// BadAuth returns how many requests were refused for their credentials.
func (r *Registry) BadAuth() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.badAuth
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests[req.URL.Path]++
	fail := r.failNext > 0
	code := r.failCode
	if fail {
		r.failNext--
	}
	user, password := r.User, r.Password
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	if user != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != user || p != password {
			r.mu.Lock()
			r.badAuth++
			r.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="SchemaRegistry"`)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error_code":401,"message":"Unauthorized"}`)
			return
		}
	}
	if fail {
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error_code":%d01,"message":"Error in the backend datastore"}`, code)
		return
	}
	m := idPath.FindStringSubmatch(req.URL.Path)
	if req.Method != http.MethodGet || m == nil {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error_code":404,"message":"HTTP 404 Not Found"}`)
		return
	}
	body, err := recorded.ReadFile("recorded/" + m[1] + ".json")
	if err != nil {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error_code":40403,"message":"Schema %s not found"}`, m[1])
		return
	}
	_, _ = w.Write(body)
}
