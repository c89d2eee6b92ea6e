package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretSourcesExclusive: a secret given both by an environment
// variable and by a file (or inline too) is an error naming the fields,
// not a warning: which one fanout used would be a guess, and a rotation
// written to the other would silently change nothing.
func TestSecretSourcesExclusive(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config)
		field string
		want  string
	}{
		{"admin token env and file", func(c *Config) {
			c.Admin.Tokens = []AdminToken{{Name: "ops", TokenEnv: "T_OPS", TokenFile: "/run/secrets/ops", Scopes: []string{"read"}}}
		}, "admin.tokens[0](ops).token_file", "token_env and token_file are both set"},
		{"admin token neither", func(c *Config) {
			c.Admin.Tokens = []AdminToken{{Name: "ops", Scopes: []string{"read"}}}
		}, "admin.tokens[0](ops).token_env", "is empty"},
		{"two tokens one file", func(c *Config) {
			c.Admin.Tokens = []AdminToken{{Name: "a", TokenFile: "/run/secrets/t", Scopes: []string{"read"}}, {Name: "b", TokenFile: "/run/secrets/t", Scopes: []string{"read"}}}
		}, "admin.tokens[1](b).token_file", "is used by another token"},
		{"mongo uri env and file", func(c *Config) {
			c.Mongo.URIEnv, c.Mongo.URIFile = "T_URI", "/run/secrets/uri"
		}, "mongo.uri_file", "mongo.uri_env and mongo.uri_file are both set"},
		{"sasl env and file", func(c *Config) {
			c.Kafka.SASL = SASL{Mechanism: "PLAIN", Username: "u", PasswordEnv: "T_PW", PasswordFile: "/run/secrets/pw"}
		}, "kafka.sasl.password", "kafka.sasl.password_env and kafka.sasl.password_file are set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			err := c.Validate()
			e, ok := err.(*Errors)
			if !ok {
				t.Fatalf("Validate = %v, want *Errors", err)
			}
			for _, fe := range e.List {
				if fe.Field == tc.field && strings.Contains(fe.Problem, tc.want) {
					return
				}
			}
			t.Fatalf("Validate = %v, want %s: ...%s...", err, tc.field, tc.want)
		})
	}
}

// TestSecretFiles: token_file and uri_file are read (one trailing newline
// dropped); a missing, empty or short file fails naming the setting and the
// path, never a value.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := Default()
	c.Mongo.URIFile = write("uri", "mongodb://u:FileUriPw@db:27017/\n")
	c.Mongo.URIEnv = ""
	if uri, err := c.MongoURI(env(nil)); err != nil || uri != "mongodb://u:FileUriPw@db:27017/" {
		t.Errorf("MongoURI = %q, %v", uri, err)
	}
	c.Mongo.URIFile = filepath.Join(dir, "missing")
	if _, err := c.MongoURI(env(nil)); err == nil || !strings.Contains(err.Error(), "mongo.uri_file") {
		t.Errorf("missing uri_file: %v", err)
	}

	const good = "file-token-0123456789abcdef"
	c.Admin.Tokens = []AdminToken{
		{Name: "ok", TokenFile: write("ok", good+"\n"), Scopes: []string{"read"}},
		{Name: "short", TokenFile: write("short", "tiny\n"), Scopes: []string{"read"}},
		{Name: "empty", TokenFile: write("empty", "\n"), Scopes: []string{"read"}},
		{Name: "missing", TokenFile: filepath.Join(dir, "nope"), Scopes: []string{"read"}},
	}
	if v, err := c.AdminTokenValue(0, c.Admin.Tokens[0], nil); err != nil || v != good {
		t.Errorf("AdminTokenValue = %q, %v", v, err)
	}
	err := c.CheckAdminTokens(nil)
	e, ok := err.(*Errors)
	if !ok {
		t.Fatalf("CheckAdminTokens = %v", err)
	}
	got := strings.Join(e.Fields(), " ")
	if want := "admin.tokens[1](short).token_file admin.tokens[2](empty).token_file admin.tokens[3](missing).token_file"; got != want {
		t.Errorf("fields %q, want %q", got, want)
	}
	if msg := err.Error(); !strings.Contains(msg, "shorter") || !strings.Contains(msg, "empty") || strings.Contains(msg, "tiny") || strings.Contains(msg, good) {
		t.Errorf("errors: %s", msg)
	}
}
