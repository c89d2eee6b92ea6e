// Command fanout-ferretdb runs FerretDB v1 embedded (MongoDB wire protocol on
// PostgreSQL or SQLite) for local development and tests.
//
// The ferretdb binary of `go install .../cmd/ferretdb` panics at start
// (its module download lacks build/version/version.txt); the embedded package
// works, hence this wrapper. deploy/local/ferretdb.sh builds and runs it.
//
//	fanout-ferretdb [-listen 127.0.0.1:27018] [-handler postgresql|sqlite]
//	                [-postgresql-url postgres://postgres@127.0.0.1:15432/ferretdb]
//	                [-sqlite-dir DIR] [-log-level error]
//	                [-listen-tls 127.0.0.1:27019 -tls-cert-file F -tls-key-file F [-tls-ca-file F]]
//
// -listen-tls adds a TLS listener (FerretDB's own, ListenerConfig.TLS) next
// to the plain one; -tls-ca-file makes it require client certificates.
// Clients that authenticate (PLAIN, e.g. authMechanism=PLAIN in the URI)
// reach PostgreSQL as that user with that password, so PostgreSQL checks
// the password; clients that do not use the -postgresql-url's user.
//
// It prints the MongoDB URI on stdout once it answers listDatabases (which
// reaches the backend, so a wrong PostgreSQL URL fails here, not in a test) and
// stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fanout-ferretdb:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:27018", "TCP address to listen on (loopback only)")
	handler := flag.String("handler", "postgresql", "backend: postgresql or sqlite")
	pgURL := flag.String("postgresql-url", "postgres://postgres@127.0.0.1:15432/ferretdb", "PostgreSQL URL (handler postgresql)")
	sqliteDir := flag.String("sqlite-dir", "", "directory of the SQLite databases (handler sqlite; created if missing)")
	logLevel := flag.String("log-level", "error", "log level: debug, info, warn, error (warn logs every command error)")
	listenTLS := flag.String("listen-tls", "", "TCP address of an extra TLS listener (loopback only); empty: none")
	tlsCert := flag.String("tls-cert-file", "", "server certificate (PEM) of the TLS listener")
	tlsKey := flag.String("tls-key-file", "", "server key (PEM) of the TLS listener")
	tlsCA := flag.String("tls-ca-file", "", "CA of client certificates; set, the TLS listener requires them")
	flag.Parse()

	if err := loopback("-listen", *listen); err != nil {
		return err
	}
	if *listenTLS != "" {
		if err := loopback("-listen-tls", *listenTLS); err != nil {
			return err
		}
		if *tlsCert == "" || *tlsKey == "" {
			return fmt.Errorf("-listen-tls needs -tls-cert-file and -tls-key-file")
		}
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen, TLS: *listenTLS, TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, TLSCAFile: *tlsCA},
		Logger:   logger,
		Handler:  *handler,
	}
	switch *handler {
	case "postgresql":
		cfg.PostgreSQLURL = *pgURL
	case "sqlite":
		if *sqliteDir == "" {
			return fmt.Errorf("-handler sqlite needs -sqlite-dir")
		}
		dir, err := filepath.Abs(*sqliteDir)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// FerretDB wants a directory URI ending in "/". Not ?mode=memory: it hangs.
		cfg.SQLiteURL = "file:" + strings.TrimSuffix(dir, "/") + "/"
	default:
		return fmt.Errorf("-handler %q: want postgresql or sqlite", *handler)
	}

	f, err := ferretdb.New(cfg)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	// MongoDBURI names the TLS listener when there is one; the check and
	// the printed URI are the plain listener's.
	uri := "mongodb://" + *listen + "/"
	if err := check(ctx, uri); err != nil {
		stop()
		<-done
		return fmt.Errorf("%s backend check: %w", *handler, err)
	}
	fmt.Println(uri)

	err = <-done
	logger.Info("stopped")
	return err
}

// loopback refuses an address that is not on a loopback interface: these
// listeners have no authentication of their own.
func loopback(flagName, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flagName, addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s %q: only loopback addresses are allowed", flagName, addr)
	}
	return nil
}

// check runs listDatabases through the wire protocol, which reaches the backend.
func check(ctx context.Context, uri string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		return err
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	_, err = c.ListDatabaseNames(ctx, map[string]any{})
	return err
}
