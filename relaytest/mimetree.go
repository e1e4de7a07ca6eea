package relaytest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// maxMIMEDepth bounds the nesting of multipart entities the transforms follow.
// Deeper entities are kept as opaque bytes.
const maxMIMEDepth = 32

// entity is one node of a byte-preserving MIME tree: serializing an entity
// that was not modified yields exactly the bytes it was parsed from.
//
// This splitter is written in-house because go-message's multipart reader
// (like mime/multipart) drops the preamble, the epilogue and the exact
// delimiter lines (transport padding, line endings), so a message rebuilt
// from it is not byte-identical even where nothing was changed. Headers are
// still parsed by go-message's textproto, which keeps every field's raw bytes.
type entity struct {
	header    textproto.Header // parsed header; its fields keep their raw bytes
	rawHeader []byte           // exact header bytes, including the blank line
	body      []byte           // exact body bytes (leaf entities)

	mediaType string            // lower-case media type, "text/plain" when absent
	params    map[string]string // Content-Type parameters (may be nil)

	// Multipart entities only: body == preamble + Σ(delims[i] + children[i])
	// + closeDelim + epilogue. Each delimiter holds the line ending that
	// precedes it (when there is one) and its own line ending.
	multipart  bool
	preamble   []byte
	delims     [][]byte
	children   []*entity
	closeDelim []byte
	epilogue   []byte
}

// parseEntity splits data into a byte-preserving MIME tree. It fails only
// when the top-level header cannot be parsed; nested entities that cannot be
// parsed are kept as opaque leaves.
func parseEntity(data []byte) (*entity, error) {
	return parseEntityDepth(data, 0)
}

func parseEntityDepth(data []byte, depth int) (*entity, error) {
	rawHeader, body := splitHeaderBody(data)
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(rawHeader)))
	if err != nil {
		return nil, fmt.Errorf("parse header: %w", err)
	}
	e := &entity{header: h, rawHeader: rawHeader, body: body}
	e.mediaType, e.params = contentType(h)
	if !strings.HasPrefix(e.mediaType, "multipart/") || e.params["boundary"] == "" || depth >= maxMIMEDepth {
		return e, nil
	}
	e.splitMultipart(depth)
	return e, nil
}

// contentType returns the lower-case media type and parameters of h,
// "text/plain" when the field is absent. A malformed parameter list yields
// the media type without parameters.
func contentType(h textproto.Header) (string, map[string]string) {
	mh := message.Header{Header: h}
	t, params, err := mh.ContentType()
	if err == nil {
		return t, params
	}
	t, params, err = mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil && t == "" {
		return "application/octet-stream", nil
	}
	return t, params
}

// splitHeaderBody splits a message at the first empty line. The header part
// includes that empty line. Without an empty line everything is header.
func splitHeaderBody(data []byte) (header, body []byte) {
	off := 0
	for off < len(data) {
		nl := bytes.IndexByte(data[off:], '\n')
		var line []byte
		if nl < 0 {
			line = data[off:]
		} else {
			line = data[off : off+nl+1]
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 && len(line) > 0 && line[len(line)-1] == '\n' {
			end := off + len(line)
			return data[:end], data[end:]
		}
		if nl < 0 {
			break
		}
		off += nl + 1
	}
	return data, nil
}

// splitMultipart fills the multipart fields of e from e.body. A body without
// any delimiter line stays a leaf.
func (e *entity) splitMultipart(depth int) {
	b := e.body
	dash := []byte("--" + e.params["boundary"])

	type delim struct {
		start, end int // line start (after any leading line ending) and end (after its own line ending)
		lead       int // length of the preceding line ending counted into the delimiter
		close      bool
	}
	var found []delim
	prevEnd := 0
	for off := 0; off < len(b); {
		nl := bytes.IndexByte(b[off:], '\n')
		end := len(b)
		if nl >= 0 {
			end = off + nl + 1
		}
		line := bytes.TrimRight(b[off:end], "\r\n")
		if rest, ok := bytes.CutPrefix(line, dash); ok {
			isClose := false
			if r, ok := bytes.CutPrefix(rest, []byte("--")); ok {
				rest, isClose = r, true
			}
			if len(bytes.Trim(rest, " \t")) == 0 {
				lead := 0
				if off > prevEnd {
					switch {
					case off >= 2 && b[off-2] == '\r' && b[off-1] == '\n' && off-2 >= prevEnd:
						lead = 2
					case off >= 1 && b[off-1] == '\n':
						lead = 1
					}
				}
				found = append(found, delim{start: off, end: end, lead: lead, close: isClose})
				prevEnd = end
				if isClose {
					break
				}
			}
		}
		off = end
	}
	if len(found) == 0 || found[0].close {
		return
	}

	e.multipart = true
	e.preamble = b[:found[0].start-found[0].lead]
	for i, d := range found {
		if d.close {
			e.closeDelim = b[d.start-d.lead : d.end]
			e.epilogue = b[d.end:]
			break
		}
		e.delims = append(e.delims, b[d.start-d.lead:d.end])
		contentEnd := len(b)
		if i+1 < len(found) {
			contentEnd = found[i+1].start - found[i+1].lead
		}
		raw := b[d.end:contentEnd]
		child, err := parseEntityDepth(raw, depth+1)
		if err != nil {
			child = &entity{rawHeader: nil, body: raw, mediaType: "application/octet-stream"}
		}
		e.children = append(e.children, child)
	}
}

// bytes serializes e.
func (e *entity) bytes() []byte {
	var buf bytes.Buffer
	e.writeTo(&buf)
	return buf.Bytes()
}

func (e *entity) writeTo(buf *bytes.Buffer) {
	buf.Write(e.rawHeader)
	if !e.multipart {
		buf.Write(e.body)
		return
	}
	buf.Write(e.preamble)
	for i, c := range e.children {
		buf.Write(e.delims[i])
		c.writeTo(buf)
	}
	buf.Write(e.closeDelim)
	buf.Write(e.epilogue)
}

// setHeader replaces e's header and regenerates its raw bytes. Fields that
// were read keep their raw bytes; new fields are formatted by go-message.
func (e *entity) setHeader(h textproto.Header) error {
	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, h); err != nil {
		return err
	}
	e.header = h
	e.rawHeader = buf.Bytes()
	e.mediaType, e.params = contentType(h)
	return nil
}

// removeChild deletes the i-th child of a multipart entity together with the
// delimiter that precedes it.
func (e *entity) removeChild(i int) {
	if i == 0 && len(e.delims) > 1 {
		// Keep the body's first delimiter attached the way it was (with or
		// without a preceding line ending).
		first, next := e.delims[0], e.delims[1]
		lead := leadingEOL(first)
		e.delims[1] = append(append([]byte{}, lead...), next[len(leadingEOL(next)):]...)
	}
	e.delims = append(e.delims[:i:i], e.delims[i+1:]...)
	e.children = append(e.children[:i:i], e.children[i+1:]...)
}

func leadingEOL(delim []byte) []byte {
	switch {
	case bytes.HasPrefix(delim, []byte("\r\n")):
		return delim[:2]
	case bytes.HasPrefix(delim, []byte("\n")):
		return delim[:1]
	}
	return nil
}

// walkLeaves calls fn for every leaf entity of the tree, depth first, in
// document order; a single-part entity is its own only leaf.
func (e *entity) walkLeaves(fn func(leaf *entity) error) error {
	if !e.multipart {
		return fn(e)
	}
	for _, c := range e.children {
		if err := c.walkLeaves(fn); err != nil {
			return err
		}
	}
	return nil
}

// isAttachment reports whether the entity is marked as an attachment.
func (e *entity) isAttachment() bool {
	v := e.header.Get("Content-Disposition")
	if v == "" {
		return false
	}
	disp, _, err := mime.ParseMediaType(v)
	if err != nil {
		return strings.HasPrefix(strings.ToLower(strings.TrimSpace(v)), "attachment")
	}
	return disp == "attachment"
}

// isTNEF reports whether the entity is a TNEF (winmail.dat) part.
func (e *entity) isTNEF() bool {
	return isTNEFMediaType(e.mediaType)
}

func isTNEFMediaType(t string) bool {
	return t == "application/ms-tnef" || t == "application/vnd.ms-tnef"
}

// transferEncoding returns the lower-case Content-Transfer-Encoding of e,
// "7bit" when absent.
func (e *entity) transferEncoding() string {
	enc := strings.ToLower(strings.TrimSpace(e.header.Get("Content-Transfer-Encoding")))
	if enc == "" {
		return "7bit"
	}
	return enc
}

// decodeTransfer returns the body of a leaf with its transfer encoding
// removed. The charset is left alone: text stays in its original charset, so
// re-encoding it yields the same characters.
func decodeTransfer(enc string, body []byte) ([]byte, error) {
	switch enc {
	case "7bit", "8bit", "binary":
		return body, nil
	case "quoted-printable":
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return nil, fmt.Errorf("decode quoted-printable: %w", err)
		}
		return b, nil
	case "base64":
		clean := make([]byte, 0, len(body))
		for _, c := range body {
			switch c {
			case '\r', '\n', ' ', '\t':
			default:
				clean = append(clean, c)
			}
		}
		b := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(b, clean)
		if err != nil {
			return nil, fmt.Errorf("decode base64: %w", err)
		}
		return b[:n], nil
	}
	return nil, fmt.Errorf("unknown Content-Transfer-Encoding %q", enc)
}

// encodeTransfer applies a transfer encoding to decoded content. Base64 lines
// are 76 characters long, as RFC 2045 requires; quoted-printable uses the
// standard library writer (hard line breaks stay CRLF).
//
// eol says whether the encoded body must end with a line ending. Inside a
// multipart the line ending before a delimiter belongs to the delimiter, so a
// part body that did not end with one must not gain one (and a top-level body
// that did must keep it). For quoted-printable a soft line break provides a
// missing final line ending without adding content.
func encodeTransfer(enc string, decoded []byte, eol bool) ([]byte, error) {
	var out []byte
	switch enc {
	case "7bit", "8bit", "binary":
		out = append([]byte{}, decoded...)
		if eol && len(out) > 0 && !endsWithEOL(out) {
			out = append(out, '\r', '\n')
		}
	case "quoted-printable":
		var buf bytes.Buffer
		w := quotedprintable.NewWriter(&buf)
		// Text mode turns every line ending into CRLF; content with bare CR
		// or LF is encoded in binary mode (line endings as =0D, =0A) so
		// that it decodes to exactly the same bytes.
		w.Binary = hasBareEOL(decoded)
		if _, err := w.Write(decoded); err != nil {
			return nil, fmt.Errorf("encode quoted-printable: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("encode quoted-printable: %w", err)
		}
		out = buf.Bytes()
		if eol && len(out) > 0 && !endsWithEOL(out) {
			out = append(out, "=\r\n"...)
		}
	case "base64":
		out = base64Lines(decoded)
	default:
		return nil, fmt.Errorf("unknown Content-Transfer-Encoding %q", enc)
	}
	if !eol && endsWithEOL(out) {
		out = out[:len(out)-1]
		out = bytes.TrimSuffix(out, []byte("\r"))
	}
	return out, nil
}

// hasBareEOL reports whether b has a CR or LF that is not part of a CRLF.
func hasBareEOL(b []byte) bool {
	for i, c := range b {
		switch {
		case c == '\n' && (i == 0 || b[i-1] != '\r'):
			return true
		case c == '\r' && (i+1 == len(b) || b[i+1] != '\n'):
			return true
		}
	}
	return false
}

// endsWithEOL reports whether b ends with a line ending.
func endsWithEOL(b []byte) bool { return len(b) > 0 && b[len(b)-1] == '\n' }

// base64Lines encodes b as base64 in CRLF-terminated lines of 76 characters.
func base64Lines(b []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	var buf bytes.Buffer
	buf.Grow(len(enc) + len(enc)/76*2 + 2)
	for len(enc) > 76 {
		buf.WriteString(enc[:76])
		buf.WriteString("\r\n")
		enc = enc[76:]
	}
	if enc != "" {
		buf.WriteString(enc)
		buf.WriteString("\r\n")
	}
	return buf.Bytes()
}
