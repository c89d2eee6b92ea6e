package store

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// pointReadMax is the largest id set read or deleted by concurrent point
// commands rather than one $in command when point reads are on. Measured on
// FerretDB 1.24 over PostgreSQL (issue "Performance"): only a plain _id
// equality is pushed down, so a $in scans the whole collection whatever the
// number of ids, while point commands cost per id; above a few dozen ids the
// point commands' own overhead wins back, and unlimited point reads lost 40%
// of throughput.
const pointReadMax = 32

// pointWorkers bounds the point commands in flight for one call.
const pointWorkers = 8

// batchSize is a find's batch size for at most n documents: all of them in
// the first reply, within the int32 the protocol takes.
func batchSize(n int) int32 { return int32(min(max(n, 1), 1<<20)) }

// byPoint reports whether a set of n ids is read by point commands.
func (s *Store) byPoint(n int) bool {
	return s.pointReads && n > 0 && n <= pointReadMax
}

// findByIDs calls each with every document of coll whose _id is in ids,
// projected by proj: one $in command, or concurrent point reads (see
// byPoint). each is never called concurrently.
func (s *Store) findByIDs(ctx context.Context, coll *mongo.Collection, ids []string, proj bson.D, each func(bson.Raw)) error {
	if len(ids) == 0 {
		return nil
	}
	if !s.byPoint(len(ids)) {
		// One batch for the whole set: the server's default first batch
		// (101 documents) would add a getMore round trip, and so would a
		// batch of exactly len(ids), which leaves the cursor open.
		cur, err := coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
			options.Find().SetProjection(proj).SetBatchSize(batchSize(len(ids)+1)))
		if err != nil {
			return err
		}
		defer cur.Close(ctx)
		for cur.Next(ctx) {
			each(cur.Current)
		}
		return cur.Err()
	}
	docs := make([]bson.Raw, len(ids))
	err := forEachConcurrently(ctx, len(ids), pointWorkers, func(ctx context.Context, i int) error {
		raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: ids[i]}}, options.FindOne().SetProjection(proj)).Raw()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %q: %w", ids[i], err)
		}
		docs[i] = raw
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range docs {
		if d != nil {
			each(d)
		}
	}
	return nil
}

// deleteByIDs deletes the documents of coll whose _id is in ids: one
// deleteMany, or concurrent point deletes (see byPoint).
func (s *Store) deleteByIDs(ctx context.Context, coll *mongo.Collection, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if !s.byPoint(len(ids)) {
		_, err := coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		return err
	}
	return forEachConcurrently(ctx, len(ids), pointWorkers, func(ctx context.Context, i int) error {
		if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: ids[i]}}); err != nil {
			return fmt.Errorf("delete %q: %w", ids[i], err)
		}
		return nil
	})
}
