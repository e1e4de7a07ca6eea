package status_test

import (
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/status"
)

// BenchmarkMessageDone measures what the recorder adds to each message on
// each leg, with its ring full (the steady state).
func BenchmarkMessageDone(b *testing.B) {
	r := status.New(status.Config{})
	o := delivered("tenant", "<SJ0PR15MB41977C34D3A0502F038DA52F76C06@SJ0PR15MB4197.namprd15.prod.outlook.com>",
		"kyg5ooda4kngseqpil66atckiy", "LynneR@contoso.com", "PradeepG@contoso.com", "MeganB@contoso.com")
	o.Duration, o.Size = 3*time.Millisecond, 48_000
	for range status.DefaultKeep {
		r.MessageDone(o)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.MessageDone(o)
	}
}
