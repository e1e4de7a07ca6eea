package config

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Environment variables read by ApplyEnv.
const (
	// EnvRedisPassword overrides store.redis.password.
	EnvRedisPassword = "RECALLRELAY_REDIS_PASSWORD"
	// EnvRedisURL overrides store.redis.url (and clears addrs and
	// master_name).
	EnvRedisURL = "RECALLRELAY_REDIS_URL"
	// EnvKeyPrefix followed by a key's ID, upper-cased, with every byte
	// other than a letter or digit replaced by "_", sets that key's secret:
	// see KeyEnv.
	EnvKeyPrefix = "RECALLRELAY_KEY_"
)

const redacted = "[redacted]"

// Secret is a string that never shows itself: fmt (every verb), String,
// GoString, and text, JSON and YAML marshalling all produce "[redacted]", or
// "" when the secret is empty. Convert with string(s) to use the value.
type Secret string

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString is String.
func (s Secret) GoString() string { return s.String() }

// Format implements fmt.Formatter so that no verb prints the value.
func (s Secret) Format(f fmt.State, verb rune) { fmt.Fprint(f, s.String()) }

// MarshalText implements encoding.TextMarshaler (used by encoding/json and
// YAML encoders) with the redacted form.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// URL is a URL that may carry a password. It prints, and marshals, with the
// password replaced by "xxxxx" (url.URL.Redacted); a value that does not
// parse as a URL prints as "[unparsable URL]". Convert with string(u) to use
// the value.
type URL string

// String returns the redacted URL.
func (u URL) String() string {
	if u == "" {
		return ""
	}
	p, err := url.Parse(string(u))
	if err != nil {
		return "[unparsable URL]"
	}
	if misplacedAt(p) {
		// A password with an unescaped "/", "?" or "#" ends the user info
		// early and lands in the path: show no part of it.
		return p.Scheme + "://[redacted]"
	}
	return p.Redacted()
}

// GoString is String.
func (u URL) GoString() string { return u.String() }

// Format implements fmt.Formatter so that no verb prints a password.
func (u URL) Format(f fmt.State, verb rune) { fmt.Fprint(f, u.String()) }

// MarshalText implements encoding.TextMarshaler with the redacted form.
func (u URL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// misplacedAt reports whether p has an "@" outside its user info.
func misplacedAt(p *url.URL) bool {
	return strings.Contains(p.Host+p.Path+p.RawQuery+p.Fragment+p.Opaque, "@")
}

// envValue is the result of looking up Key.SecretEnv.
type envValue struct {
	value Secret
	set   bool
}

// KeyEnv returns the environment variable that sets the secret of the key
// with the given ID: "RECALLRELAY_KEY_" followed by the ID upper-cased, each
// byte other than an ASCII letter or digit replaced by "_". KeyEnv("k1") is
// "RECALLRELAY_KEY_K1", KeyEnv("2025-q1") is "RECALLRELAY_KEY_2025_Q1".
func KeyEnv(id string) string {
	b := []byte(strings.ToUpper(id))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return EnvKeyPrefix + string(b)
}

// ApplyEnv applies environment overrides, looking variables up with lookup
// (os.LookupEnv in production). A variable that is unset or empty changes
// nothing.
//
//   - RECALLRELAY_REDIS_PASSWORD sets store.redis.password.
//   - RECALLRELAY_REDIS_URL sets store.redis.url and clears store.redis.addrs
//     and store.redis.master_name.
//   - RECALLRELAY_KEY_<ID> (see KeyEnv) sets the secret of the listed key
//     with that ID, replacing its secret, secret_file or secret_env. It cannot
//     add a key: list the ID under reference.keys.
//
// ApplyEnv also reads each remaining key's secret_env; Validate reports a
// key whose secret_env was never looked up or is unset. Call ApplyEnv once,
// before Validate.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) {
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		return v, ok && v != ""
	}
	if v, ok := get(EnvRedisPassword); ok {
		c.Store.Redis.Password = Secret(v)
	}
	if v, ok := get(EnvRedisURL); ok {
		c.Store.Redis.URL = URL(v)
		c.Store.Redis.Addrs = nil
		c.Store.Redis.MasterName = ""
	}
	for i := range c.Reference.Keys {
		k := &c.Reference.Keys[i]
		if v, ok := get(KeyEnv(k.ID)); ok {
			k.Secret, k.SecretFile, k.SecretEnv, k.env = Secret(v), "", "", nil
			continue
		}
		if k.SecretEnv != "" {
			v, ok := get(k.SecretEnv)
			k.env = &envValue{value: Secret(v), set: ok}
		}
	}
}

// String describes the key without its secret, e.g.
// "k1 (secret redacted)" or "k1 (secret from file /etc/rr/k1)".
func (k Key) String() string {
	switch {
	case k.Ephemeral:
		return k.ID + " (ephemeral, secret redacted)"
	case k.SecretFile != "" && k.Secret == "":
		return k.ID + " (secret from file " + k.SecretFile + ")"
	case k.SecretEnv != "" && k.Secret == "":
		return k.ID + " (secret from $" + k.SecretEnv + ")"
	}
	return k.ID + " (secret redacted)"
}

// GoString is String.
func (k Key) GoString() string { return k.String() }

// Format implements fmt.Formatter so that no verb prints the secret.
func (k Key) Format(f fmt.State, verb rune) { fmt.Fprint(f, k.String()) }

// Bytes returns the key material: the decoded secret, the contents of
// secret_file or the value of secret_env (as looked up by ApplyEnv). Its
// errors never contain the material.
func (k Key) Bytes() ([]byte, error) {
	b, _, err := k.material()
	return b, err
}

// material is Bytes that also names the field at fault.
func (k Key) material() ([]byte, string, error) {
	var sources []string
	if k.Secret != "" {
		sources = append(sources, "secret")
	}
	if k.SecretFile != "" {
		sources = append(sources, "secret_file")
	}
	if k.SecretEnv != "" {
		sources = append(sources, "secret_env")
	}
	switch len(sources) {
	case 0:
		return nil, "", fmt.Errorf("no secret: set one of secret, secret_file or secret_env, or the environment variable %s", KeyEnv(k.ID))
	case 1:
	default:
		return nil, "", fmt.Errorf("%s are exclusive: set exactly one", strings.Join(sources, " and "))
	}
	var (
		text  string
		field = sources[0]
	)
	switch field {
	case "secret":
		text = string(k.Secret)
	case "secret_file":
		data, err := os.ReadFile(k.SecretFile)
		if err != nil {
			return nil, field, err
		}
		text = strings.TrimRight(string(data), "\r\n")
	case "secret_env":
		switch {
		case k.env == nil:
			return nil, field, fmt.Errorf("environment variable %s was not looked up (ApplyEnv must run before Validate)", k.SecretEnv)
		case !k.env.set:
			return nil, field, fmt.Errorf("environment variable %s is not set", k.SecretEnv)
		}
		text = string(k.env.value)
	}
	b, err := decodeSecret(text)
	if err != nil {
		return nil, field, err
	}
	if len(b) < minKeyBytes {
		return nil, field, fmt.Errorf("secret too short: %d bytes after decoding, need at least %d (generate one with: echo base64:$(openssl rand -base64 32))", len(b), minKeyBytes)
	}
	return b, field, nil
}

// decodeSecret decodes the notation of Key.Secret. Errors do not quote the
// input.
func decodeSecret(s string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(s, "base64:"); ok {
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			// CorruptInputError gives only an offset.
			return nil, fmt.Errorf("invalid standard base64 after \"base64:\": %v", err)
		}
		return b, nil
	}
	return []byte(s), nil
}
