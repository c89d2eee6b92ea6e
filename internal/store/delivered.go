package store

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The delivered collection holds, per connector and key, the newest
// aggregate version a worker saw acknowledged and folded from the
// delivered log (deliveredlog.go): {_id: connector+"/"+key,
// connector, key, version}. Replays consult it to refuse a notification
// older than what the target already has. Only the workers of one
// connector write its documents, and the version guard makes concurrent or
// out-of-order writes harmless: a stored version never goes down.

// deliveredID is the _id of a delivered document.
func deliveredID(connector, key string) string {
	return connector + "/" + key
}

// RecordDelivered stores the versions (key -> version) delivered to
// connector, each only if it is newer than the stored one. A guarded
// upsert that finds a newer document fails with a duplicate-key error on
// its _id: that is the guard working, not an error.
func (s *Store) RecordDelivered(ctx context.Context, connector string, versions map[string]int64) error {
	hd := s.cur()
	if len(versions) == 0 {
		return nil
	}
	type write struct {
		key     string
		version int64
	}
	writes := make([]write, 0, len(versions))
	for k, v := range versions {
		writes = append(writes, write{k, v})
	}
	filter := func(w write) bson.D {
		return bson.D{{Key: "_id", Value: deliveredID(connector, w.key)}, {Key: "version", Value: bson.D{{Key: "$lt", Value: w.version}}}}
	}
	update := func(w write) bson.D {
		return bson.D{{Key: "$set", Value: bson.D{
			{Key: "connector", Value: connector}, {Key: "key", Value: w.key}, {Key: "version", Value: w.version},
		}}}
	}
	return s.guardedUpserts(ctx, hd.delivered, len(writes), func(i int) (bson.D, bson.D) {
		return filter(writes[i]), update(writes[i])
	}, "record delivered versions of "+connector)
}

// DeliveredVersions returns the newest version recorded as delivered to
// connector for each of keys that has one, from the delivered log and the
// per-key documents. The log is read first: a segment is dropped only
// after its versions are in the per-key documents, so a version is in
// one read or the other.
func (s *Store) DeliveredVersions(ctx context.Context, connector string, keys []string) (map[string]int64, error) {
	if len(keys) == 0 {
		return map[string]int64{}, nil
	}
	segs, err := s.DeliveredLog(ctx, connector)
	if err != nil {
		return nil, err
	}
	out, err := s.RecordedVersions(ctx, connector, keys)
	if err != nil {
		return nil, err
	}
	for _, seg := range segs {
		for _, k := range keys {
			if v, ok := seg.Versions[k]; ok && v > out[k] {
				out[k] = v
			}
		}
	}
	return out, nil
}

// RecordedVersions returns the version of each of keys in connector's
// per-key delivered documents, without the delivered log: for a caller
// that holds the log already (a worker's version fence reads the log
// first, then this).
func (s *Store) RecordedVersions(ctx context.Context, connector string, keys []string) (map[string]int64, error) {
	hd := s.cur()
	out := make(map[string]int64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = deliveredID(connector, k)
	}
	err := s.findByIDs(ctx, hd.delivered, ids, bson.D{{Key: "key", Value: 1}, {Key: "version", Value: 1}}, func(d bson.Raw) {
		key, _ := d.Lookup("key").StringValueOK()
		out[key] = numberOf(d.Lookup("version"))
	})
	if err != nil {
		return nil, fmt.Errorf("store: read delivered versions of %s: %w", connector, err)
	}
	return out, nil
}
