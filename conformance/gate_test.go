package conformance

import (
	"strings"
	"testing"
)

// synthetic builds a report whose relay cells survived as given (out of 10).
func synthetic(relay map[string]int) *Report {
	r := &Report{}
	for _, name := range []string{"passthrough", "flatten-tnef", "duplicate", "direct-only"} {
		c := CaseResult{Name: name, Direct: &CellResult{Sent: 10, Survived: 3, SurvivalPercent: 30}}
		if n, ok := relay[name]; ok {
			c.Relay = &CellResult{Sent: 10, Survived: n, SurvivalPercent: float64(n) * 10, Damage: Damage{Summary: "why"}}
		}
		r.Cases = append(r.Cases, c)
	}
	return r
}

func TestGate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		gate  Gate
		relay map[string]int
		want  []string // one substring per violation, in order
	}{
		{"all at 100", Gate{MinRelaySurvival: 100},
			map[string]int{"passthrough": 10, "flatten-tnef": 10, "duplicate": 10}, nil},
		{"one below", Gate{MinRelaySurvival: 100},
			map[string]int{"passthrough": 10, "flatten-tnef": 8, "duplicate": 10},
			[]string{"flatten-tnef: relay survival 80.0% is below 100%: why"}},
		{"expected damage excused", Gate{MinRelaySurvival: 100, ExpectDamage: []string{"flatten-tnef"}},
			map[string]int{"passthrough": 10, "flatten-tnef": 8, "duplicate": 10}, nil},
		{"expected damage not shown", Gate{MinRelaySurvival: 100, ExpectDamage: []string{"flatten-tnef"}},
			map[string]int{"passthrough": 10, "flatten-tnef": 10, "duplicate": 10},
			[]string{"flatten-tnef: expected damage through the relay, but all 10 messages survived"}},
		{"expected damage checked without a threshold", Gate{MinRelaySurvival: -1, ExpectDamage: []string{"duplicate"}},
			map[string]int{"passthrough": 0, "flatten-tnef": 0, "duplicate": 10},
			[]string{"duplicate: expected damage"}},
		{"threshold below 100", Gate{MinRelaySurvival: 75},
			map[string]int{"passthrough": 8, "flatten-tnef": 7, "duplicate": 10},
			[]string{"flatten-tnef: relay survival 70.0% is below 75%"}},
		{"exactly at threshold", Gate{MinRelaySurvival: 80},
			map[string]int{"passthrough": 8, "flatten-tnef": 8, "duplicate": 8}, nil},
		{"disabled", Gate{MinRelaySurvival: -1},
			map[string]int{"passthrough": 0, "flatten-tnef": 0, "duplicate": 0}, nil},
		{"direct cells never gate", Gate{MinRelaySurvival: 100},
			map[string]int{"passthrough": 10}, nil},
		{"expected case without relay cell", Gate{MinRelaySurvival: 100, ExpectDamage: []string{"direct-only", "nonexistent"}},
			map[string]int{"passthrough": 10},
			[]string{"direct-only: expected damage, but the report has no relay-path cell", "nonexistent: expected damage, but"}},
		{"several violations", Gate{MinRelaySurvival: 100, ExpectDamage: []string{"duplicate"}},
			map[string]int{"passthrough": 9, "flatten-tnef": 0, "duplicate": 10},
			[]string{"passthrough: relay survival 90.0%", "flatten-tnef: relay survival 0.0%", "duplicate: expected damage"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.gate.Check(synthetic(tt.relay))
			if len(got) != len(tt.want) {
				t.Fatalf("violations %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want %q", i, got[i], w)
				}
			}
		})
	}
}

// TestGateRecallToVendor: through the relay, recall traffic must never reach
// the vendor; a cell where it cannot be observed is not held to it.
func TestGateRecallToVendor(t *testing.T) {
	t.Parallel()
	r := synthetic(map[string]int{"passthrough": 10, "flatten-tnef": 10})
	r.Cases[0].Relay.RecallToVendor = &RecallCount{Requests: 2, Reports: 1}
	r.Cases[1].Relay.RecallToVendor = &RecallCount{}
	r.Cases[0].Direct.RecallToVendor = &RecallCount{Requests: 5} // direct cells never gate

	if got := (Gate{MinRelaySurvival: -1}).Check(r); len(got) != 0 {
		t.Errorf("without NoRecallToVendor: %q", got)
	}
	got := Gate{MinRelaySurvival: -1, NoRecallToVendor: true}.Check(r)
	want := "passthrough: recall traffic reached the vendor through the relay: 2 requests, 1 reports"
	if len(got) != 1 || got[0] != want {
		t.Errorf("violations %q, want [%q]", got, want)
	}
	r.Cases[0].Relay.RecallToVendor = nil // an external vendor
	if got := (Gate{MinRelaySurvival: -1, NoRecallToVendor: true}).Check(r); len(got) != 0 {
		t.Errorf("unobservable vendor: %q", got)
	}
}
