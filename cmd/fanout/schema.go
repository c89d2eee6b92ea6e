package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/fanout-dev/fanout/internal/envelope"
)

const helpSchema = `usage: fanout schema notification [--config FILE]

Prints the notification contract as a JSON Schema (draft 2020-12): the value
of every record on the notifications topic, shaped by the configuration
(the aggregate id's field name, the event types, the connector names). The
CloudEvents headers are described in its description. Without --config the
defaults apply.
`

func runSchema(_ context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "notification" && args[0] != "-h" && args[0] != "--help") {
		return usageError{"usage: fanout schema notification [--config FILE]"}
	}
	if args[0] != "notification" {
		fmt.Fprint(e.stdout, helpSchema)
		return nil
	}
	cfg, err := parseRole("schema notification", helpSchema, e, args[1:])
	if err != nil {
		return err
	}
	names := make([]string, 0, len(cfg.Connectors))
	for n := range cfg.Connectors {
		names = append(names, n)
	}
	slices.Sort(names)
	b, err := envelope.NotificationSchema(envelope.SchemaOptions{
		AggregateType: cfg.Source.AggregateType,
		IDField:       cfg.Source.IDField,
		MaxIDBytes:    cfg.Source.MaxIDBytes,
		EventTypes:    cfg.Source.EventTypes,
		Connectors:    names,
	})
	if err != nil {
		return configError{err}
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}
