package relay

import (
	"bufio"
	"bytes"
	"io"
)

// stuffer dot-stuffs message data for DATA towards a next hop a line at a
// time (bytes.IndexByte), where go-smtp's client, through net/textproto's
// DotWriter, decides byte by byte: the relay's largest cost on large
// messages after go-smtp's own reading. It writes to the connection go-smtp
// writes to, between go-smtp's DATA command and its end of data:
//
//	w, _ := client.Data()  // go-smtp sends DATA, reads 354, flushes
//	s := newStuffer(conn)  // message data straight to the connection
//	... s.Write(data) ...
//	s.finish()             // all but a final CRLF, flushed
//	w.Write(crlf)          // the final CRLF through go-smtp's DotWriter
//	w.CloseWithResponse()  // ".\r\n", and the next hop's verdict
//
// It holds the data's last two bytes back until finish, so that a final
// CRLF goes through go-smtp's writer and leaves it at the start of a line:
// its Close then writes just ".\r\n", and what the next hop receives is
// exactly what DotWriter alone would have sent (FuzzStuffer). Nothing the
// stuffer sends can end the data early: a line that starts with a dot
// gets another, and the end-of-data line is go-smtp's to write.
//
// Message data reaching it has CRLF line endings only (lineGuard); a bare
// LF would end a line for dot-stuffing, as DotWriter has it, but unlike
// DotWriter the stuffer leaves it bare.
//
// Written in-house: no library dot-stuffs into a connection another
// client owns.
type stuffer struct {
	bw   *bufio.Writer
	bol  bool    // the next byte starts a line
	tail [2]byte // the last bytes written, held back
	nt   int     // how many of tail are held
}

func newStuffer(w io.Writer) *stuffer {
	return &stuffer{bw: bufio.NewWriterSize(w, 32<<10), bol: true}
}

// stuffer returns hc's stuffer, ready for a new message: made on first
// use, then reset, so a pooled connection allocates its buffer once.
func (hc *hopConn) stuffer() *stuffer {
	if hc.st == nil {
		hc.st = newStuffer(hc.w)
		return hc.st
	}
	hc.st.bw.Reset(hc.w)
	hc.st.bol, hc.st.nt = true, 0
	return hc.st
}

// Write stuffs p, holding its last two bytes back.
func (s *stuffer) Write(p []byte) (int, error) {
	n := len(p)
	if s.nt+len(p) <= 2 {
		s.nt += copy(s.tail[s.nt:], p)
		return n, nil
	}
	if len(p) >= 2 {
		if err := s.emit(s.tail[:s.nt]); err != nil {
			return 0, err
		}
		if err := s.emit(p[:len(p)-2]); err != nil {
			return 0, err
		}
		s.nt = copy(s.tail[:], p[len(p)-2:])
		return n, nil
	}
	// One byte more with two held: the older held byte goes.
	if err := s.emit(s.tail[:1]); err != nil {
		return 0, err
	}
	s.tail[0], s.tail[1] = s.tail[1], p[0]
	return n, nil
}

// emit writes b dot-stuffed.
func (s *stuffer) emit(b []byte) error {
	for len(b) > 0 {
		if s.bol && b[0] == '.' {
			if err := s.bw.WriteByte('.'); err != nil {
				return err
			}
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.bol = false
			_, err := s.bw.Write(b)
			return err
		}
		if _, err := s.bw.Write(b[:i+1]); err != nil {
			return err
		}
		s.bol = true
		b = b[i+1:]
	}
	return nil
}

// finish writes what is held back, but for a final CRLF, and flushes. The
// caller then writes CRLF through go-smtp's data writer and closes it.
func (s *stuffer) finish() error {
	if s.nt == 2 && s.tail == [2]byte{'\r', '\n'} {
		s.nt = 0
	}
	if err := s.emit(s.tail[:s.nt]); err != nil {
		return err
	}
	s.nt = 0
	return s.bw.Flush()
}
