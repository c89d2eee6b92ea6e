// Package baseline implements the design of the user's original
// conversation (../shared/seed) faithfully, as the baseline fanout's
// benchmarks measure against. It is not used by fanout itself.
//
// The seed's consumer handles one event at a time: it writes the domain
// document, inserts an outbox entry with status "pending" (the seed wraps
// both in a multi-document transaction; FerretDB has none, and a
// transaction would only add round trips, so the baseline issues the two
// writes back to back), and commits the offset of that one record. Its
// outbox processor wakes every 5 seconds, reads up to Limit pending entries
// (the seed reads 10), publishes them one at a time and marks each one
// "processed" with an update.
package baseline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Config names what the baseline reads and writes.
type Config struct {
	Brokers       []string
	Events        string
	Notifications string
	Group         string
	DB            *mongo.Database
	// PollInterval is the outbox processor's period (the seed: 5 s).
	PollInterval time.Duration
	// Limit is how many pending entries one poll reads (the seed: 10).
	Limit int
	// OnPublished, if set, is called after each publish with the entry's
	// creation time.
	OnPublished func(created time.Time)
}

type outboxDoc struct {
	ID        bson.ObjectID `bson:"_id,omitempty"`
	QuoteID   string        `bson:"quote_id"`
	EventType string        `bson:"event_type"`
	Payload   bson.Raw      `bson:"payload"`
	Status    string        `bson:"status"`
	CreatedAt time.Time     `bson:"created_at"`
}

// RunConsumer is the seed's consumer: one event at a time, a commit per
// event. It returns when ctx ends.
func RunConsumer(ctx context.Context, c Config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.ConsumerGroup(c.Group), kgo.ConsumeTopics(c.Events),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return fmt.Errorf("baseline consumer: %w", err)
	}
	defer cl.Close()
	quotes, outbox := c.DB.Collection("quotes"), c.DB.Collection("outbox_events")
	for {
		fs := cl.PollRecords(ctx, 1)
		if ctx.Err() != nil {
			return nil
		}
		for _, r := range fs.Records() {
			var ev map[string]any
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				continue // the seed has no dead-letter path
			}
			id, _ := ev["quote_id"].(string)
			delete(ev, "id")
			if _, err := quotes.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: ev}}, options.UpdateOne().SetUpsert(true)); err != nil {
				return fmt.Errorf("baseline domain write: %w", err)
			}
			payload, _ := bson.Marshal(ev)
			et, _ := ev["event_type"].(string)
			if _, err := outbox.InsertOne(ctx, outboxDoc{QuoteID: id, EventType: et, Payload: payload, Status: "pending", CreatedAt: time.Now()}); err != nil {
				return fmt.Errorf("baseline outbox insert: %w", err)
			}
			if err := cl.CommitRecords(ctx, r); err != nil {
				return fmt.Errorf("baseline commit: %w", err)
			}
		}
	}
}

// RunPoller is the seed's outbox processor. It returns when ctx ends.
func RunPoller(ctx context.Context, c Config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.DefaultProduceTopic(c.Notifications))
	if err != nil {
		return fmt.Errorf("baseline poller: %w", err)
	}
	defer cl.Close()
	outbox := c.DB.Collection("outbox_events")
	tick := time.NewTicker(c.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := outbox.Find(ctx, bson.D{{Key: "status", Value: "pending"}}, options.Find().SetLimit(int64(c.Limit)))
		if err != nil {
			continue
		}
		var docs []outboxDoc
		if err := cur.All(ctx, &docs); err != nil {
			continue
		}
		for _, d := range docs {
			v, _ := json.Marshal(map[string]any{"event_type": d.EventType, "quote_id": d.QuoteID, "payload": d.Payload})
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(d.QuoteID), Value: v}).FirstErr(); err != nil {
				// The seed marks the entry failed and never retries it.
				_, _ = outbox.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "failed"}}}})
				continue
			}
			_, _ = outbox.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "processed"}}}})
			if c.OnPublished != nil {
				c.OnPublished(d.CreatedAt)
			}
		}
	}
}
