// Package secret loads secret settings (a Logic Apps callback URL with its
// sig, client secrets, private keys, tokens) from where an operator keeps
// them: inline in the YAML, in an environment variable (*_env) or in a
// file (*_file, the way Kubernetes mounts a Secret).
//
// A file-backed Value follows its file: Get notices a change at most
// Interval after it happened (by a cheap stat, in the caller's goroutine,
// so no watcher needs an owner), and Store.Reload, which cmd/fanout calls
// on SIGHUP, re-reads every file at once. So an operator who rotates a key
// updates the Secret (or the file) and the connector that halted on the
// old key resumes with no restart. A file that turns unreadable or empty
// keeps the last good value and logs why, once.
//
// Values never print their content: String, GoString and LogValue say
// "REDACTED", and errors and logs name the setting and the path only.
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// DefaultInterval is how often a file-backed Value looks at its file.
const DefaultInterval = 2 * time.Second

// Redacted is what a Value prints instead of its content.
const Redacted = "REDACTED"

// Value is one secret setting's current value.
type Value struct {
	field    string // setting name, e.g. "auth.client_secret_file"
	path     string // "" for a value that never changes
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	cur     string
	version uint64
	info    os.FileInfo
	checked time.Time
	lastErr string
}

// Static returns a Value that never changes (inline or from the
// environment).
func Static(v string) *Value { return &Value{cur: v, version: 1} }

// Get returns the current value and its version, which grows by one each
// time the value changes (callers cache what they derive from it, a parsed
// key say, by version). A file-backed value checks its file first when
// Interval has passed since the last look.
func (v *Value) Get() (string, uint64) {
	if v == nil {
		return "", 0
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.path != "" && v.now().Sub(v.checked) >= v.interval {
		_ = v.refreshLocked(false)
	}
	return v.cur, v.version
}

// Current returns the current value; it is Get without the version.
func (v *Value) Current() string {
	s, _ := v.Get()
	return s
}

// Field returns the setting the value came from.
func (v *Value) Field() string { return v.field }

// Path returns the file the value is read from, "" if none.
func (v *Value) Path() string { return v.path }

// String hides the value.
func (v *Value) String() string { return Redacted }

// GoString hides the value from %#v.
func (v *Value) GoString() string { return Redacted }

// LogValue hides the value from slog.
func (v *Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// Reload re-reads the file now. It returns an error naming the setting
// and the path when the file cannot be read or is empty; the last good
// value is kept then.
func (v *Value) Reload() error {
	if v == nil || v.path == "" {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.refreshLocked(true)
}

// refreshLocked stats the file and reads it when it changed (or always,
// with force).
func (v *Value) refreshLocked(force bool) error {
	v.checked = v.now()
	info, err := os.Stat(v.path)
	if err == nil && !force && v.info != nil && os.SameFile(info, v.info) &&
		info.ModTime().Equal(v.info.ModTime()) && info.Size() == v.info.Size() {
		return nil
	}
	var s string
	if err == nil {
		s, err = readFile(v.path)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w (keeping the previous value)", v.field, err)
		if msg := err.Error(); msg != v.lastErr {
			v.lastErr = msg
			v.log.Error("secret: cannot re-read a secret file", "setting", v.field, "path", v.path, "error", msg)
		}
		return err
	}
	v.info, v.lastErr = info, ""
	if s != v.cur {
		v.cur = s
		v.version++
		// The first read is no change worth a line per client at start.
		if v.version > 1 {
			v.log.Info("secret: secret file changed; using the new value", "setting", v.field, "path", v.path)
		}
	}
	return nil
}

// readFile reads a secret file, trimming the line break an editor or
// "echo" leaves at its end (a PEM keeps its inner newlines).
func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(bytes.TrimSpace(b)) == 0 {
		return "", fmt.Errorf("%s is empty", path)
	}
	return string(b), nil
}

// Store owns the file-backed values of a process, so that one SIGHUP
// reloads them all. A nil *Store is usable: its values still follow their
// files by polling, but nothing reloads them at once.
type Store struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu     sync.Mutex
	values []*Value
}

// NewStore returns a Store whose values look at their files every
// interval (DefaultInterval if 0). log may be nil.
func NewStore(log *slog.Logger, interval time.Duration) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Store{log: log, interval: interval, now: time.Now}
}

// File returns a Value read from path now; field names the setting in
// errors and logs. The file must exist and not be empty.
func (s *Store) File(field, path string) (*Value, error) {
	log, interval, now := slog.New(slog.DiscardHandler), DefaultInterval, time.Now
	if s != nil {
		log, interval, now = s.log, s.interval, s.now
	}
	v := &Value{field: field, path: path, interval: interval, log: log, now: now}
	if err := v.Reload(); err != nil {
		return nil, fmt.Errorf("%s: %w", field, errors.Unwrap(err))
	}
	if s != nil {
		s.mu.Lock()
		s.values = append(s.values, v)
		s.mu.Unlock()
	}
	return v, nil
}

// Reload re-reads every file now (on SIGHUP). It returns the problems,
// naming settings and paths, joined; values that fail keep their last
// good content.
func (s *Store) Reload() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	values := append([]*Value(nil), s.values...)
	s.mu.Unlock()
	var errs []error
	for _, v := range values {
		if err := v.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	s.log.Info("secret: reloaded secret files", "files", len(values), "failed", len(errs))
	return errors.Join(errs...)
}

// Len returns how many file-backed values the store holds.
func (s *Store) Len() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values)
}

// Source names the three ways one secret setting can be given. Name is
// the inline setting ("client_secret"); the others are Name+"_env" and
// Name+"_file" unless EnvField or FileField say otherwise. Prefix, e.g.
// "auth.", goes in front of every field name in errors.
type Source struct {
	Name, Prefix        string
	Inline, Env, File   string
	EnvField, FileField string
}

func (src Source) fields() (inline, env, file string) {
	inline, env, file = src.Name, src.EnvField, src.FileField
	if env == "" {
		env = src.Name + "_env"
	}
	if file == "" {
		file = src.Name + "_file"
	}
	return src.Prefix + inline, src.Prefix + env, src.Prefix + file
}

// ErrUnset is returned by Resolve when none of the three is set.
var ErrUnset = errors.New("not set")

// Resolve returns the Value of src: exactly one of inline, environment
// variable or file may be set. It returns an error wrapping ErrUnset when
// none is, and an error naming the fields (never the value) otherwise.
func (s *Store) Resolve(src Source) (*Value, error) {
	inlineF, envF, fileF := src.fields()
	var set []string
	for _, f := range []struct{ name, v string }{{inlineF, src.Inline}, {envF, src.Env}, {fileF, src.File}} {
		if f.v != "" {
			set = append(set, f.name)
		}
	}
	switch {
	case len(set) == 0:
		return nil, fmt.Errorf("%s, %s or %s: %w", inlineF, envF, fileF, ErrUnset)
	case len(set) > 1:
		both := "both"
		if len(set) == 3 {
			both = "all"
		}
		return nil, fmt.Errorf("%s are %s set: set exactly one (%s or %s keeps the secret out of the file)", strings.Join(set, " and "), both, envF, fileF)
	case src.File != "":
		return s.File(fileF, src.File)
	case src.Env != "":
		v, ok := os.LookupEnv(src.Env)
		if !ok || v == "" {
			return nil, fmt.Errorf("%s: environment variable %s is not set or empty", envF, src.Env)
		}
		return Static(v), nil
	}
	return Static(src.Inline), nil
}
