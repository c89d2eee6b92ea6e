package salesforce

import (
	"fmt"
	"maps"
	"time"
)

// window counts events over a rolling span in fixed buckets, the way
// Salesforce's daily (24 h) and platform event (1 h) allocations roll.
type window struct {
	span    time.Duration
	bucket  time.Duration
	buckets []windowBucket // oldest first
	total   int64
}

type windowBucket struct {
	start time.Time
	n     int64
}

func newWindow(span, bucket time.Duration) *window {
	return &window{span: span, bucket: bucket}
}

// evict drops buckets that fell out of the span.
func (w *window) evict(now time.Time) {
	cut := now.Add(-w.span)
	i := 0
	for i < len(w.buckets) && !w.buckets[i].start.Add(w.bucket).After(cut) {
		w.total -= w.buckets[i].n
		i++
	}
	w.buckets = w.buckets[i:]
}

// add records n events at now.
func (w *window) add(now time.Time, n int64) {
	w.evict(now)
	start := now.Truncate(w.bucket)
	if l := len(w.buckets); l > 0 && w.buckets[l-1].start.Equal(start) {
		w.buckets[l-1].n += n
	} else {
		w.buckets = append(w.buckets, windowBucket{start: start, n: n})
	}
	w.total += n
}

// sum returns the events within the span ending at now.
func (w *window) sum(now time.Time) int64 {
	w.evict(now)
	return w.total
}

func (w *window) reset() {
	w.buckets = nil
	w.total = 0
}

// Record is one stored sObject record or published platform event.
type Record struct {
	ID     string         `json:"id"`
	Object string         `json:"object"`
	Fields map[string]any `json:"fields"`
	// Created is when the record was created (or the event published).
	Created time.Time `json:"created"`
	// Updated is the last update, zero if never updated.
	Updated time.Time `json:"updated,omitzero"`
	// Updates counts updates after creation.
	Updates int `json:"updates"`
}

func (r *Record) clone() Record {
	c := *r
	c.Fields = maps.Clone(r.Fields)
	return c
}

// ObjectStats counts writes to one object since the last Reset.
type ObjectStats struct {
	Created int `json:"created"`
	Updated int `json:"updated"`
}

// Call is what the fake saw of one HTTP request.
type Call struct {
	Time     time.Time     `json:"time"`
	Duration time.Duration `json:"duration"`
	Method   string        `json:"method"`
	Host     string        `json:"host"`
	Path     string        `json:"path"`
	// EscapedPath is the path as routed: escaped, dot segments resolved.
	EscapedPath string `json:"escaped_path"`
	Status      int    `json:"status"`
	// ErrorCode is the first error code of the response, if any.
	ErrorCode string `json:"error_code,omitempty"`
	// APICall is true when the call counted against the daily allocation.
	APICall bool `json:"api_call"`
	// Records is the number of records in the request body.
	Records int `json:"records"`
	// NotificationIDs are the values of the notification id field seen in
	// the request's records, in order.
	NotificationIDs []string `json:"notification_ids,omitempty"`
}

// idxKey addresses the records of an object whose field has a value.
type idxKey struct{ object, field, value string }

// store holds records and published events. It is guarded by Server.mu.
type store struct {
	seq     int64
	records map[string][]*Record // object -> records, in creation order
	index   map[idxKey][]*Record
	indexed map[[2]string]bool // (object, field) pairs kept in index
	stats   map[string]*ObjectStats
}

func newStore() *store {
	return &store{
		records: make(map[string][]*Record),
		index:   make(map[idxKey][]*Record),
		indexed: make(map[[2]string]bool),
		stats:   make(map[string]*ObjectStats),
	}
}

// keyString renders a field value the way an external id in a URL reads.
func keyString(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return v, true
	default:
		return fmt.Sprint(v), true
	}
}

func (s *store) stat(object string) *ObjectStats {
	st := s.stats[object]
	if st == nil {
		st = &ObjectStats{}
		s.stats[object] = st
	}
	return st
}

// newID returns an 18-character Salesforce-looking id.
func (s *store) newID(object string) string {
	s.seq++
	prefix := "a0B"
	if isEvent(object) {
		prefix = "e00"
	}
	return fmt.Sprintf("%s%012dAAA", prefix, s.seq)
}

// ensureIndex starts indexing (object, field) if it is not yet.
func (s *store) ensureIndex(object, field string) {
	k := [2]string{object, field}
	if s.indexed[k] {
		return
	}
	s.indexed[k] = true
	for _, r := range s.records[object] {
		if v, ok := keyString(r.Fields[field]); ok {
			ik := idxKey{object, field, v}
			s.index[ik] = append(s.index[ik], r)
		}
	}
}

// find returns the records of object whose field equals value.
func (s *store) find(object, field, value string) []*Record {
	s.ensureIndex(object, field)
	return s.index[idxKey{object, field, value}]
}

func (s *store) unindex(r *Record) {
	for f, v := range r.Fields {
		if !s.indexed[[2]string{r.Object, f}] {
			continue
		}
		ks, ok := keyString(v)
		if !ok {
			continue
		}
		ik := idxKey{r.Object, f, ks}
		list := s.index[ik]
		for i, x := range list {
			if x == r {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(s.index, ik)
		} else {
			s.index[ik] = list
		}
	}
}

func (s *store) reindex(r *Record) {
	for f, v := range r.Fields {
		if !s.indexed[[2]string{r.Object, f}] {
			continue
		}
		if ks, ok := keyString(v); ok {
			ik := idxKey{r.Object, f, ks}
			s.index[ik] = append(s.index[ik], r)
		}
	}
}

// insert creates a record without any checks (duplicates allowed, so tests
// can seed the "several matches" case).
func (s *store) insert(now time.Time, object string, fields map[string]any) *Record {
	r := &Record{ID: s.newID(object), Object: object, Fields: maps.Clone(fields), Created: now}
	if r.Fields == nil {
		r.Fields = map[string]any{}
	}
	s.records[object] = append(s.records[object], r)
	s.reindex(r)
	s.stat(object).Created++
	return r
}

// update merges fields into r.
func (s *store) update(now time.Time, r *Record, fields map[string]any) {
	s.unindex(r)
	maps.Copy(r.Fields, fields)
	s.reindex(r)
	r.Updated = now
	r.Updates++
	s.stat(r.Object).Updated++
}

func (s *store) list(object string) []Record {
	out := make([]Record, 0, len(s.records[object]))
	for _, r := range s.records[object] {
		out = append(out, r.clone())
	}
	return out
}
