// Package roleconfig translates fanout's file configuration into the
// roles' own configurations (consumer.Config, outbox.Config,
// delivery.Config). It is the one place that knows both: the roles take
// only what they use, in types another module can fill, so that embedding
// a role needs no fanout configuration file, and a projection is one more
// projector instance.
package roleconfig

import (
	"fmt"
	"strings"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/outbox"
)

// Projector returns the configuration of a projector serving projection
// (`fanout projector --projection NAME`: its own consumer group,
// groups.projector-NAME), or, with projection empty, every projection
// without own_deployment. cfg must be validated.
func Projector(cfg *config.Config, projection string) (consumer.Config, error) {
	all := cfg.ProjectionList()
	var served, elsewhere []consumer.Projection
	for _, p := range all {
		cp := consumer.Projection{Name: p.Name, Topics: p.Topics, Collection: p.Collection, Source: p.Source, Routing: p.Routing}
		if (projection != "" && p.Name == projection) || (projection == "" && !p.OwnDeployment) {
			served = append(served, cp)
		} else {
			elsewhere = append(elsewhere, cp)
		}
	}
	if len(served) == 0 {
		if projection == "" {
			return consumer.Config{}, fmt.Errorf("every projection has own_deployment: true: start each projector with --projection NAME")
		}
		names := make([]string, 0, len(all))
		for _, p := range all {
			names = append(names, p.Name)
		}
		return consumer.Config{}, fmt.Errorf("--projection %q: no such projection (configured: %s)", projection, strings.Join(names, ", "))
	}
	group := cfg.Groups.Projector
	if projection != "" {
		group += "-" + projection
	}
	cache := cfg.Projector.VersionCacheSize
	if cache == 0 {
		cache = -1 // the file's 0 is no cache; consumer.Config's is the default
	}
	return consumer.Config{
		Projections:      served,
		ServedElsewhere:  elsewhere,
		Group:            group,
		InstanceID:       cfg.Groups.ProjectorInstanceID,
		DLQTopic:         cfg.Topics.EventsDLQ,
		MaxRecordBytes:   cfg.Kafka.MaxRecordBytes,
		SessionTimeout:   cfg.Kafka.SessionTimeout,
		MaxBatch:         cfg.Projector.MaxBatch,
		RetryMinBackoff:  cfg.Projector.RetryMinBackoff,
		RetryMaxBackoff:  cfg.Projector.RetryMaxBackoff,
		ShutdownGrace:    cfg.Projector.ShutdownGrace,
		VersionCacheSize: cache,
	}, nil
}

// Relay returns the relay's configuration. cfg must be validated.
func Relay(cfg *config.Config) outbox.Config {
	var ps []outbox.Projection
	for _, p := range cfg.ProjectionList() {
		ps = append(ps, outbox.Projection{Name: p.Name, Collection: p.Collection, VersionField: p.VersionField, CloudEventsSource: p.CloudEventsSource})
	}
	r := cfg.Relay
	grace := r.ReadyGrace
	if grace == 0 {
		grace = -1 // the file's 0 is at once; outbox.Config's is the default
	}
	return outbox.Config{
		Topic:           cfg.Topics.Notifications,
		DLQTopic:        cfg.RelayDLQTopic(),
		Projections:     ps,
		MaxRecordBytes:  cfg.Kafka.MaxRecordBytes,
		BatchSize:       r.BatchSize,
		IdleBackoff:     r.IdleBackoff,
		LeaseName:       r.LeaseName,
		LeaseTTL:        r.LeaseTTL,
		ProduceTimeout:  r.ProduceTimeout,
		HoldAlertAfter:  r.HoldAlertAfter,
		ReadyGrace:      grace,
		Transactional:   r.Transactional,
		TransactionalID: cfg.TransactionalID(),
		MaxReadBytes:    r.MaxReadBytes,
		MaxReadEntries:  r.MaxReadEntries,
	}
}

// Worker returns the configuration of the workers of connector: its own
// delivery settings when it has them, else the global ones. cfg must be
// validated.
func Worker(cfg *config.Config, connector string) delivery.Config {
	return delivery.Config{
		Topic:                  cfg.Topics.Notifications,
		RetryTopic:             cfg.RetryTopic(connector),
		DLQTopic:               cfg.DLQTopic(connector),
		Group:                  cfg.WorkerGroup(connector),
		Policy:                 cfg.DeliveryFor(connector),
		SessionTimeout:         cfg.Kafka.SessionTimeout,
		MaxRecordBytes:         cfg.Kafka.MaxRecordBytes,
		FetchMaxBytes:          cfg.Kafka.FetchMaxBytes,
		FetchMaxPartitionBytes: cfg.Kafka.FetchMaxPartitionBytes,
		MultiProjection:        cfg.MultiProjection(),
	}
}
