package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/store"
)

// followStoreURI reconnects st whenever the value of mongo.uri_file
// changes (the file poll, or SIGHUP through the role's secret store),
// looking every tick, until ctx ends. The MongoDB driver takes its
// credentials when it connects, so a rotated password needs a new client.
// A failed reconnect keeps the current client, logs once per new value
// (naming the setting and the path, never the URI) and is retried every
// tick: the file may have been updated before the server's user was.
func followStoreURI(ctx context.Context, v *secret.Value, st *store.Store, log *slog.Logger, tick time.Duration) error {
	// The file is compared once at the first tick too: it may have
	// changed since openStore read it.
	var using, failed uint64
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		uri, version := v.Get()
		if version == using {
			continue
		}
		if st.Uses(uri) {
			using = version
			continue
		}
		if err := st.Reconnect(ctx, uri); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if failed != version {
				failed = version
				log.Error("mongo.uri_file changed but the store cannot connect with the new URI; keeping the current connection and retrying",
					"setting", "mongo.uri_file", "path", v.Path(), "error", err)
			}
			continue
		}
		using = version
		log.Info("mongo.uri_file changed: the store reconnected with the new URI", "setting", "mongo.uri_file", "path", v.Path())
	}
}
