// Package headers parses, stamps and restores the header block of messages
// passing through recallrelay, and defines the origin record that connects
// the two legs of a round trip.
//
// Header fields are handled as raw bytes through go-message's textproto, which
// keeps every field byte-exact (spelling, folding, order): the fields the
// relay records on the tenant leg are the fields it writes back on the return
// leg, to the byte.
package headers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// ErrHeaderTooLarge is returned by ReadHeader when the header block exceeds
// its limit.
var ErrHeaderTooLarge = errors.New("header block too large")

// ErrMalformedHeader wraps every syntax error in a header block.
var ErrMalformedHeader = errors.New("malformed header")

// readAhead is the buffer of the reader ReadHeader returns; it is also how
// far ReadHeader may read past the header limit before it knows the header
// block's exact size.
const readAhead = 64 << 10

// Header is a message's header block. Fields keep their raw bytes; the only
// mutations are removing fields and inserting raw fields at the top, which is
// what DKIM-safe processing allows.
type Header struct {
	h textproto.Header
}

// ReadHeader reads the header block from r, up to and including the empty
// line that ends it, and returns it with a reader positioned at the first
// byte of the body. At most max bytes of header are accepted (ErrHeaderTooLarge
// beyond); the body is not limited. r must deliver CRLF line endings (the
// relay's line-ending guard sits in front of it).
func ReadHeader(r io.Reader, max int) (*Header, io.Reader, error) {
	lr := &phaseLimitReader{r: r, n: int64(max) + readAhead}
	br := bufio.NewReaderSize(lr, readAhead)
	th, err := textproto.ReadHeader(br)
	if lr.exceeded {
		return nil, nil, fmt.Errorf("%w: more than %d bytes", ErrHeaderTooLarge, max)
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("%w: unexpected end of data in header block", ErrMalformedHeader)
		}
		var se interface{ Temporary() bool }
		if errors.As(err, &se) || isReadErr(err) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformedHeader, err)
	}
	h := &Header{h: th}
	if n := h.Size(); n > max {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, n, max)
	}
	lr.n = -1 // the body is unlimited here; the SMTP layer bounds the message
	return h, br, nil
}

// isReadErr reports whether err came from the underlying reader rather than
// from header syntax: go-message returns syntax errors as plain errors whose
// text starts with "message:".
func isReadErr(err error) bool {
	return !strings.HasPrefix(err.Error(), "message:")
}

// phaseLimitReader fails once more than n bytes were read, until n is set to
// a negative value.
type phaseLimitReader struct {
	r        io.Reader
	n        int64
	exceeded bool
}

func (l *phaseLimitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		l.exceeded = true
		return 0, ErrHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// Size is the number of bytes the header block occupies when written,
// including the empty line that ends it.
func (h *Header) Size() int {
	n := 2
	fs := h.h.Fields()
	for fs.Next() {
		raw, _ := fs.Raw()
		n += len(raw)
	}
	return n
}

// Len is the number of fields.
func (h *Header) Len() int { return h.h.Len() }

// Fields returns every field in message order.
func (h *Header) Fields() []Field {
	out := make([]Field, 0, h.h.Len())
	fs := h.h.Fields()
	for fs.Next() {
		raw, _ := fs.Raw()
		out = append(out, Field{Name: rawName(raw), Raw: raw})
	}
	return out
}

// Capture returns the fields whose names m matches, in message order, each a
// copy of its raw bytes.
func (h *Header) Capture(m Matcher) []Field {
	var out []Field
	for _, f := range h.Fields() {
		if m.Match(f.Name) {
			out = append(out, Field{Name: f.Name, Raw: bytes.Clone(f.Raw)})
		}
	}
	return out
}

// Get returns the unfolded value of the first field named name, or "".
func (h *Header) Get(name string) string { return h.h.Get(name) }

// Values returns the unfolded values of all fields named name.
func (h *Header) Values(name string) []string { return h.h.Values(name) }

// Has reports whether a field named name exists.
func (h *Header) Has(name string) bool { return h.h.Has(name) }

// Remove deletes every field whose name m matches and returns how many.
func (h *Header) Remove(m Matcher) int {
	n := 0
	fs := h.h.Fields()
	for fs.Next() {
		raw, _ := fs.Raw()
		if m.Match(rawName(raw)) {
			fs.Del()
			n++
		}
	}
	return n
}

// Prepend inserts fields at the top of the header block, keeping their
// order: the first of fields becomes the first field of the block. Each
// field's raw bytes must be a complete, valid field (see NewField).
func (h *Header) Prepend(fields ...Field) {
	for i := len(fields) - 1; i >= 0; i-- {
		h.h.AddRaw(fields[i].Raw)
	}
}

// WriteTo writes the header block, including the empty line that ends it.
func (h *Header) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	err := textproto.WriteHeader(cw, h.h)
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// rawName returns a raw field's name as spelled, without surrounding blanks.
func rawName(raw []byte) string {
	i := bytes.IndexByte(raw, ':')
	if i < 0 {
		return ""
	}
	return string(bytes.Trim(raw[:i], " \t"))
}

// NewField builds a raw field from a name and an unfolded value. It refuses
// invalid names and any CR, LF or NUL in the value, so that nothing the relay
// writes can split a header block: header injection is impossible by
// construction. Values longer than one line are folded at spaces.
func NewField(name, value string) (Field, error) {
	if err := CheckFieldName(name); err != nil {
		return Field{}, fmt.Errorf("field %q: %w", name, err)
	}
	if i := strings.IndexAny(value, "\r\n\x00"); i >= 0 {
		return Field{}, fmt.Errorf("field %s: value contains CR, LF or NUL at %d", name, i)
	}
	return Field{Name: name, Raw: []byte(fold(name+": "+value) + "\r\n")}, nil
}

// fold breaks a header line before whitespace so that no physical line
// exceeds 78 characters where possible (RFC 5322 2.1.1).
func fold(line string) string {
	const limit = 78
	if len(line) <= limit {
		return line
	}
	var b strings.Builder
	for len(line) > limit {
		cut := strings.LastIndexAny(line[:limit], " \t")
		if cut <= 0 {
			// No blank before the limit: break at the next one, if any.
			next := strings.IndexAny(line[limit:], " \t")
			if next < 0 {
				break
			}
			cut = limit + next
		}
		b.WriteString(line[:cut])
		b.WriteString("\r\n")
		line = line[cut:]
		// The continuation line starts with the blank we broke before; a line
		// consisting only of blanks would end the header, so skip runs of them
		// except the first.
		j := 1
		for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
			j++
		}
		line = line[:1] + line[j:]
	}
	b.WriteString(line)
	return b.String()
}
