// Package looptest starts a relay for a test: the one harness the relay's
// own tests, the end-to-end tests and the recall-survival report's tests
// share, so that each describes only what it changes.
//
// A relay from Start listens on free loopback ports, speaks plaintext to
// its next hops, signs with a test key, keeps its records in an embedded
// store in the test's temporary directory unless given a store, logs
// warnings to the test's log, and is shut down when the test ends.
package looptest

import (
	"bytes"
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// Key is the reference key of every relay Start makes.
var Key = headers.Key{ID: "t1", Secret: bytes.Repeat([]byte("k"), 32)}

// Signer returns a signer with Key.
func Signer(t testing.TB) *headers.Signer {
	t.Helper()
	s, err := headers.NewSigner(headers.SignerConfig{SigningKey: Key.ID, Keys: []headers.Key{Key}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Hop is a plaintext next hop named name at addr.
func Hop(name, addr string) relay.NextHop {
	return relay.NextHop{Name: name, Address: addr, StartTLS: relay.StartTLSOff}
}

// Config returns the test configuration of a relay that sends the tenant
// leg's mail to vendor (the first of vendors is the default) and the
// return leg's to tenant (addresses).
func Config(t testing.TB, tenant string, vendors ...relay.NextHop) relay.Config {
	t.Helper()
	return relay.Config{
		Static: relay.Static{
			Hostname: "relay.test",
			Tenant:   relay.ListenerConfig{Listen: "127.0.0.1:0"},
			Return:   relay.ListenerConfig{Listen: "127.0.0.1:0"},
			Log:      zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		},
		Policy: relay.Policy{
			Vendors: vendors,
			Target:  Hop("tenant", tenant),
			Signer:  Signer(t),
		},
	}
}

// Start starts a relay from cfg (see Config); a nil Store is an embedded
// one in the test's temporary directory. The relay shuts down when the
// test ends.
func Start(t testing.TB, cfg relay.Config) *relay.Relay {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = storetest.Bolt(t)
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	})
	return r
}

// Recorder starts a recording SMTP server on a free loopback port, the next
// hop tests deliver to (offering STARTTLS when tlsConfig is set); it is
// closed when the test ends.
func Recorder(t testing.TB, tlsConfig *tls.Config) *relaytest.Tenant {
	t.Helper()
	r, err := relaytest.NewTenant(relaytest.TenantConfig{Listen: "127.0.0.1:0", TLSConfig: tlsConfig})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
