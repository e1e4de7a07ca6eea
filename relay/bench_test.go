package relay_test

import (
	"testing"

	"github.com/recallrelay/recallrelay/relay"
)

// BenchmarkLegs measures the hot path: one message per iteration through
// a leg, over one reused SMTP connection, to a recording next hop, with
// the embedded store. Compare runs side by side (benchstat); the machine
// is shared and noisy.
func BenchmarkLegs(b *testing.B) {
	b.Run("tenant", func(b *testing.B) {
		h := newHarness(b, nil)
		c := dial(b, h.relay.TenantAddr())
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.cmd(250, "MAIL FROM:<ann@contoso.com>")
			c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
			c.cmd(354, "DATA")
			c.write(original + ".\r\n")
			c.expect(250)
		}
	})
	b.Run("return", func(b *testing.B) {
		h := newHarness(b, func(c *relay.Config) { c.Duplicates = relay.DuplicatesDeliver })
		back := string(vendorise(h.sendOut("ann@contoso.com", "bob@fabrikam.example"), false, false))
		c := dial(b, h.relay.ReturnAddr())
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.cmd(250, "MAIL FROM:<ann@contoso.com>")
			c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
			c.cmd(354, "DATA")
			c.write(back + ".\r\n")
			c.expect(250)
		}
	})
}
