package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestCredentials(t *testing.T) {
	cases := []struct{ in, want string }{
		{"mongodb://fanout:Hunter2Secret@db-0:27017,db-1:27017/?replicaSet=rs0", "mongodb://fanout:" + Redacted + "@db-0:27017,db-1:27017/?replicaSet=rs0"},
		{"store: connect mongodb+srv://u:p%40ss@cluster.example.net/db failed", "store: connect mongodb+srv://u:" + Redacted + "@cluster.example.net/db failed"},
		{`kafka.brokers[0]: "sasl_ssl://svc:Hunter2Secret@broker:9093" is not host:port`, `kafka.brokers[0]: "sasl_ssl://svc:` + Redacted + `@broker:9093" is not host:port`},
		{"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abcDEF123+/=;EntityPath=x", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + Redacted + ";EntityPath=x"},
		{"https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2F&sv=1.0&sig=TOPSECRETSIG", "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2F&sv=1.0&sig=" + Redacted},
		{"postgres://user:pw@h/db?password=second", "postgres://user:" + Redacted + "@h/db?password=" + Redacted},
		{"mongodb://user@host:27017/ (no password)", "mongodb://user@host:27017/ (no password)"},
		{"mongodb://127.0.0.1:27017/", "mongodb://127.0.0.1:27017/"},
		{"at 12:30 user:name@example", "at 12:30 user:name@example"},
	}
	for _, c := range cases {
		if got := Credentials(c.in); got != c.want {
			t.Errorf("Credentials(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestKnown(t *testing.T) {
	s := New("Hunter2Secret", "", "abc") // too short values are ignored: they would redact ordinary words
	if got := s.String("auth failed for Hunter2Secret on abc"); got != "auth failed for "+Redacted+" on abc" {
		t.Errorf("String = %q", got)
	}
}

// TestLogger: every string and error a log line carries, the message
// included, is redacted, nested groups too.
func TestLogger(t *testing.T) {
	var b bytes.Buffer
	s := New("SaslPassw0rd!")
	log := slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{ReplaceAttr: s.ReplaceAttr}))
	err := fmt.Errorf("store: connect: %w", errors.New("dial mongodb://fanout:Hunter2Secret@db:27017/ refused"))
	log.Info("connecting to mongodb://fanout:Hunter2Secret@db:27017/", "err", err, "uri", "mongodb://fanout:Hunter2Secret@db:27017/",
		slog.Group("kafka", "password", "SaslPassw0rd!"), "list", []string{"mongodb://a:Hunter2Secret@b/"})
	out := b.String()
	for _, secret := range []string{"Hunter2Secret", "SaslPassw0rd!"} {
		if strings.Contains(out, secret) {
			t.Errorf("log line holds %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, "mongodb://fanout:"+Redacted+"@db:27017/") {
		t.Errorf("log line lost the URI's host: %s", out)
	}
}

// TestFollow: a followed secret (a password file the operator rotates) is
// redacted with its current value, and its former values stay redacted.
func TestFollow(t *testing.T) {
	var mu sync.Mutex
	cur := "FirstFilePassw0rd"
	s := New("FixedSecret1")
	s.Follow(func() string {
		mu.Lock()
		defer mu.Unlock()
		return cur
	})
	if got := s.String("a FirstFilePassw0rd b FixedSecret1"); got != "a "+Redacted+" b "+Redacted {
		t.Errorf("before rotation: %q", got)
	}
	mu.Lock()
	cur = "SecondFilePassw0rd"
	mu.Unlock()
	if got := s.String("new SecondFilePassw0rd old FirstFilePassw0rd"); got != "new "+Redacted+" old "+Redacted {
		t.Errorf("after rotation: %q", got)
	}
	// Concurrent log lines while the value changes (run with -race).
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				if i == 0 {
					mu.Lock()
					cur = fmt.Sprintf("Rotated-%03d-Passw0rd", j)
					mu.Unlock()
				}
				_ = s.String("line")
			}
		}()
	}
	wg.Wait()
}
