package rules

import (
	"fmt"
	"strings"
)

// scanIncompleteActions lists the values of defaults.scan_incomplete; the
// first is the default.
func scanIncompleteActions() []string { return []string{"bypass", "reject", "tempfail"} }

// failSafe is what the engine decides on a message whose body scan did not
// finish when the parts scanned do not settle the decision: the
// scan-incomplete built-in, as chosen by defaults.scan_incomplete.
type failSafe struct {
	name string   // "builtin:scan-incomplete-bypass", ...
	d    Decision // without Matched and Reason
}

// newFailSafe builds the fail-safe for a defaults.scan_incomplete value
// ("bypass", "reject" or "tempfail"; anything else is bypass).
func newFailSafe(action string) failSafe {
	switch action {
	case "reject":
		return failSafe{name: "builtin:scan-incomplete-reject", d: Decision{Action: Reject, Code: 550,
			Enhanced: [3]int{5, 6, 0}, Text: "Message rejected: its MIME structure could not be fully scanned", Final: true}}
	case "tempfail":
		return failSafe{name: "builtin:scan-incomplete-tempfail", d: Decision{Action: Tempfail, Code: 451,
			Enhanced: [3]int{4, 6, 0}, Text: "Message deferred: its MIME structure could not be fully scanned; try again later", Final: true}}
	}
	return failSafe{name: "builtin:scan-incomplete-bypass", d: Decision{Action: Bypass, Final: true}}
}

// decision is the fail-safe's decision on a body whose scan stopped for
// reason.
func (f failSafe) decision(reason string) Decision {
	d := f.d
	d.Matched = []string{f.name}
	d.Reason = "the body scan did not finish: " + reason
	return d
}

// action describes what the fail-safe does: "bypass", "reject 550 5.6.0".
func (f failSafe) action() string {
	if f.d.Action == Bypass {
		return "bypass"
	}
	e := f.d.Enhanced
	return fmt.Sprintf("%s %d %d.%d.%d", f.d.Action, f.d.Code, e[0], e[1], e[2])
}

// decide evaluates the rules on c and applies the fail-safe: when the body
// scan did not finish and a rule reached could not be decided on the parts
// scanned, the fail-safe decides, unless a built-in recall-safe default
// bypassed the message already (every built-in bypasses, so an undecided
// one before it could not have sent the message to a vendor either). With
// trace set, it returns the traces of the rules and, for an incomplete
// body, of the fail-safe.
func (e *Engine) decide(c *evalCtx, trace bool) (Decision, []RuleTrace) {
	d, undecided, traces := e.run(c, trace)
	if c.body == nil || !c.body.Incomplete {
		return d, traces
	}
	applies := len(undecided) > 0 && !d.Final
	if trace {
		traces = append(traces, e.failSafe.trace(c.body.IncompleteReason, d, undecided, applies))
	}
	if applies {
		d = e.failSafe.decision(c.body.IncompleteReason)
	}
	return d, traces
}

// trace describes the fail-safe for Explain. d is the decision of the
// rules on the parts scanned, undecided the rules they left undecided.
func (f failSafe) trace(reason string, d Decision, undecided []string, applies bool) RuleTrace {
	rt := RuleTrace{Name: f.name, Builtin: true, Matched: applies, Reached: !d.Final,
		Conditions: []ConditionTrace{{Field: "scan_incomplete", Holds: true, Reason: reason}}}
	if d.Final {
		rt.EndedBy = d.Matched[len(d.Matched)-1]
	}
	und := ConditionTrace{Field: "undecided", Holds: len(undecided) > 0,
		Reason: "the parts scanned settle every rule reached"}
	if und.Holds {
		und.Reason = "not decided on the parts scanned: " + strings.Join(undecided, ", ")
	}
	rt.Conditions = append(rt.Conditions, und)
	if applies {
		what := "bypass every vendor"
		if f.d.Action != Bypass {
			what = f.action()
		}
		rt.Effect = what + " (final: what the scan did not see could change the decision)"
	}
	return rt
}
