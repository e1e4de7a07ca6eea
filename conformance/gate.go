package conformance

import (
	"fmt"
	"slices"
)

// Gate is the pass/fail rule a CI job applies to a Report's relay-path
// cells. Direct-path cells never fail a gate: they show what the vendor does
// on its own.
type Gate struct {
	// MinRelaySurvival is the lowest relay-path survival, in percent,
	// accepted for every case not named in ExpectDamage. Negative turns
	// the check off.
	MinRelaySurvival float64
	// ExpectDamage names the cases whose vendor destroys what the relay
	// cannot restore. Their relay-path survival must be below 100 %: a
	// case listed here that survives completely means the damage went
	// undetected (or the list is stale), and fails the gate too.
	ExpectDamage []string
	// NoRecallToVendor fails every relay-path cell in which recall
	// requests or reports reached the vendor: the relay's recall-safe
	// rules must keep them off it. Cells where the vendor cannot be
	// observed (an external vendor) are not checked.
	NoRecallToVendor bool
}

// Check returns one line per violation of g in r, none when r passes.
func (g Gate) Check(r *Report) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range r.Cases {
		cell := c.Relay
		if cell == nil {
			continue
		}
		if rc := cell.RecallToVendor; g.NoRecallToVendor && rc != nil && rc.Requests+rc.Reports > 0 {
			out = append(out, fmt.Sprintf("%s: recall traffic reached the vendor through the relay: %d requests, %d reports", c.Name, rc.Requests, rc.Reports))
		}
		if slices.Contains(g.ExpectDamage, c.Name) {
			seen[c.Name] = true
			if cell.Complete() {
				out = append(out, fmt.Sprintf("%s: expected damage through the relay, but all %d messages survived", c.Name, cell.Sent))
			}
			continue
		}
		if g.MinRelaySurvival >= 0 && float64(cell.Survived)*100 < g.MinRelaySurvival*float64(cell.Sent) {
			out = append(out, fmt.Sprintf("%s: relay survival %.1f%% is below %g%%: %s", c.Name, cell.SurvivalPercent, g.MinRelaySurvival, cell.Damage.Summary))
		}
	}
	for _, name := range g.ExpectDamage {
		if !seen[name] {
			out = append(out, fmt.Sprintf("%s: expected damage, but the report has no relay-path cell for it", name))
			seen[name] = true
		}
	}
	return out
}
