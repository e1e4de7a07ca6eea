// Package config is the model of recallrelay's YAML configuration file.
//
// It decodes the file strictly (unknown keys are errors that name their line),
// fills in defaults, applies environment overrides for secrets and validates
// the result, explaining each problem with the path of the offending field:
//
//	listeners.return.tls.cert_file: open /x.pem: no such file or directory (line 31)
//
// The package starts nothing; the relay maps a validated Config into its own
// settings. The usual sequence is
//
//	cfg, err := config.Load(path)     // or config.Default() without a file
//	...
//	cfg.ApplyEnv(os.LookupEnv)
//	if err := cfg.Validate(); err != nil { ... }
//	engine, err := cfg.CompileRules() // the mail-flow rules the relay runs
//
// Validate only checks: it reads the files the configuration names, the
// rules file included, but changes nothing in the Config.
//
// Secrets (Redis password, reference key material) are held in types that
// redact themselves when printed, logged or marshalled; no error message and
// no summary produced by this package contains one.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/rules"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
)

// Config is the whole configuration file. The YAML key of each field is in
// its struct tag; the example file deploy/recallrelay.example.yaml documents
// every one of them for administrators.
type Config struct {
	// Hostname is this relay's name in the SMTP greeting, in EHLO and in
	// Received fields. Default: os.Hostname().
	Hostname string `yaml:"hostname"`
	// Log selects log verbosity and encoding.
	Log Log `yaml:"log"`
	// Store is where origin records are kept between the two legs.
	Store Store `yaml:"store"`
	// Reference configures the signed reference header.
	Reference Reference `yaml:"reference"`
	// Headers selects what is recorded and restored.
	Headers Headers `yaml:"headers"`
	// Listeners are the two SMTP servers of the relay.
	Listeners Listeners `yaml:"listeners"`
	// Vendors are the third-party services mail is relayed to. At least one.
	Vendors []Vendor `yaml:"vendors"`
	// DefaultVendor is the name of the vendor that gets mail no rule sends
	// elsewhere. Default: the first vendor.
	DefaultVendor string `yaml:"default_vendor"`
	// RulesFile names the mail-flow rules file (see package rules): which
	// vendor chain each message goes through, what bypasses them, what is
	// refused. A relative path is taken from the working directory, like
	// the other file paths. Default: no file, which means the recall-safe
	// defaults and every other message to DefaultVendor.
	RulesFile string `yaml:"rules_file"`
	// Tenant is where mail returning from a vendor is delivered: the Microsoft
	// 365 tenant's MX endpoint.
	Tenant Tenant `yaml:"tenant"`
	// ReturnWithoutRecord decides what happens to mail arriving from a vendor
	// whose reference is missing, invalid or names no stored record.
	// Default: relay.ReturnReject.
	ReturnWithoutRecord relay.ReturnPolicy `yaml:"return_without_record"`
	// FallbackMatching decides whose returning mail may be matched to its
	// record without the signed reference (by Message-ID, then by a
	// fingerprint of Date, From, To, Cc and Subject), for vendors that
	// strip the reference. Default: relay.FallbackTrusted.
	FallbackMatching relay.FallbackMatching `yaml:"fallback_matching"`

	// Duplicates decides what the return listener does when a vendor sends
	// a message back again for a recipient the tenant already accepted it
	// for: suppress (acknowledge, do not deliver again) or deliver.
	Duplicates relay.DuplicatePolicy `yaml:"duplicates"`
	// MaxDuplicateReturns bounds the suppressed copies of one message the
	// return listener acknowledges; further copies get 550 5.7.1.
	MaxDuplicateReturns int `yaml:"max_duplicate_returns"`

	// Admin is the administration HTTP listener: /metrics, /healthz,
	// /readyz. Off by default.
	Admin Admin `yaml:"admin"`

	// NextHopPool keeps idle next-hop connections for later sessions.
	NextHopPool NextHopPool `yaml:"next_hop_pool"`

	// src locates fields in the parsed file for error messages; nil for a
	// Config that was not parsed. A pointer, so that fmt prints an address.
	src *fileInfo
}

// RelayPolicy maps c onto the relay's reloadable settings, with the rules
// engine compiled from it (CompileRules) as the router. The vendors come
// default vendor first; their TLS, and the tenant target's, is the
// caller's to add (it loads files). A reload passes the result to
// relay.Relay.Reload; what RestartOnly names stays as it was.
func (c *Config) RelayPolicy(engine *rules.Engine) (relay.Policy, error) {
	p := relay.Policy{
		RefHeader:           c.Reference.Header,
		NoReceived:          !c.Headers.Received,
		RecordTTL:           time.Duration(c.Store.RecordTTL),
		PassUnrecorded:      c.Store.PassUnrecorded,
		ReturnWithoutRecord: c.ReturnWithoutRecord,
		FallbackMatching:    c.FallbackMatching,
		Duplicates:          c.Duplicates,
		MaxDuplicateReturns: c.MaxDuplicateReturns,
	}
	if engine != nil {
		p.Router = relay.NewRulesRouter(engine)
	}
	var keys []headers.Key
	for _, k := range c.Reference.Keys {
		b, err := k.Bytes()
		if err != nil {
			return p, fmt.Errorf("reference key %s: %w", k.ID, err)
		}
		keys = append(keys, headers.Key{ID: k.ID, Secret: b})
	}
	signer, err := headers.NewSigner(headers.SignerConfig{SigningKey: c.Reference.SigningKey, Keys: keys})
	if err != nil {
		return p, err
	}
	p.Signer = signer
	capture, err := headers.NewMatcher(c.Headers.Capture)
	if err != nil {
		return p, fmt.Errorf("headers.capture: %w", err)
	}
	restore, err := headers.NewMatcher(c.Headers.Restore)
	if err != nil {
		return p, fmt.Errorf("headers.restore: %w", err)
	}
	p.Capture, p.Restore = &capture, &restore
	marker, err := headers.NewField(c.Headers.LoopMarker.Name, c.Headers.LoopMarker.Value)
	if err != nil {
		return p, fmt.Errorf("headers.loop_marker: %w", err)
	}
	p.LoopMarker = &marker
	for _, v := range c.Vendors {
		h := v.Client.RelayNextHop(v.Name, v.Address)
		if v.Name == c.DefaultVendor { // the default vendor first
			p.Vendors = append([]relay.NextHop{h}, p.Vendors...)
		} else {
			p.Vendors = append(p.Vendors, h)
		}
	}
	p.Target = c.Tenant.Client.RelayNextHop("tenant", c.Tenant.Address)
	return p, nil
}

// RestartOnly lists the sections that differ between c and next and that
// a running relay cannot change (its listeners, its store, its name and its
// log): a reload keeps them as they are until the next restart.
func (c *Config) RestartOnly(next *Config) []string {
	var out []string
	for _, s := range []struct {
		name      string
		cur, next any
	}{
		{"hostname", c.Hostname, next.Hostname},
		{"log", c.Log, next.Log},
		{"store", c.Store, next.Store},
		{"listeners.tenant", c.Listeners.Tenant, next.Listeners.Tenant},
		{"listeners.return", c.Listeners.Return, next.Listeners.Return},
		{"admin", c.Admin, next.Admin},
		{"next_hop_pool", c.NextHopPool, next.NextHopPool},
	} {
		if !reflect.DeepEqual(s.cur, s.next) {
			out = append(out, s.name)
		}
	}
	return out
}

// NextHopPool configures the pool of idle connections to the vendors and
// the tenant (relay.HopPool).
type NextHopPool struct {
	// MaxIdle bounds the idle connections kept per next hop; -1 turns the
	// pool off. Default: 32.
	MaxIdle int `yaml:"max_idle"`
	// IdleTimeout is how long an idle connection is kept. Default: 30s.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// RelayHopPool maps p onto the relay's setting.
func (p NextHopPool) RelayHopPool() relay.HopPool {
	return relay.HopPool{MaxIdle: p.MaxIdle, IdleTimeout: time.Duration(p.IdleTimeout)}
}

// Log configures logging.
type Log struct {
	// Level is one of debug, info, warn, error. Default: info.
	Level string `yaml:"level"`
	// Format is json (one object per line) or console (human-readable).
	// Default: json.
	Format string `yaml:"format"`
	// Recipients is how message lines show recipients: none, hash (the
	// first 12 hex digits of each address's SHA-256) or full. Default:
	// none.
	Recipients relay.RecipientLogging `yaml:"recipients"`
}

// Store configures the origin record store.
type Store struct {
	// Redis selects a shared Redis store. When neither Redis.URL nor
	// Redis.Addrs is set, the embedded store in DataDir is used.
	Redis Redis `yaml:"redis"`
	// DataDir is the embedded store's directory; its database file is
	// records.db inside. Default: ./data.
	DataDir string `yaml:"data_dir"`
	// RecordTTL is how long a record is kept waiting for the message to come
	// back from the vendor. At least one minute. Default: 72h.
	RecordTTL Duration `yaml:"record_ttl"`
	// PassUnrecorded lets the tenant listener send mail on to the vendor
	// while the store is unreachable, instead of answering 451 4.3.0. Such
	// mail has no record when it comes back (see return_without_record).
	PassUnrecorded bool `yaml:"pass_unrecorded"`
}

// Embedded reports whether the embedded store is selected, i.e. no Redis
// location is configured.
func (s Store) Embedded() bool { return !s.Redis.Enabled() }

// Redis locates a Redis deployment. Either URL or Addrs is set, not both.
// Several Addrs select Redis Cluster, unless MasterName selects Sentinel
// (then Addrs are the sentinels); this is go-redis's UniversalOptions rule.
type Redis struct {
	// URL is a redis://, rediss:// or unix:// URL as the store reads it
	// (store.ParseRedisURL): go-redis's syntax, plus the parameters
	// key_prefix (which takes precedence over KeyPrefix), master_name and
	// addr. It may carry a password; it is redacted when printed.
	// Overridden by the environment variable RECALLRELAY_REDIS_URL.
	URL URL `yaml:"url"`
	// Addrs are host:port addresses of Redis nodes or sentinels.
	Addrs []string `yaml:"addrs"`
	// MasterName is the Sentinel master name; set it only with Sentinel.
	MasterName string `yaml:"master_name"`
	// Username is the ACL user name; empty for the default user.
	Username string `yaml:"username"`
	// Password authenticates to Redis. It overrides a password in URL.
	// Prefer the environment variable RECALLRELAY_REDIS_PASSWORD.
	Password Secret `yaml:"password"`
	// DB is the database number for Addrs (Cluster has only database 0); with
	// URL the database is the URL's path.
	DB int `yaml:"db"`
	// KeyPrefix is prepended to every key the relay writes, unless URL has
	// a key_prefix parameter (see KeyPrefixInUse). Default: rr.
	KeyPrefix string `yaml:"key_prefix"`
	// TLS enables TLS to Redis (a rediss:// URL enables it too).
	TLS bool `yaml:"tls"`
	// Timeout bounds dialling, each read and each write. Default: 2s.
	Timeout Duration `yaml:"timeout"`
	// WaitReplicas, when positive, makes each record's write wait until
	// that many replicas have it (Redis WAIT), so that a failover cannot
	// lose a record the relay acknowledged; the relay answers 4xx when
	// fewer acknowledge within WaitTimeout. Default 0: do not wait (a
	// single Redis has no replica to wait for).
	WaitReplicas int `yaml:"wait_replicas"`
	// WaitTimeout bounds that wait; below Timeout. Default: 1s.
	WaitTimeout Duration `yaml:"wait_timeout"`
}

// Enabled reports whether a Redis location is configured.
func (r Redis) Enabled() bool { return r.URL != "" || len(r.Addrs) > 0 }

// KeyPrefixInUse returns the prefix of the keys the store writes: the
// key_prefix parameter of URL when it has a non-empty one, else KeyPrefix.
func (r Redis) KeyPrefixInUse() string {
	if r.URL != "" {
		if rc, err := store.ParseRedisURL(string(r.URL)); err == nil && rc.KeyPrefix != "" {
			return rc.KeyPrefix
		}
	}
	return r.KeyPrefix
}

// Reference configures the reference header that ties a returning message
// to its origin record.
type Reference struct {
	// Header is the header field name. Default: X-RecallRelay-Ref.
	Header string `yaml:"header"`
	// SigningKey is the ID of the key that signs new references; it must be
	// one of Keys. Default: the first key.
	SigningKey string `yaml:"signing_key"`
	// Keys verify references. Keep a retired key listed until every
	// reference it signed has expired (store.record_ttl plus vendor delay).
	Keys []Key `yaml:"keys"`
}

// Key is one reference signing key. Exactly one of Secret, SecretFile and
// SecretEnv supplies its material, unless the environment variable named by
// KeyEnv(ID) does (see Config.ApplyEnv). Material is at least 32 bytes after
// decoding. Key never prints its secret: see String.
type Key struct {
	// ID names the key inside every reference it signs: 1 to 32 of
	// [A-Za-z0-9_-].
	ID string `yaml:"id"`
	// Secret is the key material: "base64:" followed by standard base64, or
	// plain text used as is.
	Secret Secret `yaml:"secret"`
	// SecretFile is a file holding the material in the notation of Secret;
	// trailing line breaks are ignored.
	SecretFile string `yaml:"secret_file"`
	// SecretEnv is an environment variable holding the material in the
	// notation of Secret; ApplyEnv reads it.
	SecretEnv string `yaml:"secret_env"`
	// Ephemeral marks the key that Default generates at random when no key
	// is configured. It is only for a demonstration: it lives in this process
	// alone, so a restart (or a second relay) cannot verify the references it
	// signed, and mail returning after a restart has no record.
	Ephemeral bool `yaml:"-"`

	// env holds the value of SecretEnv as looked up by ApplyEnv; nil until
	// then. A pointer, so that fmt prints an address, never the value.
	env *envValue
}

// Headers selects which header fields are recorded and restored.
type Headers struct {
	// Capture lists the field names (or prefixes ending in "*") recorded on
	// the way out. Default: headers.DefaultCapture.
	Capture []string `yaml:"capture"`
	// Restore lists the fields put back exactly as recorded on the way in.
	// Each must be covered by Capture. Default: headers.DefaultRestore.
	Restore []string `yaml:"restore"`
	// LoopMarker is the field added to mail delivered back to the tenant, so
	// that the tenant's transport rule does not route it out again.
	LoopMarker LoopMarker `yaml:"loop_marker"`
	// Received adds a Received trace field on each leg. Default: true.
	Received bool `yaml:"received"`
}

// LoopMarker is a header field (name and value).
type LoopMarker struct {
	// Name defaults to X-RecallRelay-Processed.
	Name string `yaml:"name"`
	// Value defaults to "true".
	Value string `yaml:"value"`
}

// Admin configures the administration HTTP listener (package admin).
type Admin struct {
	// Listen is host:port to serve /metrics, /healthz and /readyz on.
	// Empty (the default) turns the listener off. A listen address other
	// hosts can reach needs TokenFile, or InsecureOpen.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token every route but /healthz
	// requires (Authorization: Bearer <token>); surrounding blanks and
	// line breaks are ignored. Default: no token.
	TokenFile string `yaml:"token_file"`
	// InsecureOpen accepts a listen address other hosts can reach without
	// a token: anyone there can read the metrics.
	InsecureOpen bool `yaml:"insecure_open"`
	// TLS serves HTTPS with this certificate; both or neither.
	TLS AdminTLS `yaml:"tls"`
	// RecentMessages is how many message outcomes the status page keeps
	// in memory to show and search (the newest); default
	// DefaultRecentMessages, at most MaxRecentMessages. Older ones are in
	// the log and, while their records live, in `recallrelay trace`.
	RecentMessages int `yaml:"recent_messages"`
	// Pprof serves Go's runtime profiles under /debug/pprof/, behind the
	// token. Default: false.
	Pprof bool `yaml:"pprof"`
}

// Bounds of Admin.RecentMessages: a kept outcome costs about a kilobyte.
const (
	DefaultRecentMessages = 1000
	MaxRecentMessages     = 100_000
)

// AdminTLS is the admin listener's certificate.
type AdminTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Token reads the admin bearer token from TokenFile, "" without one.
func (a Admin) Token() (string, error) {
	if a.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(a.TokenFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Listeners are the relay's two SMTP servers.
type Listeners struct {
	// Tenant receives mail from the tenant's outbound connector.
	Tenant Listener `yaml:"tenant"`
	// Return receives mail coming back from vendors.
	Return Listener `yaml:"return"`
}

// Listener configures one SMTP server.
type Listener struct {
	// Listen is the host:port to listen on (empty host: every interface).
	// Required.
	Listen string `yaml:"listen"`
	// MaxMessageSize is the largest message accepted. Default: 150MB, the
	// Exchange Online limit.
	MaxMessageSize ByteSize `yaml:"max_message_size"`
	// MaxHeaderSize is the largest header section accepted. Default: 1MiB.
	MaxHeaderSize ByteSize `yaml:"max_header_size"`
	// MaxHeaderFields is the most fields a header section may have (552
	// 5.3.4 beyond), at least MinHeaderFields. Default: 1000.
	MaxHeaderFields int `yaml:"max_header_fields"`
	// MaxRecipients is the most RCPT TO per transaction. Default: 1000.
	MaxRecipients int `yaml:"max_recipients"`
	// MaxLineLength is the longest command or text line, in bytes, at least
	// RFC 5321's 1000. Default: 2000.
	MaxLineLength int `yaml:"max_line_length"`
	// CommandTimeout is how long the server waits for the next command.
	// Default: 5m.
	CommandTimeout Duration `yaml:"command_timeout"`
	// DataTimeout is how long the server waits between two reads during
	// DATA or BDAT; it does not bound the whole transfer. Default: 5m.
	DataTimeout Duration `yaml:"data_timeout"`
	// MinDataRate bounds a whole DATA or BDAT transfer, in bytes per
	// second: a transfer that has received n bytes must be complete within
	// DataTimeout + n/MinDataRate of its start (421 4.4.2, then the
	// connection closes), so that a client trickling a byte every few
	// seconds, which never trips DataTimeout, cannot hold a connection for
	// ever. Positive, or DataRateOff ("off" in the file) for no bound; 0 is
	// invalid. Default: 500.
	MinDataRate DataRate `yaml:"min_data_rate"`
	// BareLineEndings is what to do with a CR or LF not part of CRLF in
	// message data. Default: relay.BareLineReject.
	BareLineEndings relay.BareLineEndings `yaml:"bare_line_endings"`
	// AllowNets are the client networks (CIDR or single addresses, IPv4 or
	// IPv6) allowed to connect; empty allows everyone. A listener that
	// other hosts can reach needs AllowNets or client authentication,
	// unless InsecureOpen is set.
	AllowNets []string `yaml:"allow_nets"`
	// InsecureOpen accepts an open listener: one whose Listen address is
	// not loopback only (127.0.0.0/8, ::1, localhost), with no AllowNets
	// and no client authentication (TLS.ClientCertNames or
	// Auth.UsersFile), so that anyone on the network can use it. Without
	// it, Validate refuses such a listener; with it, Warnings names it.
	// Default: false.
	InsecureOpen bool `yaml:"insecure_open"`
	// MaxConnections bounds open connections in total.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerClient bounds open connections per client address.
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// MaxCommandsBeforeMail bounds the command lines before the first MAIL.
	MaxCommandsBeforeMail int `yaml:"max_commands_before_mail"`
	// MaxErrors is how many refused commands close a connection.
	MaxErrors int `yaml:"max_errors"`
	// Auth configures SMTP AUTH.
	Auth ListenerAuth `yaml:"auth"`
	// TLS offers STARTTLS.
	TLS ListenerTLS `yaml:"tls"`
}

// RelayListener maps l onto the relay's listener settings, field by
// field. The files l names (certificates, client CAs, the users file) are
// the caller's to load into TLS and Users: their reloading is the
// caller's too.
func (l Listener) RelayListener() (relay.ListenerConfig, error) {
	lc := relay.ListenerConfig{
		Listen:                  l.Listen,
		MaxMessageSize:          int64(l.MaxMessageSize),
		MaxHeaderSize:           int(l.MaxHeaderSize),
		MaxHeaderFields:         l.MaxHeaderFields,
		MaxRecipients:           l.MaxRecipients,
		MaxLineLength:           l.MaxLineLength,
		CommandTimeout:          time.Duration(l.CommandTimeout),
		DataTimeout:             time.Duration(l.DataTimeout),
		MinDataRate:             int64(l.MinDataRate), // DataRateOff is the relay's "no bound" too
		BareLineEndings:         l.BareLineEndings,
		MaxConnections:          l.MaxConnections,
		MaxConnectionsPerClient: l.MaxConnectionsPerClient,
		MaxCommandsBeforeMail:   l.MaxCommandsBeforeMail,
		MaxErrors:               l.MaxErrors,
		RequireTLS:              l.TLS.Require,
		ClientCertNames:         l.TLS.ClientCertNames,
	}
	for _, n := range l.AllowNets {
		p, err := ParseNet(n)
		if err != nil {
			return lc, fmt.Errorf("allow_nets: %w", err)
		}
		lc.AllowNets = append(lc.AllowNets, p)
	}
	return lc, nil
}

// ListenerTLS configures STARTTLS on a listener.
type ListenerTLS struct {
	// CertFile is a PEM certificate chain; set with KeyFile, or neither.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
	// Require refuses MAIL before STARTTLS. Needs CertFile and KeyFile.
	Require bool `yaml:"require"`
	// ClientCAFile holds the PEM CA certificates client certificates must
	// chain to. Needs CertFile.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientCertNames are the certificate names (subject CN or DNS name)
	// that authenticate a client. Needs ClientCAFile.
	ClientCertNames []string `yaml:"client_cert_names"`
}

// ListenerAuth configures SMTP AUTH on a listener.
type ListenerAuth struct {
	// UsersFile holds "user:bcrypt-hash" lines (htpasswd -nbB). AUTH PLAIN
	// and LOGIN are offered only after STARTTLS, so it needs tls.cert_file.
	UsersFile string `yaml:"users_file"`
}

// Vendor is a third-party service the relay hands mail to.
type Vendor struct {
	// Name identifies the vendor in rules and logs: [a-z0-9-]+, unique.
	Name string `yaml:"name"`
	// Address is the vendor's SMTP host:port. Required.
	Address string `yaml:"address"`
	// Client configures the SMTP client towards the vendor.
	Client `yaml:",inline"`
}

// Tenant is the delivery target for returning mail.
type Tenant struct {
	// Address is host:port, typically
	// <tenant>.mail.protection.outlook.com:25. Required.
	Address string `yaml:"address"`
	// Client configures the SMTP client towards the tenant. Exchange's
	// inbound connector identifies the relay by ClientCertFile.
	Client `yaml:",inline"`
}

// Client configures an outgoing SMTP connection.
type Client struct {
	// HELO is the name sent in EHLO. Default: Config.Hostname.
	HELO string `yaml:"helo"`
	// StartTLS is the STARTTLS policy. Default: relay.StartTLSOpportunistic.
	StartTLS relay.StartTLSMode `yaml:"starttls"`
	// TLSServerName is the name verified in the server's certificate.
	// Default: the host of the address.
	TLSServerName string `yaml:"tls_server_name"`
	// InsecureSkipVerify accepts any server certificate.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// ClientCertFile is a PEM certificate chain presented to the server
	// (mutual TLS); set with ClientKeyFile, or neither.
	ClientCertFile string `yaml:"client_cert_file"`
	// ClientKeyFile is the PEM private key of ClientCertFile.
	ClientKeyFile string `yaml:"client_key_file"`
	// CAFile is a PEM bundle of roots trusted instead of the system's.
	CAFile string `yaml:"ca_file"`
	// ConnectTimeout bounds dialling and the greeting. Default: 30s.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// CommandTimeout bounds the wait for each command reply. Default: 5m.
	CommandTimeout Duration `yaml:"command_timeout"`
	// DataTimeout bounds each write while streaming message data.
	// Default: 5m.
	DataTimeout Duration `yaml:"data_timeout"`
	// FinalTimeout bounds the wait for the reply to the end of data.
	// Default: 10m.
	FinalTimeout Duration `yaml:"final_timeout"`
}

// RelayNextHop maps c onto the relay's next-hop settings for the hop name
// at address. The files c names (client certificate, CA bundle) are the
// caller's to load into TLS.
func (c Client) RelayNextHop(name, address string) relay.NextHop {
	return relay.NextHop{
		Name:           name,
		Address:        address,
		HELO:           c.HELO,
		StartTLS:       c.StartTLS,
		ConnectTimeout: time.Duration(c.ConnectTimeout),
		CommandTimeout: time.Duration(c.CommandTimeout),
		DataTimeout:    time.Duration(c.DataTimeout),
		FinalTimeout:   time.Duration(c.FinalTimeout),
	}
}

// Defaults of this file's own settings. Every setting the relay uses has
// its default in package relay (relay.DefaultListener, relay.DefaultNextHop
// and the relay.Default* constants), and base takes it from there: each
// default is written once.
const (
	DefaultDataDir        = "./data"
	DefaultRedisKeyPrefix = "rr"
	DefaultRedisTimeout   = 2 * time.Second
)

// MinHeaderFields is the lowest max_header_fields accepted: real Exchange
// Online messages carry up to about a hundred header fields.
const MinHeaderFields = 100

// minKeyBytes is the shortest reference key secret; it matches the minimum
// the headers package's Signer enforces.
const minKeyBytes = 32

// Default returns a configuration that runs without a file: the embedded
// store in ./data, the tenant listener on 127.0.0.1:2525 and the return
// listener on 127.0.0.1:2526, one vendor "vendor" at 127.0.0.1:10025, the
// tenant target at 127.0.0.1:10026 and a random Ephemeral signing key.
func Default() *Config {
	c := base()
	c.Listeners.Tenant.Listen = "127.0.0.1:2525"
	c.Listeners.Return.Listen = "127.0.0.1:2526"
	c.Vendors = []Vendor{{Name: "vendor", Address: "127.0.0.1:10025", Client: defaultClient()}}
	c.Tenant.Address = "127.0.0.1:10026"

	secret := make([]byte, minKeyBytes)
	rand.Read(secret) // never fails (crypto/rand documentation)
	c.Reference.Keys = []Key{{
		ID:        "ephemeral",
		Secret:    Secret("base64:" + base64.StdEncoding.EncodeToString(secret)),
		Ephemeral: true,
	}}
	c.derive()
	return c
}

// derive fills the defaults that depend on other fields.
func (c *Config) derive() {
	for i := range c.Vendors {
		if c.Vendors[i].HELO == "" {
			c.Vendors[i].HELO = c.Hostname
		}
	}
	if c.Tenant.HELO == "" {
		c.Tenant.HELO = c.Hostname
	}
	if c.DefaultVendor == "" && len(c.Vendors) > 0 {
		c.DefaultVendor = c.Vendors[0].Name
	}
	if c.Reference.SigningKey == "" && len(c.Reference.Keys) > 0 {
		c.Reference.SigningKey = c.Reference.Keys[0].ID
	}
}

// base returns every default that does not stand in for a required field:
// what a configuration file is decoded over.
func base() *Config {
	return &Config{
		Hostname: defaultHostname(),
		Log:      Log{Level: "info", Format: "json", Recipients: relay.RecipientsNone},
		Store: Store{
			Redis: Redis{
				KeyPrefix:   DefaultRedisKeyPrefix,
				Timeout:     Duration(DefaultRedisTimeout),
				WaitTimeout: Duration(store.DefaultWaitTimeout),
			},
			DataDir:   DefaultDataDir,
			RecordTTL: Duration(relay.DefaultRecordTTL),
		},
		Reference: Reference{Header: headers.DefaultRefHeader},
		Headers: Headers{
			Capture:    slices.Clone(headers.DefaultCapture),
			Restore:    slices.Clone(headers.DefaultRestore),
			LoopMarker: LoopMarker{Name: relay.DefaultLoopMarkerName, Value: relay.DefaultLoopMarkerValue},
			Received:   true,
		},
		Listeners: Listeners{
			Tenant: defaultListener(),
			Return: defaultListener(),
		},
		Tenant:              Tenant{Client: defaultClient()},
		ReturnWithoutRecord: relay.ReturnReject,
		FallbackMatching:    relay.FallbackTrusted,
		Duplicates:          relay.DuplicatesSuppress,
		MaxDuplicateReturns: relay.DefaultMaxDuplicateReturns,
		NextHopPool: NextHopPool{
			MaxIdle:     relay.DefaultHopPool().MaxIdle,
			IdleTimeout: Duration(relay.DefaultHopPool().IdleTimeout),
		},
	}
}

// defaultListener is the relay's listener defaults in this file's terms.
func defaultListener() Listener {
	d := relay.DefaultListener()
	return Listener{
		MaxMessageSize:          ByteSize(d.MaxMessageSize),
		MaxHeaderSize:           ByteSize(d.MaxHeaderSize),
		MaxHeaderFields:         d.MaxHeaderFields,
		MaxRecipients:           d.MaxRecipients,
		MaxLineLength:           d.MaxLineLength,
		CommandTimeout:          Duration(d.CommandTimeout),
		DataTimeout:             Duration(d.DataTimeout),
		MinDataRate:             DataRate(d.MinDataRate),
		BareLineEndings:         d.BareLineEndings,
		MaxConnections:          d.MaxConnections,
		MaxConnectionsPerClient: d.MaxConnectionsPerClient,
		MaxCommandsBeforeMail:   d.MaxCommandsBeforeMail,
		MaxErrors:               d.MaxErrors,
	}
}

// defaultClient is the relay's next-hop defaults in this file's terms.
func defaultClient() Client {
	d := relay.DefaultNextHop()
	return Client{
		StartTLS:       d.StartTLS,
		ConnectTimeout: Duration(d.ConnectTimeout),
		CommandTimeout: Duration(d.CommandTimeout),
		DataTimeout:    Duration(d.DataTimeout),
		FinalTimeout:   Duration(d.FinalTimeout),
	}
}

func defaultHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}
