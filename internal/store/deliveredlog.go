package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The delivered log holds delivered versions not folded into the per-key
// delivered documents yet: one document per segment, each a packed list
// of (key, version) pairs written by one insert. A worker's flush appends
// segments instead of writing one guarded upsert per key: on FerretDB
// 1.24 an upsert costs about 1 ms of its CPU whatever the batching
// (1,100-1,200/s on this 2-core machine), so per-key writes could not keep
// up with a worker delivering 3,000 notifications/s, while a segment of
// 4,096 keys is one insert of about 7 ms (issue "Performance").
//
// The pairs are one binary value, not an array of subdocuments: FerretDB
// decodes every BSON value of every document it reads or writes, and a
// binary is one value (reading 30 segments of 2,200 keys took 74 ms packed
// against 670 ms as arrays).
//
// A worker later folds its segments into the per-key documents
// (RecordDelivered, where keys repeated across segments are written once)
// and drops them only then, so a delivered version is always in the log,
// in the per-key documents, or in both; DeliveredVersions reads both.

// deliveredLogSuffix names the log collection after the delivered one.
const deliveredLogSuffix = "_log"

// MaxSegmentBytes bounds the packed pairs of one segment, far below the
// 16 MiB document limit.
const MaxSegmentBytes = 4 << 20

// DeliveredSegment is one document of the delivered log.
type DeliveredSegment struct {
	// ID is unique per segment: Writer and a sequence number.
	ID        string
	Connector string
	// Writer names the worker run that wrote it; a segment left by a
	// writer that stopped before folding it is taken over by another.
	Writer string
	// At is when it was written.
	At       time.Time
	Versions map[string]int64
}

func (s *Store) deliveredLog(hd *conn) string { return hd.delivered.Name() + deliveredLogSuffix }

// packVersions encodes versions as (uvarint key length, key, varint
// version) pairs.
func packVersions(versions map[string]int64) []byte {
	n := 0
	for k := range versions {
		n += len(k) + 2*binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	for k, v := range versions {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendVarint(b, v)
	}
	return b
}

// unpackVersions decodes packVersions' encoding into into, keeping the
// higher version of a key seen twice.
func unpackVersions(b []byte, into map[string]int64) error {
	for len(b) > 0 {
		n, m := binary.Uvarint(b)
		if m <= 0 || uint64(len(b)-m) < n {
			return errors.New("truncated key")
		}
		k := string(b[m : m+int(n)])
		b = b[m+int(n):]
		v, m := binary.Varint(b)
		if m <= 0 {
			return errors.New("truncated version")
		}
		b = b[m:]
		if old, ok := into[k]; !ok || v > old {
			into[k] = v
		}
	}
	return nil
}

// AppendDelivered writes seg (ID, Connector, Writer and Versions; At is
// set here) to the delivered log as one insert. Its packed versions must
// fit in MaxSegmentBytes: the caller splits larger sets.
func (s *Store) AppendDelivered(ctx context.Context, seg DeliveredSegment) error {
	hd := s.cur()
	if len(seg.Versions) == 0 {
		return nil
	}
	if seg.ID == "" || seg.Connector == "" {
		return errors.New("store: append delivered versions: the segment has no ID or connector")
	}
	packed := packVersions(seg.Versions)
	if len(packed) > MaxSegmentBytes {
		return fmt.Errorf("store: append delivered versions of %s: segment %s packs to %d bytes, over %d: split it", seg.Connector, seg.ID, len(packed), MaxSegmentBytes)
	}
	_, err := hd.db.Collection(s.deliveredLog(hd)).InsertOne(ctx, bson.D{
		{Key: "_id", Value: seg.ID},
		{Key: "connector", Value: seg.Connector},
		{Key: "writer", Value: seg.Writer},
		{Key: "at", Value: time.Now().UTC()},
		{Key: "n", Value: len(seg.Versions)},
		{Key: "versions", Value: bson.Binary{Data: packed}},
	})
	if err != nil {
		return fmt.Errorf("store: append delivered versions of %s (segment %s, %d keys): %w", seg.Connector, seg.ID, len(seg.Versions), err)
	}
	return nil
}

// DeliveredLog returns connector's segments not folded yet, oldest first.
func (s *Store) DeliveredLog(ctx context.Context, connector string) ([]DeliveredSegment, error) {
	hd := s.cur()
	cur, err := hd.db.Collection(s.deliveredLog(hd)).Find(ctx, bson.D{{Key: "connector", Value: connector}},
		options.Find().SetBatchSize(64))
	if err != nil {
		return nil, fmt.Errorf("store: read the delivered log of %s: %w", connector, err)
	}
	defer cur.Close(ctx)
	var out []DeliveredSegment
	for cur.Next(ctx) {
		seg, err := decodeSegment(cur.Current)
		if err != nil {
			return nil, fmt.Errorf("store: read the delivered log of %s: %w", connector, err)
		}
		out = append(out, seg)
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("store: read the delivered log of %s: %w", connector, err)
	}
	slices.SortFunc(out, func(a, b DeliveredSegment) int { return a.At.Compare(b.At) })
	return out, nil
}

// DeliveredSegments returns the segments of the delivered log with the
// given IDs that are still there (another worker may have folded and
// dropped some), oldest first.
func (s *Store) DeliveredSegments(ctx context.Context, ids []string) ([]DeliveredSegment, error) {
	hd := s.cur()
	var out []DeliveredSegment
	var bad error
	proj := bson.D{{Key: "connector", Value: 1}, {Key: "writer", Value: 1}, {Key: "at", Value: 1}, {Key: "n", Value: 1}, {Key: "versions", Value: 1}}
	err := s.findByIDs(ctx, hd.db.Collection(s.deliveredLog(hd)), ids, proj, func(raw bson.Raw) {
		seg, err := decodeSegment(raw)
		if err != nil {
			bad = err
			return
		}
		out = append(out, seg)
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, fmt.Errorf("store: read %d segments of the delivered log: %w", len(ids), err)
	}
	slices.SortFunc(out, func(a, b DeliveredSegment) int { return a.At.Compare(b.At) })
	return out, nil
}

// decodeSegment decodes one document of the delivered log.
func decodeSegment(raw bson.Raw) (DeliveredSegment, error) {
	var d struct {
		ID        string      `bson:"_id"`
		Connector string      `bson:"connector"`
		Writer    string      `bson:"writer"`
		At        time.Time   `bson:"at"`
		N         int         `bson:"n"`
		Versions  bson.Binary `bson:"versions"`
	}
	if err := bson.Unmarshal(raw, &d); err != nil {
		return DeliveredSegment{}, fmt.Errorf("decode a segment: %w", err)
	}
	seg := DeliveredSegment{ID: d.ID, Connector: d.Connector, Writer: d.Writer, At: d.At, Versions: make(map[string]int64, min(d.N, 1<<16))}
	if err := unpackVersions(d.Versions.Data, seg.Versions); err != nil {
		return DeliveredSegment{}, fmt.Errorf("segment %s: %w", d.ID, err)
	}
	return seg, nil
}

// DropDelivered deletes segments of the delivered log by ID, once their
// versions are in the per-key documents (RecordDelivered).
func (s *Store) DropDelivered(ctx context.Context, ids []string) error {
	hd := s.cur()
	if err := s.deleteByIDs(ctx, hd.db.Collection(s.deliveredLog(hd)), ids); err != nil {
		return fmt.Errorf("store: drop %d segments of the delivered log: %w", len(ids), err)
	}
	return nil
}
