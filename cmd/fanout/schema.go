package main

import (
	"context"
	"flag"
	"fmt"
	"slices"

	"github.com/fanout-dev/fanout/internal/envelope"
)

const helpSchema = `usage: fanout schema notification [--config FILE] [--projection NAME]

Prints the notification contract as a JSON Schema (draft 2020-12): the value
of every record on the notifications topic, shaped by the configuration
(the aggregate id's field name, the event types, the connector names). The
CloudEvents headers are described in its description. Without --config the
defaults apply. Each projection has its own contract: --projection names
it (default: the first).
`

func runSchema(_ context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "notification" && args[0] != "-h" && args[0] != "--help") {
		return usageError{"usage: fanout schema notification [--config FILE] [--projection NAME]"}
	}
	if args[0] != "notification" {
		fmt.Fprint(e.stdout, helpSchema)
		return nil
	}
	var only string
	cfg, err := parseRole("schema notification", helpSchema, e, args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&only, "projection", "", "the projection whose contract to print (default: the first)")
	})
	if err != nil {
		return err
	}
	p := cfg.ProjectionList()[0]
	if only != "" {
		var ok bool
		if p, ok = cfg.Projection(only); !ok {
			return usageError{fmt.Sprintf("--projection %q: no such projection; the configuration has: %s", only, projectionNames(cfg))}
		}
	}
	names := make([]string, 0, len(cfg.Connectors))
	for n := range cfg.Connectors {
		names = append(names, n)
	}
	slices.Sort(names)
	b, err := envelope.NotificationSchema(envelope.SchemaOptions{
		AggregateType: p.AggregateType,
		IDField:       p.IDField,
		MaxIDBytes:    p.MaxIDBytes,
		EventTypes:    p.EventTypes,
		Connectors:    names,
	})
	if err != nil {
		return configError{err}
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}
