// Package headers parses, stamps and restores the header block of messages
// passing through recallrelay, and defines the origin record that connects
// the two legs of a round trip.
//
// Header fields are handled as raw bytes, which keeps every field
// byte-exact (spelling, folding, order): the fields the relay records on the
// tenant leg are the fields it writes back on the return leg, to the byte.
// The header block is read by an in-house reader that accepts exactly what
// go-message's textproto accepts, and holds the block compactly: its bytes
// once, plus a small index entry per field.
package headers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// ErrHeaderTooLarge is returned by ReadHeader when the header block exceeds
// one of its limits: its size in bytes, or its number of fields (then the
// error also wraps ErrTooManyFields).
var ErrHeaderTooLarge = errors.New("header block too large")

// ErrTooManyFields is returned by ReadHeaderLimits when the header block has
// more fields than Limits.MaxFields. The error also wraps ErrHeaderTooLarge.
var ErrTooManyFields = errors.New("too many header fields")

// ErrMalformedHeader wraps every syntax error in a header block, and a NUL
// byte anywhere in it.
var ErrMalformedHeader = errors.New("malformed header")

// Defaults of Limits.
const (
	// DefaultMaxHeaderBytes is the default size limit of a header block.
	DefaultMaxHeaderBytes = 1 << 20
	// DefaultMaxHeaderFields is the default limit on the number of fields
	// in a header block. A message leaving Exchange Online has 50 to 200.
	DefaultMaxHeaderFields = 1000
)

// maxBlockBytes is the largest header block a Header indexes: its offsets
// are 32-bit, and this fits an int everywhere.
const maxBlockBytes = math.MaxInt32

// readAhead is the buffer of the reader ReadHeader returns; it is also how
// far ReadHeader may read past the header block.
const readAhead = 16 << 10

// Limits bound what ReadHeaderLimits accepts. A zero (or negative) field
// takes its default.
type Limits struct {
	// MaxBytes bounds the size of the header block, including the empty
	// line that ends it, as Header.Size counts it. Default
	// DefaultMaxHeaderBytes; values above 2 GiB - 1 are taken as that.
	MaxBytes int
	// MaxFields bounds the number of fields. Default DefaultMaxHeaderFields.
	MaxFields int
}

// withDefaults returns l with its zero or negative fields set to the
// defaults, and MaxBytes at most maxBlockBytes.
func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxHeaderBytes
	}
	if l.MaxBytes > maxBlockBytes {
		l.MaxBytes = maxBlockBytes
	}
	if l.MaxFields <= 0 {
		l.MaxFields = DefaultMaxHeaderFields
	}
	return l
}

// Header is a message's header block. Fields keep their raw bytes; the only
// mutations are removing fields and inserting raw fields at the top, which is
// what DKIM-safe processing allows.
//
// The fields read from the message stay in one buffer, indexed by a small
// entry per field; removing a field marks its entry, and inserted fields are
// kept apart, so no mutation copies the block. The zero Header is empty.
type Header struct {
	block []byte   // the fields as read, every line ending in CRLF
	spans []span   // the fields of block, in message order
	gone  int      // how many of spans are removed
	top   [][]byte // fields inserted by Prepend, in message order
}

// span locates one field of Header.block.
type span struct {
	off     uint32 // first byte of the field (of its name)
	colon   uint32 // the colon that ends its name
	end     uint32 // one past its last CRLF
	removed bool
}

// ReadHeader reads the header block from r, up to and including the empty
// line that ends it, and returns it with a reader positioned at the first
// byte of the body. At most max bytes of header are accepted (ErrHeaderTooLarge
// beyond), and at most DefaultMaxHeaderFields fields; max <= 0 means
// DefaultMaxHeaderBytes. The body is not limited. r must deliver CRLF line
// endings (the relay's line-ending guard sits in front of it).
func ReadHeader(r io.Reader, max int) (*Header, io.Reader, error) {
	return ReadHeaderLimits(r, Limits{MaxBytes: max})
}

// ReadHeaderLimits is ReadHeader with both limits. It stops reading as soon
// as the header block exceeds either: at lim.MaxBytes bytes with an error
// wrapping ErrHeaderTooLarge, at lim.MaxFields fields with one wrapping
// ErrTooManyFields (and ErrHeaderTooLarge). Syntax errors, and NUL bytes
// anywhere in the header block, wrap ErrMalformedHeader; errors of r are
// returned wrapped (io.ErrUnexpectedEOF, data cut short, also wraps
// ErrMalformedHeader).
//
// The syntax accepted is go-message's textproto.ReadHeader's, and so is what
// Get and Values return; raw fields have every line ending turned into CRLF,
// a field at the end of the data without one gains it, and lines with an
// empty field name (": x") are dropped, as go-message does. A parse holds
// the header bytes once plus about 16 bytes per field.
func ReadHeaderLimits(r io.Reader, lim Limits) (*Header, io.Reader, error) {
	br := bufio.NewReaderSize(r, readAhead)
	h, err := readBlock(br, lim.withDefaults())
	if err != nil {
		return nil, nil, err
	}
	return h, br, nil
}

// Size is the number of bytes the header block occupies when written,
// including the empty line that ends it.
func (h *Header) Size() int {
	n := 2
	for _, raw := range h.top {
		n += len(raw)
	}
	for _, s := range h.spans {
		if !s.removed {
			n += int(s.end - s.off)
		}
	}
	return n
}

// Len is the number of fields.
func (h *Header) Len() int { return len(h.top) + len(h.spans) - h.gone }

// Fields returns every field in message order. Each Raw aliases the header
// and must not be modified.
func (h *Header) Fields() []Field {
	out := make([]Field, 0, h.Len())
	for _, raw := range h.top {
		out = append(out, Field{Name: rawName(raw), Raw: raw})
	}
	for _, s := range h.spans {
		if !s.removed {
			out = append(out, Field{Name: string(h.name(s)), Raw: h.raw(s)})
		}
	}
	return out
}

// Capture returns the fields whose names m matches, in message order, each a
// copy of its raw bytes.
func (h *Header) Capture(m Matcher) []Field {
	var out []Field
	for _, raw := range h.top {
		if name := rawName(raw); m.Match(name) {
			out = append(out, Field{Name: name, Raw: bytes.Clone(raw)})
		}
	}
	for _, s := range h.spans {
		if name := h.name(s); !s.removed && m.matchBytes(name) {
			out = append(out, Field{Name: string(name), Raw: bytes.Clone(h.raw(s))})
		}
	}
	return out
}

// Get returns the unfolded value of the first field named name, or "".
// Names compare as go-message compares them (see fieldKey).
func (h *Header) Get(name string) string {
	k := newFieldKey(name)
	for _, raw := range h.top {
		if n, v := splitRaw(raw); k.matches(n) {
			return unfold(v)
		}
	}
	for _, s := range h.spans {
		if !s.removed && k.matches(h.name(s)) {
			return unfold(h.value(s))
		}
	}
	return ""
}

// Values returns the unfolded values of all fields named name, in message
// order, or nil.
func (h *Header) Values(name string) []string {
	k := newFieldKey(name)
	var out []string
	for _, raw := range h.top {
		if n, v := splitRaw(raw); k.matches(n) {
			out = append(out, unfold(v))
		}
	}
	for _, s := range h.spans {
		if !s.removed && k.matches(h.name(s)) {
			out = append(out, unfold(h.value(s)))
		}
	}
	return out
}

// Has reports whether a field named name exists.
func (h *Header) Has(name string) bool {
	k := newFieldKey(name)
	for _, raw := range h.top {
		if n, _ := splitRaw(raw); k.matches(n) {
			return true
		}
	}
	for _, s := range h.spans {
		if !s.removed && k.matches(h.name(s)) {
			return true
		}
	}
	return false
}

// Remove deletes every field whose name m matches and returns how many.
func (h *Header) Remove(m Matcher) int {
	n := 0
	top := h.top[:0]
	for _, raw := range h.top {
		if m.Match(rawName(raw)) {
			n++
		} else {
			top = append(top, raw)
		}
	}
	clear(h.top[len(top):])
	h.top = top
	for i := range h.spans {
		s := &h.spans[i]
		if !s.removed && m.matchBytes(h.name(*s)) {
			s.removed = true
			h.gone++
			n++
		}
	}
	return n
}

// Prepend inserts fields at the top of the header block, keeping their
// order: the first of fields becomes the first field of the block. Each
// field's raw bytes must be a complete, valid field (see NewField); they are
// kept, not copied, and must not be modified afterwards. Prepend panics on a
// field without a colon. Only Raw counts: a field's name is read from it.
func (h *Header) Prepend(fields ...Field) {
	top := make([][]byte, 0, len(fields)+len(h.top))
	for _, f := range fields {
		if bytes.IndexByte(f.Raw, ':') < 0 {
			panic("headers: Header.Prepend: field without a colon")
		}
		top = append(top, f.Raw)
	}
	h.top = append(top, h.top...)
}

// WriteTo writes the header block, including the empty line that ends it.
func (h *Header) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	for _, raw := range h.top {
		if _, err := cw.Write(raw); err != nil {
			return cw.n, err
		}
	}
	// Write each run of adjacent fields that were not removed at once.
	for i := 0; i < len(h.spans); {
		if h.spans[i].removed {
			i++
			continue
		}
		j := i + 1
		for j < len(h.spans) && !h.spans[j].removed && h.spans[j].off == h.spans[j-1].end {
			j++
		}
		if _, err := cw.Write(h.block[h.spans[i].off:h.spans[j-1].end]); err != nil {
			return cw.n, err
		}
		i = j
	}
	_, err := cw.Write([]byte("\r\n"))
	return cw.n, err
}

// raw returns the field s, capped so that appending to it cannot overwrite
// the next field.
func (h *Header) raw(s span) []byte { return h.block[s.off:s.end:s.end] }

// name returns the name of field s, without surrounding blanks.
func (h *Header) name(s span) []byte { return trimBlanks(h.block[s.off:s.colon]) }

// value returns the raw value of field s: everything after the colon.
func (h *Header) value(s span) []byte { return h.block[s.colon+1 : s.end] }

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
