package store

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestOpenErrorsHideThePassword opens the test store (and unreachable or
// malformed ones) with a password in the URI: no error names it.
func TestOpenErrorsHideThePassword(t *testing.T) {
	const pw = "Hunter2Secret"
	u, err := url.Parse(testenv.Mongo(t))
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	for _, uri := range []string{
		"mongodb://fanout:" + pw + "@" + host + "/", // the test store: authentication fails or is refused
		"mongodb://fanout:" + pw + "@127.0.0.1:1/",  // nothing listens
		"mongodb://fanout:" + pw + "@" + host + "/?tls=maybe",
		"mongodb://fanout:" + pw + "@" + host + ":x/",
		"mongodb://fanout:" + pw + "@/",
	} {
		_, err := Open(context.Background(), Options{URI: uri, Database: testenv.Database(t), Timeout: 2 * time.Second})
		if err == nil {
			continue // a store without authentication may accept any user
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Open(%s): the error names the password: %v", strings.ReplaceAll(uri, pw, "***"), err)
		}
	}
	// The message is redacted; the cause is still there for errors.Is.
	cause := context.DeadlineExceeded
	red := redactErr(errors.Join(errors.New("dial mongodb://u:"+pw+"@h:1/"), cause), "mongodb://u:"+pw+"@h:1/")
	if strings.Contains(red.Error(), pw) || !errors.Is(red, cause) {
		t.Errorf("redactErr = %v (is deadline: %v)", red, errors.Is(red, cause))
	}
}
