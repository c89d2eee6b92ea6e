package delivery

import (
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// classOf maps a connector failure class to a dead-letter class.
func classOf(c connectors.Class) string {
	switch c {
	case connectors.Permanent:
		return envelope.ClassPermanent
	case connectors.Reauthenticate:
		return envelope.ClassReauthenticate
	default:
		return envelope.ClassRetryable
	}
}

// deadLetter describes why a record is dead-lettered.
type deadLetter struct {
	class     string
	err       error
	attempts  int
	firstFail time.Time
	lastFail  time.Time
}

// dlqRecord builds the dead letter of r for topic (envelope.DeadLetterRecord).
func dlqRecord(topic, connector string, r *kgo.Record, dl deadLetter) *kgo.Record {
	d := envelope.DeadLetter{Class: dl.class, Attempts: dl.attempts, FirstFailure: dl.firstFail, LastFailure: dl.lastFail}
	if dl.err != nil {
		d.Error = dl.err.Error()
		var ce *connectors.Error
		if errors.As(dl.err, &ce) {
			d.HTTPStatus, d.ErrorCode = ce.Status, ce.Code
		}
	}
	return envelope.DeadLetterRecord(topic, connector, r, d)
}
