package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The delivery_budgets collection holds the retry budget used so far by
// notifications that are failing now, so that a new owner of a partition
// (after a rebalance, a restart) continues it instead of starting afresh:
// {_id: connector+"/"+notification id, connector, attempts, counted,
// first_fail}. Only the worker that owns the record writes its document,
// and it deletes it when the record is finished, so the collection holds
// the records failing at the moment and stays small.

// budgetsCollection is the collection's name.
const budgetsCollection = "delivery_budgets"

// Budget is the retry budget a notification has used.
type Budget struct {
	// Attempts is every delivery attempt made, replays included: the
	// next attempt's number is Attempts+1.
	Attempts int `bson:"attempts"`
	// Counted is the attempts that count against max_attempts (those
	// made while the circuit breaker was closed).
	Counted int `bson:"counted"`
	// FirstFail is when the first attempt failed: max_elapsed runs
	// from it.
	FirstFail time.Time `bson:"first_fail"`
}

func budgetID(connector, id string) string { return connector + "/" + id }

func (s *Store) budgets() *mongo.Collection { return s.cur().db.Collection(budgetsCollection) }

// RecordBudgets stores the budgets of set (notification id -> budget) and
// deletes those of done (finished notifications) for connector.
func (s *Store) RecordBudgets(ctx context.Context, connector string, set map[string]Budget, done []string) error {
	coll := s.budgets()
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	err := upsertEach(ctx, len(ids), func(ctx context.Context, i int) error {
		b := set[ids[i]]
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: budgetID(connector, ids[i])}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "connector", Value: connector}, {Key: "attempts", Value: b.Attempts},
				{Key: "counted", Value: b.Counted}, {Key: "first_fail", Value: b.FirstFail}}}},
			options.UpdateOne().SetUpsert(true))
		if err != nil {
			return fmt.Errorf("store: record the retry budget of %s: %w", ids[i], err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(done) == 0 {
		return nil
	}
	del := make([]string, len(done))
	for i, id := range done {
		del[i] = budgetID(connector, id)
	}
	if err := s.deleteByIDs(ctx, coll, del); err != nil {
		return fmt.Errorf("store: delete finished retry budgets of %s: %w", connector, err)
	}
	return nil
}

// Budgets returns the stored budget of each of ids (notification ids of
// connector) that has one.
func (s *Store) Budgets(ctx context.Context, connector string, ids []string) (map[string]Budget, error) {
	out := make(map[string]Budget)
	if len(ids) == 0 {
		return out, nil
	}
	q := make([]string, len(ids))
	byID := make(map[string]string, len(ids))
	for i, id := range ids {
		q[i] = budgetID(connector, id)
		byID[q[i]] = id
	}
	var derr error
	proj := bson.D{{Key: "attempts", Value: 1}, {Key: "counted", Value: 1}, {Key: "first_fail", Value: 1}}
	err := s.findByIDs(ctx, s.budgets(), q, proj, func(raw bson.Raw) {
		var d struct {
			ID     string `bson:"_id"`
			Budget `bson:",inline"`
		}
		if err := bson.Unmarshal(raw, &d); err != nil {
			derr = err
			return
		}
		if id, ok := byID[d.ID]; ok {
			out[id] = d.Budget
		}
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("store: read retry budgets of %s: %w", connector, err)
	}
	return out, nil
}
