package salesforce

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/transport"
)

// item is one notification of a batch with its mapping and record fields.
type item struct {
	i      int
	n      *notification
	m      *mapping
	fields map[string]any
}

// orderKey is the key whose order the delivery layer keeps: the aggregate
// id within its projection (equal ids of two projections are two keys).
func orderKey(n *notification) string { return n.Projection + "\x00" + n.Key }

// DeliverBatch delivers ns in as few calls as it can and returns one result
// per notification.
//
// In upsert mode it sends sObject Collections upserts (PATCH
// /composite/sobjects/{object}/{extField}, allOrNone false) of at most
// max_records records. One call takes one object and external id field,
// so the batch is first split by the projections' mappings, keeping the
// order of each key (a key's notifications all have one mapping); each
// part is sent in turn. A call never holds one external id twice
// (Salesforce refuses duplicate external ids in one request), so a key
// seen again starts a new chunk, sent after the first. Per-record
// failures fail only their notification. A failure of a whole call (401
// after re-authentication, 403 limits, 5xx, network, 400 for the request
// as a whole) applies to every notification of that call, and a
// retryable one also to the chunks not yet sent, which are then not sent.
// A notification whose key failed retryably earlier in the batch is not
// sent either, so that an older version can never land after a newer one.
//
// In platform_event mode it publishes through sObject Collections create
// (POST /composite/sobjects), one call per event type, when
// batch.platform_event_collections is set; otherwise it publishes one call
// per notification, in order (and MaxBatch is 1, so the delivery layer
// normally sends single notifications).
func (c *Connector) DeliverBatch(ctx context.Context, ns []*connectors.Notification) []error {
	out := make([]error, len(ns))
	if c.cfg.Mode == ModePlatformEvent && !c.cfg.Batch.PlatformEventCollections {
		c.deliverEach(ctx, ns, out)
		return out
	}
	var groups [][]item
	groupOf := make(map[string]int)
	for i, n := range ns {
		m := c.mappingFor(n)
		fields, err := buildFields(m, n)
		if err != nil {
			out[i] = err
			continue
		}
		if c.cfg.Mode == ModeUpsert && n.Key == "" {
			out[i] = noKey(m, n)
			continue
		}
		g, ok := groupOf[m.batchGroup()]
		if !ok {
			g = len(groups)
			groupOf[m.batchGroup()] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], item{i: i, n: n, m: m, fields: fields})
	}

	failedKeys := make(map[string]bool)
	var abort *connectors.Error
	for _, group := range groups {
		for _, chunk := range c.chunks(group) {
			send := chunk[:0:0]
			for _, it := range chunk {
				switch {
				case abort != nil:
					out[it.i] = notSent(abort, "an earlier call of this batch failed")
				case ctx.Err() != nil:
					out[it.i] = &connectors.Error{Class: connectors.Retryable, Message: "not sent", Err: ctx.Err()}
				case c.cfg.Mode == ModeUpsert && failedKeys[orderKey(it.n)]:
					out[it.i] = &connectors.Error{Class: connectors.Retryable, Message: "not sent: an earlier notification for the same key in this batch failed"}
				default:
					send = append(send, it)
				}
			}
			if len(send) == 0 {
				continue
			}
			whole := c.sendChunk(ctx, send, out)
			for _, it := range send {
				if connectors.Classify(out[it.i]) != connectors.Permanent && out[it.i] != nil {
					failedKeys[orderKey(it.n)] = true
				}
			}
			if affectsAll(whole) {
				abort = whole
			}
		}
	}
	return out
}

// affectsAll reports whether a failed call says nothing about its records
// but about the org or the connection (session, limits, outage), so that
// the rest of the batch would fail the same way.
func affectsAll(e *connectors.Error) bool {
	if e == nil {
		return false
	}
	return e.Class == connectors.Reauthenticate || e.Class == connectors.Halt || e.RetryAfter > 0 ||
		(e.Class == connectors.Retryable && (e.Status == 0 || e.Status >= 500))
}

// notSent derives the error of a notification skipped because of cause.
func notSent(cause *connectors.Error, why string) *connectors.Error {
	return &connectors.Error{Class: cause.Class, Status: cause.Status, Code: cause.Code, RetryAfter: cause.RetryAfter, Message: "not sent: " + why, Err: cause}
}

// deliverEach delivers one call per notification, keeping per-key order.
func (c *Connector) deliverEach(ctx context.Context, ns []*notification, out []error) {
	failedKeys := make(map[string]bool)
	for i, n := range ns {
		switch {
		case ctx.Err() != nil:
			out[i] = &connectors.Error{Class: connectors.Retryable, Message: "not sent", Err: ctx.Err()}
			continue
		case failedKeys[orderKey(n)]:
			out[i] = &connectors.Error{Class: connectors.Retryable, Message: "not sent: an earlier notification for the same key in this batch failed"}
			continue
		}
		out[i] = c.Deliver(ctx, n)
		if out[i] != nil && connectors.Classify(out[i]) != connectors.Permanent {
			failedKeys[orderKey(n)] = true
		}
	}
}

// chunks splits the items of one batch group (one object and external id
// field, or one event) into calls of at most max_records, never with one
// external id twice in a call, keeping the order of each key. Within a
// group the external id (the aggregate id) names the record, so equal ids
// of two projections mapped to one object are kept apart too.
func (c *Connector) chunks(items []item) [][]item {
	var out [][]item
	for len(items) > 0 {
		var cur, rest []item
		inChunk := make(map[string]bool)
		// deferred keys had an item pushed to a later chunk: their later
		// items must follow it.
		deferred := make(map[string]bool)
		for _, it := range items {
			k := it.n.Key
			dup := c.cfg.Mode == ModeUpsert && (inChunk[k] || deferred[k])
			if dup || len(cur) >= c.cfg.Batch.MaxRecords {
				rest = append(rest, it)
				deferred[k] = true
				continue
			}
			cur = append(cur, it)
			inChunk[k] = true
		}
		out = append(out, cur)
		items = rest
	}
	return out
}

// collectionRequest is the body of sObject Collections calls.
type collectionRequest struct {
	AllOrNone bool             `json:"allOrNone"`
	Records   []map[string]any `json:"records"`
}

// sendChunk sends one chunk, whose items share one batch group, and fills
// out for its items. It returns the error of the whole call, if the call
// as a whole failed.
func (c *Connector) sendChunk(ctx context.Context, chunk []item, out []error) *connectors.Error {
	m := chunk[0].m
	if len(chunk) == 1 && c.cfg.Mode == ModeUpsert {
		// One record: the single-record upsert costs the same one API call
		// and reports 300 for several matches.
		err := c.upsert(ctx, m, chunk[0].n, chunk[0].fields)
		if err == nil {
			return nil
		}
		out[chunk[0].i] = err
		ce, _ := err.(*connectors.Error)
		return ce
	}
	typ, method, path := m.event, http.MethodPost, c.dataPath("/composite/sobjects")
	if c.cfg.Mode == ModeUpsert {
		typ, method = m.object, http.MethodPatch
		path = c.dataPath("/composite/sobjects/" + transport.PathSegment(m.object) + "/" + transport.PathSegment(m.extField))
	}
	req := collectionRequest{Records: make([]map[string]any, len(chunk))}
	for j, it := range chunk {
		rec := make(map[string]any, len(it.fields)+2)
		for k, v := range it.fields {
			rec[k] = v
		}
		rec["attributes"] = map[string]string{"type": typ}
		if c.cfg.Mode == ModeUpsert {
			rec[m.extField] = it.n.Key
		}
		req.Records[j] = rec
	}
	setAll := func(e *connectors.Error) *connectors.Error {
		for _, it := range chunk {
			out[it.i] = e
		}
		return e
	}
	body, err := json.Marshal(req)
	if err != nil {
		return setAll(permanent("encode records: %v", err))
	}
	resp, cerr := c.call(ctx, method, path, body)
	if cerr != nil {
		return setAll(cerr)
	}
	what := method + " " + path
	if resp.status < 200 || resp.status >= 300 {
		return setAll(c.classifyResponse(what, resp.status, resp.body))
	}
	var results []recordResult
	if err := json.Unmarshal(resp.body, &results); err != nil || len(results) != len(chunk) {
		return setAll(&connectors.Error{
			Class: connectors.Retryable, Status: resp.status,
			Message: fmt.Sprintf("%s: unexpected response: want %d results, got %d (%v)", what, len(chunk), len(results), err),
		})
	}
	failed := 0
	for j, r := range results {
		if r.Success || (len(r.Errors) > 0 && onlyEnqueued(r.Errors)) {
			out[chunk[j].i] = nil
			continue
		}
		failed++
		out[chunk[j].i] = c.classifyRecord(resp.status, r.Errors)
	}
	if failed > 0 {
		c.log.Warn("salesforce: records failed in batch", "call", what, "records", len(chunk), "failed", failed)
	}
	return nil
}
