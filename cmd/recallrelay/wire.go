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

// boltPath is the embedded store's file in the data directory.
func boltPath(c config.Store) string { return filepath.Join(c.DataDir, "records.db") }

// openStore opens Redis when configured, else the embedded store.
func openStore(c config.Store) (store.Store, error) {
	if c.Embedded() {
		return store.OpenBolt(store.BoltConfig{Path: boltPath(c)})
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
	rc.WaitReplicas, rc.WaitTimeout = r.WaitReplicas, time.Duration(r.WaitTimeout)
	return store.NewRedis(rc)
}

// relayConfig builds the relay's configuration from a validated one and
// the rule engine compiled from it (see checkConfig): the field mapping is
// config's (Listener.RelayListener, Client.RelayNextHop,
// Config.RelayPolicy); this adds what comes from files, the certificates
// (registered in certs for reloading), client CAs and users.
func relayConfig(cfg *config.Config, engine *rules.Engine, st store.Store, certs *certSet, log zerolog.Logger) (relay.Config, error) {
	rc := relay.Config{Static: relay.Static{Hostname: cfg.Hostname, Store: st, Log: log, LogRecipients: cfg.Log.Recipients,
		HopPool: cfg.NextHopPool.RelayHopPool()}}
	var err error
	if rc.Policy, err = cfg.RelayPolicy(engine); err != nil {
		return rc, err
	}
	if rc.Tenant, err = listenerConfig(cfg.Listeners.Tenant, certs); err != nil {
		return rc, fmt.Errorf("listeners.tenant: %w", err)
	}
	if rc.Return, err = listenerConfig(cfg.Listeners.Return, certs); err != nil {
		return rc, fmt.Errorf("listeners.return: %w", err)
	}
	clients := map[string]config.Client{"tenant": cfg.Tenant.Client}
	for _, v := range cfg.Vendors {
		clients[v.Name] = v.Client
	}
	for i := range rc.Vendors {
		h := &rc.Vendors[i]
		if h.TLS, err = clientTLS(clients[h.Name], certs); err != nil {
			return rc, fmt.Errorf("vendor %s: %w", h.Name, err)
		}
	}
	if rc.Target.TLS, err = clientTLS(cfg.Tenant.Client, certs); err != nil {
		return rc, fmt.Errorf("tenant: %w", err)
	}
	return rc, nil
}

// listenerConfig is l for the relay, with the files it names loaded.
func listenerConfig(l config.Listener, certs *certSet) (relay.ListenerConfig, error) {
	lc, err := l.RelayListener()
	if err != nil {
		return lc, err
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

// clientTLS is the TLS configuration of a next hop, with the files c
// names loaded.
func clientTLS(c config.Client, certs *certSet) (*tls.Config, error) {
	tc := &tls.Config{ServerName: c.TLSServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.ClientCertFile != "" {
		cf, err := certs.open(c.ClientCertFile, c.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.GetClientCertificate = cf.client
	}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
