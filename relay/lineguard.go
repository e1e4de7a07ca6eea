package relay

import (
	"bytes"
	"errors"
	"io"
)

// errBare is what lineGuard returns in BareLineReject mode.
var errBare = errors.New("bare CR or LF in message data")

// lineGuard checks message data for bare CR and bare LF, which go-smtp
// passes through to the backend. Left alone, "\n.\n" or "\r.\r" in a message
// could be read as end-of-data by a next hop that is lenient about line
// endings: SMTP smuggling. lineGuard either fails the read (BareLineReject) or
// rewrites each bare CR or LF as CRLF (BareLineNormalize), so what the relay
// forwards only ever contains CRLF line endings.
//
// Written in-house: no reachable library filters an SMTP data stream.
type lineGuard struct {
	r    io.Reader
	mode BareLineEndings
	cr   bool // the last byte consumed was a CR not yet known to be followed by LF
	err  error
	out  []byte // normalized bytes not yet returned
	// outBuf backs out: filter runs only once out is empty, so it can
	// start over at the front.
	outBuf []byte
	buf    []byte
	n      int64 // bytes returned
}

func newLineGuard(r io.Reader, mode BareLineEndings) *lineGuard {
	g := &lineGuard{r: r, mode: mode}
	if mode != BareLineReject {
		g.buf = make([]byte, 32<<10)
	}
	return g
}

func (g *lineGuard) Read(p []byte) (int, error) {
	if g.mode == BareLineReject {
		return g.readChecked(p)
	}
	for len(g.out) == 0 {
		if g.err != nil {
			if g.err == io.EOF && g.cr {
				// Data ends in a lone CR.
				g.cr = false
				g.out = append(g.out[:0], '\n')
				break
			}
			return 0, g.err
		}
		n, err := g.r.Read(g.buf)
		g.err = err
		if n > 0 {
			g.filter(g.buf[:n])
		}
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	g.n += int64(n)
	return n, nil
}

// readChecked is Read in BareLineReject mode: data passes unchanged or
// not at all, so it is read straight into p and checked there, with no
// copy.
func (g *lineGuard) readChecked(p []byte) (int, error) {
	if g.err != nil {
		if g.err == io.EOF && g.cr { // data ends in a lone CR
			g.cr = false
			g.err = errBare
		}
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if n > 0 {
		if cerr := g.check(p[:n]); cerr != nil {
			g.err = cerr
			return 0, cerr
		}
	}
	if err != nil {
		g.err = err
		if n == 0 {
			return g.readChecked(p)
		}
	}
	g.n += int64(n)
	return n, nil
}

// check reports a bare CR or LF in b, a line at a time as filter moves.
func (g *lineGuard) check(b []byte) error {
	for len(b) > 0 {
		if g.cr { // the previous read ended in a CR
			g.cr = false
			if b[0] != '\n' {
				return errBare
			}
			b = b[1:]
			continue
		}
		lf := bytes.IndexByte(b, '\n')
		if lf < 0 {
			switch cr := bytes.IndexByte(b, '\r'); {
			case cr < 0:
				return nil
			case cr == len(b)-1:
				g.cr = true
				return nil
			default:
				return errBare
			}
		}
		if lf == 0 || b[lf-1] != '\r' || bytes.IndexByte(b[:lf-1], '\r') >= 0 {
			return errBare
		}
		b = b[lf+1:]
	}
	return nil
}

// filter sets g.out to the normalized form of b (BareLineNormalize; in
// BareLineReject mode Read checks in place instead, see check). It moves
// a line at a time: the next LF found with bytes.IndexByte, and a CR looked
// for only before it, so well-formed data costs two vectorized scans and
// one copy per line rather than a decision per byte. filterSimple in the
// tests is the byte-at-a-time definition it must match (FuzzLineGuard).
func (g *lineGuard) filter(b []byte) {
	out := g.outBuf[:0]
	for len(b) > 0 {
		if g.cr { // the previous chunk ended in a CR
			g.cr = false
			if b[0] == '\n' {
				out = append(out, '\n')
				b = b[1:]
				continue
			}
			out = append(out, '\n')
			continue
		}
		lf := bytes.IndexByte(b, '\n')
		if lf < 0 {
			cr := bytes.IndexByte(b, '\r')
			switch {
			case cr < 0:
				out = append(out, b...)
				b = nil
			case cr == len(b)-1: // maybe the CR of a CRLF split across reads
				out = append(out, b...)
				g.cr = true
				b = nil
			default: // a CR followed by something else
				out = append(out, b[:cr+1]...)
				out = append(out, '\n')
				b = b[cr+1:]
			}
			continue
		}
		cr := bytes.IndexByte(b[:lf], '\r')
		switch {
		case cr == lf-1 && cr >= 0: // a CRLF line
			out = append(out, b[:lf+1]...)
			b = b[lf+1:]
		case cr < 0: // a bare LF
			out = append(out, b[:lf]...)
			out = append(out, '\r', '\n')
			b = b[lf+1:]
		default: // a bare CR before the LF
			out = append(out, b[:cr+1]...)
			out = append(out, '\n')
			b = b[cr+1:]
		}
	}
	g.out, g.outBuf = out, out
}
