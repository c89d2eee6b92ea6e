package logicapps

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// FaultsPatch is the body of POST /_sim/faults. Fields present in the JSON
// replace the current ones, absent fields stay; a "script" replaces the
// whole script and restarts it. Reset first restores the start-up faults
// (script included); RevokeTokens invalidates every issued token. Unknown
// fields are an error, so that a typo does not silently test nothing.
//
//	{"script":[{"count":2,"status":503},{"status":429,"retry_after":"1"}]}
//	{"script":[{"for":"3s","status":502}]}
//	{"fail_rate":0.2,"latency":"50ms","jitter":"20ms"}
//	{"reset":true,"mode":"response","status":200,"body":"{\"ok\":true}"}
type FaultsPatch struct {
	Faults
	Reset        bool `json:"reset,omitempty"`
	RevokeTokens bool `json:"revoke_tokens,omitempty"`
}

// AdminOp is the body of POST /_sim/admin: what an operator of the real
// service does to a workflow from the portal or ARM, for tests that
// drive a simulator in another process. Empty fields change nothing.
//
//	{"rotate_key":"new-key"}
//	{"disable":["wf1"]}  {"enable":["wf1"]}
//	{"client_secrets":{"fanout":"new-secret"},"revoke_tokens":true}
type AdminOp struct {
	RotateKey     string            `json:"rotate_key,omitempty"`
	Disable       []string          `json:"disable,omitempty"`
	Enable        []string          `json:"enable,omitempty"`
	ClientSecrets map[string]string `json:"client_secrets,omitempty"`
	RevokeTokens  bool              `json:"revoke_tokens,omitempty"`
}

// apply carries out an AdminOp.
func (s *Server) apply(a AdminOp) {
	if a.RotateKey != "" {
		s.RotateKey(a.RotateKey)
	}
	for _, w := range a.Disable {
		s.SetWorkflowEnabled(w, false)
	}
	for _, w := range a.Enable {
		s.SetWorkflowEnabled(w, true)
	}
	for id, sec := range a.ClientSecrets {
		s.SetClientSecret(id, sec)
	}
	if a.RevokeTokens {
		s.RevokeTokens()
	}
}

func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_sim/calls" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Calls())
	case r.URL.Path == "/_sim/calls" && r.Method == http.MethodDelete:
		s.mu.Lock()
		s.calls = nil
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/_sim/tokens" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.TokenCalls())
	case r.URL.Path == "/_sim/faults" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Faults())
	case r.URL.Path == "/_sim/faults" && r.Method == http.MethodPost:
		f, err := s.patchFaults(r.Body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, f)
	case r.URL.Path == "/_sim/admin" && r.Method == http.MethodPost:
		var a AdminOp
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "decode admin operation: " + err.Error()})
			return
		}
		s.apply(a)
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/_sim/reset" && r.Method == http.MethodPost:
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown control endpoint " + r.Method + " " + r.URL.Path})
	}
}

// patchFaults applies a POST /_sim/faults body and returns the result.
func (s *Server) patchFaults(body io.Reader) (Faults, error) {
	raw, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil {
		return Faults{}, fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	var present map[string]json.RawMessage
	if err := json.Unmarshal(raw, &present); err != nil {
		return Faults{}, fmt.Errorf("decode faults: %w", err)
	}
	var reset bool
	if v, ok := present["reset"]; ok {
		if err := json.Unmarshal(v, &reset); err != nil {
			return Faults{}, fmt.Errorf("decode faults: reset: %w", err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	p := FaultsPatch{Faults: s.faults}
	if reset {
		p.Faults = s.cfg.Faults
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Faults{}, fmt.Errorf("decode faults: %w", err)
	}
	if err := p.Faults.validate(); err != nil {
		return Faults{}, err
	}
	s.faults = p.Faults
	if _, ok := present["script"]; ok || reset {
		s.setScriptLocked(p.Faults.Script, time.Now())
	}
	if p.RevokeTokens {
		s.tokens = make(map[string]issuedToken)
	}
	return p.Faults, nil
}

// serveToken is a minimal Microsoft identity platform v2.0 token endpoint
// for the client-credentials grant.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 5 || parts[0] != "tokens" || parts[2] != "oauth2" || parts[3] != "v2.0" || parts[4] != "token" || parts[1] == "" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
		return
	}
	tenant := parts[1]
	tc := TokenCall{Time: time.Now(), Tenant: tenant}
	defer func() {
		s.mu.Lock()
		s.tokenCalls = append(s.tokenCalls, tc)
		s.mu.Unlock()
	}()
	fail := func(status int, code, desc string) {
		tc.Status = status
		writeJSON(w, status, map[string]any{
			"error":             code,
			"error_description": desc,
			"error_codes":       []int{},
			"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
			"trace_id":          newGUID(),
			"correlation_id":    newGUID(),
		})
	}
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "invalid_request", "AADSTS900561: The endpoint only accepts POST requests.")
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'grant_type'.")
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	tc.ClientID, tc.Scope = id, r.PostForm.Get("scope")
	switch {
	case r.PostForm.Get("grant_type") != "client_credentials":
		fail(http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
		return
	case tc.Scope == "":
		fail(http.StatusBadRequest, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'scope'.")
		return
	case id == "":
		fail(http.StatusBadRequest, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'client_id'.")
		return
	case !strings.HasSuffix(tc.Scope, "/.default"):
		fail(http.StatusBadRequest, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.")
		return
	}
	s.mu.Lock()
	want, known := s.clients[id]
	clients, nclients := s.clients != nil, len(s.clients)
	s.mu.Unlock()
	if !clients || (nclients > 0 && !known) {
		fail(http.StatusBadRequest, "unauthorized_client", fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory '%s'.", id, tenant))
		return
	}
	if secret == "" || (known && subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1) {
		fail(http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.")
		return
	}
	tok := "sim." + newGUID() + "." + newGUID()
	s.mu.Lock()
	s.tokens[tok] = issuedToken{tenant: tenant, clientID: id, expires: time.Now().Add(s.cfg.TokenTTL)}
	s.mu.Unlock()
	tc.Status = http.StatusOK
	secs := int(s.cfg.TokenTTL / time.Second)
	w.Header().Set("Cache-Control", "no-store, no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   tok,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
