package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/secret/secrettest"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestStoreFollowsURIFile: the role's store reconnects when mongo.uri_file
// changes, with no restart; a new URI that does not connect is logged
// (naming the setting, not the password) and the store keeps serving on
// the connection it had. A file that changed between the store's opening
// and the watcher's start is noticed too.
func TestStoreFollowsURIFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	uri := testenv.Mongo(t)
	withApp := func(app string) string {
		u := uri
		if !strings.Contains(strings.TrimPrefix(u, "mongodb://"), "/") {
			u += "/"
		}
		if strings.Contains(u, "?") {
			return u + "&appName=" + app
		}
		return u + "?appName=" + app
	}
	path := filepath.Join(t.TempDir(), "mongo-uri")
	// The store was opened with uri; the file changed since.
	secrettest.Write(t, path, withApp("fanout-changed-at-start"))
	st, err := store.Open(ctx, store.Options{URI: uri, Database: testenv.Database(t), Timeout: 3 * time.Second, RetireGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	secrets := secret.NewStore(log, 10*time.Millisecond)
	v, err := secrets.File("mongo.uri_file", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- followStoreURI(ctx, v, st, log, 10*time.Millisecond) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("followStoreURI: %v", err)
		}
	}()
	waitLog := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(logs.String(), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", what, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	const reconnected = "the store reconnected with the new URI"
	waitLog(reconnected, 1)
	secrettest.Write(t, path, withApp("fanout-rotated"))
	waitLog(reconnected, 2)
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("store after the reconnect: %v", err)
	}

	const password = "hunter2-not-a-real-password"
	secrettest.Write(t, path, "mongodb://fanout:"+password+"@127.0.0.1:1/?connectTimeoutMS=200&serverSelectionTimeoutMS=200")
	waitLog("cannot connect with the new URI", 1)
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("store after a failed reconnect: %v", err)
	}
	out := logs.String()
	if strings.Contains(out, password) {
		t.Fatalf("the log shows the URI's password:\n%s", out)
	}
	if !strings.Contains(out, "setting=mongo.uri_file") {
		t.Fatalf("the error does not name mongo.uri_file:\n%s", out)
	}
}
