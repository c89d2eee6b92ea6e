package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Item is one notification inside a call to a target. With projections
// (Recorder.SetProjections) ID is projection/notification id and Key
// projection:aggregate id, the projection being the one the notification's
// body belongs to (its aggregate type), so that equal ids of two
// projections stay apart in the ledger.
type Item struct {
	ID      string
	Key     string
	Version int64
	// Projection is the notification's projection ("" without
	// projections); Misrouted, when set, says how the call's target (the
	// Logic Apps workflow, the Salesforce object), the projection the call
	// names (ce-fanoutprojection, Fanout_Projection__c) and the body's
	// aggregate type disagree.
	Projection string
	Misrouted  string
}

// RecorderProjection tells a Recorder how to recognise one projection's
// notifications: its aggregate type (the body's aggregate_type, and the
// prefix of its event types), the body field holding its aggregate id,
// its Logic Apps workflow (the callback URL's) and its Salesforce object
// and external id field.
type RecorderProjection struct {
	Name, AggregateType, IDField string
	Workflow                     string
	SFObject, SFExternalID       string
}

// Receipt is one notification as a target received it: the ledger's unit.
type Receipt struct {
	// Seq orders receipts of one target by arrival at the simulator.
	Seq int64
	Item
	// At is when the simulator got the call, Done when it had answered.
	At, Done time.Time
	// OK is true when the target accepted this notification.
	OK     bool
	Status int
	// Injected names a fault the driver injected: "timeout" (the client
	// gave up before the simulator saw the call) or "".
	Injected string
	// ReadModel is the READ model version of Key read right after the
	// call arrived, CheckLag after arrival; -1 when it could not be read
	// (store away, or checkers overloaded). Checked tells whether a
	// durability check was made at all.
	ReadModel int64
	CheckLag  time.Duration
	Checked   bool
	// CallerGone: the caller had given up (its timeout) before the
	// simulator answered; the target may still have done the work.
	CallerGone bool
}

// Faults are the failures the driver injects in front of a simulator, on
// top of the simulator's own (5xx by rate, outages, rejections).
type Faults struct {
	// ThrottleRate answers that share of calls 429 without passing them
	// on; half of them carry Retry-After: 1, half none.
	ThrottleRate float64
	// TimeoutRate holds that share of calls for Delay before passing them
	// on, so that the caller times out first while the target still
	// processes the call (a classic source of duplicates).
	TimeoutRate float64
	Delay       time.Duration
}

// Injected counts the faults the driver injected.
type Injected struct {
	Throttled, ThrottledRetryAfter, TimedOut int64
}

// VersionReader reads READ model versions for the durability check.
type VersionReader interface {
	Versions(ctx context.Context, keys []string) (map[string]int64, error)
}

// targetKind tells the recorder how to read a target's calls.
type targetKind int

const (
	kindLogicApps targetKind = iota + 1
	kindSalesforce
)

// Recorder sits in front of a simulator: it injects Faults, checks on
// arrival that each notification's READ model write is durable, and keeps
// a Receipt per notification per call. Only calls that carry
// notifications are faulted and recorded; token requests and control
// endpoints pass straight through.
type Recorder struct {
	// inflight counts notification calls received and not answered yet.
	inflight atomic.Int64
	// onCall, if set, runs once, on the next notification call, while
	// that call is in flight (OnNextCall).
	onCall atomic.Pointer[func()]
	target string
	kind   targetKind
	next   http.Handler
	check  VersionReader
	stop   chan struct{}
	cancel context.CancelFunc // ends the checkers' store reads
	once   sync.Once

	// jobs feeds the durability checkers; pending counts checks queued
	// or running; wg owns the checkers.
	jobs    chan checkJob
	pending atomic.Int64
	wg      sync.WaitGroup

	mu          sync.Mutex
	projections []RecorderProjection
	faults      Faults
	rng         *rand.Rand
	seq         int64
	receipts    []Receipt
	injected    Injected
	accepted    map[string]struct{}
	overloaded  int
	// durable is the highest READ model version read so far per key:
	// the READ model only grows, so a notification at or below it when it
	// arrives is proven durable without another read.
	durable map[string]int64
}

// checkers is the number of goroutines reading the READ model for the
// durability check of one simulator.
const checkers = 16

// NewRecorder wraps next, the simulator of target ("logic_apps" or
// "salesforce"). check may be nil (no durability check).
func NewRecorder(target string, next http.Handler, check VersionReader, seed uint64) *Recorder {
	k := kindLogicApps
	if target == RouteSalesforce {
		k = kindSalesforce
	}
	r := &Recorder{target: target, kind: k, next: next, check: check, stop: make(chan struct{}),
		rng: rand.New(rand.NewPCG(seed, seed^0x5bd1e995)), accepted: map[string]struct{}{}, jobs: make(chan checkJob, 20000),
		durable: map[string]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	if check != nil {
		for range checkers {
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.checker(ctx) }()
		}
	}
	return r
}

// SetProjections makes the recorder tell projections apart (see Item);
// call it before the first notification arrives.
func (r *Recorder) SetProjections(ps []RecorderProjection) {
	r.mu.Lock()
	r.projections = append([]RecorderProjection(nil), ps...)
	r.mu.Unlock()
}

// SetFaults changes the injected faults.
func (r *Recorder) SetFaults(f Faults) {
	r.mu.Lock()
	r.faults = f
	r.mu.Unlock()
}

// Close cuts injected delays short, so that a simulator can shut down, and
// stops the durability checkers (checks still queued are dropped).
func (r *Recorder) Close() {
	r.once.Do(func() { close(r.stop); r.cancel() })
	r.wg.Wait()
}

// Receipts returns a copy of the receipts, in arrival order.
func (r *Recorder) Receipts() []Receipt {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Receipt, len(r.receipts))
	copy(out, r.receipts)
	return out
}

// Accepted returns how many distinct notifications the target accepted,
// cheaply enough to poll.
func (r *Recorder) Accepted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.accepted)
}

// HasAccepted reports whether the target accepted notification id.
func (r *Recorder) HasAccepted(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.accepted[id]
	return ok
}

// Injected returns the injection counts.
func (r *Recorder) Injected() Injected {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.injected
}

// ServeHTTP implements http.Handler.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if strings.HasPrefix(req.URL.Path, "/_sim/") || strings.HasPrefix(req.URL.Path, "/tokens/") ||
		req.URL.Path == "/services/oauth2/token" || req.Method == http.MethodGet {
		r.next.ServeHTTP(w, req)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<20))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	projections := r.projections
	r.mu.Unlock()
	var items []Item
	if len(projections) > 0 {
		items = r.parseProjected(req, body, projections)
	} else {
		items = r.parse(req, body)
	}
	if len(items) == 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		r.next.ServeHTTP(w, req)
		return
	}
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	if f := r.onCall.Swap(nil); f != nil {
		(*f)()
	}

	r.mu.Lock()
	f := r.faults
	roll := r.rng.Float64()
	half := r.rng.IntN(2) == 0
	r.mu.Unlock()
	switch {
	case roll < f.ThrottleRate:
		r.mu.Lock()
		if half {
			r.injected.ThrottledRetryAfter++
		} else {
			r.injected.Throttled++
		}
		r.mu.Unlock()
		if half {
			w.Header().Set("Retry-After", "1")
		}
		r.throttle(w)
		return
	case roll < f.ThrottleRate+f.TimeoutRate:
		r.mu.Lock()
		r.injected.TimedOut++
		r.mu.Unlock()
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.stop:
			return
		}
		// The caller is gone: the target still does the work.
		req = req.WithContext(context.WithoutCancel(req.Context()))
		cw := &captureWriter{header: http.Header{}, discard: true}
		r.forward(cw, req, body, items, "timeout")
		return
	}
	cw := &captureWriter{header: w.Header(), w: w}
	r.forward(cw, req, body, items, "")
}

// forward records the call's arrival, queues its durability check,
// passes it to the simulator and completes the receipts with the answer.
// The check does not hold the call: a blocking check would add its own
// latency to every call (and, with a slow store, push callers past their
// timeouts), while reading the READ model after the arrival is all any
// check can do anyway.
func (r *Recorder) forward(cw *captureWriter, req *http.Request, body []byte, items []Item, injected string) {
	at := time.Now()
	r.mu.Lock()
	r.seq++
	seq := r.seq
	first := len(r.receipts)
	var unproven []int // indexes into items
	for i, it := range items {
		rc := Receipt{Seq: seq, Item: it, At: at, Injected: injected, ReadModel: -1}
		if v, ok := r.durable[it.Key]; ok && r.check != nil && v >= it.Version {
			rc.Checked, rc.ReadModel = true, v // read before this arrival
		} else {
			unproven = append(unproven, i)
		}
		r.receipts = append(r.receipts, rc)
	}
	r.mu.Unlock()
	if len(unproven) > 0 {
		r.enqueueCheck(items, first, unproven, at)
	}

	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	r.next.ServeHTTP(cw, req)
	done := time.Now()
	gone := req.Context().Err() != nil
	ok := r.results(cw.status(), cw.buf.Bytes(), len(items))
	r.mu.Lock()
	for i := range items {
		rc := &r.receipts[first+i]
		rc.Done, rc.OK, rc.Status, rc.CallerGone = done, ok[i], cw.status(), gone
		if rc.OK {
			r.accepted[rc.ID] = struct{}{}
		}
	}
	r.mu.Unlock()
}

// checkJob is the durability check of one call's notifications.
type checkJob struct {
	items []Item
	first int   // index of the call's first receipt
	which []int // the items to check
	at    time.Time
}

// enqueueCheck hands a call to the checkers; when they are too far behind
// the call is marked checked but unverified instead of waiting.
func (r *Recorder) enqueueCheck(items []Item, first int, which []int, at time.Time) {
	if r.check == nil {
		return
	}
	r.pending.Add(1)
	select {
	case r.jobs <- checkJob{items: items, first: first, which: which, at: at}:
	default:
		r.pending.Add(-1)
		r.mu.Lock()
		r.overloaded++
		for _, i := range which {
			r.receipts[first+i].Checked = true
		}
		r.mu.Unlock()
	}
}

// checker runs durability checks until ctx ends.
func (r *Recorder) checker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-r.jobs:
			r.runCheck(ctx, j)
			r.pending.Add(-1)
		}
	}
}

// runCheck reads the READ model versions of a call's keys, retrying a few
// times while the store is unreachable, and completes the receipts.
func (r *Recorder) runCheck(ctx context.Context, j checkJob) {
	keys := make([]string, 0, len(j.which))
	seen := map[string]bool{}
	for _, i := range j.which {
		if k := j.items[i].Key; !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	var (
		v     map[string]int64
		err   error
		start = time.Now()
	)
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start = time.Now()
		v, err = r.check.Versions(qctx, keys)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range j.which {
		rc := &r.receipts[j.first+i]
		rc.Checked, rc.CheckLag = true, start.Sub(j.at)
		if err == nil {
			rc.ReadModel = v[rc.Key]
		}
	}
	if err == nil {
		for k, ver := range v {
			r.durable[k] = max(r.durable[k], ver)
		}
	}
}

// Flush waits until every queued durability check has run, or timeout.
func (r *Recorder) Flush(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for r.pending.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// Overloaded counts calls whose check was skipped because the checkers
// were too far behind.
func (r *Recorder) Overloaded() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.overloaded
}

// throttle answers 429 the way the target does.
func (r *Recorder) throttle(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusTooManyRequests)
	if r.kind == kindSalesforce {
		_, _ = io.WriteString(w, `[{"message":"Too many requests (injected by fanout-bench)","errorCode":"TOO_MANY_REQUESTS"}]`)
		return
	}
	_, _ = io.WriteString(w, `{"error":{"code":"WorkflowRequestsThrottled","message":"Rate limit is exceeded (injected by fanout-bench)."}}`)
}

// parse extracts the notifications of a call.
func (r *Recorder) parse(req *http.Request, body []byte) []Item {
	switch r.kind {
	case kindLogicApps:
		var n struct {
			ID      string `json:"id"`
			Key     string `json:"quote_id"`
			Version int64  `json:"version"`
		}
		if json.Unmarshal(body, &n) != nil || n.ID == "" {
			return nil
		}
		return []Item{{ID: n.ID, Key: n.Key, Version: n.Version}}
	case kindSalesforce:
		if strings.Contains(req.URL.Path, "/composite/sobjects/") {
			var c struct {
				Records []map[string]any `json:"records"`
			}
			if json.Unmarshal(body, &c) != nil {
				return nil
			}
			out := make([]Item, 0, len(c.Records))
			for _, rec := range c.Records {
				out = append(out, sfItem(rec, fmt.Sprint(rec["Quote_Ext_Id__c"])))
			}
			return out
		}
		if i := strings.Index(req.URL.Path, "/sobjects/Quote__c/Quote_Ext_Id__c/"); i >= 0 {
			key, _ := url.PathUnescape(req.URL.Path[i+len("/sobjects/Quote__c/Quote_Ext_Id__c/"):])
			var rec map[string]any
			if json.Unmarshal(body, &rec) != nil {
				return nil
			}
			return []Item{sfItem(rec, key)}
		}
	}
	return nil
}

// parseProjected extracts the notifications of a call when the target
// serves several projections, qualifying ids and keys by projection and
// checking that the call reached the target of its projection.
func (r *Recorder) parseProjected(req *http.Request, body []byte, ps []RecorderProjection) []Item {
	byType := func(typ string) *RecorderProjection {
		for i := range ps {
			if ps[i].AggregateType == typ {
				return &ps[i]
			}
		}
		return nil
	}
	// item qualifies a notification found at target (the projection the
	// URL or object belongs to), naming claimed, of aggregate type typ.
	item := func(id, key string, version int64, target, claimed string, body *RecorderProjection) Item {
		it := Item{Version: version, Projection: target}
		if body != nil {
			it.Projection = body.Name
		}
		it.ID, it.Key = it.Projection+"/"+id, it.Projection+":"+key
		bodyName := "an unknown aggregate type"
		if body != nil {
			bodyName = body.Name
		}
		if target != it.Projection || claimed != it.Projection {
			it.Misrouted = fmt.Sprintf("a notification of %s reached the target of %q naming projection %q", bodyName, target, claimed)
		}
		return it
	}
	// Split the escaped path: an external id may hold a slash.
	segs := strings.Split(strings.Trim(req.URL.EscapedPath(), "/"), "/")
	switch r.kind {
	case kindLogicApps:
		var n map[string]any
		if json.Unmarshal(body, &n) != nil {
			return nil
		}
		id, _ := n["id"].(string)
		if id == "" {
			return nil
		}
		target := ""
		if len(segs) >= 2 && (segs[0] == "workflows" || segs[0] == "api") {
			for _, p := range ps {
				if strings.EqualFold(p.Workflow, segs[1]) {
					target = p.Name
				}
			}
		}
		typ, _ := n["aggregate_type"].(string)
		bp := byType(typ)
		key := ""
		if bp != nil {
			key, _ = n[bp.IDField].(string)
		}
		v, _ := strconv.ParseInt(fmt.Sprint(n["version"]), 10, 64)
		return []Item{item(id, key, v, target, req.Header.Get("ce-fanoutprojection"), bp)}
	case kindSalesforce:
		// .../sobjects/{object}/{field}/{value} or
		// .../composite/sobjects/{object}/{field}
		var object, field, value string
		for i, s := range segs {
			if s != "sobjects" {
				continue
			}
			rest := segs[i+1:]
			if len(rest) >= 2 {
				object, field = rest[0], rest[1]
			}
			if len(rest) >= 3 && i > 0 && segs[i-1] != "composite" {
				value, _ = url.PathUnescape(rest[2])
			}
			break
		}
		if object == "" {
			return nil
		}
		target := ""
		for _, p := range ps {
			if p.SFObject == object && p.SFExternalID == field {
				target = p.Name
			}
		}
		one := func(rec map[string]any, key string) Item {
			base := sfItem(rec, key)
			et, _ := rec["Event_Type__c"].(string)
			var bp *RecorderProjection
			for i := range ps {
				if strings.HasPrefix(et, ps[i].AggregateType+"_") {
					bp = &ps[i]
				}
			}
			claimed, _ := rec["Fanout_Projection__c"].(string)
			return item(base.ID, base.Key, base.Version, target, claimed, bp)
		}
		if value != "" {
			var rec map[string]any
			if json.Unmarshal(body, &rec) != nil {
				return nil
			}
			return []Item{one(rec, value)}
		}
		var c struct {
			Records []map[string]any `json:"records"`
		}
		if json.Unmarshal(body, &c) != nil {
			return nil
		}
		out := make([]Item, 0, len(c.Records))
		for _, rec := range c.Records {
			out = append(out, one(rec, fmt.Sprint(rec[field])))
		}
		return out
	}
	return nil
}

func sfItem(rec map[string]any, key string) Item {
	id, _ := rec["Fanout_Notification_Id__c"].(string)
	v, _ := strconv.ParseInt(fmt.Sprint(rec["Fanout_Version__c"]), 10, 64)
	return Item{ID: id, Key: key, Version: v}
}

// results tells, per notification of a call, whether the target accepted
// it.
func (r *Recorder) results(status int, body []byte, n int) []bool {
	out := make([]bool, n)
	if status < 200 || status >= 300 {
		return out
	}
	if r.kind == kindSalesforce && n > 0 && len(bytes.TrimSpace(body)) > 0 && bytes.TrimSpace(body)[0] == '[' {
		var res []struct {
			Success bool `json:"success"`
		}
		if json.Unmarshal(body, &res) == nil && len(res) == n {
			for i := range res {
				out[i] = res[i].Success
			}
			return out
		}
	}
	for i := range out {
		out[i] = true
	}
	return out
}

// captureWriter records the status and body of an answer while (unless
// discard) passing it on.
type captureWriter struct {
	header  http.Header
	w       http.ResponseWriter
	discard bool
	code    int
	buf     bytes.Buffer
}

// Header implements http.ResponseWriter.
func (c *captureWriter) Header() http.Header { return c.header }

// WriteHeader implements http.ResponseWriter; only the first call counts.
func (c *captureWriter) WriteHeader(code int) {
	if c.code != 0 {
		return
	}
	c.code = code
	if !c.discard {
		c.w.WriteHeader(code)
	}
}

// Write implements http.ResponseWriter, keeping up to 1 MiB of the body
// for the per-record results of a Salesforce Collections answer.
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if c.buf.Len() < 1<<20 {
		c.buf.Write(b)
	}
	if c.discard {
		return len(b), nil
	}
	n, err := c.w.Write(b)
	if err != nil {
		return n, fmt.Errorf("write answer: %w", err)
	}
	return n, nil
}

// status is the answer's status, 0 when the simulator wrote nothing (it
// gave up on a caller that went away).
func (c *captureWriter) status() int { return c.code }

// InFlight returns the notification calls received and not answered yet.
func (r *Recorder) InFlight() int64 { return r.inflight.Load() }

// OnNextCall runs f once, when the next notification call arrives, before
// it is passed on: the caller then has that call in flight.
func (r *Recorder) OnNextCall(f func()) { r.onCall.Store(&f) }
