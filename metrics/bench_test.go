package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/recallrelay/recallrelay/metrics"
	"github.com/recallrelay/recallrelay/relay"
)

// BenchmarkMessageDone measures what the observer adds to each message on
// each leg: compare it with one message through a leg (relay's
// BenchmarkLegs).
func BenchmarkMessageDone(b *testing.B) {
	m, err := metrics.New(prometheus.NewRegistry(), metrics.Options{})
	if err != nil {
		b.Fatal(err)
	}
	outcomes := []*relay.Outcome{
		{Leg: "tenant", Result: "delivered", Code: 250, Size: 48_000, Duration: 3 * time.Millisecond,
			Stages: relay.Stages{Header: 50 * time.Microsecond, Route: 20 * time.Microsecond, Store: 400 * time.Microsecond,
				Transfer: time.Millisecond, HopReply: time.Millisecond}},
		{Leg: "return", Result: "delivered", Code: 250, MatchedBy: "reference", Size: 49_000, Duration: 4 * time.Millisecond,
			Stages: relay.Stages{Header: 50 * time.Microsecond, Store: 900 * time.Microsecond,
				Transfer: time.Millisecond, HopReply: 2 * time.Millisecond}},
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			m.MessageDone(outcomes[i&1])
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				m.MessageDone(outcomes[i&1])
			}
		})
	})
}
