package secret

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newStore(t *testing.T, logs *bytes.Buffer) (*Store, *clock) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	s := NewStore(slog.New(slog.NewTextHandler(logs, nil)), time.Second)
	s.now = clk.Now
	return s, clk
}

func TestFileFollowsChanges(t *testing.T) {
	var logs bytes.Buffer
	s, clk := newStore(t, &logs)
	path := filepath.Join(t.TempDir(), "client_secret")
	write(t, path, "secret-one\n")
	v, err := s.File("auth.client_secret_file", path)
	if err != nil {
		t.Fatal(err)
	}
	if got, ver := v.Get(); got != "secret-one" || ver != 1 {
		t.Fatalf("got %q v%d", got, ver)
	}

	steps := []struct {
		name    string
		act     func()
		want    string
		version uint64
	}{
		{"changed but not looked at yet", func() { write(t, path, "secret-two-longer") }, "secret-one", 1},
		{"seen after the interval", func() { clk.Add(time.Second) }, "secret-two-longer", 2},
		{"emptied: keeps the last good value", func() { write(t, path, "\n"); clk.Add(time.Second) }, "secret-two-longer", 2},
		{"removed: keeps the last good value", func() { os.Remove(path); clk.Add(time.Second) }, "secret-two-longer", 2},
		{"back again", func() { write(t, path, "secret-three"); clk.Add(time.Second) }, "secret-three", 3},
		{"same content rewritten: same version", func() { write(t, path, "secret-three\n"); clk.Add(time.Second) }, "secret-three", 3},
	}
	for _, st := range steps {
		st.act()
		if got, ver := v.Get(); got != st.want || ver != st.version {
			t.Fatalf("%s: got %q v%d, want %q v%d", st.name, got, ver, st.want, st.version)
		}
	}
	out := logs.String()
	for _, sec := range []string{"secret-one", "secret-two", "secret-three"} {
		if strings.Contains(out, sec) {
			t.Fatalf("log has a secret: %s", out)
		}
	}
	if !strings.Contains(out, "auth.client_secret_file") || !strings.Contains(out, "is empty") {
		t.Fatalf("log does not say which setting failed and why:\n%s", out)
	}
}

func TestReloadOnSignal(t *testing.T) {
	var logs bytes.Buffer
	s, _ := newStore(t, &logs)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "a1")
	write(t, b, "b1")
	va, _ := s.File("a_file", a)
	vb, _ := s.File("b_file", b)
	write(t, a, "a2")
	write(t, b, "")
	// The clock has not moved: only Reload can show the change.
	if got := va.Current(); got != "a1" {
		t.Fatalf("changed before reload: %q", got)
	}
	err := s.Reload()
	if err == nil || !strings.Contains(err.Error(), "b_file") || strings.Contains(err.Error(), "a_file") {
		t.Fatalf("Reload error = %v", err)
	}
	if va.Current() != "a2" || vb.Current() != "b1" {
		t.Fatalf("after reload: %q %q", va.Current(), vb.Current())
	}
	if s.Len() != 2 {
		t.Fatalf("Len = %d", s.Len())
	}
}

// TestKubernetesSymlinkSwap: a mounted Secret is a symlink into a
// timestamped directory that the kubelet swaps atomically.
func TestKubernetesSymlinkSwap(t *testing.T) {
	var logs bytes.Buffer
	s, clk := newStore(t, &logs)
	dir := t.TempDir()
	for _, d := range []string{"..2026_01", "..2026_02"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(dir, "..2026_01", "key"), "old-key")
	write(t, filepath.Join(dir, "..2026_02", "key"), "new-key")
	if err := os.Symlink("..2026_01", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "key"), filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}
	v, err := s.File("url_file", filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("..2026_02", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	if got := v.Current(); got != "new-key" {
		t.Fatalf("after the swap: %q", got)
	}
}

func TestResolve(t *testing.T) {
	t.Setenv("SECRET_TEST_SET", "from-env")
	t.Setenv("SECRET_TEST_EMPTY", "")
	path := filepath.Join(t.TempDir(), "s")
	write(t, path, "from-file")
	tests := []struct {
		name    string
		src     Source
		want    string
		wantErr []string
		unset   bool
	}{
		{name: "inline", src: Source{Name: "token", Inline: "inline-v"}, want: "inline-v"},
		{name: "env", src: Source{Name: "token", Env: "SECRET_TEST_SET"}, want: "from-env"},
		{name: "file", src: Source{Name: "token", File: path}, want: "from-file"},
		{name: "none", src: Source{Name: "token", Prefix: "auth."}, unset: true, wantErr: []string{"auth.token, auth.token_env or auth.token_file"}},
		{name: "two", src: Source{Name: "token", Inline: "x", File: path}, wantErr: []string{"token and token_file are both set"}},
		{name: "three", src: Source{Name: "token", Inline: "x", Env: "E", File: path}, wantErr: []string{"are all set"}},
		{name: "env empty", src: Source{Name: "token", Env: "SECRET_TEST_EMPTY"}, wantErr: []string{"token_env", "SECRET_TEST_EMPTY"}},
		{name: "file missing", src: Source{Name: "secret", Prefix: "signing.", File: path + ".nope"}, wantErr: []string{"signing.secret_file", "no such file"}},
		{name: "custom fields", src: Source{Name: "url", FileField: "url_path", File: path + ".nope"}, wantErr: []string{"url_path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := (*Store)(nil).Resolve(tt.src)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("error %q lacks %q", err, w)
					}
				}
				if errors.Is(err, ErrUnset) != tt.unset {
					t.Fatalf("errors.Is(ErrUnset) = %v", !tt.unset)
				}
				return
			}
			if err != nil || v.Current() != tt.want {
				t.Fatalf("got %v, %v", v, err)
			}
		})
	}
}

func TestValueNeverPrints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	write(t, path, "hunter2-secret")
	v, err := (*Store)(nil).File("token_file", path)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "v", v)
	for _, s := range []string{v.String(), v.GoString(), logs.String()} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("printed the secret: %s", s)
		}
	}
}
