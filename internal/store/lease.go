package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Lease is the relay's leadership document. Token is the fencing token: it
// grows by one on every change of holder. Beat grows on every renewal, so a
// standby can see that the leader is alive without comparing clocks.
type Lease struct {
	Name      string    `bson:"_id"`
	Holder    string    `bson:"holder"`
	Token     int64     `bson:"token"`
	Beat      int64     `bson:"beat"`
	Released  bool      `bson:"released"`
	RenewedAt time.Time `bson:"renewed_at"`
}

// ReadLease returns the lease, nil when nobody ever held it.
func (s *Store) ReadLease(ctx context.Context, name string) (*Lease, error) {
	hd := s.cur()
	var l Lease
	err := hd.leases.FindOne(ctx, bson.D{{Key: "_id", Value: name}}).Decode(&l)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read lease %q: %w", name, err)
	}
	return &l, nil
}

// CreateLease takes a lease nobody ever held, with token 1. It returns
// false when another process created it first.
func (s *Store) CreateLease(ctx context.Context, name, holder string) (bool, error) {
	hd := s.cur()
	_, err := hd.leases.InsertOne(ctx, Lease{Name: name, Holder: holder, Token: 1, RenewedAt: time.Now()})
	if mongo.IsDuplicateKeyError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: create lease %q: %w", name, err)
	}
	return true, nil
}

// RenewLease records a heartbeat of the holder. It returns false when the
// lease has moved to another holder (the caller must stop at once).
func (s *Store) RenewLease(ctx context.Context, name, holder string, token int64) (bool, error) {
	hd := s.cur()
	res, err := hd.leases.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: name}, {Key: "holder", Value: holder}, {Key: "token", Value: token}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "beat", Value: 1}}}, {Key: "$set", Value: bson.D{{Key: "renewed_at", Value: time.Now()}}}})
	if err != nil {
		return false, fmt.Errorf("store: renew lease %q: %w", name, err)
	}
	return res.MatchedCount == 1, nil
}

// TakeLease moves the lease to holder if it is still exactly as observed
// (same token and beat), incrementing the fencing token. It returns the new
// token, or 0 when the lease changed in the meantime.
//
// On MongoDB the filtered update is atomic, so of two standbys only one
// wins. FerretDB applies updates as read-modify-write without a check, so
// there two standbys racing for the lease could both believe they won: run
// one standby per relay there (see docs/architecture.md).
func (s *Store) TakeLease(ctx context.Context, name, holder string, observed Lease) (int64, error) {
	hd := s.cur()
	res, err := hd.leases.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: name}, {Key: "token", Value: observed.Token}, {Key: "beat", Value: observed.Beat}},
		bson.D{
			{Key: "$inc", Value: bson.D{{Key: "token", Value: 1}}},
			{Key: "$set", Value: bson.D{{Key: "holder", Value: holder}, {Key: "beat", Value: int64(0)}, {Key: "released", Value: false}, {Key: "renewed_at", Value: time.Now()}}},
		})
	if err != nil {
		return 0, fmt.Errorf("store: take lease %q: %w", name, err)
	}
	if res.MatchedCount != 1 {
		return 0, nil
	}
	l, err := s.ReadLease(ctx, name)
	if err != nil {
		return 0, err
	}
	if l == nil || l.Holder != holder || l.Token != observed.Token+1 {
		return 0, nil
	}
	return l.Token, nil
}

// ReleaseLease hands the lease back on a clean shutdown so a standby can
// take it at once instead of waiting for the TTL.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string, token int64) error {
	hd := s.cur()
	_, err := hd.leases.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: name}, {Key: "holder", Value: holder}, {Key: "token", Value: token}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "released", Value: true}}}, {Key: "$inc", Value: bson.D{{Key: "beat", Value: 1}}}})
	if err != nil {
		return fmt.Errorf("store: release lease %q: %w", name, err)
	}
	return nil
}
