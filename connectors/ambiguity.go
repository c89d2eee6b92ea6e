package connectors

import "context"

// A connector that retries within one Deliver call (connectors/transport
// does, by default) may succeed on a later attempt after an earlier one
// timed out: the downstream may still act on that earlier request later,
// after the notification's next version. The delivery layer holds the
// key's next version for a while when it learns of such an attempt, so a
// connector reports one with NoteAmbiguous on the call's context.

type ambiguityKey struct{}

// WithAmbiguityNotice returns a context on which NoteAmbiguous calls note.
func WithAmbiguityNotice(ctx context.Context, note func()) context.Context {
	return context.WithValue(ctx, ambiguityKey{}, note)
}

// NoteAmbiguous reports that an attempt of the call on ctx may still be
// processed by the downstream although it failed (it timed out after the
// request was sent, or a gateway answered 504).
func NoteAmbiguous(ctx context.Context) {
	if note, ok := ctx.Value(ambiguityKey{}).(func()); ok && note != nil {
		note()
	}
}
