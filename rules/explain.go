package rules

import (
	"fmt"
	"strings"
)

// Explanation says, for one message, what every rule made of it and what
// was decided.
type Explanation struct {
	// Rules traces every rule, built-in defaults first, in evaluation
	// order.
	Rules []RuleTrace
	// Decision is what Decide decides for the message.
	Decision Decision
	// Unscanned reports a multipart or TNEF message explained without its
	// BodyInfo: conditions on parts and on the TNEF class saw only what the
	// header block tells.
	Unscanned bool
}

// RuleTrace is what one rule made of a message.
type RuleTrace struct {
	// Name is the rule's name; built-in defaults are "builtin:...".
	Name     string
	Priority int
	Builtin  bool
	// Matched reports that every when condition held and no except
	// condition did.
	Matched bool
	// Reached is false when the evaluation had ended before the rule (by
	// EndedBy); Matched then says what the rule would have done.
	Reached bool
	EndedBy string
	// Conditions traces every condition, when conditions first.
	Conditions []ConditionTrace
	// Effect describes what the rule did to the decision, "" when nothing.
	Effect string
}

// ConditionTrace is the value of one condition of a rule.
type ConditionTrace struct {
	// Field is the condition's path in the rule: "when.header_contains",
	// "except.sender"; "predicate" or "null_sender" for built-ins.
	Field string
	// Holds reports whether the condition holds.
	Holds bool
	// Unknown reports that the value could not be established: a
	// condition on the body of a message whose body scan did not finish
	// (or was not done). Holds is then false.
	Unknown bool
	Reason  string
}

// Explain evaluates every rule on m, including those an ended evaluation
// skips, and says why each matched or not: which condition failed, which
// except condition held. Its Decision is Decide's.
//
// When m.Body is Incomplete, the scan-incomplete fail-safe is traced last,
// as "builtin:scan-incomplete-bypass" (or -reject, -tempfail): it matches
// when a rule reached could not be decided on the parts scanned.
func (e *Engine) Explain(m *Message) Explanation {
	c := e.fullCtx(m)
	d, traces := e.decide(c, true)
	return Explanation{Rules: traces, Decision: d, Unscanned: m.Body == nil && scannable(c.h)}
}

// String renders the explanation for a terminal, one block per rule:
//
//	builtin:recall-bypass: no match
//	    no   predicate: recall-request: no recall request field, ...
//	rule "sign-external" (priority 10): MATCH → route signature
//	    yes  when.sender_in_organization: sender <a@contoso.com> is in the organization
//	    no   except.header_exists: no X-Skip field
//	decision: route signature; matched sign-external
//
// A condition that could not be decided (on a body whose scan did not
// finish, or was not done) is marked "?".
func (x Explanation) String() string {
	var b strings.Builder
	if x.Unscanned {
		b.WriteString("note: body not scanned; conditions on parts and the TNEF class saw the header block only\n")
	}
	for _, r := range x.Rules {
		if r.Builtin {
			b.WriteString(r.Name)
		} else {
			fmt.Fprintf(&b, "rule %q (priority %d)", r.Name, r.Priority)
		}
		switch {
		case !r.Reached && r.Matched:
			fmt.Fprintf(&b, ": not reached (evaluation ended at %s); would match", r.EndedBy)
		case !r.Reached:
			fmt.Fprintf(&b, ": not reached (evaluation ended at %s)", r.EndedBy)
		case r.Matched:
			b.WriteString(": MATCH")
			if r.Effect != "" {
				b.WriteString(" → " + r.Effect)
			}
		default:
			b.WriteString(": no match")
			if why := mismatch(r); why != "" {
				b.WriteString(" (" + why + ")")
			}
		}
		b.WriteString("\n")
		if len(r.Conditions) == 0 && !r.Builtin {
			b.WriteString("    (no conditions: applies to every message)\n")
		}
		for _, c := range r.Conditions {
			mark := "no "
			switch {
			case c.Holds:
				mark = "yes"
			case c.Unknown:
				mark = "?  "
			}
			fmt.Fprintf(&b, "    %s  %s: %s\n", mark, c.Field, c.Reason)
		}
	}
	b.WriteString("decision: " + x.Decision.String() + "\n")
	return b.String()
}

// mismatch names what kept a rule from matching: the first when condition
// that failed, else the first except condition that held, else the first
// condition left undecided.
func mismatch(r RuleTrace) string {
	undecided := ""
	for _, c := range r.Conditions {
		switch {
		case c.Unknown:
			if undecided == "" {
				undecided = c.Field + " undecided"
			}
		case strings.HasPrefix(c.Field, "except."):
			if c.Holds {
				return c.Field + " holds"
			}
		case !c.Holds:
			return c.Field + " does not hold"
		}
	}
	return undecided
}
