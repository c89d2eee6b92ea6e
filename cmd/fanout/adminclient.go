package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// adminFlags are the flags of every verb that calls the admin API.
type adminFlags struct {
	url, tokenFile, output *string
}

// addAdminFlags registers --admin, --token-file and -o on fs; scope names
// the token scope the verb needs, for the help text.
func addAdminFlags(fs *flag.FlagSet, scope string) adminFlags {
	return adminFlags{
		url:       fs.String("admin", "", "admin API base URL (default $FANOUT_ADMIN_URL or http://127.0.0.1:9464)"),
		tokenFile: fs.String("token-file", "", "file holding an admin token of the "+scope+" scope (default $FANOUT_ADMIN_TOKEN)"),
		output:    fs.String("o", "table", "output: table or json"),
	}
}

// json reports whether -o json was asked for.
func (f adminFlags) json() bool { return *f.output == "json" }

// client checks the flags and returns the admin API client they name.
func (f adminFlags) client(e *env) (*adminClient, error) {
	if *f.output != "table" && *f.output != "json" {
		return nil, usageError{fmt.Sprintf("-o %q: use table or json", *f.output)}
	}
	base := *f.url
	if base == "" {
		base = e.getenv("FANOUT_ADMIN_URL")
	}
	if base == "" {
		base = "http://127.0.0.1:9464"
	}
	base = strings.TrimSuffix(base, "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Sprintf("--admin %q is not an http:// or https:// URL", base)}
	}
	token := e.getenv("FANOUT_ADMIN_TOKEN")
	if *f.tokenFile != "" {
		b, err := os.ReadFile(*f.tokenFile)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--token-file: %v", err)}
		}
		token = strings.TrimSpace(string(b))
	}
	return &adminClient{base: base, token: token}, nil
}

// adminClient calls the admin API with a bearer token.
type adminClient struct {
	base, token string
}

// get GETs path (escaped by the caller).
func (c *adminClient) get(ctx context.Context, path string) ([]byte, error) {
	return c.do(ctx, http.MethodGet, path, nil)
}

// post POSTs body, as JSON, to path.
func (c *adminClient) post(ctx context.Context, path string, body any) ([]byte, error) {
	return c.do(ctx, http.MethodPost, path, body)
}

// do calls the admin API: an answer other than 200 is an error with the
// API's message; a 404 (unknown connector, event, dead letter) is
// exitNotFound.
func (c *adminClient) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	// A replay runs at its rate for as long as it needs; lookups are
	// quick.
	timeout := 30 * time.Second
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode the request: %w", err)
		}
		rd = bytes.NewReader(b)
		timeout = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API: read the answer: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		return b, nil
	}
	var ae struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(b, &ae)
	msg := ae.Error
	if msg == "" {
		msg = strings.TrimSpace(string(b))
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, exitCodeError{code: exitNotFound, msg: msg}
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("admin API: %s: %s (check --token-file or $FANOUT_ADMIN_TOKEN)", resp.Status, msg)
	}
	return nil, fmt.Errorf("admin API: %s: %s", resp.Status, msg)
}

// parseArgs parses flags given before, between or after the positional
// arguments (fanout dlq list logic_apps -o json), and returns the
// positional ones; "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
