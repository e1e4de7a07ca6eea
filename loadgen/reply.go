package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Reply is an SMTP reply: its three-digit code and the text of each line
// (without the code, the separator and CRLF).
type Reply struct {
	Code  int
	Lines []string
}

// String returns the reply as one line: "250 first line / second line".
func (r Reply) String() string {
	return fmt.Sprintf("%03d %s", r.Code, strings.Join(r.Lines, " / "))
}

// Positive reports whether the code is 2xx.
func (r Reply) Positive() bool { return r.Code/100 == 2 }

// Limits of a reply, beyond which it is malformed.
const (
	MaxReplyLine  = 2048 // bytes of one line, CRLF included (RFC 5321 says 512)
	MaxReplyLines = 256
)

// MalformedReplyError is a reply that does not follow RFC 5321 section 4.2.
type MalformedReplyError struct {
	Line   string // the offending line as received (truncated to 80 bytes)
	Reason string
}

func (e *MalformedReplyError) Error() string {
	return fmt.Sprintf("malformed reply %q: %s", e.Line, e.Reason)
}

func malformed(line []byte, format string, args ...any) error {
	s := string(line)
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return &MalformedReplyError{Line: s, Reason: fmt.Sprintf(format, args...)}
}

// ReadReply reads one reply, single- or multiline ("250-a", "250-b",
// "250 c"). Every line must end in CRLF and start with the same three-digit
// code (first digit 1 to 5), followed by '-' on all lines but the last and
// by ' ' or the end of the line on the last. A violation is a
// *MalformedReplyError; a connection closed mid-reply is
// io.ErrUnexpectedEOF (io.EOF before the first byte).
func ReadReply(r *bufio.Reader) (Reply, error) {
	var rep Reply
	for n := 0; ; n++ {
		if n == MaxReplyLines {
			return rep, &MalformedReplyError{Reason: fmt.Sprintf("more than %d lines", MaxReplyLines)}
		}
		line, err := readLine(r)
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return rep, err
		}
		body := line[:len(line)-2]
		if len(body) < 3 {
			return rep, malformed(line, "shorter than a three-digit code")
		}
		for i := 0; i < 3; i++ {
			if body[i] < '0' || body[i] > '9' {
				return rep, malformed(line, "code %q is not three digits", body[:3])
			}
		}
		if body[0] < '1' || body[0] > '5' {
			return rep, malformed(line, "code %s: first digit not 1 to 5", body[:3])
		}
		code, _ := strconv.Atoi(string(body[:3]))
		if n > 0 && code != rep.Code {
			return rep, malformed(line, "code %03d in a reply that began with %03d", code, rep.Code)
		}
		rep.Code = code
		last := true
		text := ""
		if len(body) > 3 {
			switch body[3] {
			case '-':
				last = false
			case ' ':
			default:
				return rep, malformed(line, "separator %q after the code is neither ' ' nor '-'", body[3])
			}
			text = string(body[4:])
		}
		rep.Lines = append(rep.Lines, text)
		if last {
			return rep, nil
		}
	}
}

// readLine reads one line ending in CRLF, at most MaxReplyLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > MaxReplyLine {
			return nil, malformed(buf, "line longer than %d bytes", MaxReplyLine)
		}
		switch {
		case err == nil:
			if len(buf) < 2 || buf[len(buf)-2] != '\r' {
				return nil, malformed(buf, "line ends in a bare LF, not CRLF")
			}
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(buf) > 0:
			return nil, fmt.Errorf("reply line %q: %w", buf, io.ErrUnexpectedEOF)
		default:
			return nil, err
		}
	}
}
