package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// RelayStatusID is the _id, in the control collection, of the status the
// leading relay of lease publishes. Only the lease holder writes it.
func RelayStatusID(lease string) string { return "relay/" + lease }

// RelayStatus is what the leading relay publishes about entries it cannot
// publish: held ones and dead-lettered ones.
type RelayStatus struct {
	Lease     string    `bson:"lease" json:"lease"`
	Holder    string    `bson:"holder" json:"holder"`
	Token     int64     `bson:"token" json:"token"`
	UpdatedAt time.Time `bson:"updated_at" json:"updated_at"`
	// HoldAlertAfter is relay.hold_alert_after when published.
	HoldAlertAfter time.Duration `bson:"hold_alert_after" json:"hold_alert_after_ns"`
	// Held lists the entries held longer than HoldAlertAfter, oldest
	// first (at most 100); HeldTotal counts them all.
	Held      []RelayHeld `bson:"held" json:"held"`
	HeldTotal int         `bson:"held_total" json:"held_total"`
	// DeadLetters lists the latest entries sent to the relay dead-letter
	// topic by this holder (at most 100, newest last); DeadLetteredTotal
	// counts them since it started.
	DeadLetters       []RelayDeadLetter `bson:"dead_letters" json:"dead_letters"`
	DeadLetteredTotal int64             `bson:"dead_lettered_total" json:"dead_lettered_total"`
}

// RelayHeld is an outbox entry the relay holds back, and why.
type RelayHeld struct {
	ID          string    `bson:"id" json:"id"`
	AggregateID string    `bson:"aggregate_id" json:"aggregate_id"`
	Version     int64     `bson:"version" json:"version"`
	Seq         int64     `bson:"seq" json:"seq"`
	Reason      string    `bson:"reason" json:"reason"`
	Since       time.Time `bson:"since" json:"since"`
}

// RelayDeadLetter is an outbox entry the relay dead-lettered because it
// can never be produced.
type RelayDeadLetter struct {
	ID          string    `bson:"id" json:"id"`
	AggregateID string    `bson:"aggregate_id" json:"aggregate_id"`
	Version     int64     `bson:"version" json:"version"`
	Reason      string    `bson:"reason" json:"reason"`
	Detail      string    `bson:"detail" json:"detail"`
	Bytes       int       `bson:"bytes" json:"bytes"`
	At          time.Time `bson:"at" json:"at"`
}

// PublishRelayStatus replaces the relay status of st.Lease.
func (s *Store) PublishRelayStatus(ctx context.Context, st RelayStatus) error {
	hd := s.cur()
	_, err := hd.control.ReplaceOne(ctx, bson.D{{Key: "_id", Value: RelayStatusID(st.Lease)}},
		relayStatusDoc{ID: RelayStatusID(st.Lease), Kind: "relay", RelayStatus: st}, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("store: publish relay status of %s: %w", st.Lease, err)
	}
	return nil
}

// ReadRelayStatus returns the relay status of lease, nil if none was
// published.
func (s *Store) ReadRelayStatus(ctx context.Context, lease string) (*RelayStatus, error) {
	hd := s.cur()
	var doc relayStatusDoc
	err := hd.control.FindOne(ctx, bson.D{{Key: "_id", Value: RelayStatusID(lease)}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read relay status of %s: %w", lease, err)
	}
	return &doc.RelayStatus, nil
}

type relayStatusDoc struct {
	ID          string `bson:"_id"`
	Kind        string `bson:"kind"`
	RelayStatus `bson:",inline"`
}
