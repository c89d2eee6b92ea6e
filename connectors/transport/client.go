// Package transport builds the HTTP client that fanout's HTTP connectors
// share: go-retryablehttp driven through its CheckRetry and Backoff hooks, a
// few in-call attempts with full-jitter exponential backoff, Retry-After in
// both forms with a cap, a per-attempt timeout, and errors and logs that
// never carry a URL query (where Logic Apps keeps its sig) or any other
// secret.
//
// In-call retries only smooth over blips. Anything longer, such as a
// Retry-After beyond the cap or beyond the caller's deadline, ends the call
// with the response in hand, so that the delivery layer can schedule the
// next attempt from Response.RetryAfter.
package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/fanout-dev/fanout/connectors"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxAttempts     = 3
	DefaultMinBackoff      = 250 * time.Millisecond
	DefaultMaxBackoff      = 5 * time.Second
	DefaultMaxRetryAfter   = 60 * time.Second
	DefaultTimeout         = 30 * time.Second
	DefaultMaxResponseBody = 1 << 20
	// DefaultMaxConcurrency sizes the idle pool when Options.MaxConcurrency
	// is 0.
	DefaultMaxConcurrency = 256
	// MaxMaxAttempts bounds in-call attempts: a Deliver call that retries
	// for long holds a worker and hides an outage from the breaker.
	MaxMaxAttempts = 10
)

// minAttemptWindow is the least time that must remain before the caller's
// deadline after a backoff for another attempt to be worth starting.
const minAttemptWindow = 100 * time.Millisecond

// Options configures a Client. The zero value is usable: every zero field
// takes its default.
type Options struct {
	// MaxAttempts is the number of attempts within one Do call, the first
	// included (default 3, at most MaxMaxAttempts; 1 disables retries).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the full-jitter exponential backoff
	// between attempts (defaults 250ms and 5s).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxRetryAfter caps a server's Retry-After (default 60s). A longer
	// request ends the call instead of sleeping in it, and
	// Response.RetryAfter reports the cap.
	MaxRetryAfter time.Duration
	// Timeout bounds each attempt, reading the response body included
	// (default 30s).
	Timeout time.Duration
	// Classifier decides which attempts are retried in-call (default
	// DefaultClassifier).
	Classifier Classifier
	// Logger receives retryablehttp's debug and warning lines with URLs
	// stripped of their queries; nil disables them.
	Logger *slog.Logger
	// Transport is the round tripper (default a clone of
	// http.DefaultTransport). Tests inject theirs here.
	Transport http.RoundTripper
	// MaxResponseBody is how much of a response body Do keeps (default
	// 1 MiB); the rest is discarded and Response.Truncated is set.
	MaxResponseBody int64
	// MaxConcurrency is the most calls the caller makes at once through
	// this client: the delivery layer's max_in_flight. The default
	// transport keeps that many idle connections per host (and a few more
	// in all, for a token endpoint), so that a connection a call frees is
	// kept for the next call rather than closed and dialled anew. 0 means
	// DefaultMaxConcurrency. Ignored when Transport is set.
	MaxConcurrency int
	// FollowRedirects lets the client follow redirects. Off by default: a
	// webhook receiver that redirects a POST is misconfigured, and Go
	// would turn the POST into a GET.
	FollowRedirects bool
}

// Client sends requests with in-call retries. It is safe for concurrent
// use; Close releases its idle connections.
type Client struct {
	opts Options
	hc   *http.Client
	log  retryablehttp.LeveledLogger
}

// New validates opts, applies defaults and returns a Client.
func New(opts Options) (*Client, error) {
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MaxAttempts < 1 || opts.MaxAttempts > MaxMaxAttempts {
		return nil, fmt.Errorf("max_attempts %d out of range: use 1 to %d", opts.MaxAttempts, MaxMaxAttempts)
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MinBackoff < 0 || opts.MaxBackoff < opts.MinBackoff {
		return nil, fmt.Errorf("backoff bounds %v..%v invalid: need 0 <= min <= max", opts.MinBackoff, opts.MaxBackoff)
	}
	if opts.MaxRetryAfter == 0 {
		opts.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if opts.MaxRetryAfter < 0 {
		return nil, fmt.Errorf("retry-after cap %v is negative", opts.MaxRetryAfter)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("timeout %v is negative", opts.Timeout)
	}
	if opts.Classifier == nil {
		opts.Classifier = DefaultClassifier
	}
	if opts.MaxResponseBody <= 0 {
		opts.MaxResponseBody = DefaultMaxResponseBody
	}
	if opts.MaxConcurrency == 0 {
		opts.MaxConcurrency = DefaultMaxConcurrency
	}
	if opts.MaxConcurrency < 0 {
		return nil, fmt.Errorf("max concurrency %d is negative", opts.MaxConcurrency)
	}
	rt := opts.Transport
	if rt == nil {
		rt = NewHTTPTransport(opts.MaxConcurrency)
	}
	hc := &http.Client{Transport: rt, Timeout: opts.Timeout}
	if !opts.FollowRedirects {
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &Client{opts: opts, hc: hc, log: NewLogger(opts.Logger)}, nil
}

// idleHeadroom is how many idle connections the pool keeps beyond one
// host's share, for a second host such as a token endpoint.
const idleHeadroom = 16

// NewHTTPTransport returns a clone of http.DefaultTransport whose idle pool
// keeps maxConcurrency connections per host (DefaultMaxConcurrency if not
// positive). Go's default keeps 100 in all and 2 per host: with more calls
// in flight than that, every connection freed beyond the pool is closed and
// the next call dials (and handshakes TLS) again, so a busy worker churns
// connections instead of reusing them.
func NewHTTPTransport(maxConcurrency int) *http.Transport {
	if maxConcurrency <= 0 {
		maxConcurrency = DefaultMaxConcurrency
	}
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	}
	t.MaxIdleConnsPerHost = maxConcurrency
	t.MaxIdleConns = maxConcurrency + idleHeadroom
	return t
}

// Options returns the effective options, defaults applied.
func (c *Client) Options() Options { return c.opts }

// HTTPClient returns the underlying single-attempt client, for side calls
// such as token fetches that should share connections and timeouts.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Request is one logical request; Do may send it several times.
type Request struct {
	Method string
	// URL is the full URL, query included; it never appears in errors or
	// logs except through RedactURL.
	URL    string
	Header http.Header
	// Body is sent as is on every attempt.
	Body []byte
	// Prepare, if set, runs before every attempt (the first included) on
	// that attempt's request, whose Header it may change: this is where
	// per-attempt signatures and timestamps go. attempt counts from 1.
	Prepare func(r *http.Request, attempt int) error
	// Secrets are strings to scrub from errors in addition to URL queries,
	// e.g. a bearer token that a proxy might echo.
	Secrets []string
}

// Response is the final response of a Do call.
type Response struct {
	StatusCode int
	Header     http.Header
	// Body holds at most Options.MaxResponseBody bytes.
	Body      []byte
	Truncated bool
	// Attempts is how many attempts were made.
	Attempts int
	// RetryAfter is the response's Retry-After, capped at
	// Options.MaxRetryAfter; 0 if absent or malformed.
	RetryAfter time.Duration
	// RetryAfterCapped is set when the server asked for more than the cap.
	RetryAfterCapped bool
}

// Do sends req, retrying in-call as the options allow, and returns the
// final response with its body read. err is non-nil only when no response
// came back (every attempt failed at the transport level, or ctx ended);
// it is then free of URL queries and of req.Secrets, and it satisfies
// errors.Is(err, context.DeadlineExceeded) when that is the cause.
func (c *Client) Do(ctx context.Context, req *Request) (*Response, error) {
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	var body any
	if req.Body != nil {
		body = req.Body
	}
	rreq, err := retryablehttp.NewRequestWithContext(ctx, method, req.URL, body)
	if err != nil {
		return nil, fmt.Errorf("build %s request to %s: %w", method, RedactURL(req.URL), RedactError(err, req.Secrets...))
	}
	for k, vs := range req.Header {
		rreq.Header[k] = append([]string(nil), vs...)
	}

	call := &callState{client: c}
	if req.Prepare != nil {
		if err := req.Prepare(rreq.Request, 1); err != nil {
			return nil, fmt.Errorf("prepare attempt 1: %w", RedactError(err, req.Secrets...))
		}
	}
	rc := &retryablehttp.Client{
		HTTPClient:   c.hc,
		RetryWaitMin: c.opts.MinBackoff,
		RetryWaitMax: c.opts.MaxBackoff,
		RetryMax:     c.opts.MaxAttempts - 1,
		CheckRetry:   call.checkRetry,
		Backoff:      call.backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		PrepareRetry: func(r *http.Request) error {
			// retryablehttp shallow-copies the request: give this attempt
			// its own header map before anyone writes to it.
			r.Header = r.Header.Clone()
			if req.Prepare == nil {
				return nil
			}
			return req.Prepare(r, call.attempts+1)
		},
	}
	if c.log != nil {
		rc.Logger = c.log
	}

	resp, err := rc.Do(rreq)
	if err != nil {
		if resp != nil {
			drain(resp.Body)
		}
		// The *url.Error would repeat method and URL: keep its cause.
		var ue *url.Error
		if errors.As(err, &ue) && ue.Err != nil {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %d attempt(s): %w", method, RedactURL(req.URL), max(call.attempts, 1), RedactError(err, req.Secrets...))
	}
	defer resp.Body.Close()
	out := &Response{
		StatusCode: resp.StatusCode,
		Header:     resp.Header,
		Attempts:   max(call.attempts, 1),
	}
	if ra, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		out.RetryAfter = ra
		if ra > c.opts.MaxRetryAfter {
			out.RetryAfter, out.RetryAfterCapped = c.opts.MaxRetryAfter, true
		}
	}
	var buf bytes.Buffer
	n, rerr := io.Copy(&buf, io.LimitReader(resp.Body, c.opts.MaxResponseBody+1))
	if n > c.opts.MaxResponseBody {
		out.Truncated = true
		buf.Truncate(int(c.opts.MaxResponseBody))
	}
	out.Body = buf.Bytes()
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		// The status line arrived, so the downstream saw the request; a
		// body cut short is reported with what we have.
		out.Truncated = true
	}
	return out, nil
}

// callState carries what CheckRetry decides into Backoff for one Do call:
// the decision to retry and the wait belong together, because a wait that
// does not fit the caller's deadline is a reason not to retry at all.
type callState struct {
	client   *Client
	attempts int
	wait     time.Duration
}

// checkRetry implements retryablehttp.CheckRetry.
func (s *callState) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	s.attempts++
	if ambiguousAttempt(resp, err) {
		connectors.NoteAmbiguous(ctx)
	}
	if ctx.Err() != nil {
		return false, nil
	}
	if !s.client.opts.Classifier(resp, err) {
		return false, nil
	}
	if s.attempts >= s.client.opts.MaxAttempts {
		return false, nil
	}
	if !connectors.MayRetry(ctx, attemptError(resp, err)) {
		return false, nil // the circuit breaker holds the retry
	}
	wait := FullJitterBackoff(s.client.opts.MinBackoff, s.client.opts.MaxBackoff, s.attempts-1, nil)
	if resp != nil {
		if ra, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			if ra > s.client.opts.MaxRetryAfter {
				return false, nil // the delivery layer schedules it
			}
			wait = ra
		}
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl)-wait < minAttemptWindow {
		return false, nil
	}
	s.wait = wait
	return true, nil
}

// attemptError describes a failed attempt for a RetryGate.
func attemptError(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	return &connectors.Error{Class: connectors.Retryable, Status: resp.StatusCode, Message: "in-call attempt failed"}
}

// backoff implements retryablehttp.Backoff with the wait checkRetry chose.
func (s *callState) backoff(_, _ time.Duration, _ int, _ *http.Response) time.Duration {
	return s.wait
}

// drain discards and closes a body so the connection can be reused.
func drain(b io.ReadCloser) {
	if b == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(b, 64<<10))
	_ = b.Close()
}

// ValidateURL parses a downstream URL from configuration and checks that it
// is absolute http(s) with a host. Its error never quotes the query.
func ValidateURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("empty URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("cannot parse URL %s", RedactURL(raw))
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("URL %s: scheme must be https or http", RedactURL(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("URL %s: missing host", RedactURL(u))
	}
	return u, nil
}

// statusText renders a status for messages, e.g. "503 Service Unavailable".
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// ambiguousAttempt reports whether a failed attempt may still be processed
// by the downstream: it timed out after the request may have been sent, or
// a gateway answered 504.
func ambiguousAttempt(resp *http.Response, err error) bool {
	if resp != nil {
		return resp.StatusCode == http.StatusGatewayTimeout
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// PeekBody returns up to n bytes of resp's body and leaves the body
// readable in full: for a Classifier whose in-call retry decision depends
// on the body (a Salesforce UNABLE_TO_LOCK_ROW, a webhook body rule).
func PeekBody(resp *http.Response, n int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, n))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	return b
}
