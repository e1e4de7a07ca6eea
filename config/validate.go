package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/recallrelay/recallrelay/relay"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/rules"
	"github.com/recallrelay/recallrelay/store"
)

// FieldError is one problem with one field.
type FieldError struct {
	// Path is the field's YAML path: keys joined by ".", list indexes in
	// brackets, as in "listeners.return.tls.cert_file" or "vendors[1].name".
	// Empty for a problem with the file as a whole.
	Path string
	// Line is the field's line in the parsed file, or the line of its
	// closest ancestor present there; 0 when unknown (e.g. for a Config that
	// was not parsed).
	Line int
	// Msg explains the problem; it never contains a secret.
	Msg string
}

// Error formats e as "path: msg (line N)".
func (e FieldError) Error() string {
	s := e.Msg
	if e.Path != "" {
		s = e.Path + ": " + s
	}
	if e.Line > 0 {
		s += " (line " + strconv.Itoa(e.Line) + ")"
	}
	return s
}

// ValidationErrors lists every problem found, in the order of the schema.
type ValidationErrors []FieldError

// Error lists the problems, one per line.
func (es ValidationErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the FieldErrors, for errors.As.
func (es ValidationErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Validate checks c and returns a ValidationErrors listing every problem, or
// nil. It reads the files c names (certificates, keys, secret files, the
// rules file) to check that they are usable, and changes nothing in c:
// CompileRules compiles the rules the relay runs. Call ApplyEnv first.
func (c *Config) Validate() error {
	v := &validator{src: c.src}
	v.hostname("hostname", c.Hostname)
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "console")
	if err := c.Log.Recipients.Check(); err != nil {
		v.add("log.recipients", "%v", err)
	}
	v.store(&c.Store)
	v.reference(&c.Reference)
	v.headers(&c.Headers, c.Reference.Header)
	for _, lg := range c.legs() {
		v.listener(lg.path, lg.l)
		if open, _ := lg.open(); open && !lg.l.InsecureOpen {
			v.add(lg.path+".allow_nets", "%s; %s", lg.openProblem(), lg.fix)
		}
	}
	if sameListenAddr(c.Listeners.Tenant.Listen, c.Listeners.Return.Listen) {
		v.add("listeners.return.listen", "%s overlaps listeners.tenant.listen %s: the two listeners need different addresses",
			c.Listeners.Return.Listen, c.Listeners.Tenant.Listen)
	}
	v.vendors(c)
	v.hostPort("tenant.address", c.Tenant.Address, false)
	v.client("tenant", &c.Tenant.Client)
	v.notOwnListener("tenant.address", c.Tenant.Address, c)
	v.admin(&c.Admin)
	if n := c.NextHopPool.MaxIdle; n < -1 || n > 1000 {
		v.add("next_hop_pool.max_idle", "%d is out of range: -1 (off) to 1000", n)
	}
	if d := c.NextHopPool.IdleTimeout; d <= 0 || d > Duration(10*time.Minute) {
		v.add("next_hop_pool.idle_timeout", "%s is out of range: above 0, at most 10m (next hops close idle connections themselves)", d)
	}
	v.oneOf("return_without_record", string(c.ReturnWithoutRecord), string(relay.ReturnReject), string(relay.ReturnStrip))
	v.oneOf("fallback_matching", string(c.FallbackMatching), string(relay.FallbackTrusted), string(relay.FallbackOff), string(relay.FallbackAny))
	v.oneOf("duplicates", string(c.Duplicates), string(relay.DuplicatesSuppress), string(relay.DuplicatesDeliver))
	if c.MaxDuplicateReturns <= 0 {
		v.add("max_duplicate_returns", "must be positive, not %d", c.MaxDuplicateReturns)
	}
	if len(v.errs) == 0 {
		// Rules are checked against a configuration that is otherwise
		// sound: their route targets must be its vendors. The engine is
		// compiled to be checked, and dropped.
		v.rules(c)
	}
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

// CompileRules loads the rules file c names (rules_file), or without one
// the default rules (the recall-safe defaults, every other message to
// default_vendor), and compiles it against c's vendors, loop marker and
// reference header: the engine returned is the one a relay with c runs.
// Call it on a Config that Validate accepted; it reads the rules file
// again, so an error is possible still, when the file changed in between.
//
// The error is a ValidationErrors, as Validate's: one FieldError at
// rules_file for each problem, naming the file, the rule, the field and its
// line, as rules.Error does.
func (c *Config) CompileRules() (*rules.Engine, error) {
	v := &validator{src: c.src}
	e := v.rules(c)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return e, nil
}

// Warnings lists the settings of c that weaken the relay on purpose: each
// listener with insecure_open set (open to anyone who can reach it, or
// else a flag that does nothing now but would silently accept the listener
// if it ever became open) and fallback_matching: any. Each warning is a
// FieldError with the setting's path and line; Explain ends with one
// "WARNING: " line per warning. Meaningful for a Config that Validate
// accepted; nil when there is nothing to warn about.
func (c *Config) Warnings() []FieldError {
	v := &validator{src: c.src}
	for _, lg := range c.legs() {
		if !lg.l.InsecureOpen {
			continue
		}
		if open, closedBy := lg.open(); open {
			v.add(lg.path+".insecure_open", "%s (accepted by insecure_open: true)", lg.openProblem())
		} else {
			v.add(lg.path+".insecure_open", "true has no effect: the listener is not open (%s); remove it, so that the listener is refused if it ever becomes open", closedBy)
		}
	}
	if c.FallbackMatching == relay.FallbackAny {
		v.add("fallback_matching", "any: every client of the return listener may be matched without the signed reference, so whoever can reach it and knows a recorded message's Message-ID (or its Date, From, To and Subject) and sender can deliver other content with that message's internal headers to a recipient it has not reached yet; trusted (the default) allows this only for clients that allow_nets admitted or that authenticated")
	}
	return v.errs
}

// leg is one of the relay's listeners, with what anyone could do through
// it if it were open to everyone, and how to restrict it.
type leg struct {
	path string // "listeners.tenant" or "listeners.return"
	l    *Listener
	risk string // what anyone could do: completes "so ..."
	fix  string // how to restrict the listener, or accept the risk
}

// legs returns c's two listeners in the order of the schema.
func (c *Config) legs() []leg {
	return []leg{
		{
			path: "listeners.tenant", l: &c.Listeners.Tenant,
			risk: "anyone can send mail with forged X-MS-Exchange-CrossPremises fields straight to the tenant through the bypass path",
			fix:  "set allow_nets to Exchange Online's outbound IP ranges, require client certificates (tls.client_cert_names), or set insecure_open: true to accept the risk",
		},
		{
			path: "listeners.return", l: &c.Listeners.Return,
			risk: "anyone can send mail that the relay reinjects into the tenant and, by fallback matching, restore a recorded message's internal headers onto other content",
			fix:  "set allow_nets to your vendors' sending addresses, require client certificates (tls.client_cert_names) or SMTP AUTH (auth.users_file), or set insecure_open: true to accept the risk",
		},
	}
}

// open reports whether the listener is open: anyone on the network can
// use it, because its listen address is not loopback only (127.0.0.0/8,
// ::1, localhost) and neither allow_nets nor client authentication
// (tls.client_cert_names, auth.users_file: the relay then requires one or
// the other before MAIL FROM) restricts its clients. TLS alone, or a client
// CA without names, restricts nothing. When the listener is not open,
// closedBy says why. A listen address that does not parse counts as not
// open: Validate reports it at listen.
func (lg leg) open() (open bool, closedBy string) {
	l := lg.l
	host, _, err := net.SplitHostPort(l.Listen)
	switch {
	case err != nil:
		return false, "its listen address is invalid"
	case loopbackHost(host):
		return false, l.Listen + " is loopback only"
	case len(l.AllowNets) > 0:
		return false, "allow_nets restricts it"
	case len(l.TLS.ClientCertNames) > 0 || l.Auth.UsersFile != "":
		return false, "client authentication restricts it"
	}
	return true, ""
}

// openProblem describes the open listener and its risk in one sentence.
func (lg leg) openProblem() string {
	return fmt.Sprintf("open listener: %s is reachable from other hosts, and neither allow_nets nor client authentication restricts who connects, so %s",
		lg.l.Listen, lg.risk)
}

// admin checks the admin listener: a valid address; one other hosts can
// reach only with a token or insecure_open; a readable token; a
// certificate with its key.
func (v *validator) admin(a *Admin) {
	if a.Listen == "" {
		return
	}
	v.hostPort("admin.listen", a.Listen, true)
	host, _, _ := net.SplitHostPort(a.Listen)
	if !loopbackHost(host) && a.TokenFile == "" && !a.InsecureOpen {
		v.add("admin.listen", "%s is reachable from other hosts without a token, so anyone there could read the relay's metrics; set admin.token_file, listen on loopback, or set admin.insecure_open: true", a.Listen)
	}
	if a.TokenFile != "" {
		switch tok, err := a.Token(); {
		case err != nil:
			v.add("admin.token_file", "%v", err)
		case tok == "":
			v.add("admin.token_file", "%s is empty", a.TokenFile)
		case strings.ContainsFunc(tok, func(c rune) bool { return c <= ' ' || c == 0x7f }):
			v.add("admin.token_file", "the token in %s contains a blank or a control character", a.TokenFile)
		}
	}
	if a.TLS.CertFile != "" || a.TLS.KeyFile != "" {
		v.keyPair("admin.tls", "cert_file", "key_file", a.TLS.CertFile, a.TLS.KeyFile)
	}
	if a.RecentMessages < 0 || a.RecentMessages > MaxRecentMessages {
		v.add("admin.recent_messages", "%d is out of range: 0 (the default, %d) to %d", a.RecentMessages, DefaultRecentMessages, MaxRecentMessages)
	}
}

// loopbackHost reports whether a listen address's host reaches only this
// machine: localhost, or an address in 127.0.0.0/8 or ::1. An empty host
// (every interface) and other names do not.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// rules loads and compiles the rules file, or the default rules without
// one. Each problem of the file becomes an error of rules_file that names
// the file, the rule, the field and its line.
func (v *validator) rules(c *Config) *rules.Engine {
	set := rules.Default(c.DefaultVendor)
	if c.RulesFile != "" {
		var err error
		if set, err = rules.Load(c.RulesFile); err != nil {
			v.rulesError(err)
			return nil
		}
	}
	names := make([]string, len(c.Vendors))
	for i, vd := range c.Vendors {
		names[i] = vd.Name
	}
	e, err := set.Compile(rules.CompileOptions{Vendors: names, LoopMarker: c.Headers.LoopMarker.Name, RefHeader: c.Reference.Header})
	if err != nil {
		v.rulesError(err)
		return nil
	}
	return e
}

func (v *validator) rulesError(err error) {
	var re *rules.Error
	if !errors.As(err, &re) {
		v.add("rules_file", "%v", err)
		return
	}
	// Each problem names its place in the rules file, line included; the
	// line of rules_file in this file would only double it.
	for _, p := range re.Problems {
		v.errs = append(v.errs, FieldError{Path: "rules_file", Msg: re.Source + ": " + p.Error()})
	}
}

type validator struct {
	src  *fileInfo
	errs ValidationErrors
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Path: path, Line: v.src.lineOf(path), Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(path, val string, allowed ...string) {
	if !slices.Contains(allowed, val) {
		v.add(path, "%q is not one of %s", val, strings.Join(allowed, ", "))
	}
}

func (v *validator) positiveDuration(path string, d Duration) {
	if d <= 0 {
		v.add(path, "must be a positive duration, not %s", d)
	}
}

func (v *validator) store(s *Store) {
	if s.RecordTTL < Duration(time.Minute) {
		v.add("store.record_ttl", "%s is too short: at least 1m (records must outlive the vendor's processing and queueing)", s.RecordTTL)
	}
	r := &s.Redis
	if r.MasterName != "" && len(r.Addrs) == 0 {
		v.add("store.redis.master_name", "needs store.redis.addrs (the Sentinel addresses)")
	}
	if !r.Enabled() {
		if s.DataDir == "" {
			v.add("store.data_dir", "required for the embedded store (no store.redis.url or store.redis.addrs is set)")
		} else if fi, err := os.Stat(s.DataDir); err == nil && !fi.IsDir() {
			v.add("store.data_dir", "%s is not a directory", s.DataDir)
		}
		return
	}
	switch {
	case r.URL != "" && len(r.Addrs) > 0:
		v.add("store.redis", "url and addrs are exclusive: set one of them")
	case r.URL != "":
		rc := v.redisURL("store.redis.url", string(r.URL))
		if p := rc.KeyPrefix; p != "" {
			// The URL's key_prefix is the one the store uses.
			switch {
			case store.CheckKeyPrefix(p) != nil:
				v.add("store.redis.url", "%v", store.CheckKeyPrefix(p))
			case p != r.KeyPrefix && v.src.has("store.redis.key_prefix"):
				v.add("store.redis.key_prefix", "%q, but the URL's key_prefix %q takes precedence: set the prefix in one place", r.KeyPrefix, p)
			}
		}
		if r.DB != 0 {
			v.add("store.redis.db", "with url, give the database as the URL path (redis://host:6379/%d)", r.DB)
		}
	default:
		for i, a := range r.Addrs {
			v.hostPort("store.redis.addrs["+strconv.Itoa(i)+"]", a, false)
		}
		if r.DB < 0 {
			v.add("store.redis.db", "must not be negative")
		} else if r.DB != 0 && len(r.Addrs) > 1 && r.MasterName == "" {
			v.add("store.redis.db", "several addrs select Redis Cluster, which has only database 0")
		}
	}
	if r.KeyPrefix == "" {
		v.add("store.redis.key_prefix", "must be non-empty")
	} else if err := store.CheckKeyPrefix(r.KeyPrefix); err != nil {
		v.add("store.redis.key_prefix", "%v", err)
	}
	v.positiveDuration("store.redis.timeout", r.Timeout)
	switch {
	case r.WaitReplicas < 0 || r.WaitReplicas > 16:
		v.add("store.redis.wait_replicas", "%d is out of range: 0 (do not wait) to 16", r.WaitReplicas)
	case r.WaitReplicas > 0:
		v.positiveDuration("store.redis.wait_timeout", r.WaitTimeout)
		if r.WaitTimeout >= r.Timeout {
			v.add("store.redis.wait_timeout", "%s must be below store.redis.timeout (%s), which bounds the wait's reply", r.WaitTimeout, r.Timeout)
		}
	}
}

// redisURL checks a Redis URL with the parser the store opens it with,
// store.ParseRedisURL, so that it accepts what the store accepts (the
// key_prefix, master_name and addr parameters included) and reports the
// store's reason for what it refuses. Two refusals are worded here
// instead, since a password with an unescaped "/", "?", "#" or "@" is
// split into the other parts of the URL, which a message would quote: a
// URL with an "@" outside its user info (refused even where the store
// would take it, for it would reach the wrong host with a truncated
// password), and one that does not parse as a URL at all.
//
// It returns what the store makes of the URL, the zero value when it
// refuses it.
func (v *validator) redisURL(path, raw string) store.RedisConfig {
	const fix = "percent-encode reserved characters such as / and @ in the password, or set the password apart in store.redis.password"
	p, perr := url.Parse(raw)
	if perr == nil && misplacedAt(p) {
		v.add(path, "\"@\" outside the user info: %s", fix)
		return store.RedisConfig{}
	}
	rc, err := store.ParseRedisURL(raw)
	if err != nil {
		if perr != nil {
			v.add(path, "not a valid URL (%s)", fix)
			return store.RedisConfig{}
		}
		v.add(path, "%s", strings.TrimPrefix(err.Error(), "store: "))
		return store.RedisConfig{}
	}
	return rc
}

var keyIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func (v *validator) reference(r *Reference) {
	v.fieldName("reference.header", r.Header)
	if len(r.Keys) == 0 {
		v.add("reference.keys", "at least one key is required (e.g. id: k1 with secret_env, and the secret from: echo base64:$(openssl rand -base64 32))")
		return
	}
	ids := map[string]int{}
	envs := map[string]int{}
	for i, k := range r.Keys {
		p := "reference.keys[" + strconv.Itoa(i) + "]"
		switch {
		case !keyIDRe.MatchString(k.ID):
			v.add(p+".id", "%q: use 1 to 32 of A-Z, a-z, 0-9, _ and -", k.ID)
		case hasKey(ids, k.ID):
			v.add(p+".id", "duplicate key id %q (also reference.keys[%d])", k.ID, ids[k.ID])
		case hasKey(envs, KeyEnv(k.ID)):
			v.add(p+".id", "%q and %q share the environment variable %s", k.ID, r.Keys[envs[KeyEnv(k.ID)]].ID, KeyEnv(k.ID))
		default:
			ids[k.ID] = i
			envs[KeyEnv(k.ID)] = i
		}
		if _, field, err := k.material(); err != nil {
			if field != "" {
				p += "." + field
			}
			v.add(p, "%v", err)
		}
	}
	if r.SigningKey == "" {
		v.add("reference.signing_key", "required")
	} else if !slices.ContainsFunc(r.Keys, func(k Key) bool { return k.ID == r.SigningKey }) {
		have := make([]string, len(r.Keys))
		for i, k := range r.Keys {
			have[i] = k.ID
		}
		v.add("reference.signing_key", "%q is not among reference.keys (have: %s)", r.SigningKey, strings.Join(have, ", "))
	}
}

func hasKey(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}

// firewall matches the fields the return leg always strips.
var firewall = headers.MustMatcher(headers.Firewall...)

func (v *validator) fieldName(path, name string) {
	if err := headers.CheckFieldName(name); err != nil {
		v.add(path, "invalid header field name %q: %v", name, err)
		return
	}
	if firewall.Match(name) {
		v.add(path, "%q would be removed by the return leg's header firewall (%s)", name, strings.Join(headers.Firewall, ", "))
	}
}

func (v *validator) headers(h *Headers, refHeader string) {
	if len(h.Capture) == 0 {
		v.add("headers.capture", "empty: the relay would record nothing to restore")
	}
	for i, p := range h.Capture {
		if _, err := headers.NewMatcher([]string{p}); err != nil {
			v.add("headers.capture["+strconv.Itoa(i)+"]", "%v", err)
		}
	}
	capture, _ := headers.NewMatcher(validPatterns(h.Capture))
	for i, p := range h.Restore {
		path := "headers.restore[" + strconv.Itoa(i) + "]"
		if _, err := headers.NewMatcher([]string{p}); err != nil {
			v.add(path, "%v", err)
			continue
		}
		if !covered(p, h.Capture, capture) {
			v.add(path, "%q is restored but never captured: add it, or a pattern covering it, to headers.capture", p)
		}
	}
	v.fieldName("headers.loop_marker.name", h.LoopMarker.Name)
	if strings.EqualFold(h.LoopMarker.Name, refHeader) {
		v.add("headers.loop_marker.name", "%q is also reference.header; use another name", h.LoopMarker.Name)
	}
	switch {
	case strings.ContainsAny(h.LoopMarker.Value, "\r\n"):
		v.add("headers.loop_marker.value", "must not contain CR or LF")
	case strings.TrimSpace(h.LoopMarker.Value) == "":
		v.add("headers.loop_marker.value", "required: the tenant's transport rule matches this value")
	case strings.ContainsFunc(h.LoopMarker.Value, func(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }):
		v.add("headers.loop_marker.value", "must not contain control characters")
	}
}

func validPatterns(ps []string) []string {
	var out []string
	for _, p := range ps {
		if _, err := headers.NewMatcher([]string{p}); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// covered reports whether every name matched by pattern p is matched by the
// capture patterns.
func covered(p string, capture []string, m headers.Matcher) bool {
	prefix, isPrefix := strings.CutSuffix(strings.ToLower(p), "*")
	if !isPrefix {
		return m.Match(p)
	}
	for _, c := range capture {
		if cp, ok := strings.CutSuffix(strings.ToLower(c), "*"); ok && strings.HasPrefix(prefix, cp) {
			return true
		}
	}
	return false
}

func (v *validator) listener(path string, l *Listener) {
	v.hostPort(path+".listen", l.Listen, true)
	if l.MaxMessageSize <= 0 {
		v.add(path+".max_message_size", "must be positive, not %s", l.MaxMessageSize)
	}
	if l.MaxHeaderSize <= 0 {
		v.add(path+".max_header_size", "must be positive, not %s", l.MaxHeaderSize)
	} else if l.MaxMessageSize > 0 && l.MaxHeaderSize > l.MaxMessageSize {
		v.add(path+".max_header_size", "%s exceeds max_message_size %s", l.MaxHeaderSize, l.MaxMessageSize)
	}
	if l.MaxHeaderFields < MinHeaderFields {
		v.add(path+".max_header_fields", "%d is below %d: real Exchange Online messages carry up to about a hundred header fields", l.MaxHeaderFields, MinHeaderFields)
	}
	if l.MaxRecipients <= 0 {
		v.add(path+".max_recipients", "must be positive, not %d", l.MaxRecipients)
	}
	if l.MaxLineLength < 1000 {
		v.add(path+".max_line_length", "%d is below 1000, the line length RFC 5321 requires servers to accept", l.MaxLineLength)
	}
	v.positiveDuration(path+".command_timeout", l.CommandTimeout)
	v.positiveDuration(path+".data_timeout", l.DataTimeout)
	switch {
	case l.MinDataRate == 0:
		v.add(path+".min_data_rate", "0 is not a rate: give a positive number of bytes per second, or off to set no minimum rate")
	case l.MinDataRate < 0 && l.MinDataRate != DataRateOff:
		v.add(path+".min_data_rate", "must be a positive number of bytes per second, or off, not %d", int64(l.MinDataRate))
	}
	v.oneOf(path+".bare_line_endings", string(l.BareLineEndings), string(relay.BareLineReject), string(relay.BareLineNormalize))
	for i, n := range l.AllowNets {
		if _, err := ParseNet(n); err != nil {
			v.add(fmt.Sprintf("%s.allow_nets[%d]", path, i), "%v", err)
		}
	}
	for _, f := range []struct {
		key string
		n   int
	}{
		{"max_connections", l.MaxConnections}, {"max_connections_per_client", l.MaxConnectionsPerClient},
		{"max_commands_before_mail", l.MaxCommandsBeforeMail}, {"max_errors", l.MaxErrors},
	} {
		if f.n <= 0 {
			v.add(path+"."+f.key, "must be positive, not %d", f.n)
		}
	}
	t := &l.TLS
	switch {
	case t.CertFile != "" || t.KeyFile != "":
		v.keyPair(path+".tls", "cert_file", "key_file", t.CertFile, t.KeyFile)
	case t.Require:
		v.add(path+".tls.require", "needs cert_file and key_file")
	}
	if t.ClientCAFile != "" {
		if t.CertFile == "" {
			v.add(path+".tls.client_ca_file", "needs cert_file and key_file")
		} else if pem, err := os.ReadFile(t.ClientCAFile); err != nil {
			v.add(path+".tls.client_ca_file", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			v.add(path+".tls.client_ca_file", "%s holds no PEM certificate", t.ClientCAFile)
		}
	}
	if len(t.ClientCertNames) > 0 && t.ClientCAFile == "" {
		v.add(path+".tls.client_cert_names", "needs client_ca_file to verify the certificates against")
	}
	if f := l.Auth.UsersFile; f != "" {
		if t.CertFile == "" {
			v.add(path+".auth.users_file", "AUTH is offered only after STARTTLS: set tls.cert_file and tls.key_file")
		} else if _, err := os.Stat(f); err != nil {
			v.add(path+".auth.users_file", "%v", err)
		}
	}
}

// ParseNet parses an allow_nets entry: a CIDR prefix or a single address.
func ParseNet(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%s has host bits set; did you mean %s?", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a CIDR prefix", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// keyPair checks that certFile and keyFile are both set, readable and a
// matching pair.
func (v *validator) keyPair(path, certKey, keyKey, certFile, keyFile string) {
	if certFile == "" {
		v.add(path+"."+certKey, "required with %s", keyKey)
		return
	}
	if keyFile == "" {
		v.add(path+"."+keyKey, "required with %s", certKey)
		return
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		v.add(path+"."+certKey, "%v", err)
	}
	keyPEM, kerr := os.ReadFile(keyFile)
	if kerr != nil {
		v.add(path+"."+keyKey, "%v", kerr)
	}
	if err != nil || kerr != nil {
		return
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		v.add(path, "%s %s and %s %s are not a usable pair: %v", certKey, certFile, keyKey, keyFile, err)
	}
}

var vendorNameRe = regexp.MustCompile(`^[a-z0-9-]+$`)

func (v *validator) vendors(c *Config) {
	if len(c.Vendors) == 0 {
		v.add("vendors", "at least one vendor is required")
		return
	}
	seen := map[string]int{}
	names := make([]string, 0, len(c.Vendors))
	for i := range c.Vendors {
		vd := &c.Vendors[i]
		p := "vendors[" + strconv.Itoa(i) + "]"
		switch {
		case vd.Name == "":
			v.add(p+".name", "required")
		case !vendorNameRe.MatchString(vd.Name):
			v.add(p+".name", "%q: use lower-case letters, digits and -", vd.Name)
		case hasKey(seen, vd.Name):
			v.add(p+".name", "duplicate vendor name %q (also vendors[%d])", vd.Name, seen[vd.Name])
		default:
			seen[vd.Name] = i
		}
		names = append(names, vd.Name)
		v.hostPort(p+".address", vd.Address, false)
		v.notOwnListener(p+".address", vd.Address, c)
		v.client(p, &vd.Client)
	}
	if c.DefaultVendor == "" {
		v.add("default_vendor", "required")
	} else if !slices.Contains(names, c.DefaultVendor) {
		v.add("default_vendor", "%q is not a vendor name (have: %s)", c.DefaultVendor, strings.Join(names, ", "))
	}
}

func (v *validator) client(path string, cl *Client) {
	v.hostname(path+".helo", cl.HELO)
	v.oneOf(path+".starttls", string(cl.StartTLS), string(relay.StartTLSOff), string(relay.StartTLSOpportunistic), string(relay.StartTLSRequired))
	if cl.TLSServerName != "" {
		if err := checkDomain(cl.TLSServerName); err != nil && net.ParseIP(cl.TLSServerName) == nil {
			v.add(path+".tls_server_name", "%q: %v", cl.TLSServerName, err)
		}
	}
	if cl.ClientCertFile != "" || cl.ClientKeyFile != "" {
		v.keyPair(path, "client_cert_file", "client_key_file", cl.ClientCertFile, cl.ClientKeyFile)
		if cl.StartTLS == relay.StartTLSOff {
			v.add(path+".starttls", "off, so client_cert_file is never presented; use required")
		}
	}
	if cl.CAFile != "" {
		if pem, err := os.ReadFile(cl.CAFile); err != nil {
			v.add(path+".ca_file", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			v.add(path+".ca_file", "%s holds no PEM certificate", cl.CAFile)
		}
	}
	v.positiveDuration(path+".connect_timeout", cl.ConnectTimeout)
	v.positiveDuration(path+".command_timeout", cl.CommandTimeout)
	v.positiveDuration(path+".data_timeout", cl.DataTimeout)
	v.positiveDuration(path+".final_timeout", cl.FinalTimeout)
}

// notOwnListener reports an outgoing address that is one of c's listeners.
func (v *validator) notOwnListener(path, addr string, c *Config) {
	for _, l := range []struct{ name, addr string }{
		{"listeners.tenant", c.Listeners.Tenant.Listen},
		{"listeners.return", c.Listeners.Return.Listen},
	} {
		if addr != "" && strings.EqualFold(addr, l.addr) {
			v.add(path, "%s is this relay's own %s listener: mail would loop", addr, l.name)
		}
	}
}

func (v *validator) hostname(path, name string) {
	if name == "" {
		v.add(path, "required")
		return
	}
	if ip, ok := strings.CutPrefix(name, "["); ok && strings.HasSuffix(ip, "]") {
		ip = strings.TrimPrefix(strings.TrimSuffix(ip, "]"), "IPv6:")
		if net.ParseIP(ip) == nil {
			v.add(path, "%q is not an address literal", name)
		}
		return
	}
	if err := checkDomain(name); err != nil {
		v.add(path, "%q: %v", name, err)
	}
}

// hostPort checks a host:port address. With listen, the host may be empty
// (every interface).
func (v *validator) hostPort(path, addr string, listen bool) {
	if addr == "" {
		v.add(path, "required (host:port)")
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			v.add(path, "%q is not host:port: %s", addr, ae.Err)
		} else {
			v.add(path, "%q is not host:port", addr)
		}
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.add(path, "%q: port %q is not a number from 1 to 65535", addr, port)
	}
	switch {
	case host == "" && listen:
	case host == "":
		v.add(path, "%q: host missing", addr)
	case net.ParseIP(host) != nil:
	default:
		if err := checkDomain(host); err != nil {
			v.add(path, "%q: host: %v", addr, err)
		}
	}
}

// checkDomain checks the syntax of a host name: dot-separated labels of
// letters, digits, "-" and "_" (common in internal names), each at most 63
// bytes, not starting or ending with "-".
func checkDomain(name string) error {
	if len(name) > 253 {
		return errors.New("longer than 253 bytes")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q longer than 63 bytes", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with -", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("byte %q is not allowed in a host name", c)
			}
		}
	}
	return nil
}

// sameListenAddr reports whether two listen addresses would collide: same
// port, and the same host or either a wildcard.
func sameListenAddr(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return wild(ha) || wild(hb) || strings.EqualFold(ha, hb)
}
