package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
)

// Filter selects dead letters; every set field must match.
type Filter struct {
	// Key is the record key (aggregate id), exact.
	Key string `json:"key,omitempty" bson:"key,omitempty"`
	// ErrorClass is the fanout_dlq_error_class: permanent, retryable,
	// reauthenticate, parked or invalid.
	ErrorClass string `json:"error_class,omitempty" bson:"error_class,omitempty"`
	// HTTPStatus is the last HTTP status (0: no response came).
	HTTPStatus *int `json:"http_status,omitempty" bson:"http_status,omitempty"`
	// Reason is text in the error or the error code, case-insensitive.
	Reason string `json:"reason,omitempty" bson:"reason,omitempty"`
	// Since and Until bound fanout_dlq_last_failure: Since <= t < Until.
	Since *time.Time `json:"since,omitempty" bson:"since,omitempty"`
	Until *time.Time `json:"until,omitempty" bson:"until,omitempty"`
}

// validate checks the filter's values.
func (f *Filter) validate() error {
	switch f.ErrorClass {
	case "", envelope.ClassPermanent, envelope.ClassRetryable, envelope.ClassReauthenticate, envelope.ClassParked, envelope.ClassInvalid:
	default:
		return fmt.Errorf("error_class %q is not one of permanent, retryable, reauthenticate, parked, invalid", f.ErrorClass)
	}
	if f.HTTPStatus != nil && (*f.HTTPStatus < 0 || *f.HTTPStatus > 999) {
		return fmt.Errorf("http_status %d is not an HTTP status", *f.HTTPStatus)
	}
	if f.Since != nil && f.Until != nil && !f.Since.Before(*f.Until) {
		return errors.New("since must be before until")
	}
	return nil
}

// filterFromQuery reads a Filter from query parameters.
func filterFromQuery(q url.Values) (Filter, error) {
	f := Filter{Key: q.Get("key"), ErrorClass: q.Get("error_class"), Reason: q.Get("reason")}
	if v := q.Get("http_status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return f, fmt.Errorf("http_status %q is not a number", v)
		}
		f.HTTPStatus = &n
	}
	for _, p := range []struct {
		name string
		dst  **time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, fmt.Errorf("%s %q is not an RFC 3339 time such as 2025-07-14T10:00:00Z", p.name, v)
			}
			*p.dst = &t
		}
	}
	return f, f.validate()
}

// matches reports whether the dead letter d passes the filter.
func (f *Filter) matches(d *deadLetterInfo) bool {
	switch {
	case f.Key != "" && d.Key != f.Key:
		return false
	case f.ErrorClass != "" && d.ErrorClass != f.ErrorClass:
		return false
	case f.HTTPStatus != nil && d.HTTPStatus != *f.HTTPStatus:
		return false
	case f.Reason != "" && !containsFold(d.Error, f.Reason) && !containsFold(d.ErrorCode, f.Reason):
		return false
	case f.Since != nil && d.LastFailure.Before(*f.Since):
		return false
	case f.Until != nil && !d.LastFailure.Before(*f.Until):
		return false
	}
	return true
}

// containsFold reports whether sub is in s, ignoring case.
func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// deadLetterInfo is what the admin API shows of a dead letter.
type deadLetterInfo struct {
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp time.Time `json:"timestamp"`
	Key       string    `json:"key"`
	// Projection names the notification's projection (fanout_projection):
	// Key is unique only within it.
	Projection   string    `json:"projection,omitempty"`
	ID           string    `json:"id"`
	Type         string    `json:"type,omitempty"`
	Version      int64     `json:"version"`
	ErrorClass   string    `json:"error_class"`
	Error        string    `json:"error"`
	HTTPStatus   int       `json:"http_status"`
	ErrorCode    string    `json:"error_code,omitempty"`
	Attempts     int       `json:"attempts"`
	FirstFailure time.Time `json:"first_failure,omitzero"`
	LastFailure  time.Time `json:"last_failure,omitzero"`
	// Source locates the record the worker gave up on.
	Source *recordRef `json:"source,omitempty"`
	// ReplayedFrom is set when this dead letter is a failed replay of an
	// earlier one.
	ReplayedFrom string `json:"replayed_from,omitempty"`
	// Replay is the marker of this dead letter's replay, if it was.
	Replay *store.ReplayMarker `json:"replay,omitempty"`
	// Headers and Payload (redacted) come with the single-record route.
	Headers     map[string]string `json:"headers,omitempty"`
	Payload     json.RawMessage   `json:"payload,omitempty"`
	PayloadText string            `json:"payload_text,omitempty"`

	rec *kgo.Record
}

// recordRef locates a record.
type recordRef struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// describe reads a dead letter's headers; with detail it adds the
// redacted headers and payload.
func describe(r *kgo.Record, detail bool) *deadLetterInfo {
	d := &deadLetterInfo{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC(), Key: string(r.Key), rec: r}
	m := envelope.ParseMeta(r)
	d.ID, d.Type, d.Version = m.ID, m.Type, m.Version
	var src recordRef
	hasSrc := false
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case envelope.HeaderDLQErrorClass:
			d.ErrorClass = v
		case envelope.HeaderDLQError:
			d.Error = redactText(v)
		case envelope.HeaderDLQHTTPStatus:
			d.HTTPStatus, _ = strconv.Atoi(v)
		case envelope.HeaderDLQErrorCode:
			d.ErrorCode = v
		case envelope.HeaderDLQAttempts:
			d.Attempts, _ = strconv.Atoi(v)
		case envelope.HeaderDLQFirstFailure:
			d.FirstFailure, _ = time.Parse(time.RFC3339Nano, v)
		case envelope.HeaderDLQLastFailure:
			d.LastFailure, _ = time.Parse(time.RFC3339Nano, v)
		case envelope.HeaderDLQSourceTopic:
			src.Topic, hasSrc = v, true
		case envelope.HeaderDLQSourcePartition:
			p, _ := strconv.Atoi(v)
			src.Partition = int32(p)
		case envelope.HeaderDLQSourceOffset:
			src.Offset, _ = strconv.ParseInt(v, 10, 64)
		case envelope.HeaderReplayedFrom:
			d.ReplayedFrom = v
		case envelope.HeaderProjection:
			d.Projection = v
		}
	}
	if hasSrc {
		d.Source = &src
	}
	if detail {
		d.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			if secretName(h.Key) {
				d.Headers[h.Key] = Redacted
			} else {
				d.Headers[h.Key] = redactText(string(h.Value))
			}
		}
		if p, ok := redactJSON(r.Value); ok {
			d.Payload = p
		} else {
			text := string(r.Value)
			if len(text) > 64<<10 {
				text = text[:64<<10]
			}
			d.PayloadText = redactText(text)
		}
	}
	return d
}

// cursor is a position in a dead-letter topic: the next offset to read
// per partition. Its text form is "partition:offset,..." sorted.
type cursor map[int32]int64

func (c cursor) String() string {
	parts := make([]int32, 0, len(c))
	for p := range c {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(c[p], 10))
	}
	return b.String()
}

func parseCursor(s string) (cursor, error) {
	c := cursor{}
	if s == "" {
		return c, nil
	}
	for _, part := range strings.Split(s, ",") {
		ps, os, ok := strings.Cut(part, ":")
		p, err1 := strconv.Atoi(ps)
		o, err2 := strconv.ParseInt(os, 10, 64)
		if !ok || err1 != nil || err2 != nil || p < 0 || o < 0 {
			return nil, fmt.Errorf("cursor %q: want partition:offset,... as next_cursor gave it", s)
		}
		c[int32(p)] = o
	}
	return c, nil
}

// scanResult is where a scan stopped.
type scanResult struct {
	next cursor
	// done is true when every partition was read to the end offset it
	// had when the scan began.
	done    bool
	scanned int
}

// scan reads topic from the cursor (partitions not in it from their start,
// or from the first record written at or after since) up to the end
// offsets the partitions have when it begins, calling visit for each
// record. visit returns false to stop before the record counts as read.
// A scan stops after maxScan records or at ctx's end, and the result's
// cursor then resumes it.
func (s *Server) scan(ctx context.Context, topic string, from cursor, since *time.Time, maxScan int, visit func(*kgo.Record) bool) (scanResult, error) {
	res := scanResult{next: cursor{}}
	starts, err := s.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return res, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := s.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return res, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	var after kadm.ListedOffsets
	if since != nil {
		// A dead letter is written after its last failure, so no record
		// written before since can match.
		after, _ = s.adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	}
	begin := map[int32]kgo.Offset{}
	end := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Topic != topic {
			return
		}
		st := int64(0)
		if so, ok := starts.Lookup(topic, o.Partition); ok && so.Err == nil {
			st = so.Offset
		}
		at := st
		if c, ok := from[o.Partition]; ok {
			at = max(c, st)
		}
		if a, ok := after.Lookup(topic, o.Partition); ok && a.Err == nil && a.Offset >= 0 {
			at = max(at, a.Offset)
		}
		at = min(at, o.Offset)
		res.next[o.Partition] = at
		if at < o.Offset {
			begin[o.Partition] = kgo.NewOffset().At(at)
			end[o.Partition] = o.Offset
		}
	})
	if len(begin) == 0 {
		res.done = true
		return res, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), s.kopts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: begin}),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return res, fmt.Errorf("create kafka client: %w", err)
	}
	defer cl.Close()
	remaining := len(end)
	for remaining > 0 {
		if ctx.Err() != nil {
			return res, nil
		}
		fs := cl.PollRecords(ctx, 500)
		if err := fetchErr(fs); err != nil && ctx.Err() == nil {
			return res, fmt.Errorf("read %s: %w", topic, err)
		}
		stop := false
		fs.EachRecord(func(r *kgo.Record) {
			if stop {
				return
			}
			e, ok := end[r.Partition]
			if !ok || r.Offset < res.next[r.Partition] {
				return // partition done, or a record already read
			}
			if r.Offset >= e {
				return // written after the scan began
			}
			if res.scanned >= maxScan || !visit(r) {
				stop = true
				return
			}
			res.scanned++
			res.next[r.Partition] = r.Offset + 1
			if r.Offset+1 >= e {
				delete(end, r.Partition)
				remaining--
			}
		})
		if stop {
			return res, nil
		}
	}
	res.done = true
	return res, nil
}

// fetchErr returns the first fetch error that is not the context's.
func fetchErr(fs kgo.Fetches) error {
	var first error
	fs.EachError(func(_ string, _ int32, err error) {
		if first == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			first = err
		}
	})
	return first
}

// fetch reads the records at the given offsets of topic, by partition.
// Offsets with no record (before the start, past the end, removed) are
// missing from the answer.
func (s *Server) fetch(ctx context.Context, topic string, want map[int32][]int64) (map[store.PartitionOffset]*kgo.Record, error) {
	out := map[store.PartitionOffset]*kgo.Record{}
	starts, err := s.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := s.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	begin := map[int32]kgo.Offset{}
	last := map[int32]int64{}
	wanted := map[store.PartitionOffset]bool{}
	for p, offs := range want {
		so, ok1 := starts.Lookup(topic, p)
		eo, ok2 := ends.Lookup(topic, p)
		if !ok1 || !ok2 || so.Err != nil || eo.Err != nil {
			continue
		}
		lo, hi := int64(-1), int64(-1)
		for _, o := range offs {
			if o < so.Offset || o >= eo.Offset {
				continue
			}
			wanted[store.PartitionOffset{Partition: p, Offset: o}] = true
			if lo < 0 || o < lo {
				lo = o
			}
			hi = max(hi, o)
		}
		if lo >= 0 {
			begin[p] = kgo.NewOffset().At(lo)
			last[p] = hi
		}
	}
	if len(begin) == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), s.kopts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: begin}),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, fmt.Errorf("create kafka client: %w", err)
	}
	defer cl.Close()
	for len(last) > 0 {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		fs := cl.PollRecords(ctx, 500)
		if err := fetchErr(fs); err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			hi, ok := last[r.Partition]
			if !ok {
				return
			}
			po := store.PartitionOffset{Partition: r.Partition, Offset: r.Offset}
			if wanted[po] {
				out[po] = r
			}
			if r.Offset >= hi {
				delete(last, r.Partition)
			}
		})
	}
	return out, nil
}

// deadLetterPage is the answer of GET .../dead-letters.
type deadLetterPage struct {
	Topic       string            `json:"topic"`
	Items       []*deadLetterInfo `json:"items"`
	NextCursor  string            `json:"next_cursor"`
	More        bool              `json:"more"`
	Scanned     int               `json:"scanned"`
	ReplayTopic string            `json:"retry_topic"`
}

// listDeadLetters answers GET /v1/connectors/{name}/dead-letters.
func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	name, ok := s.connectorOr404(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	f, err := filterFromQuery(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		if limit, err = parsePositive(v, 500); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "limit: "+err.Error())
			return
		}
	}
	from, err := parseCursor(q.Get("cursor"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	topic := s.cfg.DLQTopic(name)
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	page := deadLetterPage{Topic: topic, Items: []*deadLetterInfo{}, ReplayTopic: s.cfg.RetryTopic(name)}
	res, err := s.scan(ctx, topic, from, f.Since, 100_000, func(rec *kgo.Record) bool {
		d := describe(rec, false)
		if !f.matches(d) {
			return true
		}
		if len(page.Items) >= limit {
			return false
		}
		page.Items = append(page.Items, d)
		return true
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "kafka_unavailable", "reading the dead letters failed: "+err.Error())
		return
	}
	sort.Slice(page.Items, func(i, j int) bool {
		a, b := page.Items[i], page.Items[j]
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		return a.Offset < b.Offset
	})
	if err := s.attachMarkers(ctx, name, page.Items); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return
	}
	page.NextCursor, page.More, page.Scanned = res.next.String(), !res.done, res.scanned
	writeJSON(w, http.StatusOK, page)
}

// attachMarkers sets the replay marker of the dead letters that were
// replayed.
func (s *Server) attachMarkers(ctx context.Context, connector string, items []*deadLetterInfo) error {
	pos := make([]store.PartitionOffset, len(items))
	for i, d := range items {
		pos[i] = store.PartitionOffset{Partition: d.Partition, Offset: d.Offset}
	}
	ms, err := s.st.ReplayMarkers(ctx, connector, pos)
	if err != nil {
		return fmt.Errorf("reading replay markers failed: %w", err)
	}
	for _, d := range items {
		if m, ok := ms[store.PartitionOffset{Partition: d.Partition, Offset: d.Offset}]; ok {
			d.Replay = &m
		}
	}
	return nil
}

// getDeadLetter answers GET /v1/connectors/{name}/dead-letters/{partition}/{offset}.
func (s *Server) getDeadLetter(w http.ResponseWriter, r *http.Request) {
	name, ok := s.connectorOr404(w, r)
	if !ok {
		return
	}
	p, err1 := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	o, err2 := strconv.ParseInt(r.PathValue("offset"), 10, 64)
	if err1 != nil || err2 != nil || p < 0 || o < 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "partition and offset must be non-negative integers")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	topic := s.cfg.DLQTopic(name)
	recs, err := s.fetch(ctx, topic, map[int32][]int64{int32(p): {o}})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "kafka_unavailable", "reading the dead letter failed: "+err.Error())
		return
	}
	rec := recs[store.PartitionOffset{Partition: int32(p), Offset: o}]
	if rec == nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s has no record at partition %d offset %d", topic, p, o))
		return
	}
	d := describe(rec, true)
	if err := s.attachMarkers(ctx, name, []*deadLetterInfo{d}); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, d)
}
