package rules

import (
	"fmt"
	"mime"
	"regexp"
	"strings"

	"github.com/emersion/go-message/charset"

	"github.com/recallrelay/recallrelay/headers"
)

// tri is the value of a condition when part of the message may not be
// known yet: at MAIL/RCPT time the header block is not, before the body
// scan the BodyInfo is not.
type tri int8

const (
	no tri = iota
	yes
	unknown
)

func triOf(b bool) tri {
	if b {
		return yes
	}
	return no
}

func (t tri) String() string {
	switch t {
	case yes:
		return "holds"
	case no:
		return "does not hold"
	}
	return "unknown"
}

// need says what a condition reads, beyond the envelope.
type need uint8

const (
	needHeader need = 1 << iota
	// needBody: the BodyInfo of a scan, for multipart and TNEF messages;
	// for other messages the header block tells all of it.
	needBody
	// needSize: the size of the whole message.
	needSize
)

// condition is one compiled condition of a rule.
type condition interface {
	// field is the condition's path in the rule, "when.sender".
	field() string
	needs() need
	// eval evaluates the condition and says why it holds or not.
	eval(c *evalCtx) (tri, string)
}

// evalCtx is the message a decision is about, as far as it is known.
type evalCtx struct {
	e *Engine
	// envUnknown: the envelope is not known (NeedsBodyFor).
	envUnknown bool
	from       string
	rcpts      []string
	h          *headers.Header // nil: not known yet
	body       *BodyInfo       // nil: not known yet
	size       int64
	// sizeKnown is false before the body was received.
	sizeKnown bool
	dec       *mime.WordDecoder
}

// values returns the values of the fields named name, RFC 2047 encoded
// words decoded; c.h must not be nil.
func (c *evalCtx) values(name string) []string {
	raw := fieldValues(c.h, name)
	vs := make([]string, len(raw))
	for i, v := range raw {
		vs[i] = c.decode(v)
	}
	return vs
}

func (c *evalCtx) decode(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	if c.dec == nil {
		c.dec = &mime.WordDecoder{CharsetReader: charset.Reader}
	}
	if d, err := c.dec.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// tokenName reports whether name consists of RFC 7230 token characters
// only. go-message's textproto finds such names case-insensitively; other
// valid field names ("X(A)") it compares byte for byte.
func tokenName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return name != ""
}

// hasField reports whether h has a field named name, ignoring case.
func hasField(h *headers.Header, name string) bool {
	if tokenName(name) {
		return h.Has(name)
	}
	for _, f := range h.Fields() {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// fieldValues returns the unfolded values of the fields named name,
// ignoring case, in message order.
func fieldValues(h *headers.Header, name string) []string {
	if tokenName(name) {
		return h.Values(name)
	}
	var out []string
	for _, f := range h.Fields() {
		if !strings.EqualFold(f.Name, name) {
			continue
		}
		_, v, _ := strings.Cut(string(f.Raw), ":")
		v = strings.NewReplacer("\r\n", "", "\n", "").Replace(v)
		out = append(out, strings.TrimSpace(v))
	}
	return out
}

// --- header conditions ---

type headerExistsCond struct {
	path  string
	names []string
}

func (k *headerExistsCond) field() string { return k.path }
func (k *headerExistsCond) needs() need   { return needHeader }
func (k *headerExistsCond) eval(c *evalCtx) (tri, string) {
	if c.h == nil {
		return unknown, "header block not known yet"
	}
	for _, n := range k.names {
		if hasField(c.h, n) {
			return yes, n + " present"
		}
	}
	return no, "no " + strings.Join(k.names, ", ") + " field"
}

type headerContainsCond struct {
	path    string
	header  string
	phrases []phrase
	subject bool // subject_contains: the header is Subject
}

func (k *headerContainsCond) field() string { return k.path }
func (k *headerContainsCond) needs() need   { return needHeader }
func (k *headerContainsCond) eval(c *evalCtx) (tri, string) {
	if c.h == nil {
		return unknown, "header block not known yet"
	}
	vs := c.values(k.header)
	if len(vs) == 0 {
		return no, "no " + k.header + " field"
	}
	for _, v := range vs {
		text := foldText(v)
		for _, p := range k.phrases {
			if containsPhrase(text, p) {
				return yes, fmt.Sprintf("%s contains %q", k.header, p.text)
			}
		}
	}
	texts := make([]string, len(k.phrases))
	for i, p := range k.phrases {
		texts[i] = p.text
	}
	return no, fmt.Sprintf("%s does not contain %s as whole words", k.header, quoteList(texts))
}

type headerMatchesCond struct {
	path     string
	header   string
	patterns []*regexp.Regexp
}

func (k *headerMatchesCond) field() string { return k.path }
func (k *headerMatchesCond) needs() need   { return needHeader }
func (k *headerMatchesCond) eval(c *evalCtx) (tri, string) {
	if c.h == nil {
		return unknown, "header block not known yet"
	}
	vs := c.values(k.header)
	if len(vs) == 0 {
		// Subject is matched as "" when missing, like Exchange's empty
		// subject; other missing fields match nothing.
		if !strings.EqualFold(k.header, "Subject") {
			return no, "no " + k.header + " field"
		}
		vs = []string{""}
	}
	for _, v := range vs {
		for _, re := range k.patterns {
			if re.MatchString(v) {
				return yes, fmt.Sprintf("%s matches %q", k.header, re.String())
			}
		}
	}
	return no, fmt.Sprintf("%s matches none of %d pattern(s)", k.header, len(k.patterns))
}

// --- envelope conditions ---

// addressCond is sender or recipient.
type addressCond struct {
	path      string
	recipient bool
	addrs     map[string]bool
	domains   map[string]bool
	patterns  []*regexp.Regexp
}

func (k *addressCond) field() string { return k.path }
func (k *addressCond) needs() need   { return 0 }

func (k *addressCond) match(addr string) (bool, string) {
	if addr == "" {
		return false, ""
	}
	la := strings.ToLower(addr)
	if k.addrs[la] {
		return true, "address " + addr
	}
	if d := domainOf(la); d != "" && k.domains[d] {
		return true, "domain " + d
	}
	for _, re := range k.patterns {
		if re.MatchString(addr) {
			return true, fmt.Sprintf("pattern %q", strings.TrimPrefix(re.String(), "(?i)"))
		}
	}
	return false, ""
}

func (k *addressCond) eval(c *evalCtx) (tri, string) {
	if c.envUnknown {
		return unknown, "envelope not known"
	}
	if !k.recipient {
		if ok, why := k.match(c.from); ok {
			return yes, fmt.Sprintf("sender <%s> matches %s", c.from, why)
		}
		return no, fmt.Sprintf("sender <%s> matches no address, domain or pattern", c.from)
	}
	for _, r := range c.rcpts {
		if ok, why := k.match(r); ok {
			return yes, fmt.Sprintf("recipient <%s> matches %s", r, why)
		}
	}
	return no, fmt.Sprintf("none of %d recipient(s) matches an address, domain or pattern", len(c.rcpts))
}

// domainOf returns the lower-cased domain of an address, without a
// trailing dot, or "" when it has none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(addr[i+1:]), ".")
}

type senderInOrgCond struct {
	path string
	want bool
}

func (k *senderInOrgCond) field() string { return k.path }
func (k *senderInOrgCond) needs() need   { return 0 }
func (k *senderInOrgCond) eval(c *evalCtx) (tri, string) {
	if c.envUnknown {
		return unknown, "envelope not known"
	}
	in := c.e.inOrg(c.from)
	var why string
	switch {
	case c.from == "":
		why = "null sender <> is not in the organization"
	case in:
		why = fmt.Sprintf("sender <%s> is in the organization", c.from)
	default:
		why = fmt.Sprintf("sender <%s> is outside the organization", c.from)
	}
	return triOf(in == k.want), why
}

type rcptsOutsideCond struct {
	path string
	mode string // any, all, none
}

func (k *rcptsOutsideCond) field() string { return k.path }
func (k *rcptsOutsideCond) needs() need   { return 0 }
func (k *rcptsOutsideCond) eval(c *evalCtx) (tri, string) {
	if c.envUnknown {
		return unknown, "envelope not known"
	}
	outside := 0
	for _, r := range c.rcpts {
		if !c.e.inOrg(r) {
			outside++
		}
	}
	why := fmt.Sprintf("%d of %d recipient(s) outside the organization", outside, len(c.rcpts))
	switch k.mode {
	case "any":
		return triOf(outside > 0), why
	case "all":
		return triOf(len(c.rcpts) > 0 && outside == len(c.rcpts)), why
	default: // none
		return triOf(outside == 0), why
	}
}

// --- body conditions ---

type sizeOverCond struct {
	path  string
	limit int64
}

func (k *sizeOverCond) field() string { return k.path }
func (k *sizeOverCond) needs() need   { return needSize }
func (k *sizeOverCond) eval(c *evalCtx) (tri, string) {
	if !c.sizeKnown {
		return unknown, "size not known before the body"
	}
	if c.size > k.limit {
		return yes, fmt.Sprintf("size %d > %d", c.size, k.limit)
	}
	return no, fmt.Sprintf("size %d <= %d", c.size, k.limit)
}

type attachmentExtCond struct {
	path string
	exts []string // lower-case, without the leading dot
}

func (k *attachmentExtCond) field() string { return k.path }
func (k *attachmentExtCond) needs() need   { return needBody }
func (k *attachmentExtCond) eval(c *evalCtx) (tri, string) {
	if c.body == nil {
		return unknown, "body not scanned yet"
	}
	for _, a := range c.body.Attachments {
		name := strings.ToLower(strings.TrimRight(a.Filename, " ."))
		for _, x := range k.exts {
			if strings.HasSuffix(name, "."+x) {
				return yes, fmt.Sprintf("attachment %q has extension .%s", a.Filename, x)
			}
		}
	}
	return no, fmt.Sprintf("no attachment named *.%s (%d attachment(s))", strings.Join(k.exts, ", *."), len(c.body.Attachments))
}

// typePattern is a media type ("application/pdf") or a type with any
// subtype ("image/*"), lower-case.
type typePattern struct {
	exact  string
	prefix string
}

func (t typePattern) match(mt string) bool {
	if t.prefix != "" {
		return strings.HasPrefix(mt, t.prefix)
	}
	return mt == t.exact
}

type attachmentTypeCond struct {
	path  string
	types []typePattern
}

func (k *attachmentTypeCond) field() string { return k.path }
func (k *attachmentTypeCond) needs() need   { return needBody }
func (k *attachmentTypeCond) eval(c *evalCtx) (tri, string) {
	if c.body == nil {
		return unknown, "body not scanned yet"
	}
	for _, a := range c.body.Attachments {
		for _, t := range k.types {
			if t.match(a.ContentType) {
				return yes, fmt.Sprintf("attachment %q is %s", a.Filename, a.ContentType)
			}
		}
	}
	return no, fmt.Sprintf("no attachment of a listed type (%d attachment(s))", len(c.body.Attachments))
}

// classPattern is a message class or, ending in "*", a class prefix; both
// compared case-insensitively, like MAPI message classes.
type classPattern struct {
	text   string
	lower  string
	prefix bool
}

func (p classPattern) match(class string) bool {
	lc := strings.ToLower(class)
	if p.prefix {
		return strings.HasPrefix(lc, p.lower)
	}
	return lc == p.lower
}

type messageClassCond struct {
	path    string
	classes []classPattern
}

func (k *messageClassCond) field() string { return k.path }
func (k *messageClassCond) needs() need   { return needBody }
func (k *messageClassCond) eval(c *evalCtx) (tri, string) {
	if c.body == nil {
		return unknown, "body not scanned yet"
	}
	if c.body.TNEFClass == "" {
		return no, "no TNEF message class"
	}
	for _, p := range k.classes {
		if p.match(c.body.TNEFClass) {
			return yes, fmt.Sprintf("TNEF message class %q matches %q", c.body.TNEFClass, p.text)
		}
	}
	return no, fmt.Sprintf("TNEF message class %q matches none", c.body.TNEFClass)
}

type predicateCond struct {
	path  string
	preds []predicate
}

func (k *predicateCond) field() string { return k.path }
func (k *predicateCond) needs() need {
	var n need
	for _, p := range k.preds {
		n |= p.needs()
	}
	return n
}
func (k *predicateCond) eval(c *evalCtx) (tri, string) {
	res := no
	var whys []string
	for _, p := range k.preds {
		t, why := p.eval(c)
		switch t {
		case yes:
			return yes, p.String() + ": " + why
		case unknown:
			res = unknown
		}
		whys = append(whys, p.String()+": "+why)
	}
	return res, strings.Join(whys, "; ")
}

// nullSenderCond is the condition of the built-in null sender bypass.
type nullSenderCond struct{}

func (nullSenderCond) field() string { return "null_sender" }
func (nullSenderCond) needs() need   { return 0 }
func (nullSenderCond) eval(c *evalCtx) (tri, string) {
	if c.envUnknown {
		return unknown, "envelope not known"
	}
	if c.from == "" {
		return yes, "MAIL FROM:<> (a bounce or other notification)"
	}
	return no, fmt.Sprintf("MAIL FROM is <%s>, not null", c.from)
}
