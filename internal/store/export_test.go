package store

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// PutRawDelivered writes doc to the delivered log as it is: tests make
// corrupt segments with it.
func (s *Store) PutRawDelivered(ctx context.Context, doc bson.D) error {
	hd := s.cur()
	_, err := hd.db.Collection(s.deliveredLog(hd)).InsertOne(ctx, doc)
	return err
}
