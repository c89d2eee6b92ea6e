//go:build !fanout_nodev

package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDevLogLinesAreShort: fanout dev cuts long attribute values (a
// dead letter's error, say) so a terminal line keeps its key facts, on a
// rune boundary, and leaves short ones alone.
func TestDevLogLinesAreShort(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: shortAttrs(20)}))
	long := strings.Repeat("é", 30) // 60 bytes
	log.Warn("notification dead-lettered", "key", "Q1", "error", errors.New(long), "detail", long, "version", 7)
	line := buf.String()
	for _, want := range []string{"key=Q1", "version=7", strings.Repeat("é", 10) + "..."} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, strings.Repeat("é", 11)) {
		t.Errorf("line %q keeps more than 20 bytes of a value", line)
	}
	if !utf8.ValidString(line) {
		t.Errorf("line %q cut a rune", line)
	}
}
