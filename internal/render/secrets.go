package render

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fanout-dev/fanout/internal/config"
)

// SecretRef is one secret a role reads: from an environment variable (in
// Kubernetes a secretKeyRef on the Secret Options.Secret, with the
// variable's name as the key), or from a file under SecretsDir (the
// Secret mounted there as files, the file's name as the key).
type SecretRef struct {
	// Env is the Secret's key: the environment variable's name, or the
	// file's name under SecretsDir.
	Env string
	// Field is the configuration field that names it, e.g.
	// connectors.salesforce.settings.auth.client_secret_env.
	Field string
	// File is the path of the file the secret is read from (a *_file
	// setting), "" for an environment variable.
	File string
}

// SecretsDir is where the rendered Deployments mount the Secret's keys as
// files, for the *_file settings that point under it
// (admin.tokens[].token_file: /run/secrets/fanout/FANOUT_ADMIN_TOKEN_OPS).
// A file is followed by the role that reads it, so unlike an environment
// variable a rotated key reaches the pod with no restart (the kubelet
// updates a mounted Secret within its sync period).
const SecretsDir = "/run/secrets/fanout"

// fileRef returns the SecretRef of a *_file setting whose file lies
// directly under SecretsDir, keyed by the file's name; ok is false for a
// file elsewhere, which the operator mounts himself.
func fileRef(field, path string) (SecretRef, bool, error) {
	dir, name := filepath.Split(filepath.Clean(path))
	if filepath.Clean(dir) != SecretsDir {
		return SecretRef{}, false, nil
	}
	if !envName.MatchString(name) {
		return SecretRef{}, false, fmt.Errorf("%s: the file name %q under %s is not a valid Secret key here (use letters, digits and '_', e.g. FANOUT_ADMIN_TOKEN_OPS)", field, name, SecretsDir)
	}
	return SecretRef{Env: name, Field: field, File: path}, true, nil
}

// envName is what fanout accepts as the name of an environment variable
// holding a secret; it is also a valid Secret key.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// headerEnvRef matches ${NAME} in a webhook header value, which the webhook
// connector replaces with the environment variable NAME.
var headerEnvRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ConnectorSecretRefs lists the environment variables that connector name
// reads its secrets from: the value of every key ending in "_env" anywhere
// in its settings (url_env, auth.client_secret_env, auth.private_key_env,
// signing.secret_env, ...) and every ${NAME} in a value under a "headers"
// key. The settings are walked generically, so a new connector type needs
// no change here as long as it follows the *_env convention. The list is
// sorted by variable and has no duplicates.
func ConnectorSecretRefs(cfg *config.Config, name string) ([]SecretRef, error) {
	c, ok := cfg.Connectors[name]
	if !ok {
		return nil, fmt.Errorf("connector %q is not configured", name)
	}
	var refs []SecretRef
	var errs []string
	var walk func(n *yaml.Node, path string, inHeaders bool)
	walk = func(n *yaml.Node, path string, inHeaders bool) {
		if n == nil {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path, inHeaders)
			}
		case yaml.AliasNode:
			walk(n.Alias, path, inHeaders)
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, path+"["+strconv.Itoa(i)+"]", inHeaders)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, val := n.Content[i].Value, n.Content[i+1]
				field := path + "." + key
				if strings.HasSuffix(key, "_file") && val.Kind == yaml.ScalarNode {
					if v := strings.TrimSpace(val.Value); v != "" {
						r, ok, err := fileRef(field, v)
						if err != nil {
							errs = append(errs, err.Error())
						} else if ok {
							refs = append(refs, r)
						}
					}
					continue
				}
				if strings.HasSuffix(key, "_env") && val.Kind == yaml.ScalarNode {
					if v := strings.TrimSpace(val.Value); v != "" {
						if !envName.MatchString(v) {
							errs = append(errs, fmt.Sprintf("%s: %q is not a valid environment variable name (use letters, digits and '_', not starting with a digit)", field, v))
						} else {
							refs = append(refs, SecretRef{Env: v, Field: field})
						}
					}
					continue
				}
				walk(val, field, inHeaders || key == "headers")
			}
		case yaml.ScalarNode:
			if !inHeaders {
				return
			}
			for _, m := range headerEnvRef.FindAllStringSubmatch(n.Value, -1) {
				refs = append(refs, SecretRef{Env: m[1], Field: path})
			}
		}
	}
	settings := c.Settings
	walk(&settings, "connectors."+name+".settings", false)
	if len(errs) > 0 {
		return nil, fmt.Errorf("connector %s: %s", name, strings.Join(errs, "; "))
	}
	return dedupe(refs), nil
}

// CommonSecretRefs lists the secrets every role reads: the MongoDB URI
// (mongo.uri_file under SecretsDir, or mongo.uri_env when set, else the
// FANOUT_MONGO_URI override, since a production URI carries credentials)
// and the Kafka SASL password (kafka.sasl.password_env, or
// kafka.sasl.password_file under SecretsDir). A *_file setting elsewhere
// names no key: the operator mounts that file himself.
func CommonSecretRefs(cfg *config.Config) []SecretRef {
	var refs []SecretRef
	switch {
	case cfg.Mongo.URIFile != "":
		if r, ok, _ := fileRef("mongo.uri_file", cfg.Mongo.URIFile); ok {
			refs = append(refs, r)
		}
	case cfg.Mongo.URIEnv != "":
		refs = append(refs, SecretRef{Env: cfg.Mongo.URIEnv, Field: "mongo.uri_env"})
	default:
		refs = append(refs, SecretRef{Env: config.EnvPrefix + "MONGO_URI", Field: "mongo.uri (environment override)"})
	}
	if cfg.Kafka.SASL.PasswordEnv != "" {
		refs = append(refs, SecretRef{Env: cfg.Kafka.SASL.PasswordEnv, Field: "kafka.sasl.password_env"})
	}
	if f := cfg.Kafka.SASL.PasswordFile; f != "" {
		if r, ok, _ := fileRef("kafka.sasl.password_file", f); ok {
			refs = append(refs, r)
		}
	}
	return dedupe(refs)
}

// AdminSecretRefs lists the secrets only the admin role reads: the value
// of every admin token (admin.tokens[].token_env, or token_file under
// SecretsDir). A non-loopback admin listener refuses to start without
// tokens, so the admin Deployment needs them from the Secret.
func AdminSecretRefs(cfg *config.Config) []SecretRef {
	var refs []SecretRef
	for i, t := range cfg.Admin.Tokens {
		field := config.AdminTokenField(i, t)
		switch {
		case t.TokenFile != "":
			if r, ok, _ := fileRef(field, t.TokenFile); ok {
				refs = append(refs, r)
			}
		case t.TokenEnv != "":
			refs = append(refs, SecretRef{Env: t.TokenEnv, Field: field})
		}
	}
	return dedupe(refs)
}

// dedupe sorts refs by variable and keeps the first field naming each.
func dedupe(refs []SecretRef) []SecretRef {
	sort.SliceStable(refs, func(i, j int) bool { return refs[i].Env < refs[j].Env })
	out := refs[:0]
	for _, r := range refs {
		if len(out) > 0 && out[len(out)-1].Env == r.Env {
			continue
		}
		out = append(out, r)
	}
	return out
}

// inlineSecretKeys are settings keys whose non-empty value is a secret.
var inlineSecretKeys = map[string]bool{
	"password": true, "passwd": true, "client_secret": true, "token": true, "secret": true, "private_key": true,
	"sig": true, "access_token": true, "refresh_token": true, "api_key": true, "apikey": true,
	"shared_access_key": true, "connection_string": true,
}

// inlineSecretSuffixes end settings keys whose value is a secret
// (signing_secret, bearer_token); *_env keys never match.
var inlineSecretSuffixes = []string{"_password", "_secret", "_token", "_private_key"}

// secretKey reports whether a settings key names a secret value.
func secretKey(key string) bool {
	k := strings.ToLower(key)
	if inlineSecretKeys[k] {
		return true
	}
	for _, suf := range inlineSecretSuffixes {
		if strings.HasSuffix(k, suf) {
			return true
		}
	}
	return false
}

// secretHeaderWords mark a header whose literal value is a credential.
var secretHeaderWords = []string{"authorization", "apikey", "token", "secret", "password", "signature", "cookie", "accesskey"}

// secretHeader reports whether a header holds a literal credential: a
// secret-looking name and a value not taken from ${NAME}.
func secretHeader(name, value string) bool {
	if strings.TrimSpace(value) == "" || headerEnvRef.MatchString(value) {
		return false
	}
	n := strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(name))
	for _, w := range secretHeaderWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// sasSignature finds a shared access signature in a URL's query.
var sasSignature = regexp.MustCompile(`(?i)[?&]sig=[^&\s]`)

// InlineSecrets lists the fields of cfg that hold a secret value in the
// file itself: kafka.sasl.password, a password in mongo.uri, and in
// connector settings a non-empty password, client_secret, token, secret,
// sig, private_key, api_key (and keys ending in _password, _secret, _token),
// a header with a secret-looking name and a literal value (not ${NAME}), or
// a URL carrying a SAS signature (sig=). In Kubernetes the
// file becomes a ConfigMap, which is no place for secrets: each of these
// has an *_env field naming an environment variable instead. The list
// names fields, never values.
func InlineSecrets(cfg *config.Config) []string {
	var found []string
	if cfg.Kafka.SASL.Password != "" {
		found = append(found, "kafka.sasl.password")
	}
	if _, rest, ok := strings.Cut(cfg.Mongo.URI, "://"); ok {
		if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 && strings.Contains(rest[:at], ":") {
			found = append(found, "mongo.uri")
		}
	}
	names := make([]string, 0, len(cfg.Connectors))
	for n := range cfg.Connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	var walk func(n *yaml.Node, path string, inHeaders bool)
	walk = func(n *yaml.Node, path string, inHeaders bool) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path, inHeaders)
			}
		case yaml.AliasNode:
			walk(n.Alias, path, inHeaders)
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, path+"["+strconv.Itoa(i)+"]", inHeaders)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, val := n.Content[i].Value, n.Content[i+1]
				scalar := val.Kind == yaml.ScalarNode && strings.TrimSpace(val.Value) != ""
				if scalar && (secretKey(key) || (inHeaders && secretHeader(key, val.Value))) {
					found = append(found, path+"."+key)
					continue
				}
				walk(val, path+"."+key, key == "headers")
			}
		case yaml.ScalarNode:
			if sasSignature.MatchString(n.Value) {
				found = append(found, path)
			}
		}
	}
	for _, name := range names {
		settings := cfg.Connectors[name].Settings
		walk(&settings, "connectors."+name+".settings", false)
	}
	return found
}
