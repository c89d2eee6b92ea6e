// Package secrettest helps tests that rotate secret files.
package secrettest

import (
	"os"
	"testing"
)

// Write replaces the file at path with value and a trailing newline, as
// an operator's tooling or the kubelet does: written aside, then renamed,
// so that a reader never sees half a file.
func Write(t testing.TB, path, value string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
