package admin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/observe"
)

// serveLimited serves obs on a loopback listener with small limits.
func serveLimited(t *testing.T, obs *observe.Server, l observe.Limits) string {
	t.Helper()
	obs.SetLimits(l)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- obs.ServeListener(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// closedBeforeDone reads conn until the server closes it, while trickle
// writes to it; it reports whether the server closed it before trickle
// ran out of bytes. safety only bounds a broken server's test run.
func closedBeforeDone(t *testing.T, conn net.Conn, head string, trickle int) bool {
	t.Helper()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	trickled := make(chan bool, 1) // true when every byte went out
	go func() {
		for i := 0; i < trickle; i++ {
			select {
			case <-stop:
				trickled <- false
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := conn.Write([]byte("x")); err != nil {
				trickled <- false
				return
			}
		}
		trickled <- true
	}()
	const safety = 60 * time.Second
	_ = conn.SetReadDeadline(time.Now().Add(safety))
	_, err := io.Copy(io.Discard, bufio.NewReader(conn))
	close(stop)
	all := <-trickled
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Logf("the server kept the connection open for %v", safety)
		return false
	}
	return !all
}

// TestSlowLorisIsCutOff: a client that trickles a request body byte by
// byte, or its headers, does not hold a connection past the read
// timeouts: the server closes it.
func TestSlowLorisIsCutOff(t *testing.T) {
	_, obs := offlineServer(t, withTokens, tokenEnv)
	addr := serveLimited(t, obs, observe.Limits{
		ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 500 * time.Millisecond,
		WriteTimeout: 2 * time.Second, IdleTimeout: time.Second, MaxHeaderBytes: 4 << 10,
	})
	trickle := 3000 // a minute of bytes at one per 20 ms
	t.Run("body", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		head := fmt.Sprintf("POST /v1/connectors/logic_apps/pause HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", opsToken, trickle+10)
		if !closedBeforeDone(t, conn, head, trickle) {
			t.Error("a body trickled byte by byte held the connection open")
		}
	})
	t.Run("headers", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if !closedBeforeDone(t, conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", trickle) {
			t.Error("headers trickled byte by byte held the connection open")
		}
	})
	t.Run("header bytes", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("64 KiB of headers over a 4 KiB limit: %d, want 431", resp.StatusCode)
		}
	})
}

// TestBodyLimit: a POST body above the limit is refused with 413 before
// the handler acts on it.
func TestBodyLimit(t *testing.T) {
	_, obs := offlineServer(t, withTokens, tokenEnv)
	addr := serveLimited(t, obs, observe.DefaultLimits())
	body := `{"reason": "` + strings.Repeat("a", 2<<20) + `"}`
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/connectors/logic_apps/pause", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+opsToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 MiB body: %d %s, want 413", resp.StatusCode, b)
	}
}
