// Package store holds all of fanout's MongoDB access: the READ model
// (domain) collection, the outbox, the relay lease and operator state.
//
// It is written for real MongoDB (a replica set, w:majority, read concern
// majority) and must also run on MongoDB-compatible servers with fewer
// features, FerretDB in particular: it uses no multi-document transaction,
// no change stream, no partial or TTL index, no arrayFilters, and never has
// two processes update one document concurrently. Every query that must be
// fast filters by _id.
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/fanout-dev/fanout/internal/redact"
)

// Options configures a Store.
type Options struct {
	URI      string
	Database string
	// Collection names.
	Domain, Outbox, Leases, Delivered, Control, Audit string
	// WriteConcern is "majority" or a node count.
	WriteConcern string
	Journal      bool
	// ReadConcern is "majority" or "local".
	ReadConcern string
	Timeout     time.Duration
	// VersionField is the domain documents' version field.
	VersionField string
	// DomainWrites is "auto", "bulk" or "parallel".
	DomainWrites string
	// IDReads is how small sets of ids are read and deleted: "in" (one
	// $in command, served by the _id index on MongoDB), "point" (concurrent
	// _id equality commands, the only filter FerretDB pushes down) or
	// "auto" (point on FerretDB, in elsewhere).
	IDReads string
	// Monitor, if set, observes every command (benchmarks count them).
	Monitor *event.CommandMonitor
	// AppName is reported to the server.
	AppName string
	// RetireGrace is how long a client replaced by Reconnect keeps
	// serving the commands already started on it before it is
	// disconnected; Timeout (the longest a command may take) when 0.
	RetireGrace time.Duration
}

// Store is a connection to the store. Its client can be replaced while it
// is in use (Reconnect, when the URI's credentials rotate): every method
// takes the current connection once, with cur, and uses it throughout.
type Store struct {
	conn atomic.Pointer[conn]
	// copts builds the client options of a URI (write and read concern,
	// timeouts, app name, monitor), the same for every reconnect.
	copts       func(uri string) *options.ClientOptions
	retireGrace time.Duration

	// swapMu serialises Reconnect and Close.
	swapMu sync.Mutex
	closed bool

	versionField string
	parallel     bool
	pointReads   bool
	ferret       bool
	// traceIndexed holds the trace collections (trace.go) whose index
	// this process has made sure of.
	traceIndexed sync.Map
}

// conn is one client and the handles of the store's database and
// collections on it. A file that adds a method to Store takes it once with
// s.cur() and uses its fields (hd.outbox, hd.db, ...).
type conn struct {
	client *mongo.Client
	db     *mongo.Database
	domain *mongo.Collection
	outbox *mongo.Collection
	// ready holds each projector instance's "ready up to" watermark
	// (outbox name + "_ready"; see AdvanceReady).
	ready     *mongo.Collection
	leases    *mongo.Collection
	delivered *mongo.Collection
	control   *mongo.Collection
	audit     *mongo.Collection
	parked    *mongo.Collection
	// uri is kept to redact its password from errors.
	uri string
}

// cur returns the connection in use now.
func (s *Store) cur() *conn { return s.conn.Load() }

// Open connects to the store and checks that it answers.
func Open(ctx context.Context, o Options) (*Store, error) {
	wc := writeconcern.Majority()
	if o.WriteConcern != "" && o.WriteConcern != "majority" {
		n, err := strconv.Atoi(o.WriteConcern)
		if err != nil {
			return nil, fmt.Errorf("store: write concern %q: %w", o.WriteConcern, err)
		}
		wc = &writeconcern.WriteConcern{W: n}
	}
	if o.Journal {
		j := true
		wc.Journal = &j
	}
	rc := readconcern.Majority()
	if o.ReadConcern == "local" {
		rc = readconcern.Local()
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.RetireGrace <= 0 {
		o.RetireGrace = o.Timeout
	}
	s := &Store{versionField: o.VersionField, retireGrace: o.RetireGrace}
	s.copts = func(uri string) *options.ClientOptions {
		copts := options.Client().ApplyURI(uri).
			SetWriteConcern(wc).
			SetReadConcern(rc).
			SetTimeout(o.Timeout).
			SetServerSelectionTimeout(o.Timeout)
		if o.AppName != "" {
			copts.SetAppName(o.AppName)
		}
		if o.Monitor != nil {
			copts.SetMonitor(o.Monitor)
		}
		return copts
	}
	if s.versionField == "" {
		s.versionField = "version"
	}
	c, info, err := s.connect(ctx, o, o.URI)
	if err != nil {
		return nil, err
	}
	s.conn.Store(c)
	_, s.ferret = info["ferretdb"]
	if !s.ferret {
		_, s.ferret = info["ferretdbVersion"]
	}
	switch o.DomainWrites {
	case "parallel":
		s.parallel = true
	case "bulk":
	default:
		s.parallel = s.ferret
	}
	switch o.IDReads {
	case "point":
		s.pointReads = true
	case "in":
	default:
		s.pointReads = s.ferret
	}
	return s, nil
}

// connect opens a client to uri with the handles of o's collections, and
// checks that the server answers (buildInfo, whose answer it returns).
func (s *Store) connect(ctx context.Context, o Options, uri string) (*conn, bson.M, error) {
	client, err := mongo.Connect(s.copts(uri))
	if err != nil {
		return nil, nil, fmt.Errorf("store: connect: %w", redactErr(err, uri))
	}
	c := &conn{client: client, db: client.Database(o.Database), uri: uri}
	name := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	c.domain = c.db.Collection(name(o.Domain, "quotes"))
	c.outbox = c.db.Collection(name(o.Outbox, "outbox"))
	c.ready = c.db.Collection(name(o.Outbox, "outbox") + "_ready")
	c.leases = c.db.Collection(name(o.Leases, "leases"))
	c.delivered = c.db.Collection(name(o.Delivered, "delivered"))
	c.control = c.db.Collection(name(o.Control, "control"))
	c.audit = c.db.Collection(name(o.Audit, "audit"))
	c.parked = c.db.Collection("parked")

	var info bson.M
	if err := c.db.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, nil, fmt.Errorf("store: buildInfo: %w", redactErr(err, uri))
	}
	return c, info, nil
}

// Reconnect replaces the store's client by one connected to uri (the
// same database and collections), once that one answers: the way a
// rotated password in mongo.uri_file takes effect with no restart.
// Commands already running on the old client finish on it: it is
// disconnected RetireGrace after the swap (at once when ctx ends), and
// Reconnect returns then. On error (uri unreachable or refused, the error
// says so without the URI's password) the old client keeps serving.
func (s *Store) Reconnect(ctx context.Context, uri string) error {
	s.swapMu.Lock()
	if s.closed {
		s.swapMu.Unlock()
		return errors.New("store: reconnect: the store is closed")
	}
	old := s.cur()
	c, _, err := s.connect(ctx, Options{
		Database: old.db.Name(), Domain: old.domain.Name(), Outbox: old.outbox.Name(), Leases: old.leases.Name(),
		Delivered: old.delivered.Name(), Control: old.control.Name(), Audit: old.audit.Name(),
	}, uri)
	if err != nil {
		s.swapMu.Unlock()
		return fmt.Errorf("store: reconnect (keeping the current connection): %w", err)
	}
	s.conn.Store(c)
	s.swapMu.Unlock()

	t := time.NewTimer(s.retireGrace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.retireGrace)
	defer cancel()
	if err := old.client.Disconnect(dctx); err != nil {
		return fmt.Errorf("store: reconnect: disconnect the replaced client: %w", redactErr(err, old.uri))
	}
	return nil
}

// Uses reports whether the store's current client was connected with uri
// (a caller that follows a URI file skips a reconnect to the same URI).
func (s *Store) Uses(uri string) bool { return s.cur().uri == uri }

// IsFerretDB reports whether the server identified itself as FerretDB.
func (s *Store) IsFerretDB() bool { return s.ferret }

// Close disconnects. A Reconnect after Close fails.
func (s *Store) Close(ctx context.Context) error {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	s.closed = true
	return s.cur().client.Disconnect(ctx)
}

// Ping checks that the store answers (readiness).
func (s *Store) Ping(ctx context.Context) error {
	return s.cur().client.Ping(ctx, nil)
}

// EnsureIndexes creates the secondary indexes fanout queries by. They are
// plain indexes: FerretDB lacks partial and TTL ones. Existing indexes are
// left alone (FerretDB 1.24 drops the connection when asked to create a
// compound index that already exists).
func (s *Store) EnsureIndexes(ctx context.Context) error {
	hd := s.cur()
	want := []struct {
		name string
		keys bson.D
	}{
		{"seq_1", bson.D{{Key: "seq", Value: 1}}},
		{"aggregate_id_1_version_1", bson.D{{Key: "aggregate_id", Value: 1}, {Key: "version", Value: 1}}},
	}
	specs, err := hd.outbox.Indexes().ListSpecifications(ctx)
	if err != nil {
		return fmt.Errorf("store: list outbox indexes: %w", err)
	}
	have := make(map[string]bool, len(specs))
	for _, sp := range specs {
		have[sp.Name] = true
	}
	var missing []mongo.IndexModel
	for _, w := range want {
		if !have[w.name] {
			missing = append(missing, mongo.IndexModel{Keys: w.keys, Options: options.Index().SetName(w.name)})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := hd.outbox.Indexes().CreateMany(ctx, missing); err != nil {
		return fmt.Errorf("store: create outbox indexes: %w", err)
	}
	return nil
}

// Drop removes every collection of the store (tests and dev resets).
func (s *Store) Drop(ctx context.Context) error {
	hd := s.cur()
	return hd.db.Drop(ctx)
}

// ReadModel names one projection's READ model: its collection and the
// version field of its documents. The zero value is the store's own
// (Options.Domain and Options.VersionField).
type ReadModel struct {
	Collection   string
	VersionField string
}

// domainOf returns rm's collection handle and version field.
func (s *Store) domainOf(hd *conn, rm ReadModel) (*mongo.Collection, string) {
	coll, vf := hd.domain, s.versionField
	if rm.Collection != "" && rm.Collection != hd.domain.Name() {
		coll = hd.db.Collection(rm.Collection)
	}
	if rm.VersionField != "" {
		vf = rm.VersionField
	}
	return coll, vf
}

// Versions returns the stored version of each aggregate id that has a
// domain document.
func (s *Store) Versions(ctx context.Context, ids []string) (map[string]int64, error) {
	return s.VersionsIn(ctx, ReadModel{}, ids)
}

// VersionsIn returns the stored version of each aggregate id that has a
// document in rm.
func (s *Store) VersionsIn(ctx context.Context, rm ReadModel, ids []string) (map[string]int64, error) {
	hd := s.cur()
	out := make(map[string]int64, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	coll, vf := s.domainOf(hd, rm)
	err := s.findByIDs(ctx, coll, ids, bson.D{{Key: vf, Value: 1}}, func(d bson.Raw) {
		id, _ := d.Lookup("_id").StringValueOK()
		out[id] = numberOf(d.Lookup(vf))
	})
	if err != nil {
		return nil, fmt.Errorf("store: read domain versions: %w", err)
	}
	return out, nil
}

func numberOf(v bson.RawValue) int64 {
	if n, ok := v.AsInt64OK(); ok {
		return n
	}
	if f, ok := v.DoubleOK(); ok {
		return int64(f)
	}
	return 0
}

// DomainWrite is one version-guarded change of a domain document.
type DomainWrite struct {
	ID      string
	Version int64
	// Set holds the fields to set; the version field is set by the store.
	Set bson.D
}

// ApplyDomain writes each change only if the stored version is below the
// change's version. A guarded upsert that finds a newer document fails with
// a duplicate-key error on its _id; that is the guard working, not an error.
func (s *Store) ApplyDomain(ctx context.Context, writes []DomainWrite) error {
	_, err := s.ApplyDomainGuardedIn(ctx, ReadModel{}, writes)
	return err
}

// ApplyDomainIn is ApplyDomain on rm.
func (s *Store) ApplyDomainIn(ctx context.Context, rm ReadModel, writes []DomainWrite) error {
	_, err := s.ApplyDomainGuardedIn(ctx, rm, writes)
	return err
}

// ApplyDomainGuarded is ApplyDomain, and returns the ids of the changes the
// guard refused: their document exists with a version at or above the
// change's, or with a version field that is missing or not a number (the
// guard's $lt matches neither, and the upsert meets the _id). Of those, the
// caller knows only that a document exists, not its version.
func (s *Store) ApplyDomainGuarded(ctx context.Context, writes []DomainWrite) ([]string, error) {
	return s.ApplyDomainGuardedIn(ctx, ReadModel{}, writes)
}

// ApplyDomainGuardedIn is ApplyDomainGuarded on rm.
func (s *Store) ApplyDomainGuardedIn(ctx context.Context, rm ReadModel, writes []DomainWrite) ([]string, error) {
	hd := s.cur()
	coll, vf := s.domainOf(hd, rm)
	refused, err := s.guardedUpsertsRefused(ctx, coll, len(writes), func(i int) (bson.D, bson.D) {
		return guard(vf, writes[i]), update(vf, writes[i])
	}, "write domain documents")
	if err != nil || len(refused) == 0 {
		return nil, err
	}
	ids := make([]string, len(refused))
	for i, r := range refused {
		ids[i] = writes[r].ID
	}
	return ids, nil
}

// guardedUpserts applies n version-guarded upserts: one unordered bulk
// write where bulk writes are fast (MongoDB), else or when the bulk write
// fails part way, one by one on a few goroutines. Every write is
// idempotent, so redoing the whole batch is safe.
func (s *Store) guardedUpserts(ctx context.Context, coll *mongo.Collection, n int, model func(i int) (filter, update bson.D), what string) error {
	_, err := s.guardedUpsertsRefused(ctx, coll, n, model, what)
	return err
}

// guardedUpsertsRefused is guardedUpserts, and returns the indexes of the
// writes the guard refused (a duplicate key on _id).
func (s *Store) guardedUpsertsRefused(ctx context.Context, coll *mongo.Collection, n int, model func(i int) (filter, update bson.D), what string) ([]int, error) {
	if n == 0 {
		return nil, nil
	}
	if !s.parallel {
		// FerretDB (domain_writes: bulk forced on it) holds a pooled
		// PostgreSQL connection per statement of a bulk write until the
		// write ends: 50 statements exhaust its pool for good.
		step := n
		if s.ferret {
			step = ferretBulkMax
		}
		var refused []int
		bulk := true
		for lo := 0; lo < n && bulk; lo += step {
			hi := min(n, lo+step)
			models := make([]mongo.WriteModel, 0, hi-lo)
			for i := lo; i < hi; i++ {
				f, u := model(i)
				models = append(models, mongo.NewUpdateOneModel().SetFilter(f).SetUpdate(u).SetUpsert(true))
			}
			res, err := coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
			if err == nil {
				continue
			}
			var bwe mongo.BulkWriteException
			if !errors.As(err, &bwe) {
				return nil, fmt.Errorf("store: %s: %w", what, err)
			}
			// Duplicates alone are the guard working, but only if the
			// server went on after them: FerretDB stops an unordered bulk
			// write at the first error, so check that the counts add up.
			if onlyDuplicates(err) && res != nil && res.MatchedCount+res.UpsertedCount+int64(len(bwe.WriteErrors)) >= int64(hi-lo) {
				for _, we := range bwe.WriteErrors {
					refused = append(refused, lo+we.Index)
				}
				continue
			}
			bulk = false // redo all one by one: every write is idempotent
		}
		if bulk {
			return refused, nil
		}
	}
	var (
		mu      sync.Mutex
		refused []int
	)
	err := upsertEach(ctx, n, func(ctx context.Context, i int) error {
		f, u := model(i)
		_, err := coll.UpdateOne(ctx, f, u, options.UpdateOne().SetUpsert(true))
		switch {
		case err == nil:
		case mongo.IsDuplicateKeyError(err):
			mu.Lock()
			refused = append(refused, i)
			mu.Unlock()
		default:
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return refused, nil
}

func guard(versionField string, w DomainWrite) bson.D {
	return bson.D{{Key: "_id", Value: w.ID}, {Key: versionField, Value: bson.D{{Key: "$lt", Value: w.Version}}}}
}

func update(versionField string, w DomainWrite) bson.D {
	set := make(bson.D, 0, len(w.Set)+1)
	for _, e := range w.Set {
		if e.Key != versionField && e.Key != "_id" {
			set = append(set, e)
		}
	}
	set = append(set, bson.E{Key: versionField, Value: w.Version})
	return bson.D{{Key: "$set", Value: set}}
}

// upsertEach runs write(i) for i in [0, n) on a few goroutines and returns
// the first error. It is the one-by-one path for servers whose bulkWrite
// is sequential or stops at the first error.
func upsertEach(ctx context.Context, n int, write func(ctx context.Context, i int) error) error {
	return forEachConcurrently(ctx, n, 8, write)
}

// forEachConcurrently runs do(i) for i in [0, n) on at most workers
// goroutines, all finished when it returns, and returns the first error.
func forEachConcurrently(ctx context.Context, n, workers int, do func(ctx context.Context, i int) error) error {
	ch := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				if err := do(ctx, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		select {
		case ch <- i:
		case <-ctx.Done():
			close(ch)
			wg.Wait()
			return ctx.Err()
		}
	}
	close(ch)
	wg.Wait()
	return firstErr
}

// Domain returns the domain document of id, nil if there is none.
func (s *Store) Domain(ctx context.Context, id string) (bson.M, error) {
	return s.DomainIn(ctx, ReadModel{}, id)
}

// DomainIn returns rm's document of id, nil if there is none.
func (s *Store) DomainIn(ctx context.Context, rm ReadModel, id string) (bson.M, error) {
	hd := s.cur()
	coll, _ := s.domainOf(hd, rm)
	var doc bson.M
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read domain document: %w", err)
	}
	return doc, nil
}

// AllDomain returns every domain document keyed by id (tests and tools;
// keep the collection small).
func (s *Store) AllDomain(ctx context.Context) (map[string]bson.M, error) {
	return s.AllDomainIn(ctx, ReadModel{})
}

// AllDomainIn returns every document of rm keyed by id (tests and tools).
func (s *Store) AllDomainIn(ctx context.Context, rm ReadModel) (map[string]bson.M, error) {
	hd := s.cur()
	coll, _ := s.domainOf(hd, rm)
	cur, err := coll.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("store: read domain documents: %w", err)
	}
	var docs []bson.M
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("store: read domain documents: %w", err)
	}
	out := make(map[string]bson.M, len(docs))
	for _, d := range docs {
		id, _ := d["_id"].(string)
		out[id] = d
	}
	return out, nil
}

func onlyDuplicates(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 {
			return false
		}
	}
	return true
}

// redactErr removes the URI's password (and any credential by its shape)
// from an error's message; errors.Is and As still see the cause.
func redactErr(err error, uri string) error {
	if err == nil {
		return err
	}
	msg := err.Error()
	red := redact.New(redact.URIPassword(uri)).String(msg)
	if red == msg {
		return err
	}
	return redactedError{msg: red, err: err}
}

// redactedError is an error whose message had credentials removed.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

// PutRawDomain replaces the domain document id with doc as given, version
// field included whatever its type (tests and tools: a READ document an
// operator or another writer left behind).
func (s *Store) PutRawDomain(ctx context.Context, id string, doc bson.D) error {
	hd := s.cur()
	if _, err := hd.domain.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, doc, options.Replace().SetUpsert(true)); err != nil {
		return fmt.Errorf("store: put domain document: %w", err)
	}
	return nil
}
