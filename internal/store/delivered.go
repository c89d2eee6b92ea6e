package store

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The delivered collection holds, per connector and key, the newest
// aggregate version a worker saw acknowledged. Replays and the workers'
// version fence consult it to refuse a notification older than what the
// target already has. Only the workers of one connector write its
// documents, and every write is a $max: a stored version never goes down,
// so concurrent or out-of-order writes are harmless.
//
// Keys are hashed into deliveredBuckets documents per connector,
// {_id: "#"+connector+"/"+bucket, connector, bucket, v: {field(key):
// version}}, so that a flush writes one document per bucket it touches, not
// one per key: on FerretDB a write costs about the same whatever its size,
// and one per key capped the flush near the store's ~1,100 guarded upserts
// a second on the test machine, below a worker's delivery rate (B3). The
// ids cannot meet the older per-key documents' {_id: connector+"/"+key,
// connector, key, version}: connector names start with a letter. Those are
// still read (a worker of an older version may write them during a rolling
// upgrade), never written.

// deliveredBuckets is the number of bucket documents per connector: a
// flush of n keys writes min(n, about deliveredBuckets) documents, and a
// bucket holds 1/deliveredBuckets of the connector's keys (a million keys
// make documents of about a thousand fields, 30 KB).
const deliveredBuckets = 1024

// deliveredID is the _id of an older per-key delivered document.
func deliveredID(connector, key string) string {
	return connector + "/" + key
}

// deliveredBucket is the bucket of key.
func deliveredBucket(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % deliveredBuckets)
}

// deliveredBucketID is the _id of a bucket document.
func deliveredBucketID(connector string, bucket int) string {
	return "#" + connector + "/" + strconv.Itoa(bucket)
}

// deliveredField is key's field in a bucket's v document: the key itself
// behind a "k" where it is a valid field name of an update path (no '.', no
// '$', no NUL), else "x" and its bytes in hex.
func deliveredField(key string) string {
	if strings.ContainsAny(key, ".$\x00") {
		return "x" + hex.EncodeToString([]byte(key))
	}
	return "k" + key
}

// RecordDelivered stores the versions (key -> version) delivered to
// connector, each only if it is newer than the stored one: one $max update
// per bucket touched (a bulk write on MongoDB, concurrent updates on
// FerretDB).
func (s *Store) RecordDelivered(ctx context.Context, connector string, versions map[string]int64) error {
	hd := s.cur()
	if len(versions) == 0 {
		return nil
	}
	byBucket := make(map[int]bson.D)
	for k, v := range versions {
		b := deliveredBucket(k)
		byBucket[b] = append(byBucket[b], bson.E{Key: "v." + deliveredField(k), Value: v})
	}
	buckets := make([]int, 0, len(byBucket))
	for b := range byBucket {
		buckets = append(buckets, b)
	}
	slices.Sort(buckets)
	return s.guardedUpserts(ctx, hd.delivered, len(buckets), func(i int) (bson.D, bson.D) {
		b := buckets[i]
		return bson.D{{Key: "_id", Value: deliveredBucketID(connector, b)}},
			bson.D{
				{Key: "$max", Value: byBucket[b]},
				{Key: "$setOnInsert", Value: bson.D{{Key: "connector", Value: connector}, {Key: "bucket", Value: b}}},
			}
	}, "record delivered versions of "+connector)
}

// DeliveredVersions returns the newest version recorded as delivered to
// connector for each of keys that has one: from the keys' bucket documents
// (only their fields are projected) and from older per-key documents.
func (s *Store) DeliveredVersions(ctx context.Context, connector string, keys []string) (map[string]int64, error) {
	out := make(map[string]int64, len(keys))
	// Where reads go by point (FerretDB), a chunk's ids stay under the
	// point-read bound: a $in scans the collection there, bucket documents
	// of thousands of fields included. On MongoDB a chunk bounds the
	// projection.
	chunk := 1000
	if s.pointReads {
		chunk = pointReadMax
	}
	for c := range slices.Chunk(keys, chunk) {
		if err := s.deliveredVersions(ctx, connector, c, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// deliveredVersions reads the versions of keys into out.
func (s *Store) deliveredVersions(ctx context.Context, connector string, keys []string, out map[string]int64) error {
	hd := s.cur()
	byBucket := make(map[string][]string)
	proj := make(bson.D, 0, len(keys))
	ids := make([]string, len(keys))
	for i, k := range keys {
		id := deliveredBucketID(connector, deliveredBucket(k))
		if _, ok := byBucket[id]; !ok {
			ids = append(ids, id) // after the per-key ids, read below
		}
		byBucket[id] = append(byBucket[id], k)
		proj = append(proj, bson.E{Key: "v." + deliveredField(k), Value: 1})
		ids[i] = deliveredID(connector, k)
	}
	// PostgreSQL's jsonb has no NUL: FerretDB refuses a filter with one
	// (and never stored such a per-key document).
	legacy := slices.DeleteFunc(slices.Clone(ids[:len(keys)]), func(id string) bool { return strings.ContainsRune(id, 0) })
	keep := func(k string, v int64) {
		if v > out[k] {
			out[k] = v
		}
	}
	err := s.findByIDs(ctx, hd.delivered, ids[len(keys):], proj, func(d bson.Raw) {
		id, _ := d.Lookup("_id").StringValueOK()
		v, ok := d.Lookup("v").DocumentOK()
		if !ok {
			return
		}
		for _, k := range byBucket[id] {
			if f, err := v.LookupErr(deliveredField(k)); err == nil {
				keep(k, numberOf(f))
			}
		}
	})
	if err != nil {
		return fmt.Errorf("store: read delivered versions of %s: %w", connector, err)
	}
	err = s.findByIDs(ctx, hd.delivered, legacy, bson.D{{Key: "key", Value: 1}, {Key: "version", Value: 1}}, func(d bson.Raw) {
		key, _ := d.Lookup("key").StringValueOK()
		keep(key, numberOf(d.Lookup("version")))
	})
	if err != nil {
		return fmt.Errorf("store: read older per-key delivered versions of %s: %w", connector, err)
	}
	return nil
}
