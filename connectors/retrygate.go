package connectors

import "context"

// retryGateKey is the context key of a RetryGate.
type retryGateKey struct{}

// RetryGate decides whether a connector may retry within one Deliver call
// after a failed attempt that it would otherwise retry. The delivery layer
// sets one per call: it counts the failed attempt against the circuit
// breaker and refuses the retry once the breaker is not closed, so that an
// outage does not go on being hammered by the in-call retries of every
// call that was in flight when it began.
type RetryGate func(err error) bool

// WithRetryGate returns a context that carries g.
func WithRetryGate(ctx context.Context, g RetryGate) context.Context {
	return context.WithValue(ctx, retryGateKey{}, g)
}

// MayRetry reports whether a connector may make another attempt within
// the call after the failed attempt err (a transport error or an error
// describing the response); true when ctx carries no RetryGate. A
// connector that gets false returns the failure it has: the delivery layer
// schedules the record.
func MayRetry(ctx context.Context, err error) bool {
	g, ok := ctx.Value(retryGateKey{}).(RetryGate)
	return !ok || g == nil || g(err)
}
