package relaytest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Inspection helpers: what a test asserts about a delivered message. They
// parse with go-message (github.com/emersion/go-message), except RawFields,
// which needs the exact bytes go-message's textproto normalizes.
//
// Importing go-message's charset package, which TextParts and WalkParts use
// for charsets other than UTF-8 and US-ASCII, sets message.CharsetReader as
// a side effect of that package; the helpers do not rely on it and convert
// charsets with charset.Reader themselves where go-message did not.

// ParseHeader returns the top-level header of a message as go-message's
// mail.Header, whose methods decode the Subject, address lists, the date
// and the Message-ID.
func ParseHeader(data []byte) (mail.Header, error) {
	raw, _ := splitHeaderBody(data)
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil && !errors.Is(err, io.EOF) {
		return mail.Header{}, fmt.Errorf("relaytest: parse header: %w", err)
	}
	return mail.Header{Header: message.Header{Header: h}}, nil
}

// HeaderValues returns the value of every top-level header field named name
// (any case), top to bottom, unfolded the way go-message's textproto reads
// them: line breaks and the blanks around them are removed, and encoded
// words (RFC 2047) are left as they are. When the header cannot be parsed,
// the fields before the fault are searched.
func HeaderValues(data []byte, name string) []string {
	raw, _ := splitHeaderBody(data)
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	return h.Values(name)
}

// RawFields returns every top-level header field named name (any case) as
// its exact bytes, top to bottom: name spelling, folding and line endings as
// they are in data. The header is split in-house (go-message's textproto
// turns every line ending of a field into CRLF), the same way
// CompareIdentity splits it.
func RawFields(data []byte, name string) []string {
	var out []string
	for _, f := range exactFields(data) {
		if f.Name != "" && strings.EqualFold(f.Name, name) {
			out = append(out, string(f.Raw))
		}
	}
	return out
}

// Part is one entity of a message's MIME tree, as WalkParts reports it.
type Part struct {
	// Path leads from the message to the part: the indices of the part and
	// of every multipart entity above it among their siblings, from 0. The
	// message itself has a nil path (go-message's convention).
	Path []int
	// Header is the part's header.
	Header message.Header
	// ContentType is the lower-case media type, "text/plain" when the
	// header has none; Params are its parameters (never nil).
	ContentType string
	Params      map[string]string
	// Charset is the lower-case charset parameter of a text/* part, empty
	// otherwise.
	Charset string
	// Disposition is the lower-case Content-Disposition ("inline",
	// "attachment"), empty when the header has none.
	Disposition string
	// Filename is the decoded file name from Content-Disposition, or from
	// the Content-Type name parameter, empty when there is none.
	Filename string
	// Body is the content with its transfer encoding removed and, for a
	// text/* part, converted from its charset to UTF-8. It is nil for a
	// multipart entity, whose parts follow it.
	Body []byte
	// Err reports why the content could not be decoded completely (an
	// unknown transfer encoding or charset); Body then holds the content as
	// far as it was decoded.
	Err error
}

// Multipart reports whether p is a multipart entity.
func (p Part) Multipart() bool { return strings.HasPrefix(p.ContentType, "multipart/") }

// Attachment reports whether p's disposition is attachment.
func (p Part) Attachment() bool { return p.Disposition == "attachment" }

// IsTNEF reports whether p is a TNEF (winmail.dat) part: of type
// application/ms-tnef or application/vnd.ms-tnef, or whatever its type with
// the Filename winmail.dat (any case). CompareIdentity counts TNEF parts by
// the same rule.
func (p Part) IsTNEF() bool { return isTNEF(p.ContentType, p.Filename) }

// isTNEF is the rule of Part.IsTNEF for an entity of the lower-case media
// type mediaType and the decoded file name filename (see fileName).
func isTNEF(mediaType, filename string) bool {
	return isTNEFMediaType(mediaType) || strings.EqualFold(filename, "winmail.dat")
}

// fileName returns the decoded file name of an entity, from
// Content-Disposition or else the Content-Type name parameter, "" when it
// has none.
func fileName(h message.Header) string {
	ah := mail.AttachmentHeader{Header: h}
	if name, _ := ah.Filename(); name != "" {
		return decodeWords(name)
	}
	return ""
}

// WalkParts parses data with go-message and calls fn for every entity of its
// MIME tree in document order, the message itself first and every multipart
// entity before its parts. An error from fn stops the walk and is returned
// as it is. A part that cannot be decoded is reported with Part.Err set; a
// header or a multipart structure that cannot be parsed ends the walk with
// an error. A message/rfc822 part is a leaf: its Body is the enclosed
// message, which WalkParts can walk in turn.
func WalkParts(data []byte, fn func(Part) error) error {
	e, err := message.Read(bytes.NewReader(data))
	if e == nil {
		return fmt.Errorf("relaytest: parse message: %w", err)
	}
	rootErr := err
	var fnErr error
	err = e.Walk(func(path []int, ent *message.Entity, err error) error {
		if path == nil && err == nil {
			err = rootErr
		}
		p, err := newPart(path, ent, err)
		if err != nil {
			return err
		}
		if err := fn(p); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return fmt.Errorf("relaytest: walk parts: %w", err)
	}
	return nil
}

// Parts returns every entity WalkParts reports.
func Parts(data []byte) ([]Part, error) {
	var out []Part
	err := WalkParts(data, func(p Part) error {
		out = append(out, p)
		return nil
	})
	return out, err
}

// newPart describes one entity; decodeErr is what go-message reported for
// it (an unknown transfer encoding or charset).
func newPart(path []int, ent *message.Entity, decodeErr error) (Part, error) {
	if decodeErr != nil && !message.IsUnknownCharset(decodeErr) && !message.IsUnknownEncoding(decodeErr) {
		return Part{}, decodeErr
	}
	p := Part{Path: path, Header: ent.Header}
	p.ContentType, p.Params = contentType(ent.Header.Header)
	if p.Params == nil {
		p.Params = map[string]string{}
	}
	if strings.HasPrefix(p.ContentType, "text/") {
		p.Charset = strings.ToLower(p.Params["charset"])
	}
	if v := ent.Header.Get("Content-Disposition"); v != "" {
		disp, _, err := ent.Header.ContentDisposition()
		if err != nil {
			// A malformed parameter list still names the disposition.
			disp, _, _ = strings.Cut(strings.ToLower(strings.TrimSpace(v)), ";")
		}
		p.Disposition = strings.TrimSpace(disp)
	}
	p.Filename = fileName(ent.Header)
	if p.Multipart() {
		return p, nil
	}
	body, err := io.ReadAll(ent.Body)
	if err != nil {
		// A broken encoding (invalid base64, ...) is a fault of this part.
		p.Body, p.Err = body, fmt.Errorf("decode %s part: %w", p.ContentType, err)
		return p, nil
	}
	p.Body = body
	if message.IsUnknownCharset(decodeErr) {
		// go-message had no reader for the charset (message.CharsetReader
		// unset or reset): convert here.
		r, cerr := charset.Reader(p.Charset, bytes.NewReader(body))
		if cerr == nil {
			if conv, rerr := io.ReadAll(r); rerr == nil {
				p.Body = conv
				return p, nil
			}
		}
	}
	p.Err = decodeErr
	return p, nil
}

// decodeWords decodes RFC 2047 encoded words in s (which file names often
// carry although RFC 2047 does not allow them in parameters); s is returned
// as it is when it has none or they cannot be decoded.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	dec := mime.WordDecoder{CharsetReader: charset.Reader}
	if out, err := dec.DecodeHeader(s); err == nil {
		return out
	}
	return s
}

// TextPart is the decoded text of one text/* part.
type TextPart struct {
	// Path is the part's path as in Part.
	Path []int
	// ContentType is the lower-case media type, e.g. "text/plain".
	ContentType string
	// Charset is the lower-case charset the part declared, empty when it
	// declared none.
	Charset string
	// Text is the content with its transfer encoding removed, converted to
	// UTF-8.
	Text string
}

// TextParts returns every text/* part of data that is not an attachment, in
// document order, decoded with go-message: transfer encodings are removed
// and charsets converted to UTF-8. A part that cannot be decoded completely
// is still returned (as far as it was decoded) and the first such problem is
// returned as the error; an error that ends the walk (see WalkParts) comes
// with the parts before it.
func TextParts(data []byte) ([]TextPart, error) {
	var out []TextPart
	var first error
	err := WalkParts(data, func(p Part) error {
		if !strings.HasPrefix(p.ContentType, "text/") || p.Attachment() {
			return nil
		}
		if p.Err != nil && first == nil {
			first = fmt.Errorf("relaytest: text part %v: %w", p.Path, p.Err)
		}
		out = append(out, TextPart{Path: p.Path, ContentType: p.ContentType, Charset: p.Charset, Text: string(p.Body)})
		return nil
	})
	if err != nil {
		return out, err
	}
	return out, first
}

// HasTNEF reports whether data has a TNEF (winmail.dat) part, see
// Part.IsTNEF. A message that cannot be parsed to the end is searched as
// far as it can be.
func HasTNEF(data []byte) bool {
	found := errors.New("found")
	err := WalkParts(data, func(p Part) error {
		if p.IsTNEF() {
			return found
		}
		return nil
	})
	return errors.Is(err, found)
}
