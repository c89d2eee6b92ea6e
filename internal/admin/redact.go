package admin

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
)

// Redacted replaces a secret value in what the admin API shows.
const Redacted = "[REDACTED]"

// secretWords are the parts of a field or header name that mark its value
// as a secret; names are compared in lower case without '-' and '_'.
var secretWords = []string{
	"password", "passwd", "secret", "token", "authorization", "apikey", "accesskey",
	"privatekey", "credential", "signature", "cookie", "sessionid", "connectionstring",
}

// secretNames are whole names that mark a secret but are too short to
// look for inside longer names ("sig" is in "design").
var secretNames = map[string]bool{"sig": true, "pwd": true, "auth": true, "sas": true, "pass": true}

// secretName reports whether a JSON field or header named name holds a
// secret.
func secretName(name string) bool {
	n := strings.ToLower(name)
	n = strings.NewReplacer("-", "", "_", "", ".", "", " ", "").Replace(n)
	if secretNames[n] {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return strings.HasSuffix(strings.ToLower(name), "_sig") || strings.HasSuffix(strings.ToLower(name), "-sig")
}

// urlQuery finds URLs with a query string: a query may carry a secret (a
// Logic Apps sig, a SAS token), so it is never echoed.
var urlQuery = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://[^\s?#"'<>]+)\?[^\s#"'<>]*`)

// redactText removes the query of every URL in s.
func redactText(s string) string {
	return urlQuery.ReplaceAllString(s, "${1}?"+Redacted)
}

// redactJSON returns doc with the values of secret-looking fields replaced
// and URL queries removed from every string; ok is false when doc is not
// JSON.
func redactJSON(doc []byte) (json.RawMessage, bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	out, err := json.Marshal(redactValue(v))
	if err != nil {
		return nil, false
	}
	return out, true
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if secretName(k) {
				x[k] = Redacted
				continue
			}
			x[k] = redactValue(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = redactValue(e)
		}
		return x
	case string:
		return redactText(x)
	default:
		return v
	}
}
