package rules

import (
	"fmt"
	"mime"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/internal/yamlconf"
)

// Set is a checked rules file: the organization, the recall-safe defaults,
// the default route and the rules. It is not tied to a relay yet: Compile
// checks it against the relay's vendors and loop marker and returns the
// Engine that decides. A Set is immutable.
type Set struct {
	source       string
	domains      []string // accepted domains, lower-case
	defaults     defaults
	defaultRoute []string
	routeSites   []Problem // where each default route entry is, for Compile errors
	rules        []*rule   // in file order
}

// defaults are the recall-safe defaults of a Set.
type defaults struct {
	recallBypass     bool
	loopProtection   bool
	nullSenderBypass bool
	calendarBypass   bool
	vendorMarkers    []string
	scanIncomplete   string // "bypass", "reject" or "tempfail"
}

// DefaultVendorMarkers are the loop markers of the signature services
// recallrelay knows, counted by the loop protection and the
// already-processed predicate unless a rules file sets
// defaults.vendor_markers. Source: ../shared/docs/exchange-round-trip.md,
// section 1.
func DefaultVendorMarkers() []string {
	return []string{"X-CodeTwoProcessed", "X-ExclaimerHostedSignatures-MessageProcessed", "X-ProcessedByTemplafy"}
}

// Default returns the Set of a relay without a rules file: every
// recall-safe default on, the default vendor markers, every other message
// routed to vendor, no rules.
func Default(vendor string) *Set {
	return &Set{
		source: "default rules",
		defaults: defaults{
			recallBypass: true, loopProtection: true, nullSenderBypass: true, calendarBypass: true,
			vendorMarkers: DefaultVendorMarkers(), scanIncomplete: scanIncompleteActions()[0],
		},
		defaultRoute: []string{vendor},
		routeSites:   []Problem{{Path: "default_route[0]"}},
	}
}

// Source names the file the Set was parsed from.
func (s *Set) Source() string { return s.source }

// rule is one compiled rule, user-written or built in.
type rule struct {
	name     string
	priority int
	builtin  bool
	when     []condition // all must hold
	except   []condition // none may hold
	act      actions
	stop     bool
	sites    ruleSites
}

// ruleSites locates the parts of a rule that Compile checks.
type ruleSites struct {
	route  []Problem
	set    []Problem
	remove []Problem
}

// actions are what a matching rule does.
type actions struct {
	route    []string // nil: no route action
	bypass   bool
	reject   *reply
	tempfail *reply
	set      []headers.Field
	remove   []string
}

// routing reports whether the actions decide where the message goes.
func (a *actions) routing() bool { return a.route != nil || a.bypass }

// reply is a reject or tempfail answer.
type reply struct {
	code     int
	enhanced [3]int
	text     string
}

// compileFile checks the decoded file and builds the Set, recording every
// problem.
func (p *parser) compileFile(f *fileSchema) *Set {
	s := &Set{source: p.source}
	for i, d := range f.Organization.AcceptedDomains {
		path := "organization.accepted_domains[" + strconv.Itoa(i) + "]"
		nd, err := normDomain(d)
		if err != nil {
			p.problem(path, "%v", err)
			continue
		}
		if slices.Contains(s.domains, nd) {
			p.problem(path, "%s is listed twice", nd)
			continue
		}
		s.domains = append(s.domains, nd)
	}

	def := &f.Defaults
	s.defaults = defaults{
		recallBypass:     def.RecallBypass == nil || *def.RecallBypass,
		loopProtection:   def.LoopProtection == nil || *def.LoopProtection,
		nullSenderBypass: def.NullSenderBypass == nil || *def.NullSenderBypass,
		calendarBypass:   def.CalendarBypass == nil || *def.CalendarBypass,
		vendorMarkers:    DefaultVendorMarkers(),
		scanIncomplete:   p.scanIncomplete(def.ScanIncomplete),
	}
	if p.pos.Has("defaults.vendor_markers") {
		s.defaults.vendorMarkers = []string{}
		for i, m := range def.VendorMarkers {
			if err := headers.CheckFieldName(m); err != nil {
				p.problem("defaults.vendor_markers["+strconv.Itoa(i)+"]", "%v", err)
				continue
			}
			s.defaults.vendorMarkers = append(s.defaults.vendorMarkers, m)
		}
	}

	if !p.pos.Has("default_route") {
		p.problem("default_route", "required: the vendor chain of messages no rule routes, or [] to bypass every vendor")
	} else if p.isNull("default_route") {
		p.problem("default_route", "must be a list of vendor names, or [] to bypass every vendor")
	} else {
		s.defaultRoute, s.routeSites = p.route("default_route", f.DefaultRoute)
		if s.defaultRoute == nil {
			s.defaultRoute = []string{}
		}
	}

	names := make(map[string]int)
	for i := range f.Rules {
		r := p.compileRule(i, &f.Rules[i], s)
		if r == nil {
			continue
		}
		if first, dup := names[r.name]; dup {
			p.problem("rules["+strconv.Itoa(i)+"].name", "rules[%d] on line %d has the same name; names must be unique",
				first, p.pos.Line("rules["+strconv.Itoa(first)+"]"))
			continue
		}
		names[r.name] = i
		s.rules = append(s.rules, r)
	}
	return s
}

// scanIncomplete checks defaults.scan_incomplete, whose value is v, and
// returns it, or the default when it is not set or invalid.
func (p *parser) scanIncomplete(v string) string {
	const path = "defaults.scan_incomplete"
	valid := scanIncompleteActions()
	if !p.pos.Has(path) {
		return valid[0]
	}
	if !slices.Contains(valid, v) {
		p.problem(path, "must be %s or %s, not %q", strings.Join(valid[:len(valid)-1], ", "), valid[len(valid)-1], v)
		return valid[0]
	}
	return v
}

// isNull reports whether the file sets path to null ("key:" alone).
func (p *parser) isNull(path string) bool {
	v := p.pos.Value(path)
	return v != nil && v.Kind == yaml.ScalarNode && v.Tag == "!!null"
}

// nullKeys reports every key of the struct type of v set to null under
// path: "sender:" alone is a mistake, not a way to leave a condition out.
func (p *parser) nullKeys(path string, v any) {
	t := reflect.TypeOf(v)
	for i := 0; i < t.NumField(); i++ {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if p.isNull(path + "." + key) {
			p.problem(path+"."+key, "has no value")
		}
	}
}

// route checks a vendor chain. It returns nil for an empty list.
func (p *parser) route(path string, names []string) ([]string, []Problem) {
	var out []string
	var sites []Problem
	for i, n := range names {
		ip := path + "[" + strconv.Itoa(i) + "]"
		switch {
		case strings.TrimSpace(n) == "":
			p.problem(ip, "empty vendor name")
		case slices.Contains(out, n):
			p.problem(ip, "vendor %q appears twice in the chain", n)
		default:
			out = append(out, n)
			sites = append(sites, p.locate(ip, ""))
		}
	}
	return out, sites
}

// validRuleName checks a rule's name.
func validRuleName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("required")
	case !utf8.ValidString(name):
		return fmt.Errorf("not valid UTF-8")
	case len(name) > 200:
		return fmt.Errorf("longer than 200 bytes")
	case strings.HasPrefix(name, "builtin:"):
		return fmt.Errorf("names starting with \"builtin:\" are reserved for the built-in defaults")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

// compileRule checks one rule and compiles it; nil when its name is
// unusable (the problems are recorded either way).
func (p *parser) compileRule(i int, rs *ruleSchema, s *Set) *rule {
	base := "rules[" + strconv.Itoa(i) + "]"
	n := len(p.problems)
	if err := validRuleName(rs.Name); err != nil {
		p.problem(base+".name", "%v", err)
	}
	r := &rule{name: rs.Name, priority: (i + 1) * 10, stop: rs.Stop}
	if rs.Priority != nil {
		r.priority = *rs.Priority
	}
	orgNeeded := func(path string) {
		if len(s.domains) == 0 {
			p.problem(path, "needs organization.accepted_domains")
		}
	}
	r.when = p.conditions(base+".when", "when", &rs.When, orgNeeded)
	r.except = p.conditions(base+".except", "except", &rs.Except, orgNeeded)
	r.act, r.sites = p.actions(base+".actions", &rs.Actions)
	if !r.act.routing() && r.act.reject == nil && r.act.tempfail == nil && len(r.act.set) == 0 &&
		len(r.act.remove) == 0 && !r.stop && len(p.problems) == n {
		p.problem(base+".actions", "no action: give route, bypass, set_header, remove_header, reject or tempfail, or stop: true")
	}
	if validRuleName(rs.Name) != nil {
		return nil
	}
	return r
}

// listPresent reports a problem when the list at path is present but empty,
// and whether it holds values.
func (p *parser) listPresent(path string, n int) bool {
	if !p.pos.Has(path) {
		return false
	}
	if n == 0 {
		p.problem(path, "must list at least one value (leave the condition out to not use it)")
		return false
	}
	return true
}

// conditions compiles the conditions under path (when or except); rel is
// the path relative to the rule.
func (p *parser) conditions(path, rel string, cs *condSchema, orgNeeded func(string)) []condition {
	var out []condition
	p.nullKeys(path, condSchema{})
	at := func(key string) string { return path + "." + key }
	rp := func(key string) string { return rel + "." + key }

	if p.listPresent(at("header_exists"), len(cs.HeaderExists)) {
		out = append(out, &headerExistsCond{path: rp("header_exists"),
			names: each(p, at("header_exists"), cs.HeaderExists, func(n string) (string, error) { return n, headers.CheckFieldName(n) })})
	}
	if hc := cs.HeaderContains; hc != nil {
		k := &headerContainsCond{path: rp("header_contains"), header: p.headerName(at("header_contains.header"), hc.Header)}
		if p.requireList(at("header_contains.words"), len(hc.Words)) {
			k.phrases = p.phrases(at("header_contains.words"), hc.Words)
		}
		out = append(out, k)
	}
	if hm := cs.HeaderMatches; hm != nil {
		k := &headerMatchesCond{path: rp("header_matches"), header: p.headerName(at("header_matches.header"), hm.Header)}
		if p.requireList(at("header_matches.patterns"), len(hm.Patterns)) {
			k.patterns = p.regexps(at("header_matches.patterns"), hm.Patterns, false)
		}
		out = append(out, k)
	}
	if cs.Sender != nil {
		out = append(out, p.address(at("sender"), rp("sender"), cs.Sender, false))
	}
	if cs.Recipient != nil {
		out = append(out, p.address(at("recipient"), rp("recipient"), cs.Recipient, true))
	}
	if cs.SenderInOrganization != nil {
		orgNeeded(at("sender_in_organization"))
		out = append(out, &senderInOrgCond{path: rp("sender_in_organization"), want: *cs.SenderInOrganization})
	}
	if p.pos.Has(at("recipients_outside_organization")) {
		switch m := cs.RecipientsOutsideOrganization; m {
		case "any", "all", "none":
			orgNeeded(at("recipients_outside_organization"))
			out = append(out, &rcptsOutsideCond{path: rp("recipients_outside_organization"), mode: m})
		default:
			p.problem(at("recipients_outside_organization"), "must be any, all or none, not %q", m)
		}
	}
	if p.listPresent(at("subject_contains"), len(cs.SubjectContains)) {
		out = append(out, &headerContainsCond{path: rp("subject_contains"), header: "Subject",
			phrases: p.phrases(at("subject_contains"), cs.SubjectContains), subject: true})
	}
	if p.listPresent(at("subject_matches"), len(cs.SubjectMatches)) {
		out = append(out, &headerMatchesCond{path: rp("subject_matches"), header: "Subject",
			patterns: p.regexps(at("subject_matches"), cs.SubjectMatches, false)})
	}
	if cs.SizeOver.Kind != 0 {
		if n, ok := p.size(at("size_over"), &cs.SizeOver); ok {
			out = append(out, &sizeOverCond{path: rp("size_over"), limit: n})
		}
	}
	if p.listPresent(at("attachment_extension"), len(cs.AttachmentExtension)) {
		out = append(out, &attachmentExtCond{path: rp("attachment_extension"),
			exts: each(p, at("attachment_extension"), cs.AttachmentExtension, parseExtension)})
	}
	if p.listPresent(at("attachment_content_type"), len(cs.AttachmentContentType)) {
		out = append(out, &attachmentTypeCond{path: rp("attachment_content_type"),
			types: each(p, at("attachment_content_type"), cs.AttachmentContentType, parseTypePattern)})
	}
	if p.listPresent(at("message_class"), len(cs.MessageClass)) {
		out = append(out, &messageClassCond{path: rp("message_class"),
			classes: each(p, at("message_class"), cs.MessageClass, parseClassPattern)})
	}
	if p.listPresent(at("predicate"), len(cs.Predicate)) {
		out = append(out, &predicateCond{path: rp("predicate"),
			preds: each(p, at("predicate"), cs.Predicate, func(name string) (predicate, error) {
				pr, ok := parsePredicate(name)
				if !ok {
					return 0, fmt.Errorf("unknown predicate %q; known: %s", name, strings.Join(predicateNames(), ", "))
				}
				return pr, nil
			})})
	}
	return out
}

// requireList reports a problem when the list at path is missing or empty.
func (p *parser) requireList(path string, n int) bool {
	if n == 0 {
		p.problem(path, "required: list at least one value")
		return false
	}
	return true
}

// headerName checks a required header field name.
func (p *parser) headerName(path, name string) string {
	if !p.pos.Has(path) {
		p.problem(path, "required")
		return name
	}
	if err := headers.CheckFieldName(name); err != nil {
		p.problem(path, "%v", err)
	}
	return name
}

func (p *parser) phrases(path string, words []string) []phrase {
	return each(p, path, words, compilePhrase)
}

// regexps compiles RE2 patterns; fold makes them case-insensitive.
func (p *parser) regexps(path string, patterns []string, fold bool) []*regexp.Regexp {
	return each(p, path, patterns, func(s string) (*regexp.Regexp, error) {
		re, err := regexp.Compile(s)
		if err == nil && fold {
			re, err = regexp.Compile("(?i)" + s)
		}
		return re, err
	})
}

// each parses every item of the list at path, reporting each item that
// does not parse at its index, and returns those that do.
func each[T any](p *parser, path string, items []string, parse func(string) (T, error)) []T {
	var out []T
	for i, s := range items {
		v, err := parse(s)
		if err != nil {
			p.problem(path+"["+strconv.Itoa(i)+"]", "%v", err)
			continue
		}
		out = append(out, v)
	}
	return out
}

// parseExtension normalizes a file name extension: "PDF", ".docx", "tar.gz".
func parseExtension(x string) (string, error) {
	e := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(x), "."))
	if e == "" || strings.ContainsAny(e, "/\\*? \t") || strings.HasSuffix(e, ".") || hasControl(e) {
		return "", fmt.Errorf("%q is not a file name extension (like pdf, .docx or tar.gz)", x)
	}
	return e, nil
}

// address compiles a sender or recipient condition.
func (p *parser) address(path, rel string, as *addressSchema, recipient bool) condition {
	k := &addressCond{path: rel, recipient: recipient, addrs: map[string]bool{}, domains: map[string]bool{}}
	if len(as.Addresses)+len(as.Domains)+len(as.Patterns) == 0 {
		p.problem(path, "list at least one of addresses, domains and patterns")
	}
	for i, a := range as.Addresses {
		la := strings.ToLower(strings.TrimSpace(a))
		at := strings.LastIndexByte(la, '@')
		if at <= 0 || at == len(la)-1 || strings.ContainsAny(la, " \t<>") || hasControl(la) {
			p.problem(path+".addresses["+strconv.Itoa(i)+"]", "%q is not an address like user@example.com", a)
			continue
		}
		k.addrs[la] = true
	}
	for i, d := range as.Domains {
		nd, err := normDomain(d)
		if err != nil {
			p.problem(path+".domains["+strconv.Itoa(i)+"]", "%v", err)
			continue
		}
		k.domains[nd] = true
	}
	k.patterns = p.regexps(path+".patterns", as.Patterns, true)
	return k
}

// normDomain checks a domain and returns it lower-cased, without a trailing
// dot.
func normDomain(d string) (string, error) {
	nd := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	switch {
	case nd == "":
		return "", fmt.Errorf("empty domain")
	case strings.Contains(nd, "@"):
		return "", fmt.Errorf("%q is an address, not a domain", d)
	case strings.HasPrefix(nd, ".") || strings.Contains(nd, "..") || strings.ContainsAny(nd, " \t*/\\<>[]") || hasControl(nd):
		return "", fmt.Errorf("%q is not a domain name", d)
	}
	return nd, nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// parseTypePattern parses "type/subtype" or "type/*".
func parseTypePattern(s string) (typePattern, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	typ, sub, ok := strings.Cut(t, "/")
	if !ok || typ == "" || sub == "" || strings.ContainsAny(t, " \t;") || typ == "*" {
		return typePattern{}, fmt.Errorf("%q is not a media type like application/pdf or image/*", s)
	}
	if sub == "*" {
		return typePattern{prefix: typ + "/"}, nil
	}
	if _, _, err := mime.ParseMediaType(t); err != nil || strings.Contains(sub, "/") {
		return typePattern{}, fmt.Errorf("%q is not a media type like application/pdf or image/*", s)
	}
	return typePattern{exact: t}, nil
}

// parseClassPattern parses a message class, or a prefix ending in "*".
func parseClassPattern(s string) (classPattern, error) {
	t := strings.TrimSpace(s)
	body, prefix := strings.CutSuffix(t, "*")
	if body == "" || strings.Contains(body, "*") {
		return classPattern{}, fmt.Errorf("%q is not a message class like IPM.Note, or a prefix like IPM.Schedule.Meeting.*", s)
	}
	for i := 0; i < len(body); i++ {
		if body[i] < 0x20 || body[i] > 0x7e {
			return classPattern{}, fmt.Errorf("%q: message classes are printable ASCII", s)
		}
	}
	return classPattern{text: t, lower: strings.ToLower(body), prefix: prefix}, nil
}

// size parses size_over: an integer number of bytes or a size with a unit,
// as yamlconf.ByteSize documents.
func (p *parser) size(path string, n *yaml.Node) (int64, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return 0, false // reported by nullKeys
	}
	if n.Kind != yaml.ScalarNode {
		p.problem(path, "must be a size like 10MB, 512KiB or 1048576")
		return 0, false
	}
	var v int64
	var err error
	if n.Tag == "!!int" {
		err = n.Decode(&v)
	} else {
		var b yamlconf.ByteSize
		b, err = yamlconf.ParseByteSize(n.Value)
		v = int64(b)
	}
	if err != nil {
		p.problem(path, "%v", err)
		return 0, false
	}
	if v < 0 {
		p.problem(path, "must not be negative")
		return 0, false
	}
	return v, true
}

// actions checks and compiles the actions under path.
func (p *parser) actions(path string, as *actionsSchema) (actions, ruleSites) {
	var a actions
	var sites ruleSites
	p.nullKeys(path, actionsSchema{})
	routing := 0
	if p.pos.Has(path + ".route") {
		routing++
		if len(as.Route) == 0 {
			p.problem(path+".route", "must list at least one vendor (use bypass: true to skip every vendor)")
		}
		a.route, sites.route = p.route(path+".route", as.Route)
	}
	if as.Bypass {
		routing++
		a.bypass = true
	}
	if as.Reject != nil {
		routing++
		a.reject = p.reply(path+".reject", as.Reject, 5)
	}
	if as.Tempfail != nil {
		routing++
		a.tempfail = p.reply(path+".tempfail", as.Tempfail, 4)
	}
	if routing > 1 {
		p.problem(path, "at most one of route, bypass, reject and tempfail")
	}
	for i, sh := range as.SetHeader {
		ip := path + ".set_header[" + strconv.Itoa(i) + "]"
		if !p.pos.Has(ip + ".name") {
			p.problem(ip+".name", "required")
			continue
		}
		if !p.actionName(ip+".name", sh.Name, "set") {
			continue
		}
		f, err := headers.NewField(sh.Name, sh.Value)
		if err != nil {
			p.problem(ip, "%v", err)
			continue
		}
		a.set = append(a.set, f)
		sites.set = append(sites.set, p.locate(ip+".name", ""))
	}
	for i, name := range as.RemoveHeader {
		ip := path + ".remove_header[" + strconv.Itoa(i) + "]"
		if err := headers.CheckFieldName(name); err != nil {
			p.problem(ip, "%v", err)
			continue
		}
		if !p.actionName(ip, name, "removed") {
			continue
		}
		a.remove = append(a.remove, name)
		sites.remove = append(sites.remove, p.locate(ip, ""))
	}
	return a, sites
}

// actionName checks the field name of a header action at path: an exact
// name, not a pattern, and not a protected field (see Protected; the
// relay's own fields are checked by Compile, which knows them). verb is
// what the action does ("set", "removed").
func (p *parser) actionName(path, name, verb string) bool {
	if isPattern(name) {
		p.problem(path, "%q: header actions take exact field names, not patterns", name)
		return false
	}
	if why := fixedProtection(name); why != "" {
		p.problem(path, "%s cannot be %s by a rule: %s", name, verb, why)
		return false
	}
	return true
}

// reply checks a reject (class 5) or tempfail (class 4) reply, filling in
// the defaults: 550 5.7.1 and 451 4.7.1.
func (p *parser) reply(path string, rs *replySchema, class int) *reply {
	r := &reply{code: class*100 + 50, enhanced: [3]int{class, 7, 1}}
	if class == 4 {
		r.code = 451
		r.text = "Message deferred by policy, try again later"
	} else {
		r.text = "Message rejected by policy"
	}
	if p.pos.Has(path + ".code") {
		if rs.Code/100 != class || rs.Code%100/10 > 5 {
			p.problem(path+".code", "must be a %dxx SMTP reply code (%d00-%d59), not %d", class, class, class, rs.Code)
		}
		r.code = rs.Code
	}
	if p.pos.Has(path + ".enhanced") {
		e, err := parseEnhanced(rs.Enhanced)
		switch {
		case err != nil:
			p.problem(path+".enhanced", "%v", err)
		case e[0] != class:
			p.problem(path+".enhanced", "%s does not match a %dxx reply: must be %d.x.y", strings.TrimSpace(rs.Enhanced), class, class)
		default:
			r.enhanced = e
		}
	}
	if p.pos.Has(path + ".text") {
		t := strings.TrimSpace(rs.Text)
		switch {
		case t == "":
			p.problem(path+".text", "empty (leave it out for the default)")
		case len(t) > 400:
			p.problem(path+".text", "longer than 400 characters")
		default:
			for i := 0; i < len(t); i++ {
				if t[i] < 0x20 || t[i] > 0x7e {
					p.problem(path+".text", "must be printable ASCII (byte %#02x at %d)", t[i], i)
					return r
				}
			}
			r.text = t
		}
	}
	return r
}

// parseEnhanced parses an RFC 3463 enhanced status code "class.subject.detail".
func parseEnhanced(s string) ([3]int, error) {
	var e [3]int
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 {
		return e, fmt.Errorf("%q is not an enhanced status code like 5.7.1", s)
	}
	for i, part := range parts {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 || len(part) > 3 || (i == 0 && n != 2 && n != 4 && n != 5) {
			return e, fmt.Errorf("%q is not an enhanced status code like 5.7.1", s)
		}
		e[i] = n
	}
	return e, nil
}
