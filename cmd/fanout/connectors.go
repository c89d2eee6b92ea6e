package main

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/secret"
)

// openConnector builds the named connector instance from the registry.
// Its file-backed secrets join secrets (nil for config check), which
// reloads them on SIGHUP.
func openConnector(ctx context.Context, cfg *config.Config, name string, log *slog.Logger, secrets *secret.Store) (connectors.Connector, error) {
	if err := connectorConfigured(cfg, name); err != nil {
		return nil, err
	}
	settings := cfg.Connectors[name].Settings
	return connectors.Default().Open(ctx, connectors.Config{
		Name:        name,
		Type:        cfg.Connectors[name].Type,
		Logger:      log.With("connector", name),
		Secrets:     secrets,
		MaxInFlight: cfg.DeliveryFor(name).MaxInFlight,
		Decode: func(v any) error {
			if err := connectors.DecodeStrict(&settings, v); err != nil {
				return fmt.Errorf("connectors.%s.settings: %w", name, err)
			}
			return nil
		},
	})
}

// connectorConfigured returns a configError unless name is a configured
// connector.
func connectorConfigured(cfg *config.Config, name string) error {
	if _, ok := cfg.Connectors[name]; ok {
		return nil
	}
	names := make([]string, 0, len(cfg.Connectors))
	for n := range cfg.Connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	return configError{fmt.Errorf("connector %q is not configured (configured: %s)", name, strings.Join(names, ", "))}
}

// checkConnectors builds every configured connector once, without
// delivering anything, so that config check catches bad settings.
func checkConnectors(cfg *config.Config) error {
	var problems []string
	names := make([]string, 0, len(cfg.Connectors))
	for n := range cfg.Connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c, err := openConnector(context.Background(), cfg, name, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			problems = append(problems, fmt.Sprintf("connectors.%s: %v", name, err))
			continue
		}
		_ = c.Close()
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}
