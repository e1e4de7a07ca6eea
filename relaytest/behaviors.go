package relaytest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"
)

// passthrough sends the message back unchanged.
type passthrough struct{}

func (passthrough) Name() string                          { return "passthrough" }
func (passthrough) Transform(data []byte) ([]byte, error) { return data, nil }

// footerText appends a footer to every text/plain part.
type footerText struct{ text string }

func newFooterText(p string) footerText {
	if p == "" {
		p = DefaultFooterText
	}
	return footerText{text: p}
}

func (f footerText) Name() string {
	if f.text == DefaultFooterText {
		return "footer-text"
	}
	return "footer-text=" + f.text
}

func (f footerText) Transform(data []byte) ([]byte, error) {
	root, err := parseEntity(data)
	if err != nil {
		return nil, err
	}
	err = root.walkLeaves(func(e *entity) error {
		if e.mediaType != "text/plain" || e.isAttachment() {
			return nil
		}
		return e.editDecoded(func(dec []byte) []byte {
			return appendLine(dec, f.text)
		})
	})
	if err != nil {
		return nil, err
	}
	return root.bytes(), nil
}

// appendLine appends text as a new line (or lines) to dec.
func appendLine(dec []byte, text string) []byte {
	out := append([]byte{}, dec...)
	if len(out) > 0 && !endsWithEOL(out) {
		out = append(out, '\r', '\n')
	}
	out = append(out, text...)
	return append(out, '\r', '\n')
}

// editDecoded replaces the content of a leaf: fn gets the content with its
// transfer encoding removed and returns the new content, which is encoded
// again with the same transfer encoding.
func (e *entity) editDecoded(fn func(dec []byte) []byte) error {
	enc := e.transferEncoding()
	dec, err := decodeTransfer(enc, e.body)
	if err != nil {
		return err
	}
	out, err := encodeTransfer(enc, fn(dec), endsWithEOL(e.body))
	if err != nil {
		return err
	}
	e.body = out
	return nil
}

// footerHTML inserts a footer into every text/html part.
type footerHTML struct{ html string }

func newFooterHTML(p string) footerHTML {
	if p == "" {
		p = DefaultFooterHTML
	}
	return footerHTML{html: p}
}

func (f footerHTML) Name() string {
	if f.html == DefaultFooterHTML {
		return "footer-html"
	}
	return "footer-html=" + f.html
}

func (f footerHTML) Transform(data []byte) ([]byte, error) {
	root, err := parseEntity(data)
	if err != nil {
		return nil, err
	}
	if !root.multipart && root.mediaType == "text/plain" && !root.isAttachment() {
		return f.wrapPlain(data, root)
	}
	err = root.walkLeaves(func(e *entity) error {
		if e.mediaType != "text/html" || e.isAttachment() {
			return nil
		}
		return e.editDecoded(func(dec []byte) []byte { return insertBeforeBodyEnd(dec, f.html) })
	})
	if err != nil {
		return nil, err
	}
	return root.bytes(), nil
}

// insertBeforeBodyEnd inserts snippet before the last </body> tag of an HTML
// document, or appends it when there is none.
func insertBeforeBodyEnd(doc []byte, snippet string) []byte {
	if i := lastIndexFoldASCII(doc, "</body>"); i >= 0 {
		out := make([]byte, 0, len(doc)+len(snippet))
		out = append(out, doc[:i]...)
		out = append(out, snippet...)
		return append(out, doc[i:]...)
	}
	return appendLine(doc, snippet)
}

// lastIndexFoldASCII returns the index of the last occurrence of the ASCII
// string sub in b, ignoring ASCII case, or -1. Unlike bytes.ToLower it keeps
// offsets of non-UTF-8 content intact.
func lastIndexFoldASCII(b []byte, sub string) int {
	for i := len(b) - len(sub); i >= 0; i-- {
		if strings.EqualFold(string(b[i:i+len(sub)]), sub) {
			return i
		}
	}
	return -1
}

// wrapPlain turns a single-part text/plain message into multipart/alternative:
// the original text part, unchanged, and a generated text/html part with the
// footer. The top-level header keeps all its fields except the content
// fields, which move into the text part.
func (f footerHTML) wrapPlain(data []byte, root *entity) ([]byte, error) {
	enc := root.transferEncoding()
	text, err := decodeTransfer(enc, root.body)
	if err != nil {
		return nil, err
	}
	charset := root.params["charset"]
	if charset == "" {
		charset = "us-ascii"
	}
	boundary := newBoundary("alt", data)

	var plainHeader [][]byte
	sawCT := false
	top, err := mapFields(root.header, func(name string, raw []byte) [][]byte {
		switch strings.ToLower(name) {
		case "content-type":
			if sawCT {
				return nil
			}
			sawCT = true
			plainHeader = append(plainHeader, raw)
			return [][]byte{[]byte("Content-Type: multipart/alternative;\r\n\tboundary=\"" + boundary + "\"\r\n")}
		case "content-transfer-encoding":
			plainHeader = append(plainHeader, raw)
			return nil
		}
		return [][]byte{raw}
	})
	if err != nil {
		return nil, err
	}
	if !sawCT {
		plainHeader = append([][]byte{[]byte("Content-Type: text/plain; charset=us-ascii\r\n")}, plainHeader...)
		top.AddRaw([]byte("Content-Type: multipart/alternative;\r\n\tboundary=\"" + boundary + "\"\r\n"))
	}
	if !top.Has("Mime-Version") {
		top.AddRaw([]byte("MIME-Version: 1.0\r\n"))
	}

	// The text is copied into the HTML part as preformatted text. It stays
	// in its charset; escaping is skipped for charsets whose multi-byte
	// sequences use ASCII bytes (ISO-2022-*, UTF-16/32), where it would
	// corrupt them.
	body := string(text)
	if asciiSafeCharset(charset) {
		body = html.EscapeString(body)
	}
	doc := "<html><head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=" + charset + "\">\r\n" +
		"</head><body>\r\n<pre>" + body + "</pre>\r\n" + f.html + "\r\n</body></html>\r\n"
	htmlBody, err := encodeTransfer(enc, []byte(doc), true)
	if err != nil {
		return nil, err
	}

	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, top); err != nil {
		return nil, err
	}
	buf.WriteString("--" + boundary + "\r\n")
	for _, raw := range plainHeader {
		buf.Write(raw)
	}
	buf.WriteString("\r\n")
	buf.Write(root.body)
	buf.WriteString("\r\n--" + boundary + "\r\n")
	buf.WriteString("Content-Type: text/html; charset=\"" + charset + "\"\r\n")
	if enc != "7bit" {
		buf.WriteString("Content-Transfer-Encoding: " + enc + "\r\n")
	}
	buf.WriteString("\r\n")
	buf.Write(htmlBody)
	buf.WriteString("\r\n--" + boundary + "--\r\n")
	return buf.Bytes(), nil
}

func asciiSafeCharset(cs string) bool {
	cs = strings.ToLower(cs)
	return !strings.HasPrefix(cs, "iso-2022") && !strings.HasPrefix(cs, "utf-16") &&
		!strings.HasPrefix(cs, "utf-32") && !strings.HasPrefix(cs, "utf-7")
}

// newBoundary derives a multipart boundary from the message, so that a
// transform is deterministic, and makes sure it does not occur in it.
func newBoundary(kind string, data []byte) string {
	sum := sha256.Sum256(data)
	for i := 0; ; i++ {
		b := fmt.Sprintf("fakemta_%s_%s_%d", kind, hex.EncodeToString(sum[:12]), i)
		if !bytes.Contains(data, []byte(b)) {
			return b
		}
	}
}

// reencode gives 7bit/8bit text parts a transfer encoding and re-folds the
// top-level header.
type reencode struct{}

func (reencode) Name() string { return "reencode" }

// refoldWidth is the line length reencode folds header fields at.
const refoldWidth = 78

func (reencode) Transform(data []byte) ([]byte, error) {
	root, err := parseEntity(data)
	if err != nil {
		return nil, err
	}
	err = root.walkLeaves(func(e *entity) error {
		if !strings.HasPrefix(e.mediaType, "text/") {
			return nil
		}
		enc := e.transferEncoding()
		if enc != "7bit" && enc != "8bit" {
			return nil
		}
		newEnc := "base64"
		if e.mediaType == "text/plain" {
			newEnc = "quoted-printable"
		}
		body, err := encodeTransfer(newEnc, e.body, endsWithEOL(e.body))
		if err != nil {
			return err
		}
		cte := []byte("Content-Transfer-Encoding: " + newEnc + "\r\n")
		replaced := false
		h, err := mapFields(e.header, func(name string, raw []byte) [][]byte {
			if !strings.EqualFold(name, "Content-Transfer-Encoding") {
				return [][]byte{raw}
			}
			if replaced {
				return nil
			}
			replaced = true
			return [][]byte{cte}
		})
		if err != nil {
			return err
		}
		if !replaced {
			raws, err := rawFields(h)
			if err != nil {
				return err
			}
			h = headerOf(append(raws, cte))
		}
		if err := e.setHeader(h); err != nil {
			return err
		}
		e.body = body
		return nil
	})
	if err != nil {
		return nil, err
	}
	h, err := mapFields(root.header, func(_ string, raw []byte) [][]byte {
		return [][]byte{refold(raw, refoldWidth)}
	})
	if err != nil {
		return nil, err
	}
	if err := root.setHeader(h); err != nil {
		return nil, err
	}
	return root.bytes(), nil
}

// editTopHeader rewrites the top-level header of a message with fn (see
// mapFields) and leaves the body bytes untouched.
func editTopHeader(data []byte, fn func(name string, raw []byte) [][]byte) ([]byte, error) {
	rawHeader, body := splitHeaderBody(data)
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(rawHeader)))
	if err != nil {
		return nil, fmt.Errorf("parse header: %w", err)
	}
	h, err = mapFields(h, fn)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(data))
	if err := textproto.WriteHeader(&buf, h); err != nil {
		return nil, err
	}
	buf.Write(body)
	return buf.Bytes(), nil
}

// stripMSHeaders drops every X-MS-* field.
type stripMSHeaders struct{}

func (stripMSHeaders) Name() string { return "strip-ms-headers" }

func (stripMSHeaders) Transform(data []byte) ([]byte, error) {
	return editTopHeader(data, func(name string, raw []byte) [][]byte {
		if hasPrefixFold(name, "X-MS-") {
			return nil
		}
		return [][]byte{raw}
	})
}

// stripUnknownHeaders keeps only standard fields.
type stripUnknownHeaders struct{}

func (stripUnknownHeaders) Name() string { return "strip-unknown-headers" }

// isStandardField reports whether name is an RFC 5322 or MIME header field.
func isStandardField(name string) bool {
	switch strings.ToLower(name) {
	case "from", "to", "cc", "bcc", "sender", "reply-to", "subject", "date",
		"message-id", "in-reply-to", "references", "comments", "keywords",
		"received", "return-path", "mime-version":
		return true
	}
	return hasPrefixFold(name, "Resent-") || hasPrefixFold(name, "Content-")
}

func (stripUnknownHeaders) Transform(data []byte) ([]byte, error) {
	return editTopHeader(data, func(name string, raw []byte) [][]byte {
		if isStandardField(name) {
			return [][]byte{raw}
		}
		return nil
	})
}

// rewriteMessageID replaces Message-ID with one of the vendor's domain.
type rewriteMessageID struct{ domain string }

func newRewriteMessageID(p string) (Behavior, error) {
	if p == "" {
		return rewriteMessageID{domain: DefaultVendorDomain}, nil
	}
	if strings.ContainsAny(p, "<>@ \t\r\n") {
		return nil, fmt.Errorf("invalid domain %q", p)
	}
	return rewriteMessageID{domain: p}, nil
}

func (r rewriteMessageID) Name() string {
	if r.domain == DefaultVendorDomain {
		return "rewrite-message-id"
	}
	return "rewrite-message-id=" + r.domain
}

func (r rewriteMessageID) Transform(data []byte) ([]byte, error) {
	sum := sha256.Sum256(data)
	field := []byte("Message-ID: <" + hex.EncodeToString(sum[:16]) + "@" + r.domain + ">\r\n")
	done := false
	out, err := editTopHeader(data, func(name string, raw []byte) [][]byte {
		if !strings.EqualFold(name, "Message-ID") {
			return [][]byte{raw}
		}
		if done {
			return nil
		}
		done = true
		return [][]byte{field}
	})
	if err != nil || done {
		return out, err
	}
	return append(field, data...), nil
}

// stampMarker adds the vendor's loop marker.
type stampMarker struct{ field string } // "Name: value"

func newStampMarker(p string) (Behavior, error) {
	if p == "" {
		p = DefaultMarker
	}
	name, value, ok := strings.Cut(p, ":")
	if !ok {
		return nil, fmt.Errorf("%q is not a header field (NAME: VALUE)", p)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 {
			return nil, fmt.Errorf("invalid field name %q", name)
		}
	}
	if name == "" || strings.ContainsAny(value, "\r\n") {
		return nil, fmt.Errorf("%q is not a header field (NAME: VALUE)", p)
	}
	return stampMarker{field: name + ": " + strings.TrimSpace(value)}, nil
}

func (s stampMarker) Name() string {
	if s.field == DefaultMarker {
		return "stamp-marker"
	}
	return "stamp-marker=" + s.field
}

func (s stampMarker) Transform(data []byte) ([]byte, error) {
	out := make([]byte, 0, len(s.field)+2+len(data))
	out = append(out, s.field...)
	out = append(out, '\r', '\n')
	return append(out, data...), nil
}

// flattenTNEF removes TNEF parts.
type flattenTNEF struct{}

func (flattenTNEF) Name() string { return "flatten-tnef" }

// Transform removes every application/ms-tnef part from every multipart
// entity. A multipart left without parts gets an empty text/plain part; a
// message that is itself a TNEF entity is left as it is.
func (flattenTNEF) Transform(data []byte) ([]byte, error) {
	root, err := parseEntity(data)
	if err != nil {
		return nil, err
	}
	if !removeTNEF(root) {
		return data, nil
	}
	return root.bytes(), nil
}

func removeTNEF(e *entity) bool {
	if !e.multipart {
		return false
	}
	removed := false
	for i := 0; i < len(e.children); {
		c := e.children[i]
		if c.isTNEF() {
			if len(e.children) == 1 {
				empty, _ := parseEntity([]byte("Content-Type: text/plain; charset=us-ascii\r\n\r\n"))
				e.children[0] = empty
				return true
			}
			e.removeChild(i)
			removed = true
			continue
		}
		if removeTNEF(c) {
			removed = true
		}
		i++
	}
	return removed
}

// splitRecipients sends one transaction per recipient.
type splitRecipients struct{}

func (splitRecipients) Name() string { return "split-recipients" }

func (splitRecipients) Plan(p *ReturnPlan) {
	var out []Envelope
	for _, t := range p.Transactions {
		for _, rcpt := range t.To {
			out = append(out, Envelope{From: t.From, To: []string{rcpt}, UTF8: t.UTF8})
		}
	}
	p.Transactions = out
}

// duplicate sends every transaction twice.
type duplicate struct{}

func (duplicate) Name() string { return "duplicate" }

func (duplicate) Plan(p *ReturnPlan) {
	n := len(p.Transactions)
	for i := 0; i < n; i++ {
		t := p.Transactions[i]
		t.To = append([]string(nil), t.To...)
		p.Transactions = append(p.Transactions, t)
	}
}

// delay waits before sending back.
type delay struct{ d time.Duration }

func newDelay(p string) (Behavior, error) {
	if p == "" {
		return delay{d: DefaultDelay}, nil
	}
	d, err := time.ParseDuration(p)
	if err != nil {
		return nil, err
	}
	if d < 0 {
		return nil, fmt.Errorf("negative delay %v", d)
	}
	return delay{d: d}, nil
}

func (d delay) Name() string       { return "delay=" + d.d.String() }
func (d delay) Plan(p *ReturnPlan) { p.Delay += d.d }

// dropMidData cuts the first send-back attempt off mid-DATA.
type dropMidData struct{}

func (dropMidData) Name() string { return "drop-mid-data" }

func (dropMidData) Plan(p *ReturnPlan) {
	if p.AbortAttempts < 1 {
		p.AbortAttempts = 1
	}
}

// tempfailFirst refuses the first delivery attempt of every distinct message.
type tempfailFirst struct {
	mu   sync.Mutex
	seen map[[sha256.Size]byte]bool
}

func newTempfailFirst() *tempfailFirst {
	return &tempfailFirst{seen: make(map[[sha256.Size]byte]bool)}
}

func (*tempfailFirst) Name() string { return "tempfail-first" }

// errTempfailFirst is the reply of the tempfail-first behaviour.
var errTempfailFirst = smtp.SMTPError{
	Code:         451,
	EnhancedCode: smtp.EnhancedCode{4, 7, 1},
	Message:      "Temporary failure, please retry (fakemta tempfail-first)",
}

func (t *tempfailFirst) Receive(d *Delivery) *smtp.SMTPError {
	key := sha256.Sum256(d.Data)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[key] {
		return nil
	}
	t.seen[key] = true
	e := errTempfailFirst
	return &e
}
