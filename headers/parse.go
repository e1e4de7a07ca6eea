package headers

// The header block reader is in-house, on purpose. go-message's textproto
// (still used to write headers and elsewhere in the relay) keeps a parsed
// header as one *headerField per field, holding the raw line in a buffer of
// at least 256 bytes, the canonical key and the unfolded value as strings,
// plus a map entry: several hundred bytes per field whatever its size, so a
// 1 MiB header block of four-byte fields costs over 100 MB to parse. No
// library reachable from here parses a header block into a compact form.
//
// This reader keeps the block's bytes in one buffer, grown as it reads and
// never beyond the size limit, and a 16-byte span per field. It accepts
// exactly what textproto.ReadHeader accepts, and Get and Values unfold and
// trim as textproto does; FuzzHeaderMatchesTextproto holds the two together.
// Deliberate differences: a NUL byte anywhere in the block is an error; and
// a last line of exactly a multiple of the read buffer's size at the end of
// the data is a field, where textproto reports an unexpected EOF.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// minBlockCap is the smallest buffer a header block starts with.
const minBlockCap = 512

// maxPresize bounds the buffer a header block starts with when its end is
// not in sight: beyond that it grows by doubling as it is read.
const maxPresize = 16 << 10

// blockReader reads one header block into a Header.
type blockReader struct {
	br  *bufio.Reader
	lim Limits
	h   *Header
}

// readBlock reads the header block at the start of br, up to and including
// the empty line that ends it (or the end of the data).
func readBlock(br *bufio.Reader, lim Limits) (*Header, error) {
	p := &blockReader{br: br, lim: lim, h: &Header{}}
	if err := p.begin(); err != nil {
		return nil, err
	}
	for {
		more, err := p.field()
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
	}
	if n := p.h.Size(); n > lim.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, n, lim.MaxBytes)
	}
	return p.h, nil
}

// begin refuses a header block that starts with a continuation line, as
// textproto does, and sizes the buffers from what the reader already holds.
func (p *blockReader) begin() error {
	b, err := p.br.Peek(1)
	if err != nil {
		if err == io.EOF {
			return nil
		}
		return p.readErr(err)
	}
	if isBlank(b[0]) {
		return fmt.Errorf("%w: the header block starts with a continuation line", ErrMalformedHeader)
	}
	b, _ = p.br.Peek(p.br.Buffered())
	p.presize(b)
	return nil
}

// presize allocates the block buffer and the span index for the header
// block that starts buffered: exactly when the block ends within it (and
// uses CRLF), otherwise for at most maxPresize bytes.
func (p *blockReader) presize(buffered []byte) {
	n := len(buffered)
	if i := blockEnd(buffered); i >= 0 {
		n = i + 2 // the empty line passes through the block too
	} else {
		n = min(n, maxPresize)
	}
	n = min(n, p.lim.MaxBytes)
	p.h.block = make([]byte, 0, max(n, min(minBlockCap, p.lim.MaxBytes)))
	p.h.spans = make([]span, 0, min(countFieldLines(buffered[:min(n, len(buffered))]), p.lim.MaxFields))
}

// blockEnd returns the length of the fields at the start of b, up to the
// empty line that ends them, or -1 when that line is not in b.
func blockEnd(b []byte) int {
	if bytes.HasPrefix(b, []byte("\r\n")) || bytes.HasPrefix(b, []byte("\n")) {
		return 0 // no fields at all
	}
	i := bytes.Index(b, []byte("\n\r\n"))
	if j := bytes.Index(b, []byte("\n\n")); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	if i < 0 {
		return -1
	}
	return i + 1
}

// countFieldLines counts the lines of b that start a field: those that do
// not start with a blank.
func countFieldLines(b []byte) int {
	n := 0
	for len(b) > 0 {
		if !isBlank(b[0]) {
			n++
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		b = b[i+1:]
	}
	return n
}

// field reads the next field, its first line and its continuation lines,
// and indexes it. It reports false at the end of the header block: the empty
// line, or the end of the data.
func (p *blockReader) field() (bool, error) {
	start := len(p.h.block)
	n, eof, err := p.readLine()
	if err != nil {
		return false, err
	}
	if eof || n == 0 {
		p.h.block = p.h.block[:start] // the empty line is not a field
		return false, nil
	}
	for {
		more, err := p.continued()
		if err != nil {
			return false, err
		}
		if !more {
			break
		}
		if _, _, err := p.readLine(); err != nil {
			return false, err
		}
	}
	return true, p.index(start)
}

// continued reports whether the next line continues the current field:
// whether it starts with a blank.
func (p *blockReader) continued() (bool, error) {
	b, err := p.br.Peek(1)
	switch {
	case err == io.EOF:
		return false, nil
	case err != nil:
		return false, p.readErr(err)
	}
	return isBlank(b[0]), nil
}

// readLine appends the next line to the block, ending it in CRLF whatever
// ended it in the input (CRLF, LF alone, or the end of the data), as
// textproto does. It returns the length of the line without its line
// ending, and eof when there was no data left at all.
func (p *blockReader) readLine() (n int, eof bool, err error) {
	start := len(p.h.block)
	for {
		chunk, rerr := p.br.ReadSlice('\n')
		if err := p.append(chunk...); err != nil {
			return 0, false, err
		}
		switch rerr {
		case nil:
			return p.endLine(start)
		case bufio.ErrBufferFull:
			continue // a line longer than the read buffer
		case io.EOF:
			if len(p.h.block) == start {
				return 0, true, nil
			}
			if err := p.append('\r', '\n'); err != nil {
				return 0, false, err
			}
			return len(p.h.block) - start - 2, false, nil
		default:
			return 0, false, p.readErr(rerr)
		}
	}
}

// endLine makes the line that starts at start, which ends in LF, end in
// CRLF, and returns its length without the line ending.
func (p *blockReader) endLine(start int) (int, bool, error) {
	b := p.h.block
	if len(b)-start >= 2 && b[len(b)-2] == '\r' {
		return len(b) - start - 2, false, nil
	}
	if err := p.append('\n'); err != nil {
		return 0, false, err
	}
	p.h.block[len(p.h.block)-2] = '\r'
	return len(p.h.block) - start - 2, false, nil
}

// append adds b to the block, growing it by doubling, never beyond the size
// limit.
func (p *blockReader) append(b ...byte) error {
	blk := p.h.block
	if len(blk)+len(b) > p.lim.MaxBytes {
		return fmt.Errorf("%w: more than %d bytes", ErrHeaderTooLarge, p.lim.MaxBytes)
	}
	if len(blk)+len(b) > cap(blk) {
		c := max(2*cap(blk), len(blk)+len(b), minBlockCap)
		grown := make([]byte, len(blk), min(c, p.lim.MaxBytes))
		copy(grown, blk)
		blk = grown
	}
	p.h.block = append(blk, b...)
	return nil
}

// index checks the field that starts at start and runs to the end of the
// block, and adds it to the index. As in textproto, the name ends at the
// first colon, blanks around it are not part of it, and a field whose name
// is empty is dropped.
func (p *blockReader) index(start int) error {
	raw := p.h.block[start:]
	colon := bytes.IndexByte(raw, ':')
	if colon < 0 {
		return fmt.Errorf("%w: line without a colon: %s", ErrMalformedHeader, clip(raw[:len(raw)-2]))
	}
	name := trimBlanks(raw[:colon])
	if bytes.IndexByte(raw, 0) >= 0 {
		return fmt.Errorf("%w: NUL byte in field %s", ErrMalformedHeader, clip(name))
	}
	for i, c := range name {
		if c < '!' || c > '~' || c == ':' {
			return fmt.Errorf("%w: byte %q at %d in field name %s", ErrMalformedHeader, c, i, clip(name))
		}
	}
	if len(name) == 0 {
		p.h.block = p.h.block[:start]
		return nil
	}
	if len(p.h.spans) == p.lim.MaxFields {
		return tooManyFields{max: p.lim.MaxFields}
	}
	p.h.spans = append(p.h.spans, span{off: uint32(start), colon: uint32(start + colon), end: uint32(len(p.h.block))})
	return nil
}

// readErr wraps an error of the underlying reader. A connection that ends
// in the middle of the header block is a malformed header block, as it was
// with textproto.
func (p *blockReader) readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: unexpected end of data in header block: %w", ErrMalformedHeader, err)
	}
	return fmt.Errorf("reading header block: %w", err)
}

// tooManyFields is the error of a header block with more than max fields.
type tooManyFields struct{ max int }

func (e tooManyFields) Error() string {
	return fmt.Sprintf("%v: more than %d header fields", ErrHeaderTooLarge, e.max)
}

// Unwrap makes the error both ErrTooManyFields and ErrHeaderTooLarge, so a
// caller that knows only the latter refuses it just the same.
func (e tooManyFields) Unwrap() []error { return []error{ErrTooManyFields, ErrHeaderTooLarge} }

// clip quotes b for an error message, cut to 64 bytes.
func clip(b []byte) string {
	const n = 64
	if len(b) > n {
		return fmt.Sprintf("%q...", b[:n])
	}
	return fmt.Sprintf("%q", b)
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// trimBlanks returns b without leading and trailing spaces and tabs.
func trimBlanks(b []byte) []byte {
	for len(b) > 0 && isBlank(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isBlank(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// splitRaw returns the name (without surrounding blanks) and the raw value
// of a raw field; the name is empty when there is no colon.
func splitRaw(raw []byte) (name, value []byte) {
	i := bytes.IndexByte(raw, ':')
	if i < 0 {
		return nil, raw
	}
	return trimBlanks(raw[:i]), raw[i+1:]
}

// unfold returns a raw field value as textproto presents it: every line
// without its line ending (LF, and one CR before it) and without surrounding
// blanks, lines left empty dropped, the others joined by single spaces.
func unfold(v []byte) string {
	size, lines := 0, 0
	for rest := v; rest != nil; {
		var line []byte
		line, rest = nextUnfolded(rest)
		if len(line) > 0 {
			size += len(line)
			lines++
		}
	}
	if lines == 0 {
		return ""
	}
	var b strings.Builder
	b.Grow(size + lines - 1)
	for rest := v; rest != nil; {
		var line []byte
		line, rest = nextUnfolded(rest)
		if len(line) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.Write(line)
	}
	return b.String()
}

// nextUnfolded returns the first line of v, trimmed as unfold trims it, and
// the rest of v after its LF, or nil when v has no LF.
func nextUnfolded(v []byte) (line, rest []byte) {
	i := bytes.IndexByte(v, '\n')
	if i < 0 {
		line = v
	} else {
		line, rest = v[:i], v[i+1:] // non-nil, possibly empty
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return trimBlanks(line), rest
}

// fieldKey is a field name to look up. Names compare as go-message's
// textproto compares them, through net/textproto.CanonicalMIMEHeaderKey:
// a name made only of token characters (RFC 7230) matches any ASCII case
// variant of itself; any other name matches only itself, byte for byte.
type fieldKey struct {
	name string
	fold bool
}

func newFieldKey(name string) fieldKey {
	for i := 0; i < len(name); i++ {
		if !isTokenByte(name[i]) {
			return fieldKey{name: name}
		}
	}
	return fieldKey{name: name, fold: true}
}

// matches reports whether a field named name is one k looks up.
func (k fieldKey) matches(name []byte) bool {
	if len(name) != len(k.name) {
		return false
	}
	if !k.fold {
		return string(name) == k.name
	}
	for i, c := range name {
		if lowerASCII(c) != lowerASCII(k.name[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// isTokenByte reports whether c is a tchar of RFC 7230, the bytes
// CanonicalMIMEHeaderKey accepts in a name it canonicalizes.
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
