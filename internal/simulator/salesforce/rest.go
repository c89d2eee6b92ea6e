package salesforce

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Supported API versions of the fake (v20.0 to Winter '27's v68.0).
const (
	minVersion            = 20
	maxVersion            = 68
	minCollectionsVersion = 42 // sObject Collections create
	minCollectionsUpsert  = 46
	maxBodyBytes          = 16 << 20
)

func isEvent(object string) bool  { return strings.HasSuffix(object, "__e") }
func isCustom(object string) bool { return strings.HasSuffix(object, "__c") }

// recordResult is one entry of an sObject Collections response.
type recordResult struct {
	ID      string        `json:"id,omitempty"`
	Success bool          `json:"success"`
	Errors  []recordError `json:"errors"`
	Created *bool         `json:"created,omitempty"`
}

// recordError is a per-record error; unlike the top-level error array it
// names its code statusCode.
type recordError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

func toRecordError(e apiError) recordError {
	f := e.Fields
	if f == nil {
		f = []string{}
	}
	return recordError{StatusCode: e.ErrorCode, Message: e.Message, Fields: f}
}

// parseVersion reads "v66.0" and reports whether the fake supports it.
func parseVersion(seg string) (int, bool) {
	if !strings.HasPrefix(seg, "v") || !strings.HasSuffix(seg, ".0") {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(seg, "v"), ".0"))
	if err != nil || n < minVersion || n > maxVersion {
		return 0, false
	}
	return n, true
}

// notFound is Salesforce's answer for an unknown resource or object.
func notFound() statusError {
	return statusError{http.StatusNotFound, apiError{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"}}
}

func methodNotAllowed(method, allowed string) statusError {
	return statusError{http.StatusMethodNotAllowed, apiError{
		Message:   fmt.Sprintf("HTTP Method '%s' not allowed. Allowed are %s", method, allowed),
		ErrorCode: "METHOD_NOT_ALLOWED",
	}}
}

// handleVersions serves GET /services/data/.
func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request, rec *Call) {
	if r.Method != http.MethodGet {
		s.fail(w, rec, methodNotAllowed(r.Method, "GET,HEAD"))
		return
	}
	type version struct {
		Label   string `json:"label"`
		URL     string `json:"url"`
		Version string `json:"version"`
	}
	var out []version
	for v := minVersion; v <= maxVersion; v++ {
		out = append(out, version{Label: "v" + strconv.Itoa(v), URL: fmt.Sprintf("/services/data/v%d.0", v), Version: fmt.Sprintf("%d.0", v)})
	}
	writeJSON(w, http.StatusOK, out)
}

// admit authenticates the call, applies the daily allocation and the
// long-running request cap, and counts it. It returns a release func, or
// false after it wrote the refusal.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, rec *Call) (Faults, func(), bool) {
	now := s.now()
	if !s.authenticate(r, now) {
		w.Header().Set("WWW-Authenticate", `Token`)
		s.fail(w, rec, apiErrorForCode("INVALID_SESSION_ID"))
		return Faults{}, nil, false
	}
	s.mu.Lock()
	f := s.faults.clone()
	if f.DailyLimit > 0 && s.daily.sum(now) >= f.DailyLimit {
		s.mu.Unlock()
		s.fail(w, rec, statusError{http.StatusForbidden, apiError{Message: "TotalRequests Limit exceeded.", ErrorCode: "REQUEST_LIMIT_EXCEEDED"}})
		return Faults{}, nil, false
	}
	if f.LongRequestCap > 0 {
		long := 0
		for _, st := range s.inflight {
			if now.Sub(st) >= s.cfg.LongRequestThreshold {
				long++
			}
		}
		if long >= f.LongRequestCap {
			s.mu.Unlock()
			s.fail(w, rec, statusError{http.StatusForbidden, apiError{Message: "ConcurrentPerOrgLongTxn Limit exceeded.", ErrorCode: "REQUEST_LIMIT_EXCEEDED"}})
			return Faults{}, nil, false
		}
	}
	s.inflightN++
	id := s.inflightN
	s.inflight[id] = now
	s.daily.add(now, 1)
	s.apiCalls++
	s.mu.Unlock()
	rec.APICall = true
	release := func() {
		s.mu.Lock()
		delete(s.inflight, id)
		s.mu.Unlock()
	}
	return f, release, true
}

// takeRule returns the first rule for target (and path) that fires now.
func (s *Server) takeRule(target, path string) (Rule, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.faults.Rules {
		r := &s.faults.Rules[i]
		t := r.Target
		if t == "" {
			t = TargetCall
		}
		if t != target || (r.PathContains != "" && !strings.Contains(path, r.PathContains)) {
			continue
		}
		if r.Count > 0 {
			r.Count--
			return *r, true
		}
		if r.Rate > 0 && mrand.Float64() < r.Rate {
			return *r, true
		}
	}
	return Rule{}, false
}

// recordFault returns the injected error of one record, if any.
func (s *Server) recordFault(f Faults, path string, fields map[string]any) (apiError, bool) {
	if f.RejectField != "" {
		if v, ok := keyString(fields[f.RejectField]); ok && v == f.RejectValue {
			return apiError{
				Message:   fmt.Sprintf("%s: value %q is rejected by validation rule Fanout_Sim_Reject", f.RejectField, f.RejectValue),
				ErrorCode: "FIELD_CUSTOM_VALIDATION_EXCEPTION",
				Fields:    []string{f.RejectField},
			}, true
		}
	}
	if r, ok := s.takeRule(TargetRecord, path); ok {
		_, e := apiErrorFor(r)
		if e.Fields == nil {
			e.Fields = []string{}
		}
		return e, true
	}
	return apiError{}, false
}

// handleData serves /services/data/vNN.N/...; rest is the escaped path
// after /services/data/.
func (s *Server) handleData(w http.ResponseWriter, r *http.Request, rec *Call, rest string) {
	segs := strings.Split(rest, "/")
	for i, sg := range segs {
		u, err := url.PathUnescape(sg)
		if err != nil {
			s.fail(w, rec, notFound())
			return
		}
		segs[i] = u
	}
	ver, ok := parseVersion(segs[0])
	if !ok {
		s.fail(w, rec, notFound())
		return
	}
	segs = segs[1:]
	if len(segs) > 0 && segs[len(segs)-1] == "" && !(len(segs) == 4 && segs[0] == "sobjects") {
		segs = segs[:len(segs)-1] // trailing slash, as in POST /sobjects/Event__e/
	}

	f, release, ok := s.admit(w, r, rec)
	if !ok {
		return
	}
	defer release()
	if !s.sleep(r.Context(), latency(f)) {
		s.fail(w, rec, apiErrorForCode("SERVER_UNAVAILABLE"))
		return
	}
	if f.FailRate > 0 && mrand.Float64() < f.FailRate {
		s.fail(w, rec, apiErrorForCode("SERVER_UNAVAILABLE"))
		return
	}
	if rule, ok := s.takeRule(TargetCall, r.URL.Path); ok {
		st, e := apiErrorFor(rule)
		s.fail(w, rec, statusError{st, e})
		return
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		s.fail(w, rec, statusError{http.StatusBadRequest, apiError{Message: "cannot read body", ErrorCode: "JSON_PARSER_ERROR"}})
		return
	}
	switch {
	case len(segs) == 0:
		if r.Method != http.MethodGet {
			s.fail(w, rec, methodNotAllowed(r.Method, "GET,HEAD"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{
			"sobjects":  fmt.Sprintf("/services/data/v%d.0/sobjects", ver),
			"composite": fmt.Sprintf("/services/data/v%d.0/composite", ver),
			"limits":    fmt.Sprintf("/services/data/v%d.0/limits", ver),
		})
	case len(segs) == 1 && segs[0] == "limits":
		s.handleLimits(w, r, rec)
	case segs[0] == "sobjects" && len(segs) == 2:
		if r.Method != http.MethodPost {
			s.fail(w, rec, methodNotAllowed(r.Method, "GET,HEAD,POST"))
			return
		}
		s.handleCreate(w, r, rec, segs[1], body, f)
	case segs[0] == "sobjects" && len(segs) == 4:
		switch r.Method {
		case http.MethodPatch:
			s.handleUpsert(w, r, rec, ver, segs[1], segs[2], segs[3], body, f)
		case http.MethodGet:
			s.handleGet(w, rec, ver, segs[1], segs[2], segs[3])
		default:
			s.fail(w, rec, methodNotAllowed(r.Method, "GET,HEAD,PATCH"))
		}
	case segs[0] == "composite" && len(segs) == 2 && segs[1] == "sobjects" && ver >= minCollectionsVersion:
		if r.Method != http.MethodPost {
			s.fail(w, rec, methodNotAllowed(r.Method, "POST,PATCH,DELETE"))
			return
		}
		s.handleCollectionsCreate(w, r, rec, body, f)
	case segs[0] == "composite" && len(segs) == 4 && segs[1] == "sobjects" && ver >= minCollectionsUpsert:
		if r.Method != http.MethodPatch {
			s.fail(w, rec, methodNotAllowed(r.Method, "PATCH"))
			return
		}
		s.handleCollectionsUpsert(w, r, rec, segs[2], segs[3], body, f)
	default:
		s.fail(w, rec, notFound())
	}
}

// handleLimits serves GET /limits.
func (s *Server) handleLimits(w http.ResponseWriter, r *http.Request, rec *Call) {
	if r.Method != http.MethodGet {
		s.fail(w, rec, methodNotAllowed(r.Method, "GET,HEAD"))
		return
	}
	s.mu.Lock()
	now := s.now()
	used, max := s.daily.sum(now), s.faults.DailyLimit
	ev, evMax := s.events.sum(now), s.faults.EventHourlyLimit
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]map[string]int64{
		"DailyApiRequests":              {"Max": max, "Remaining": max - used},
		"HourlyPublishedPlatformEvents": {"Max": evMax, "Remaining": evMax - ev},
	})
}

// objectSpec returns the spec of a declared object, or reports whether an
// undeclared name is an acceptable custom object or event.
func (s *Server) objectSpec(object string) (spec ObjectSpec, declared, ok bool) {
	if sp, found := s.cfg.Objects[object]; found {
		return sp, true, true
	}
	return ObjectSpec{}, false, isCustom(object) || isEvent(object)
}

func (s *Server) extFieldOK(object, field string) bool {
	spec, declared, _ := s.objectSpec(object)
	if declared {
		return slices.Contains(spec.ExternalIDFields, field)
	}
	if len(s.cfg.ExternalIDFields) > 0 {
		return slices.Contains(s.cfg.ExternalIDFields, field)
	}
	return isCustom(field)
}

func isStandardField(f string) bool {
	switch f {
	case "Name", "OwnerId", "CurrencyIsoCode", "RecordTypeId":
		return true
	}
	return false
}

// fieldOK reports whether field exists on object.
func (s *Server) fieldOK(object, field string) bool {
	spec, declared, _ := s.objectSpec(object)
	if declared && len(spec.Fields) > 0 {
		return slices.Contains(spec.Fields, field) || slices.Contains(spec.ExternalIDFields, field)
	}
	if isEvent(object) {
		return isCustom(field)
	}
	return isCustom(field) || isStandardField(field) || (declared && slices.Contains(spec.ExternalIDFields, field))
}

// decodeObject parses a JSON object with numbers kept as written.
func decodeObject(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data after JSON value")
	}
	return nil
}

func parserError(msg string) statusError {
	return statusError{http.StatusBadRequest, apiError{Message: msg, ErrorCode: "JSON_PARSER_ERROR"}}
}

// checkFields validates the field names and values of one record the way
// Salesforce's deserializer does: unknown field -> INVALID_FIELD, nested
// value -> JSON_PARSER_ERROR. It drops "attributes".
func (s *Server) checkFields(object string, fields map[string]any) *statusError {
	delete(fields, "attributes")
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if k == "Id" {
			continue // reported per operation
		}
		if !s.fieldOK(object, k) {
			return &statusError{http.StatusBadRequest, apiError{
				Message:   fmt.Sprintf("No such column '%s' on sobject of type %s", k, object),
				ErrorCode: "INVALID_FIELD",
			}}
		}
		switch fields[k].(type) {
		case nil, string, json.Number, bool:
		default:
			e := parserError(fmt.Sprintf("Cannot deserialize instance of %s from %s value at [line:1] for field %s", "string", "START_OBJECT or START_ARRAY", k))
			return &e
		}
	}
	return nil
}

// noteRecords records the count and notification ids of a request.
func (s *Server) noteRecords(rec *Call, records ...map[string]any) {
	rec.Records += len(records)
	for _, f := range records {
		if v, ok := keyString(f[s.cfg.NotificationIDField]); ok {
			rec.NotificationIDs = append(rec.NotificationIDs, v)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func recordURL(ver int, object, id string) string {
	return fmt.Sprintf("/services/data/v%d.0/sobjects/%s/%s", ver, object, id)
}

// handleUpsert serves PATCH /sobjects/{object}/{field}/{value}.
func (s *Server) handleUpsert(w http.ResponseWriter, r *http.Request, rec *Call, ver int, object, field, value string, body []byte, f Faults) {
	_, _, ok := s.objectSpec(object)
	if !ok || isEvent(object) {
		s.fail(w, rec, notFound())
		return
	}
	if !s.extFieldOK(object, field) {
		s.fail(w, rec, statusError{http.StatusNotFound, apiError{
			Message:   "Provided external ID field does not exist or is not accessible: " + field,
			ErrorCode: "NOT_FOUND",
		}})
		return
	}
	if value == "" {
		s.fail(w, rec, notFound())
		return
	}
	var fields map[string]any
	if err := decodeObject(body, &fields); err != nil || fields == nil {
		s.fail(w, rec, parserError("Unexpected character or end of input: the body must be a JSON object"))
		return
	}
	if se := s.checkFields(object, fields); se != nil {
		s.fail(w, rec, *se)
		return
	}
	s.noteRecords(rec, fields)
	if _, has := fields["Id"]; has {
		s.fail(w, rec, statusError{http.StatusBadRequest, apiError{
			Message:   "Unable to create/update fields: Id. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
			ErrorCode: "INVALID_FIELD_FOR_INSERT_UPDATE", Fields: []string{"Id"},
		}})
		return
	}
	if _, has := fields[field]; has {
		s.fail(w, rec, statusError{http.StatusBadRequest, apiError{
			Message:   fmt.Sprintf("The external ID field %s must not be in the request body of an upsert by external ID", field),
			ErrorCode: "INVALID_FIELD", Fields: []string{field},
		}})
		return
	}
	fields[field] = value
	if e, bad := s.recordFault(f, r.URL.Path, fields); bad {
		st := http.StatusBadRequest
		if spec, ok := faultSpecFor(e.ErrorCode); ok {
			st = spec.status
		}
		s.fail(w, rec, statusError{st, e})
		return
	}

	now := s.now()
	s.mu.Lock()
	matches := s.store.find(object, field, value)
	switch {
	case len(matches) > 1:
		urls := make([]string, len(matches))
		for i, m := range matches {
			urls[i] = recordURL(ver, object, m.ID)
		}
		s.mu.Unlock()
		rec.ErrorCode = "MULTIPLE_CHOICES"
		writeJSON(w, http.StatusMultipleChoices, urls)
	case len(matches) == 1:
		m := matches[0]
		s.store.update(now, m, fields)
		id := m.ID
		s.mu.Unlock()
		if f.UpdateStatus == http.StatusNoContent {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusOK, recordResult{ID: id, Success: true, Errors: []recordError{}, Created: ptr(false)})
	case r.URL.Query().Get("updateOnly") == "true":
		s.mu.Unlock()
		s.fail(w, rec, notFound())
	default:
		id := s.store.insert(now, object, fields).ID
		s.mu.Unlock()
		writeJSON(w, http.StatusCreated, recordResult{ID: id, Success: true, Errors: []recordError{}, Created: ptr(true)})
	}
}

// handleGet serves GET /sobjects/{object}/{field}/{value}.
func (s *Server) handleGet(w http.ResponseWriter, rec *Call, ver int, object, field, value string) {
	if _, _, ok := s.objectSpec(object); !ok || !s.extFieldOK(object, field) {
		s.fail(w, rec, notFound())
		return
	}
	s.mu.Lock()
	matches := s.store.find(object, field, value)
	var out any
	status := http.StatusOK
	switch len(matches) {
	case 0:
		s.mu.Unlock()
		s.fail(w, rec, notFound())
		return
	case 1:
		m := matches[0].clone()
		fields := map[string]any{"attributes": map[string]string{"type": object, "url": recordURL(ver, object, m.ID)}, "Id": m.ID}
		for k, v := range m.Fields {
			fields[k] = v
		}
		out = fields
	default:
		urls := make([]string, len(matches))
		for i, m := range matches {
			urls[i] = recordURL(ver, object, m.ID)
		}
		out, status = urls, http.StatusMultipleChoices
	}
	s.mu.Unlock()
	writeJSON(w, status, out)
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// limitExceeded is the refusal of an event past the hourly allocation.
func limitExceeded() apiError {
	_, e := apiErrorFor(Rule{Code: "LIMIT_EXCEEDED"})
	return e
}

// enqueued is the success result of a published platform event.
func enqueued(id string) recordResult {
	return recordResult{ID: id, Success: true, Errors: []recordError{{StatusCode: "OPERATION_ENQUEUED", Message: newUUID(), Fields: []string{}}}}
}

// eventBudgetLeft returns how many more events the hourly allocation takes.
// Callers hold s.mu.
func (s *Server) eventBudgetLeft(now time.Time, f Faults) int64 {
	if f.EventHourlyLimit <= 0 {
		return 1 << 62
	}
	return f.EventHourlyLimit - s.events.sum(now)
}

// handleCreate serves POST /sobjects/{object}/: platform event publishing
// for __e objects, a plain insert otherwise.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request, rec *Call, object string, body []byte, f Faults) {
	if _, _, ok := s.objectSpec(object); !ok {
		s.fail(w, rec, notFound())
		return
	}
	var fields map[string]any
	if err := decodeObject(body, &fields); err != nil || fields == nil {
		s.fail(w, rec, parserError("Unexpected character or end of input: the body must be a JSON object"))
		return
	}
	if se := s.checkFields(object, fields); se != nil {
		s.fail(w, rec, *se)
		return
	}
	s.noteRecords(rec, fields)
	if _, has := fields["Id"]; has {
		s.fail(w, rec, statusError{http.StatusBadRequest, apiError{Message: "Unable to create/update fields: Id.", ErrorCode: "INVALID_FIELD_FOR_INSERT_UPDATE", Fields: []string{"Id"}}})
		return
	}
	if e, bad := s.recordFault(f, r.URL.Path, fields); bad {
		st := http.StatusBadRequest
		if spec, ok := faultSpecFor(e.ErrorCode); ok {
			st = spec.status
		}
		s.fail(w, rec, statusError{st, e})
		return
	}
	now := s.now()
	s.mu.Lock()
	if isEvent(object) && s.eventBudgetLeft(now, f) <= 0 {
		s.mu.Unlock()
		s.fail(w, rec, statusError{http.StatusBadRequest, limitExceeded()})
		return
	}
	if isEvent(object) {
		s.events.add(now, 1)
	}
	id := s.store.insert(now, object, fields).ID
	s.mu.Unlock()
	if isEvent(object) {
		writeJSON(w, http.StatusCreated, enqueued(id))
		return
	}
	writeJSON(w, http.StatusCreated, recordResult{ID: id, Success: true, Errors: []recordError{}})
}

// collectionBody is the request body of sObject Collections.
type collectionBody struct {
	AllOrNone bool             `json:"allOrNone"`
	Records   []map[string]any `json:"records"`
}

// parseCollection decodes and checks a Collections body; on failure it
// returns the whole-request error.
func (s *Server) parseCollection(body []byte, rec *Call, wantType string) (collectionBody, []string, *statusError) {
	var cb collectionBody
	if err := decodeObject(body, &cb); err != nil {
		e := parserError("Unexpected character or end of input: " + err.Error())
		return cb, nil, &e
	}
	if len(cb.Records) == 0 {
		return cb, nil, &statusError{http.StatusBadRequest, apiError{Message: "records: required field is missing or empty", ErrorCode: "MISSING_ARGUMENT", Fields: []string{}}}
	}
	if len(cb.Records) > MaxCollectionRecords {
		return cb, nil, &statusError{http.StatusBadRequest, apiError{
			Message:   fmt.Sprintf("record limit reached. cannot submit more than %d records into this call", MaxCollectionRecords),
			ErrorCode: "EXCEEDED_ID_LIMIT", Fields: []string{},
		}}
	}
	types := make([]string, len(cb.Records))
	for i, fields := range cb.Records {
		if fields == nil {
			e := parserError(fmt.Sprintf("records[%d] is not an object", i))
			return cb, nil, &e
		}
		attrs, _ := fields["attributes"].(map[string]any)
		typ, _ := attrs["type"].(string)
		if typ == "" {
			return cb, nil, &statusError{http.StatusBadRequest, apiError{Message: "Must send a concrete entity type.", ErrorCode: "INVALID_TYPE", Fields: []string{}}}
		}
		if _, _, ok := s.objectSpec(typ); !ok || (wantType != "" && typ != wantType) {
			return cb, nil, &statusError{http.StatusBadRequest, apiError{Message: "sObject type '" + typ + "' is not supported.", ErrorCode: "INVALID_TYPE", Fields: []string{}}}
		}
		if se := s.checkFields(typ, fields); se != nil {
			return cb, nil, se
		}
		types[i] = typ
	}
	s.noteRecords(rec, cb.Records...)
	return cb, types, nil
}

// op is one planned write of a Collections request.
type op struct {
	result recordResult
	failed bool
	match  *Record // update target, nil to insert
	object string
	fields map[string]any
	event  bool
}

// commit applies planned ops with allOrNone semantics and returns results.
// Callers hold s.mu.
func (s *Server) commit(now time.Time, ops []op, allOrNone bool) []recordResult {
	anyFailed := slices.ContainsFunc(ops, func(o op) bool { return o.failed })
	out := make([]recordResult, len(ops))
	for i, o := range ops {
		switch {
		case o.failed:
			out[i] = o.result
		case allOrNone && anyFailed:
			out[i] = recordResult{Success: false, Errors: []recordError{{
				StatusCode: "ALL_OR_NONE_OPERATION_ROLLED_BACK",
				Message:    "Record rolled back because not all records were valid and the request was using AllOrNone header",
				Fields:     []string{},
			}}}
		case o.event:
			s.events.add(now, 1)
			out[i] = enqueued(s.store.insert(now, o.object, o.fields).ID)
		case o.match != nil:
			s.store.update(now, o.match, o.fields)
			out[i] = recordResult{ID: o.match.ID, Success: true, Errors: []recordError{}, Created: ptr(false)}
		default:
			out[i] = recordResult{ID: s.store.insert(now, o.object, o.fields).ID, Success: true, Errors: []recordError{}, Created: o.result.Created}
		}
	}
	return out
}

func failedOp(e apiError) op {
	return op{failed: true, result: recordResult{Success: false, Errors: []recordError{toRecordError(e)}}}
}

// handleCollectionsUpsert serves PATCH /composite/sobjects/{object}/{field}.
func (s *Server) handleCollectionsUpsert(w http.ResponseWriter, r *http.Request, rec *Call, object, field string, body []byte, f Faults) {
	if _, _, ok := s.objectSpec(object); !ok || isEvent(object) {
		s.fail(w, rec, notFound())
		return
	}
	if !s.extFieldOK(object, field) {
		s.fail(w, rec, statusError{http.StatusNotFound, apiError{Message: "Provided external ID field does not exist or is not accessible: " + field, ErrorCode: "NOT_FOUND"}})
		return
	}
	cb, _, se := s.parseCollection(body, rec, object)
	if se != nil {
		s.fail(w, rec, *se)
		return
	}
	// Values used more than once in the request fail every occurrence.
	seen := make(map[string]int)
	for _, fields := range cb.Records {
		if v, ok := keyString(fields[field]); ok && v != "" {
			seen[v]++
		}
	}
	faults := make([]*apiError, len(cb.Records))
	for i, fields := range cb.Records {
		if e, bad := s.recordFault(f, r.URL.Path, fields); bad {
			faults[i] = &e
		}
	}

	now := s.now()
	s.mu.Lock()
	ops := make([]op, len(cb.Records))
	for i, fields := range cb.Records {
		v, ok := keyString(fields[field])
		_, hasID := fields["Id"]
		switch {
		case !ok || v == "":
			ops[i] = failedOp(apiError{Message: field + " not specified", ErrorCode: "MISSING_ARGUMENT", Fields: []string{field}})
		case hasID:
			ops[i] = failedOp(apiError{Message: "Unable to create/update fields: Id.", ErrorCode: "INVALID_FIELD_FOR_INSERT_UPDATE", Fields: []string{"Id"}})
		case seen[v] > 1:
			ops[i] = failedOp(apiError{Message: "Duplicate external id specified: " + v, ErrorCode: "DUPLICATE_EXTERNAL_ID", Fields: []string{}})
		case faults[i] != nil:
			ops[i] = failedOp(*faults[i])
		default:
			matches := s.store.find(object, field, v)
			switch len(matches) {
			case 0:
				ops[i] = op{object: object, fields: fields, result: recordResult{Created: ptr(true)}}
			case 1:
				ops[i] = op{object: object, fields: fields, match: matches[0]}
			default:
				ids := make([]string, len(matches))
				for j, m := range matches {
					ids[j] = m.ID
				}
				ops[i] = failedOp(apiError{
					Message:   fmt.Sprintf("%s: more than one record found for external id field: [%s]", field, strings.Join(ids, ", ")),
					ErrorCode: "DUPLICATE_EXTERNAL_ID", Fields: []string{},
				})
			}
		}
	}
	results := s.commit(now, ops, cb.AllOrNone)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, results)
}

// handleCollectionsCreate serves POST /composite/sobjects: inserts records
// and publishes platform events (one result each, HTTP 200).
func (s *Server) handleCollectionsCreate(w http.ResponseWriter, r *http.Request, rec *Call, body []byte, f Faults) {
	cb, types, se := s.parseCollection(body, rec, "")
	if se != nil {
		s.fail(w, rec, *se)
		return
	}
	faults := make([]*apiError, len(cb.Records))
	for i, fields := range cb.Records {
		if e, bad := s.recordFault(f, r.URL.Path+"/"+types[i], fields); bad {
			faults[i] = &e
		}
	}
	now := s.now()
	s.mu.Lock()
	budget := s.eventBudgetLeft(now, f)
	ops := make([]op, len(cb.Records))
	for i, fields := range cb.Records {
		_, hasID := fields["Id"]
		switch {
		case hasID:
			ops[i] = failedOp(apiError{Message: "Unable to create/update fields: Id.", ErrorCode: "INVALID_FIELD_FOR_INSERT_UPDATE", Fields: []string{"Id"}})
		case faults[i] != nil:
			ops[i] = failedOp(*faults[i])
		case isEvent(types[i]) && budget <= 0:
			ops[i] = failedOp(limitExceeded())
		case isEvent(types[i]):
			budget--
			ops[i] = op{object: types[i], fields: fields, event: true}
		default:
			ops[i] = op{object: types[i], fields: fields}
		}
	}
	results := s.commit(now, ops, cb.AllOrNone)
	for i := range results {
		if !isEvent(types[i]) && results[i].Success {
			results[i].Created = nil // create results carry no created flag
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, results)
}
