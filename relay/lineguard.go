package relay

import (
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
	buf  []byte
	n    int64 // bytes returned
}

func newLineGuard(r io.Reader, mode BareLineEndings) *lineGuard {
	return &lineGuard{r: r, mode: mode, buf: make([]byte, 32<<10)}
}

func (g *lineGuard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.err != nil {
			if g.err == io.EOF && g.cr {
				// Data ends in a lone CR.
				g.cr = false
				if g.mode == BareLineReject {
					g.err = errBare
					return 0, g.err
				}
				g.out = append(g.out[:0], '\n')
				break
			}
			return 0, g.err
		}
		n, err := g.r.Read(g.buf)
		g.err = err
		if n > 0 {
			if ferr := g.filter(g.buf[:n]); ferr != nil {
				g.err = ferr
				g.out = g.out[:0]
				return 0, ferr
			}
		}
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	g.n += int64(n)
	return n, nil
}

// filter appends the checked or normalized form of b to g.out.
func (g *lineGuard) filter(b []byte) error {
	out := g.out[:0]
	for _, c := range b {
		switch {
		case g.cr && c == '\n':
			out = append(out, '\n')
			g.cr = false
		case g.cr: // bare CR followed by c
			if g.mode == BareLineReject {
				return errBare
			}
			out = append(out, '\n')
			g.cr = false
			if c == '\r' {
				out = append(out, '\r')
				g.cr = true
			} else {
				out = append(out, c)
			}
		case c == '\r':
			out = append(out, '\r')
			g.cr = true
		case c == '\n': // bare LF
			if g.mode == BareLineReject {
				return errBare
			}
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	g.out = out
	return nil
}
