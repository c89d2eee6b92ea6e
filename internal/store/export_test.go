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

// PutRawTrace writes one trace entry in the one-document-per-entry form
// of earlier versions.
func (s *Store) PutRawTrace(ctx context.Context, coll string, e TraceEntry) error {
	_, err := s.cur().db.Collection(coll).InsertOne(ctx, e)
	return err
}
