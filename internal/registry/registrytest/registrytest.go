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
	"embed"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
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
	// ProtoQuoteEvent is a Protobuf schema.
	ProtoQuoteEvent = 3
)

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
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	if r.User != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.User || p != r.Password {
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
