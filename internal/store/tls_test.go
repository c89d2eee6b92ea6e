package store_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// Environment of deploy/local/ferretdb.sh's TLS listener (tls.env, exported
// by deploy/local/test.sh).
const (
	envMongoTLSURI = "FANOUT_TEST_MONGO_TLS_URI"
	envMongoTLSDir = "FANOUT_TEST_MONGO_TLS_DIR"
)

// TestStoreOverTLSWithCredentials connects the store to FerretDB's TLS
// listener with tls=true, tlsCAFile and a username and password that
// PostgreSQL checks (FerretDB 1.x passes PLAIN credentials through), and
// writes and reads through it. A wrong password, a CA that did not sign the
// server's certificate, and a client without TLS are refused, and no error
// shows the password. deploy/local/test.sh also runs the whole store suite
// over this URI.
func TestStoreOverTLSWithCredentials(t *testing.T) {
	uri, dir := os.Getenv(envMongoTLSURI), os.Getenv(envMongoTLSDir)
	if uri == "" || dir == "" {
		t.Skipf("needs FerretDB's TLS listener with a password-checked user: %s and %s are not set (deploy/local/test.sh sets them from ferretdb.sh's tls.env)", envMongoTLSURI, envMongoTLSDir)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatalf("%s: %v", envMongoTLSURI, err)
	}
	pass, _ := u.User.Password()
	if pass == "" || u.Query().Get("tls") != "true" || u.Query().Get("tlsCAFile") == "" {
		t.Fatalf("%s has no password, tls=true or tlsCAFile", envMongoTLSURI)
	}
	db := testenv.Database(t)
	openWith := func(t *testing.T, uri string) (*store.Store, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := store.Open(ctx, store.Options{URI: uri, Database: db, Timeout: 5 * time.Second})
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = st.Close(context.Background()) })
		// PLAIN hands the credentials to FerretDB, which first uses
		// them when a command reaches PostgreSQL.
		if err := st.EnsureIndexes(ctx); err != nil {
			return nil, err
		}
		return st, nil
	}

	t.Run("round trip", func(t *testing.T) {
		st, err := openWith(t, uri)
		if err != nil {
			t.Fatalf("open over TLS with credentials: %v", err)
		}
		defer func() { _ = st.Drop(context.Background()) }()
		ctx := context.Background()
		if err := st.ApplyDomain(ctx, []store.DomainWrite{{ID: "tls-1", Version: 1, Set: bson.D{{Key: "amount", Value: 7}}}}); err != nil {
			t.Fatal(err)
		}
		v, err := st.Versions(ctx, []string{"tls-1"})
		if err != nil || v["tls-1"] != 1 {
			t.Fatalf("Versions = %v, %v; want tls-1 at 1", v, err)
		}
	})

	bad := func(edit func(*url.URL)) string {
		v := *u
		q := v.Query()
		v.RawQuery = q.Encode()
		edit(&v)
		return v.String()
	}
	cases := []struct {
		name string
		uri  string
		want string
	}{
		{"wrong password", bad(func(v *url.URL) { v.User = url.UserPassword(u.User.Username(), "not-the-password") }), "password authentication failed"},
		{"unknown CA", bad(func(v *url.URL) {
			q := v.Query()
			q.Set("tlsCAFile", filepath.Join(dir, "other-ca.pem"))
			v.RawQuery = q.Encode()
		}), "certificate signed by unknown authority"},
		{"no TLS", bad(func(v *url.URL) {
			q := v.Query()
			q.Del("tls")
			q.Del("tlsCAFile")
			v.RawQuery = q.Encode()
		}), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := openWith(t, tc.uri)
			if err == nil {
				t.Fatal("connected; want a refusal")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			for _, p := range []string{pass, "not-the-password"} {
				if strings.Contains(err.Error(), p) {
					t.Fatalf("the error shows a password: %q", err)
				}
			}
			t.Logf("%s", err)
		})
	}
}
