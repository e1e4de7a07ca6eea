package main

import (
	"context"
	"crypto/tls"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/relay"
)

// localRelay describes a relay that start runs on the built-in defaults,
// as serve would run it, on loopback ports, with its embedded store in a
// new temporary directory. It is startLocalRelay's parameters plus what the
// conformance command's --vendor-*, --ehlo and --return-* flags change
// about the two legs.
type localRelay struct {
	// VendorAddr is where the tenant leg delivers, TenantAddr where the
	// return leg reinjects.
	VendorAddr, TenantAddr string
	// ReturnListen is the return leg's address; a free loopback port when
	// it is "".
	ReturnListen string
	// ReturnAllow are the clients the return leg admits (every client when
	// empty: a return leg other hosts can reach then fails validation).
	ReturnAllow []string
	// VendorTLS, when set, makes the tenant leg require STARTTLS towards
	// the vendor with it (relay.StartTLSRequired); without it the tenant
	// leg speaks plaintext.
	VendorTLS *tls.Config
	// VendorHELO, when set, is the tenant leg's EHLO name towards the
	// vendor instead of the relay's host name.
	VendorHELO string
	// ReturnTLS, when set, makes the return leg offer STARTTLS with it.
	ReturnTLS *tls.Config
	// Log receives the relay's log lines.
	Log io.Writer
	// Observers are the relay's observers (see relay.Static).
	Observers []relay.Observer
}

// start starts the relay l describes; stop shuts it down and removes its
// directory.
func (l localRelay) start() (r *relay.Relay, dataDir string, stop func(), err error) {
	data, err := os.MkdirTemp("", "recallrelay-local-")
	if err != nil {
		return nil, "", nil, err
	}
	var closers []func()
	stop = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		os.RemoveAll(data)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	cfg := config.Default()
	cfg.Store.DataDir = data
	if cfg.Listeners.Tenant.Listen, err = freeAddr(); err != nil {
		return nil, "", nil, err
	}
	if cfg.Listeners.Return.Listen = l.ReturnListen; l.ReturnListen == "" {
		if cfg.Listeners.Return.Listen, err = freeAddr(); err != nil {
			return nil, "", nil, err
		}
	}
	cfg.Listeners.Return.AllowNets = l.ReturnAllow
	vendor := &cfg.Vendors[0]
	vendor.Address, vendor.StartTLS = l.VendorAddr, relay.StartTLSOff
	if l.VendorTLS != nil {
		vendor.StartTLS = relay.StartTLSRequired
	}
	if l.VendorHELO != "" {
		vendor.HELO = l.VendorHELO
	}
	cfg.Tenant.Address, cfg.Tenant.StartTLS = l.TenantAddr, relay.StartTLSOff
	engine, err := checkConfig(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	st, err := openStore(cfg.Store)
	if err != nil {
		return nil, "", nil, err
	}
	closers = append(closers, func() { st.Close() })
	rc, err := relayConfig(cfg, engine, st, &certSet{}, zerolog.New(l.Log))
	if err != nil {
		return nil, "", nil, err
	}
	// The TLS settings come from flags, not files: they replace what
	// relayConfig loaded from the (empty) file settings.
	if l.VendorTLS != nil {
		rc.Vendors[0].TLS = l.VendorTLS
	}
	rc.Return.TLS = l.ReturnTLS
	rc.Observers = l.Observers
	if r, err = relay.New(rc); err != nil {
		return nil, "", nil, err
	}
	if err = r.Start(); err != nil {
		return nil, "", nil, err
	}
	closers = append(closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	})
	return r, data, stop, nil
}
