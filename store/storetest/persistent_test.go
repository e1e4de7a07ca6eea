package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A write Redis acknowledged survives a stop and a SIGKILL of the server:
// that is what lets fault tests restart Redis like a production server with
// an append-only file, rather than one that forgets everything.
func TestPersistentRedisServerKeepsAcknowledgedWrites(t *testing.T) {
	s := StartPersistentRedisServer(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })

	tests := []struct {
		name string
		halt func() error
	}{
		{"SIGTERM", s.Stop},
		{"SIGKILL", s.Kill},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			key, val := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d-%d", i, time.Now().UnixNano())
			if err := c.Set(ctx, key, val, 0).Err(); err != nil {
				t.Fatalf("SET before %s: %v", tt.name, err)
			}
			if err := tt.halt(); err != nil {
				t.Fatal(err)
			}
			if s.Running() {
				t.Fatal("Running reports true after the server was halted")
			}
			if err := c.Ping(ctx).Err(); err == nil {
				t.Fatal("the server still answers after it was halted")
			}
			if err := tt.halt(); err != nil {
				t.Fatalf("halting a halted server: %v", err)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err == nil {
				t.Fatal("Start on a running server did not fail")
			}
			got, err := c.Get(ctx, key).Result()
			if err != nil {
				t.Fatalf("GET after %s and restart: %v", tt.name, err)
			}
			if got != val {
				t.Fatalf("after %s and restart: %s = %q, want %q", tt.name, key, got, val)
			}
		})
	}
}
