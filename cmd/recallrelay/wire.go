package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/rules"
	"github.com/recallrelay/recallrelay/store"
)

// loadConfig reads the configuration at path, overrides it from the
// environment, validates it and compiles the rules it names: the engine is
// the one the relay runs with it.
func loadConfig(path string) (*config.Config, *rules.Engine, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	cfg.ApplyEnv(os.LookupEnv)
	engine, err := checkConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	return cfg, engine, nil
}

// checkConfig validates cfg and compiles its rules.
func checkConfig(cfg *config.Config) (*rules.Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg.CompileRules()
}

// newLogger builds the process logger from the log section.
func newLogger(c config.Log, w io.Writer) zerolog.Logger {
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil || c.Level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// closingStore is a relay.Store that must be closed at exit.
type closingStore interface {
	relay.Store
	Close() error
}

// openStore opens Redis when configured, else the embedded store.
func openStore(c config.Store) (closingStore, error) {
	if c.Embedded() {
		return store.OpenBolt(store.BoltConfig{Path: filepath.Join(c.DataDir, "records.db")})
	}
	r := c.Redis
	var rc store.RedisConfig
	if r.URL != "" {
		var err error
		if rc, err = store.ParseRedisURL(string(r.URL)); err != nil {
			return nil, fmt.Errorf("store.redis.url: %w", err)
		}
	} else {
		rc = store.RedisConfig{Addrs: r.Addrs, DB: r.DB}
	}
	if r.MasterName != "" {
		rc.MasterName = r.MasterName
	}
	if r.Username != "" {
		rc.Username = r.Username
	}
	if r.Password != "" {
		rc.Password = string(r.Password)
	}
	rc.KeyPrefix = r.KeyPrefixInUse()
	if r.TLS && rc.TLS == nil {
		rc.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	to := time.Duration(r.Timeout)
	rc.DialTimeout, rc.ReadTimeout, rc.WriteTimeout = to, to, to
	return store.NewRedis(rc)
}

// relayConfig maps a validated configuration and the rule engine compiled
// from it (see checkConfig) onto relay.Config. The certificates it loads
// are registered in certs for reloading.
func relayConfig(cfg *config.Config, engine *rules.Engine, st relay.Store, certs *certSet, log zerolog.Logger) (relay.Config, error) {
	rc := relay.Config{
		Hostname:       cfg.Hostname,
		Store:          st,
		RefHeader:      cfg.Reference.Header,
		NoReceived:     !cfg.Headers.Received,
		RecordTTL:      time.Duration(cfg.Store.RecordTTL),
		Log:            log,
		StoreTimeout:   5 * time.Second,
		PassUnrecorded: cfg.Store.PassUnrecorded,
		KeepDuplicates: cfg.Duplicates == config.DuplicatesDeliver,

		MaxDuplicateReturns: cfg.MaxDuplicateReturns,
	}
	if engine != nil {
		rc.Router = relay.NewRulesRouter(engine)
	}
	var keys []headers.Key
	for _, k := range cfg.Reference.Keys {
		b, err := k.Bytes()
		if err != nil {
			return rc, fmt.Errorf("reference key %s: %w", k.ID, err)
		}
		keys = append(keys, headers.Key{ID: k.ID, Secret: b})
	}
	signer, err := headers.NewSigner(headers.SignerConfig{SigningKey: cfg.Reference.SigningKey, Keys: keys})
	if err != nil {
		return rc, err
	}
	rc.Signer = signer

	capture, err := headers.NewMatcher(cfg.Headers.Capture)
	if err != nil {
		return rc, fmt.Errorf("headers.capture: %w", err)
	}
	restore, err := headers.NewMatcher(cfg.Headers.Restore)
	if err != nil {
		return rc, fmt.Errorf("headers.restore: %w", err)
	}
	rc.Capture, rc.Restore = &capture, &restore
	marker, err := headers.NewField(cfg.Headers.LoopMarker.Name, cfg.Headers.LoopMarker.Value)
	if err != nil {
		return rc, fmt.Errorf("headers.loop_marker: %w", err)
	}
	rc.LoopMarker = &marker
	if cfg.ReturnWithoutRecord == config.ReturnStrip {
		rc.WithoutRecord = relay.StripUnrecorded
	}
	switch cfg.FallbackMatching {
	case config.FallbackOff:
		rc.FallbackMatching = relay.FallbackOff
	case config.FallbackAny:
		rc.FallbackMatching = relay.FallbackAny
	default:
		rc.FallbackMatching = relay.FallbackTrusted
	}

	if rc.Tenant, err = listenerConfig(cfg.Listeners.Tenant, certs); err != nil {
		return rc, fmt.Errorf("listeners.tenant: %w", err)
	}
	if rc.Return, err = listenerConfig(cfg.Listeners.Return, certs); err != nil {
		return rc, fmt.Errorf("listeners.return: %w", err)
	}
	for i, v := range cfg.Vendors {
		h, err := nextHop(v.Name, v.Address, v.Client, certs)
		if err != nil {
			return rc, fmt.Errorf("vendors[%d]: %w", i, err)
		}
		if v.Name == cfg.DefaultVendor { // the default vendor first
			rc.Vendors = append([]relay.NextHop{h}, rc.Vendors...)
		} else {
			rc.Vendors = append(rc.Vendors, h)
		}
	}
	if rc.Target, err = nextHop("tenant", cfg.Tenant.Address, cfg.Tenant.Client, certs); err != nil {
		return rc, fmt.Errorf("tenant: %w", err)
	}
	return rc, nil
}

func listenerConfig(l config.Listener, certs *certSet) (relay.ListenerConfig, error) {
	lc := relay.ListenerConfig{
		Addr:                   l.Listen,
		MaxMessageBytes:        int64(l.MaxMessageSize),
		MaxHeaderBytes:         int(l.MaxHeaderSize),
		MaxHeaderFields:        l.MaxHeaderFields,
		MaxRecipients:          l.MaxRecipients,
		MaxLineLength:          l.MaxLineLength,
		CommandTimeout:         time.Duration(l.CommandTimeout),
		DataTimeout:            time.Duration(l.DataTimeout),
		MinDataRate:            int64(l.MinDataRate),
		MaxConns:               l.MaxConnections,
		MaxConnsPerIP:          l.MaxConnectionsPerClient,
		MaxCommandsWithoutMail: l.MaxCommandsBeforeMail,
		MaxErrors:              l.MaxErrors,
		RequireTLS:             l.TLS.Require,
		ClientCertNames:        l.TLS.ClientCertNames,
	}
	if l.MinDataRate == config.DataRateOff {
		lc.MinDataRate = -1 // the relay's "no bound"; 0 would mean its default
	}
	if l.BareLineEndings == config.BareLineNormalize {
		lc.BareLineEndings = relay.NormalizeBare
	}
	for _, n := range l.AllowNets {
		p, err := config.ParseNet(n)
		if err != nil {
			return lc, fmt.Errorf("allow_nets: %w", err)
		}
		lc.AllowNets = append(lc.AllowNets, p)
	}
	if l.TLS.CertFile != "" {
		cf, err := certs.open(l.TLS.CertFile, l.TLS.KeyFile)
		if err != nil {
			return lc, fmt.Errorf("tls: %w", err)
		}
		lc.TLS = &tls.Config{GetCertificate: cf.server, MinVersion: tls.VersionTLS12}
		if l.TLS.ClientCAFile != "" {
			pool, err := loadPool(l.TLS.ClientCAFile)
			if err != nil {
				return lc, fmt.Errorf("tls.client_ca_file: %w", err)
			}
			lc.TLS.ClientCAs = pool
			lc.TLS.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	if l.Auth.UsersFile != "" {
		users, err := relay.LoadPasswordFile(l.Auth.UsersFile)
		if err != nil {
			return lc, fmt.Errorf("auth: %w", err)
		}
		lc.Users = users
	}
	return lc, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return pool, nil
}

func nextHop(name, addr string, c config.Client, certs *certSet) (relay.NextHop, error) {
	h := relay.NextHop{
		Name:           name,
		Address:        addr,
		Helo:           c.HELO,
		ConnectTimeout: time.Duration(c.ConnectTimeout),
		CommandTimeout: time.Duration(c.CommandTimeout),
		DataTimeout:    time.Duration(c.DataTimeout),
		FinalTimeout:   time.Duration(c.FinalTimeout),
	}
	switch c.StartTLS {
	case config.StartTLSOff:
		h.StartTLS = relay.TLSOff
	case config.StartTLSRequired:
		h.StartTLS = relay.TLSRequired
	default:
		h.StartTLS = relay.TLSOpportunistic
	}
	tc := &tls.Config{ServerName: c.TLSServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.ClientCertFile != "" {
		cf, err := certs.open(c.ClientCertFile, c.ClientKeyFile)
		if err != nil {
			return h, fmt.Errorf("client certificate: %w", err)
		}
		tc.GetClientCertificate = cf.client
	}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return h, fmt.Errorf("ca_file: %w", err)
		}
		tc.RootCAs = pool
	}
	h.TLS = tc
	return h, nil
}
