package transport

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/hashicorp/go-retryablehttp"
)

// slogAdapter implements retryablehttp.LeveledLogger on top of slog,
// scrubbing every value on the way. go-retryablehttp logs the request URL
// with its query ("url", "request" attributes and error texts), which for a
// Logic Apps callback is the credential itself.
type slogAdapter struct {
	l *slog.Logger
}

// NewLogger adapts l to go-retryablehttp's LeveledLogger. URLs in messages
// and attribute values are printed without query strings, userinfo or
// fragments, whatever their type (string, error, *url.URL, fmt.Stringer).
// retryablehttp's "request failed" errors are logged at Warn, not Error:
// the connector reports the final outcome, a single failed attempt is not
// an error of the service. A nil l yields nil, which disables logging.
func NewLogger(l *slog.Logger) retryablehttp.LeveledLogger {
	if l == nil {
		return nil
	}
	return &slogAdapter{l: l}
}

// Error logs at Warn: one failed attempt is not yet a failed delivery.
func (a *slogAdapter) Error(msg string, kv ...any) { a.log(slog.LevelWarn, msg, kv) }

// Warn implements retryablehttp.LeveledLogger.
func (a *slogAdapter) Warn(msg string, kv ...any) { a.log(slog.LevelWarn, msg, kv) }

// Info implements retryablehttp.LeveledLogger.
func (a *slogAdapter) Info(msg string, kv ...any) { a.log(slog.LevelInfo, msg, kv) }

// Debug implements retryablehttp.LeveledLogger.
func (a *slogAdapter) Debug(msg string, kv ...any) { a.log(slog.LevelDebug, msg, kv) }

func (a *slogAdapter) log(level slog.Level, msg string, kv []any) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	clean := make([]any, len(kv))
	for i, v := range kv {
		clean[i] = scrubValue(v)
	}
	a.l.Log(ctx, level, redactText(msg, true), clean...)
}

// scrubValue turns v into a value safe to log: anything that can render a
// URL is rendered and stripped of queries.
func scrubValue(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return redactText(x, true)
	case *url.URL:
		return redactParsed(x, true)
	case error:
		return redactText(x.Error(), true)
	case slog.Attr: // before fmt.Stringer, which slog.Attr also implements
		return slog.Any(x.Key, scrubValue(x.Value.Any()))
	case fmt.Stringer:
		return redactText(x.String(), true)
	case bool, int, int64, int32, uint, uint64, float64, float32:
		return x
	default:
		return redactText(fmt.Sprint(x), true)
	}
}
