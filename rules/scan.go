package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/tnef"
)

// ErrScanLimit is wrapped by the error ScanBody returns when the body
// exceeds one of the ScanLimits. The BodyInfo then describes the parts seen
// before the limit.
var ErrScanLimit = errors.New("rules: body scan limit exceeded")

// ScanLimits bounds the work ScanBody does on one message. A zero (or
// negative) field selects its default.
type ScanLimits struct {
	// MaxDepth is the deepest nesting of multipart entities followed; the
	// top-level entity is at depth 0. Default: 16.
	MaxDepth int
	// MaxParts is the largest number of entities (the top-level one and
	// every part, at any depth) examined. Default: 1000.
	MaxParts int
	// MaxHeaderBytes is the largest header block accepted for one part.
	// Default: 64 KiB.
	MaxHeaderBytes int
	// TNEF bounds the scan of the application/ms-tnef part.
	TNEF tnef.Limits
}

// Default scan limits, used for zero fields of ScanLimits.
const (
	DefaultMaxDepth       = 16
	DefaultMaxParts       = 1000
	DefaultMaxHeaderBytes = 64 << 10
)

func (l ScanLimits) withDefaults() ScanLimits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxParts <= 0 {
		l.MaxParts = DefaultMaxParts
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return l
}

// Attachment is a part of a message that carries a file: a part other than
// multipart/* that has a file name (the filename parameter of
// Content-Disposition, or the name parameter of Content-Type) or the
// disposition "attachment". Inline images with a file name count, as they
// do for Exchange's attachment conditions.
type Attachment struct {
	// Filename is the decoded file name (RFC 2231 and RFC 2047 encodings
	// are undone), or "" when the part has none.
	Filename string
	// ContentType is the part's media type, lower-cased, without
	// parameters ("application/pdf").
	ContentType string
}

// BodyInfo is what ScanBody learns about a message's MIME structure.
type BodyInfo struct {
	// Attachments lists the message's attachments in body order.
	Attachments []Attachment
	// ContentTypes lists the media type of every entity, the top-level one
	// first, in body order: lower-cased, without parameters, with
	// duplicates. Parts of an attached message/rfc822 are not entered.
	ContentTypes []string
	// TNEFClass is the message class found in the first TNEF entity
	// (application/ms-tnef, application/vnd.ms-tnef, or a part named
	// winmail.dat): its PidTagMessageClass property when present, else its
	// attMessageClass attribute (which holds legacy names such as
	// "IPM.Microsoft Mail.Note" for IPM.Note). "" when there is no TNEF
	// entity or it could not be read.
	TNEFClass string
	// Signed reports a signature: a multipart/signed entity, a detached
	// signature part (application/pkcs7-signature,
	// application/x-pkcs7-signature, application/pgp-signature) or an
	// application/(x-)pkcs7-mime entity with smime-type=signed-data.
	Signed bool
	// Encrypted reports encryption: a multipart/encrypted or
	// application/pgp-encrypted entity, or an application/(x-)pkcs7-mime
	// entity whose smime-type is not signed-data (enveloped-data,
	// authEnveloped-data, or missing, which S/MIME agents treat as
	// enveloped).
	Encrypted bool
	// Incomplete reports that the scan could not see the whole body, so a
	// part it did not see may hold an attachment, a signature, a calendar
	// part or the TNEF message class: a limit of ScanLimits stopped it, the
	// remaining parts of a multipart could not be found (no boundary, a
	// broken part header, a broken delimiter line, a read error), or the
	// first TNEF part could not be read. Decide does not let a message
	// reach a vendor on the strength of the parts seen (see the package
	// documentation, "Incomplete body scans").
	Incomplete bool
	// IncompleteReason describes the first problem that left part of the
	// body unseen, with its place in the MIME tree: "message part 1000:
	// more than 1000 parts (scan limit)". "" when Incomplete is false.
	IncompleteReason string
}

// ScanBody reads the body of the message whose header block is h and
// reports its MIME structure. body starts at the first byte after the
// header block and must use CRLF line endings.
//
// The walk streams through go-message's multipart reader: no part is held in
// memory, part bodies are skipped except for the first TNEF (winmail.dat)
// part, whose decoded content is scanned by tnef.Scan. Nesting, the number
// of parts and the size of every part's header block are bounded by lim.
// The parts of an attached message (message/rfc822) are not entered.
// ScanBody may stop reading before the end of body.
//
// A malformed body (a missing boundary, a broken part header, an unreadable
// TNEF stream, an unknown transfer encoding) does not stop the scan of the
// rest: ScanBody returns what it found together with an error describing
// each problem. Exceeding a limit stops the scan; the error then wraps
// ErrScanLimit. The returned BodyInfo is never nil. Whenever a problem
// leaves part of the body unseen, the BodyInfo is marked Incomplete, with
// the reason; a multipart that merely lacks its close delimiter at the end
// of the body is not, since every line of it was read.
func ScanBody(h *headers.Header, body io.Reader, lim ScanLimits) (*BodyInfo, error) {
	s := &bodyScanner{lim: lim.withDefaults(), info: &BodyInfo{}}
	top := topHeader(h)
	err := s.entity(top, body, 0, "text/plain", "message")
	if err != nil {
		s.errs = append(s.errs, err)
	}
	s.info.Incomplete = s.unseen != ""
	s.info.IncompleteReason = s.unseen
	if len(s.errs) == 0 {
		return s.info, nil
	}
	return s.info, fmt.Errorf("rules: scanning body: %w", errors.Join(s.errs...))
}

// maxScanErrors bounds the problems ScanBody reports for one message.
const maxScanErrors = 10

// maxReasonBytes bounds BodyInfo.IncompleteReason.
const maxReasonBytes = 300

type bodyScanner struct {
	lim      ScanLimits
	info     *BodyInfo
	parts    int
	tnefDone bool
	errs     []error
	unseen   string // why part of the body was not seen; "" when all was
}

// note records a problem that does not stop the scan and leaves nothing
// unseen.
func (s *bodyScanner) note(err error) {
	if len(s.errs) < maxScanErrors {
		s.errs = append(s.errs, err)
	}
}

// lost records a problem that leaves part of the body unseen.
func (s *bodyScanner) lost(err error) {
	s.note(err)
	s.markUnseen(err.Error())
}

// limit returns the error of a limit that stops the scan at where.
func (s *bodyScanner) limit(where, format string, args ...any) error {
	msg := where + ": " + fmt.Sprintf(format, args...)
	s.markUnseen(msg + " (scan limit)")
	return fmt.Errorf("%w: %s", ErrScanLimit, msg)
}

// markUnseen records the first reason part of the body was not seen.
func (s *bodyScanner) markUnseen(reason string) {
	if s.unseen == "" {
		s.unseen = printable(reason, maxReasonBytes)
	}
}

// printable makes s safe for a log line or a terminal: control characters
// and invalid UTF-8 become '?', and it is cut to at most max bytes.
func printable(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// endedWithoutClose reports whether err, from NextPart, says that the
// input ended before the close delimiter. go-message formats the io.EOF of
// its line reader with %v, so the text is all there is to go by; the
// reader had read every line by then, so no part was left unseen. Should
// go-message word it otherwise, the scan counts as incomplete: the safe
// side.
func endedWithoutClose(err error) bool {
	return err.Error() == "multipart: NextPart: "+io.EOF.Error()
}

// topHeader copies the fields of h that describe the top-level entity.
func topHeader(h *headers.Header) message.Header {
	var th message.Header
	if h == nil {
		return th
	}
	for _, k := range []string{"Content-Type", "Content-Disposition", "Content-Transfer-Encoding"} {
		if v := h.Values(k); len(v) > 0 {
			th.Set(k, v[0])
		}
	}
	return th
}

// entity examines one entity and, for multipart entities, its parts. It
// returns an error only when a limit stops the scan. defType is the media
// type the entity has without a Content-Type field (message/rfc822 inside
// multipart/digest); where names the entity in errors.
func (s *bodyScanner) entity(h message.Header, body io.Reader, depth int, defType, where string) error {
	s.parts++
	if s.parts > s.lim.MaxParts {
		return s.limit(where, "more than %d parts", s.lim.MaxParts)
	}
	ent := describe(h, defType)
	s.info.add(ent)
	if !strings.HasPrefix(ent.mediaType, "multipart/") {
		if ent.isTNEF() && !s.tnefDone {
			s.tnefDone = true
			s.scanTNEF(h, body, where)
		}
		return nil
	}
	if depth >= s.lim.MaxDepth {
		return s.limit(where, "multipart nesting deeper than %d", s.lim.MaxDepth)
	}
	boundary := ent.params["boundary"]
	if boundary == "" {
		s.lost(fmt.Errorf("%s: %s without a boundary", where, ent.mediaType))
		return nil
	}
	childType := "text/plain"
	if ent.mediaType == "multipart/digest" {
		childType = "message/rfc822"
	}
	guard := newHeaderGuard(body, boundary, s.lim.MaxHeaderBytes)
	mr := textproto.NewMultipartReader(guard, boundary)
	for i := 1; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		partWhere := where + " part " + strconv.Itoa(i)
		if guard.tripped {
			return s.limit(partWhere, "header block larger than %d bytes", s.lim.MaxHeaderBytes)
		}
		if err != nil {
			// The rest of this multipart cannot be found; an enclosing one
			// goes on with its next part.
			if endedWithoutClose(err) {
				s.note(fmt.Errorf("%s: %v", partWhere, err))
			} else {
				s.lost(fmt.Errorf("%s: %v", partWhere, err))
			}
			return nil
		}
		if err := s.entity(message.Header{Header: p.Header}, p, depth+1, childType, partWhere); err != nil {
			return err
		}
	}
}

// scanTNEF reads the message class of a TNEF entity.
func (s *bodyScanner) scanTNEF(h message.Header, body io.Reader, where string) {
	ent, err := message.New(h, body)
	if err != nil {
		s.lost(fmt.Errorf("%s: application/ms-tnef: %v", where, err))
		return
	}
	info, err := tnef.Scan(ent.Body, s.lim.TNEF)
	if err != nil {
		s.lost(fmt.Errorf("%s: application/ms-tnef: %w", where, err))
		return
	}
	if info.PropertyClass != "" {
		s.info.TNEFClass = info.PropertyClass
	} else {
		s.info.TNEFClass = info.AttributeClass
	}
}

// entityInfo is what the header block of one entity says about it.
type entityInfo struct {
	mediaType  string
	params     map[string]string
	attachment bool
	filename   string
}

// isTNEF reports whether the entity is a winmail.dat: a TNEF media type,
// or that file name on another type (some clients and gateways label it
// application/octet-stream).
func (ent entityInfo) isTNEF() bool {
	switch ent.mediaType {
	case "application/ms-tnef", "application/vnd.ms-tnef":
		return true
	}
	return strings.EqualFold(ent.filename, "winmail.dat")
}

// describe parses the Content-Type and Content-Disposition of an entity.
// A missing Content-Type is defType; one that cannot be parsed is
// text/plain (RFC 2045, section 5.2). Parameters that cannot be parsed are
// left out.
func describe(h message.Header, defType string) entityInfo {
	ent := entityInfo{mediaType: defType}
	if v := h.Get("Content-Type"); v != "" {
		mt, params, err := mime.ParseMediaType(v)
		switch {
		case err == nil:
			ent.mediaType, ent.params = mt, params
		case errors.Is(err, mime.ErrInvalidMediaParameter):
			ent.mediaType = mt
		default:
			ent.mediaType = "text/plain"
		}
	}
	if strings.HasPrefix(ent.mediaType, "multipart/") {
		return ent
	}
	disp, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	name := dparams["filename"]
	if name == "" {
		name = ent.params["name"]
	}
	ent.filename = decodeWords(name)
	ent.attachment = ent.filename != "" || disp == "attachment"
	return ent
}

// add records an entity.
func (b *BodyInfo) add(ent entityInfo) {
	b.ContentTypes = append(b.ContentTypes, ent.mediaType)
	if ent.attachment {
		b.Attachments = append(b.Attachments, Attachment{Filename: ent.filename, ContentType: ent.mediaType})
	}
	signed, encrypted := cryptoKind(ent.mediaType, ent.params)
	b.Signed = b.Signed || signed
	b.Encrypted = b.Encrypted || encrypted
}

// cryptoKind classifies a media type as signed or encrypted content.
func cryptoKind(mediaType string, params map[string]string) (signed, encrypted bool) {
	switch mediaType {
	case "multipart/signed", "application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature":
		return true, false
	case "multipart/encrypted", "application/pgp-encrypted":
		return false, true
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		if strings.EqualFold(params["smime-type"], "signed-data") {
			return true, false
		}
		return false, true
	}
	return false, false
}

// headerBodyInfo is the BodyInfo of a message whose body was not scanned,
// as far as its header block tells: the top-level entity only.
func headerBodyInfo(h *headers.Header) *BodyInfo {
	b := &BodyInfo{}
	b.add(describe(topHeader(h), "text/plain"))
	return b
}

// scannable reports whether ScanBody can learn more from the body of the
// message with header block h than its header block tells: whether it is
// multipart or TNEF.
func scannable(h *headers.Header) bool {
	ent := describe(topHeader(h), "text/plain")
	return strings.HasPrefix(ent.mediaType, "multipart/") || ent.isTNEF()
}

// decodeWords decodes RFC 2047 encoded words, as Outlook writes them into
// quoted file names; s is returned unchanged when it holds none or they
// cannot be decoded.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	dec := &mime.WordDecoder{CharsetReader: charset.Reader}
	if d, err := dec.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// headerGuard sits below a multipart reader and fails the read once the
// header block of a part exceeds max bytes, since go-message reads part
// header blocks without a limit. It follows the line structure of the
// multipart body on its own: a delimiter line ("--" boundary, then optional
// blanks) starts a header block, which ends at the first empty line. A
// close delimiter ("--" boundary "--") starts none.
//
// Written in-house: go-message offers no hook to bound part headers.
type headerGuard struct {
	r       io.Reader
	delim   []byte // "--" + boundary
	max     int
	tripped bool

	inHeader bool // inside a part's header block
	hdrBytes int  // bytes of the current header block so far

	// The current line: pos counts its bytes before the LF; cand is false
	// once it cannot be a delimiter line; rest is the state of the bytes
	// after the delimiter.
	pos  int
	cand bool
	rest restState
	last byte // the previous byte of the line
}

// restState is what follows "--" boundary on a line.
type restState uint8

const (
	restNone   restState = iota // nothing yet
	restDash                    // "-"
	restClose                   // "--", then blanks
	restBlanks                  // blanks: an open delimiter
)

var errPartHeaderTooLarge = errors.New("part header block too large")

func newHeaderGuard(r io.Reader, boundary string, max int) *headerGuard {
	return &headerGuard{r: r, delim: []byte("--" + boundary), max: max, cand: true}
}

func (g *headerGuard) Read(p []byte) (int, error) {
	if g.tripped {
		return 0, errPartHeaderTooLarge
	}
	n, err := g.r.Read(p)
	for i := 0; i < n; i++ {
		if !g.inHeader && !g.cand {
			// Body text that cannot be a delimiter: skip to the line end.
			j := bytes.IndexByte(p[i:n], '\n')
			if j < 0 {
				g.pos += n - i
				break
			}
			i += j
		}
		c := p[i]
		if g.inHeader {
			g.hdrBytes++
			if g.hdrBytes > g.max {
				g.tripped = true
				return i, errPartHeaderTooLarge
			}
		}
		if c == '\n' {
			g.endLine()
			continue
		}
		if g.cand && !g.inHeader {
			g.step(c)
		}
		g.pos++
		g.last = c
	}
	return n, err
}

// step advances delimiter recognition by byte c at position g.pos.
func (g *headerGuard) step(c byte) {
	if g.pos < len(g.delim) {
		g.cand = c == g.delim[g.pos]
		return
	}
	blank := c == ' ' || c == '\t' || c == '\r'
	switch {
	case g.rest == restNone && c == '-':
		g.rest = restDash
	case g.rest == restNone && blank:
		g.rest = restBlanks
	case g.rest == restDash && c == '-':
		g.rest = restClose
	case (g.rest == restClose || g.rest == restBlanks) && blank:
	default:
		g.cand = false
	}
}

// endLine handles the LF that ends a line.
func (g *headerGuard) endLine() {
	switch {
	case g.inHeader:
		// An empty line (CRLF or LF) ends the header block.
		if g.pos == 0 || (g.pos == 1 && g.last == '\r') {
			g.inHeader = false
		}
	case g.cand && g.pos >= len(g.delim) && (g.rest == restNone || g.rest == restBlanks):
		g.inHeader = true
		g.hdrBytes = 0
	}
	g.pos, g.cand, g.rest, g.last = 0, true, restNone, 0
}
