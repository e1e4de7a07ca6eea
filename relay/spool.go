package relay

import (
	"bufio"
	"errors"
	"io"
	"os"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"
)

// spool is a message body copied to a temporary file, for a router that
// must read the body before it decides: bodies are never held in memory.
type spool struct {
	f    *os.File
	size int64
}

// spoolBody copies body into a new file in SpoolDir. The spool's remove
// must be called whatever the error (it is safe on a nil file).
func (s *session) spoolBody(body io.Reader) (*spool, error) {
	sp := &spool{}
	f, err := os.CreateTemp(s.st.cfg.SpoolDir, "recallrelay-spool-*")
	if err != nil {
		return sp, s.spoolError(err)
	}
	sp.f = f
	cw := &countWriter{w: f}
	if err := copyBody(cw, body); err != nil {
		var rerr readErr
		if errors.As(err, &rerr) {
			return sp, s.readError(rerr.error)
		}
		return sp, s.spoolError(err)
	}
	sp.size = cw.n
	return sp, nil
}

// reader rewinds the spool and returns a buffered reader over it.
func (sp *spool) reader() (io.Reader, error) {
	if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return bufio.NewReaderSize(sp.f, 32<<10), nil
}

// remove closes and deletes the spool file.
func (sp *spool) remove() {
	if sp == nil || sp.f == nil {
		return
	}
	sp.f.Close()
	os.Remove(sp.f.Name())
}

// spoolError logs a failure to spool and returns the client's reply.
func (s *session) spoolError(err error) error {
	s.log(zerolog.ErrorLevel).Err(err).Msg("cannot spool message body")
	return Reply(451, smtp.EnhancedCode{4, 3, 1}, "Cannot spool the message for routing; try again later")
}

// countWriter counts what passes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
