package rules

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/recallrelay/recallrelay/headers"
)

// Action is what a Decision does with a message.
type Action int

const (
	// Route sends the message through Decision.Route, a chain of vendors.
	Route Action = iota
	// Bypass reinjects the message into the tenant without any vendor.
	Bypass
	// Reject answers the sender with a permanent (5xx) reply: Exchange
	// bounces the message.
	Reject
	// Tempfail answers with a temporary (4xx) reply: Exchange queues the
	// message and retries.
	Tempfail
)

func (a Action) String() string {
	switch a {
	case Route:
		return "route"
	case Bypass:
		return "bypass"
	case Reject:
		return "reject"
	case Tempfail:
		return "tempfail"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Decision is where a message goes and what is done to it on the way.
type Decision struct {
	Action Action
	// Route is the vendor chain, in order (Action Route only).
	Route []string
	// Code, Enhanced and Text are the SMTP reply (Action Reject and
	// Tempfail only): 550 5.7.1 "Message rejected by policy".
	Code     int
	Enhanced [3]int
	Text     string
	// SetHeaders and RemoveHeaders are the header actions of every
	// matching rule, accumulated in evaluation order (Action Route and
	// Bypass only). The relay removes every field named in RemoveHeaders,
	// then adds SetHeaders, each replacing the fields of its name. A later
	// rule's set_header replaces an earlier one's for the same name; a
	// later remove_header cancels an earlier set_header of that name.
	SetHeaders    []headers.Field
	RemoveHeaders []string
	// Matched names the rules that matched and took effect, in evaluation
	// order; a built-in default as "builtin:recall-bypass",
	// "builtin:loop-protection", "builtin:null-sender-bypass",
	// "builtin:calendar-bypass", or, for a body scan that did not finish,
	// "builtin:scan-incomplete-bypass", "builtin:scan-incomplete-reject" or
	// "builtin:scan-incomplete-tempfail".
	Matched []string
	// Final reports that a built-in default decided, not the user rules: a
	// recall-safe default (the message bypasses every vendor and user
	// rules were not evaluated) or the scan-incomplete fail-safe (it
	// overrides what the user rules decided on the parts seen). A Final
	// bypass travels unchanged (no header actions).
	Final bool
	// Reason explains a decision of the scan-incomplete fail-safe for logs:
	// "the body scan did not finish: message part 1000: more than 1000
	// parts (scan limit)". "" for every other decision.
	Reason string
}

// String formats d for logs and the CLI: "route signature → scanner",
// "bypass (final)", "reject 550 5.7.1 Message rejected by policy".
func (d Decision) String() string {
	var b strings.Builder
	b.WriteString(d.Action.String())
	switch d.Action {
	case Route:
		b.WriteString(" " + strings.Join(d.Route, " → "))
	case Reject, Tempfail:
		fmt.Fprintf(&b, " %d %d.%d.%d %s", d.Code, d.Enhanced[0], d.Enhanced[1], d.Enhanced[2], d.Text)
	}
	if d.Final {
		b.WriteString(" (final)")
	}
	for _, f := range d.SetHeaders {
		b.WriteString("; set " + strings.TrimRight(string(f.Raw), "\r\n"))
	}
	for _, n := range d.RemoveHeaders {
		b.WriteString("; remove " + n)
	}
	if len(d.Matched) > 0 {
		b.WriteString("; matched " + strings.Join(d.Matched, ", "))
	}
	if d.Reason != "" {
		b.WriteString("; " + d.Reason)
	}
	return b.String()
}

// Message is what the engine decides on.
type Message struct {
	// From is the envelope sender (MAIL FROM), "" for the null sender.
	From string
	// Rcpts are the envelope recipients (RCPT TO).
	Rcpts []string
	// Size is the size of the whole message in bytes, for size_over.
	Size int64
	// Header is the message's header block; nil at envelope time.
	Header *headers.Header
	// Body is what ScanBody found, or nil when the body was not scanned;
	// the top-level entity is then described from Header alone.
	Body *BodyInfo
}

// CompileOptions binds a Set to a relay.
type CompileOptions struct {
	// Vendors are the names of the vendors the relay knows; every route
	// target must be one of them.
	Vendors []string
	// LoopMarker is the name of the header field the relay stamps on mail
	// it sends out; "" when it stamps none. Loop protection and the
	// already-processed predicate count it, and no rule may set or remove
	// it.
	LoopMarker string
	// RefHeader is the name of the reference header the relay stamps on
	// mail it sends to a vendor; "" means headers.DefaultRefHeader. No
	// rule may set or remove it.
	RefHeader string
}

// Engine decides, per message, where it goes. It is immutable and safe for
// concurrent use.
type Engine struct {
	source       string
	rules        []*rule // built-ins first, then user rules by priority
	org          map[string]bool
	domains      []string
	markers      []string // loop marker, then vendor markers
	defaultRoute []string
	needsBody    bool
	failSafe     failSafe // for messages whose body scan did not finish
}

// Compile checks s against the relay's vendors and loop marker and builds
// its Engine. The built-in recall-safe defaults that are on come first, in
// this order: null-sender-bypass, loop-protection, recall-bypass,
// calendar-bypass; then the rules by priority, rules of equal priority in
// file order.
//
// The error is an *Error naming the rule, field and line of every route
// target that is not a vendor, and of every rule that would set or remove
// the loop marker or the reference header.
func (s *Set) Compile(opts CompileOptions) (*Engine, error) {
	var probs []Problem
	if opts.LoopMarker != "" {
		if err := headers.CheckFieldName(opts.LoopMarker); err != nil {
			probs = append(probs, Problem{Msg: fmt.Sprintf("loop marker %q: %v", opts.LoopMarker, err)})
		}
	}
	if opts.RefHeader != "" {
		if err := headers.CheckFieldName(opts.RefHeader); err != nil {
			probs = append(probs, Problem{Msg: fmt.Sprintf("reference header %q: %v", opts.RefHeader, err)})
		}
	}
	known := func(n string) bool { return slices.Contains(opts.Vendors, n) }
	vendorList := strings.Join(opts.Vendors, ", ")
	if vendorList == "" {
		vendorList = "none"
	}
	checkRoute := func(route []string, sites []Problem) {
		for i, n := range route {
			if !known(n) {
				pr := sites[i]
				pr.Msg = fmt.Sprintf("unknown vendor %q (vendors: %s)", n, vendorList)
				probs = append(probs, pr)
			}
		}
	}
	checkRoute(s.defaultRoute, s.routeSites)
	for _, r := range s.rules {
		checkRoute(r.act.route, r.sites.route)
		probs = append(probs, r.relayFieldProblems(opts)...)
	}
	if len(probs) > 0 {
		return nil, &Error{Source: s.source, Problems: probs}
	}

	e := &Engine{source: s.source, org: make(map[string]bool), domains: slices.Clone(s.domains),
		defaultRoute: slices.Clone(s.defaultRoute), failSafe: newFailSafe(s.defaults.scanIncomplete)}
	for _, d := range s.domains {
		e.org[d] = true
	}
	if opts.LoopMarker != "" {
		e.markers = append(e.markers, opts.LoopMarker)
	}
	for _, m := range s.defaults.vendorMarkers {
		if !slices.ContainsFunc(e.markers, func(x string) bool { return strings.EqualFold(x, m) }) {
			e.markers = append(e.markers, m)
		}
	}
	builtin := func(name string, k condition) {
		e.rules = append(e.rules, &rule{name: "builtin:" + name, builtin: true, when: []condition{k}, act: actions{bypass: true}})
	}
	if s.defaults.nullSenderBypass {
		builtin("null-sender-bypass", nullSenderCond{})
	}
	if s.defaults.loopProtection && len(e.markers) > 0 {
		builtin("loop-protection", &predicateCond{path: "predicate", preds: []predicate{predAlreadyProcessed}})
	}
	if s.defaults.recallBypass {
		builtin("recall-bypass", &predicateCond{path: "predicate", preds: []predicate{predRecallRequest, predRecallReport}})
	}
	if s.defaults.calendarBypass {
		builtin("calendar-bypass", &predicateCond{path: "predicate", preds: []predicate{predCalendar}})
	}
	user := slices.Clone(s.rules)
	slices.SortStableFunc(user, func(a, b *rule) int { return a.priority - b.priority })
	e.rules = append(e.rules, user...)
	for _, r := range e.rules {
		for _, k := range append(slices.Clone(r.when), r.except...) {
			if k.needs()&(needBody|needSize) != 0 {
				e.needsBody = true
			}
		}
	}
	return e, nil
}

// relayFieldProblems reports every header action of r on the relay's own
// fields, the loop marker and the reference header of opts.
func (r *rule) relayFieldProblems(opts CompileOptions) []Problem {
	var probs []Problem
	check := func(name, verb string, site Problem) {
		if what := relayField(name, opts.LoopMarker, opts.RefHeader); what != "" {
			site.Msg = fmt.Sprintf("%s is the relay's %s; rules cannot %s it", name, what, verb)
			probs = append(probs, site)
		}
	}
	for i, f := range r.act.set {
		check(f.Name, "set", r.sites.set[i])
	}
	for i, n := range r.act.remove {
		check(n, "remove", r.sites.remove[i])
	}
	return probs
}

// inOrg reports whether addr's domain is an accepted domain. Subdomains of
// an accepted domain are not inside unless listed, as in Exchange.
func (e *Engine) inOrg(addr string) bool {
	return addr != "" && e.org[domainOf(addr)]
}

// Decide decides where m goes.
//
// The recall-safe defaults run first and are final: a recall request, a
// recall report, a message carrying a loop marker, a null-sender message or
// a calendar item bypasses every vendor whatever the rules say, since a
// vendor would break recall (the recall request's message class becomes
// IPM.Note when it leaves the service), loop, or mangle it.
//
// Then the rules run in priority order. Every matching rule's set_header
// and remove_header accumulate. Among matching rules with a routing action
// (route or bypass) the last one wins, as in Exchange, where later rules
// override earlier ones; a matching rule with stop: true ends the
// evaluation (StopRuleProcessing), and so does a matching reject or
// tempfail, at once. When no matching rule routes, default_route applies
// ([] means bypass).
//
// When m.Body is Incomplete, a condition on the body that does not hold on
// the parts seen is undecided, since a part not seen might make it hold;
// if an undecided condition could change the decision, the
// scan-incomplete fail-safe decides instead (defaults.scan_incomplete:
// bypass, reject or tempfail), unless a built-in recall-safe default
// already bypassed the message on what was seen.
//
// m.Header nil is taken as an empty header block.
func (e *Engine) Decide(m *Message) Decision {
	d, _ := e.decide(e.fullCtx(m), false)
	return d
}

func (e *Engine) fullCtx(m *Message) *evalCtx {
	h := m.Header
	if h == nil {
		h = new(headers.Header)
	}
	body := m.Body
	if body == nil {
		body = headerBodyInfo(h)
	}
	return &evalCtx{e: e, from: m.From, rcpts: m.Rcpts, h: h, body: body, size: m.Size, sizeKnown: true}
}

// DecideEnvelope decides from the envelope alone, for a relay that wants
// to answer or choose its next hop at MAIL/RCPT time. ok is true only when
// the decision cannot depend on the header block or the body: the null
// sender bypass, or a rule set in which every rule reached is decided by
// envelope conditions alone (with the header-dependent defaults off). When
// ok is false the decision is a best guess: the decision if every condition
// that needs more than the envelope were false.
func (e *Engine) DecideEnvelope(from string, rcpts []string) (Decision, bool) {
	c := &evalCtx{e: e, from: from, rcpts: rcpts}
	d, undecided, _ := e.run(c, false)
	return d, len(undecided) == 0
}

// NeedsBody reports whether any condition of the engine, the built-in
// defaults included, reads the body: the TNEF message class (recall
// requests and reports, calendar items, message_class), the parts
// (attachments, calendar parts, signed or encrypted parts) or the size.
// When it is false the relay never needs to scan or spool a body for the
// engine.
func (e *Engine) NeedsBody() bool { return e.needsBody }

// NeedsBodyFor reports whether the decision on a message with header block
// h may depend on its body, so that the relay should spool the body, scan
// it with ScanBody and pass the BodyInfo and size to Decide.
//
// It is false when no condition needs the body; when the header block
// settles the decision (a recall request known by its header fields is
// bypassed whatever the body holds); and, for conditions on parts and the
// TNEF class, when the message is neither multipart/* nor TNEF
// (application/ms-tnef, application/vnd.ms-tnef, winmail.dat), since the
// header block then describes its only entity. size_over needs the size of every message, so a rule with it
// makes NeedsBodyFor true for every message it may apply to.
func (e *Engine) NeedsBodyFor(h *headers.Header) bool {
	if !e.needsBody {
		return false
	}
	if h == nil {
		return true
	}
	c := &evalCtx{e: e, h: h, envUnknown: true}
	if !scannable(h) {
		c.body = headerBodyInfo(h)
	}
	for _, r := range e.rules {
		res, _, bodyDep := r.evaluate(c, false)
		if res == unknown && bodyDep {
			return true
		}
		if res == yes && r.ends() {
			return false
		}
	}
	return false
}

// ends reports whether a matching r ends the evaluation.
func (r *rule) ends() bool {
	return r.builtin || r.stop || r.act.reject != nil || r.act.tempfail != nil
}

// evaluate evaluates r: its when conditions all hold and none of its except
// conditions holds. With all set, every condition is evaluated and traced;
// otherwise evaluation stops as soon as the result is known. bodyDep
// reports a condition whose value is unknown for want of the body or size.
func (r *rule) evaluate(c *evalCtx, all bool) (res tri, conds []ConditionTrace, bodyDep bool) {
	when := evalConds(c, r.when, no, all, &conds, &bodyDep)
	if when == no && !all {
		return no, conds, bodyDep
	}
	except := evalConds(c, r.except, yes, all, &conds, &bodyDep)
	switch {
	case when == no || except == yes:
		return no, conds, bodyDep
	case when == unknown || except == unknown:
		return unknown, conds, bodyDep
	}
	return yes, conds, bodyDep
}

// evalConds combines the values of ks: decisive is the value that settles
// the combination, no for when (all must hold), yes for except (any holds).
// Without all it stops at the first decisive value; with all it evaluates
// and traces every condition. bodyDep is set when a condition is unknown
// for want of the body or size.
func evalConds(c *evalCtx, ks []condition, decisive tri, all bool, trace *[]ConditionTrace, bodyDep *bool) tri {
	res := yes // the neutral value: yes for when, no for except
	if decisive == yes {
		res = no
	}
	for _, k := range ks {
		t, why := evalCond(c, k)
		if all {
			*trace = append(*trace, ConditionTrace{Field: k.field(), Holds: t == yes, Unknown: t == unknown, Reason: why})
		}
		if t == unknown && k.needs()&(needBody|needSize) != 0 {
			*bodyDep = true
		}
		switch {
		case t == decisive:
			res = decisive
		case t == unknown && res != decisive:
			res = unknown
		}
		if res == decisive && !all {
			break
		}
	}
	return res
}

// evalCond evaluates k on c. On a body whose scan did not finish, a
// condition on the body that does not hold on the parts seen is unknown: a
// part not seen might make it hold. (What holds on the parts seen holds:
// every body condition asks whether some part, or the first TNEF part, is
// of a kind.)
func evalCond(c *evalCtx, k condition) (tri, string) {
	t, why := k.eval(c)
	if t == no && k.needs()&needBody != 0 && c.body != nil && c.body.Incomplete {
		return unknown, why + " (in the parts scanned; the scan did not finish)"
	}
	return t, why
}

// run evaluates the rules on c. undecided names the rules reached whose
// value could not be evaluated (unknown) and so may have changed the
// decision; the decision treats them as not matching. With trace set,
// every rule is evaluated and traced, also after the evaluation ended.
func (e *Engine) run(c *evalCtx, trace bool) (d Decision, undecided []string, traces []RuleTrace) {
	ended := ""
	var routing *rule
	var set []headers.Field
	var remove []string
	var matched []string
	var final *Decision
	for _, r := range e.rules {
		if ended != "" && !trace {
			break
		}
		res, conds, _ := r.evaluate(c, trace)
		rt := RuleTrace{Name: r.name, Priority: r.priority, Builtin: r.builtin, Matched: res == yes,
			Reached: ended == "", Conditions: conds}
		if ended != "" {
			rt.EndedBy = ended
			traces = append(traces, rt)
			continue
		}
		if res == unknown {
			undecided = append(undecided, r.name)
		}
		if res != yes {
			if trace {
				traces = append(traces, rt)
			}
			continue
		}
		matched = append(matched, r.name)
		switch {
		case r.builtin:
			final = &Decision{Action: Bypass, Final: true}
			rt.Effect = "bypass every vendor (final: user rules are not evaluated)"
			ended = r.name
		case r.act.reject != nil || r.act.tempfail != nil:
			rp, act := r.act.reject, Reject
			if rp == nil {
				rp, act = r.act.tempfail, Tempfail
			}
			final = &Decision{Action: act, Code: rp.code, Enhanced: rp.enhanced, Text: rp.text}
			rt.Effect = fmt.Sprintf("%s %d %d.%d.%d (ends evaluation)", act, rp.code, rp.enhanced[0], rp.enhanced[1], rp.enhanced[2])
			ended = r.name
		default:
			var eff []string
			for _, n := range r.act.remove {
				if !slices.ContainsFunc(remove, func(x string) bool { return strings.EqualFold(x, n) }) {
					remove = append(remove, n)
				}
				set = slices.DeleteFunc(set, func(f headers.Field) bool { return strings.EqualFold(f.Name, n) })
				eff = append(eff, "remove "+n)
			}
			for _, f := range r.act.set {
				i := slices.IndexFunc(set, func(x headers.Field) bool { return strings.EqualFold(x.Name, f.Name) })
				if i >= 0 {
					set[i] = f
				} else {
					set = append(set, f)
				}
				eff = append(eff, "set "+f.Name)
			}
			switch {
			case r.act.route != nil:
				routing = r
				eff = append(eff, "route "+strings.Join(r.act.route, " → "))
			case r.act.bypass:
				routing = r
				eff = append(eff, "bypass")
			}
			if r.stop {
				ended = r.name
				eff = append(eff, "stop")
			}
			rt.Effect = strings.Join(eff, ", ")
		}
		if trace {
			traces = append(traces, rt)
		}
	}
	if final != nil {
		final.Matched = matched
		return *final, undecided, traces
	}
	d = Decision{Matched: matched, RemoveHeaders: remove}
	for _, f := range set {
		d.SetHeaders = append(d.SetHeaders, headers.Field{Name: f.Name, Raw: bytes.Clone(f.Raw)})
	}
	route := e.defaultRoute
	if routing != nil {
		route = routing.act.route
		if routing.act.bypass {
			route = nil
		}
	}
	if len(route) == 0 {
		d.Action = Bypass
	} else {
		d.Action, d.Route = Route, slices.Clone(route)
	}
	return d, undecided, traces
}

// Source names the rules file the engine was compiled from ("default
// rules" without one).
func (e *Engine) Source() string { return e.source }

// Summary describes the engine in one line for `recallrelay check` and the
// reload log: its source, the built-in defaults that are on, the user rules
// in evaluation order, the default route and, when it is not bypass, the
// scan-incomplete fail-safe.
func (e *Engine) Summary() string {
	var builtins, user []string
	for _, r := range e.rules {
		if r.builtin {
			builtins = append(builtins, strings.TrimPrefix(r.name, "builtin:"))
		} else {
			user = append(user, r.name)
		}
	}
	def := "bypass"
	if len(e.defaultRoute) > 0 {
		def = "route " + strings.Join(e.defaultRoute, " → ")
	}
	ruleList := "no rules"
	if len(user) > 0 {
		ruleList = fmt.Sprintf("%d rules (%s)", len(user), strings.Join(user, ", "))
	}
	on := "none"
	if len(builtins) > 0 {
		on = strings.Join(builtins, ", ")
	}
	sum := fmt.Sprintf("%s: built-in defaults %s; %s; otherwise %s", e.source, on, ruleList, def)
	if a := e.failSafe.action(); e.needsBody && a != "bypass" {
		sum += "; a body scan that cannot finish: " + a
	}
	return sum
}
