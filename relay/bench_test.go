package relay_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/recallrelay/recallrelay/metrics"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/status"
)

// BenchmarkLegs measures the hot path: one message per iteration through
// a leg, over one reused SMTP connection, to a recording next hop, with
// the embedded store. Compare runs side by side (benchstat); the machine
// is shared and noisy. tenant-observed is tenant with the observers
// `recallrelay serve` adds (metrics and the status page's recorder): the
// two side by side are the observers' cost on the hot path.
func BenchmarkLegs(b *testing.B) {
	b.Run("tenant", func(b *testing.B) {
		h := newHarness(b, nil)
		benchSend(b, h.relay.TenantAddr(), original)
	})
	b.Run("tenant-observed", func(b *testing.B) {
		m, err := metrics.New(prometheus.NewRegistry(), metrics.Options{})
		if err != nil {
			b.Fatal(err)
		}
		h := newHarness(b, func(c *relay.Config) { c.Observers = append(c.Observers, m, status.New(status.Config{})) })
		benchSend(b, h.relay.TenantAddr(), original)
	})
	b.Run("return", func(b *testing.B) {
		h := newHarness(b, func(c *relay.Config) { c.Duplicates = relay.DuplicatesDeliver })
		back := string(vendorise(h.sendOut("ann@contoso.com", "bob@fabrikam.example"), false, false))
		benchSend(b, h.relay.ReturnAddr(), back)
	})
}

// benchSend sends msg b.N times from ann to bob over one connection.
func benchSend(b *testing.B, addr, msg string) {
	c := dial(b, addr)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.cmd(250, "MAIL FROM:<ann@contoso.com>")
		c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
		c.cmd(354, "DATA")
		c.write(msg + ".\r\n")
		c.expect(250)
	}
}
