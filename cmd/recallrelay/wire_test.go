package main

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/relay"
)

// TestRelayConfigLimits checks that the listener limits and the fallback
// matching policy reach relay.Config as configured.
func TestRelayConfigLimits(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(c *config.Config)
		fields   [2]int   // MaxHeaderFields: tenant, return
		rate     [2]int64 // MinDataRate: tenant, return
		fallback relay.FallbackMatching
	}{
		{"defaults", func(*config.Config) {}, [2]int{1000, 1000}, [2]int64{500, 500}, relay.FallbackTrusted},
		{"set", func(c *config.Config) {
			c.Listeners.Tenant.MaxHeaderFields, c.Listeners.Return.MaxHeaderFields = 150, 4000
			c.Listeners.Tenant.MinDataRate, c.Listeners.Return.MinDataRate = 1, 100_000
		}, [2]int{150, 4000}, [2]int64{1, 100_000}, relay.FallbackTrusted},
		{"rate off is negative", func(c *config.Config) {
			c.Listeners.Return.MinDataRate = config.DataRateOff
		}, [2]int{1000, 1000}, [2]int64{500, -1}, relay.FallbackTrusted},
		{"fallback off", func(c *config.Config) { c.FallbackMatching = config.FallbackOff }, [2]int{1000, 1000}, [2]int64{500, 500}, relay.FallbackOff},
		{"fallback any", func(c *config.Config) { c.FallbackMatching = config.FallbackAny }, [2]int{1000, 1000}, [2]int64{500, 500}, relay.FallbackAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Store.DataDir = t.TempDir()
			tt.mutate(cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			rc, err := relayConfig(cfg, nil, &certSet{}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			if got := [2]int{rc.Tenant.MaxHeaderFields, rc.Return.MaxHeaderFields}; got != tt.fields {
				t.Errorf("MaxHeaderFields = %v, want %v", got, tt.fields)
			}
			if got := [2]int64{rc.Tenant.MinDataRate, rc.Return.MinDataRate}; got != tt.rate {
				t.Errorf("MinDataRate = %v, want %v", got, tt.rate)
			}
			if rc.FallbackMatching != tt.fallback {
				t.Errorf("FallbackMatching = %d, want %d", rc.FallbackMatching, tt.fallback)
			}
		})
	}
}
