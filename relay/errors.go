package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Reply builds a typed SMTP reply. All refusals the relay itself makes go
// through here so each carries its code, enhanced code and a text that says
// why.
func Reply(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

// Replies the relay gives on its own account.
var (
	errBareLineEnding = Reply(550, smtp.EnhancedCode{5, 6, 0},
		"Message contains a bare CR or LF; refused (RFC 5321 2.3.8, SMTP smuggling defence)")
	errHeaderTooLarge = func(limit int) *smtp.SMTPError {
		return Reply(552, smtp.EnhancedCode{5, 3, 4}, "Header block exceeds %d bytes", limit)
	}
	errMalformedHeader = func(err error) *smtp.SMTPError {
		return Reply(550, smtp.EnhancedCode{5, 6, 0}, "Malformed header block: %s", oneLine(err.Error()))
	}
	errTooManyFields = func(limit int) *smtp.SMTPError {
		return Reply(552, smtp.EnhancedCode{5, 3, 4}, "Header block has more than %d fields", limit)
	}
	errAborted = Reply(451, smtp.EnhancedCode{4, 3, 0},
		"Message transfer abandoned (RSET, connection closed or relay stopping); nothing was delivered")
	errTruncated = Reply(451, smtp.EnhancedCode{4, 3, 0},
		"Message data ended before the announced chunk size; nothing was delivered")
	errStore = Reply(451, smtp.EnhancedCode{4, 3, 0},
		"Origin record store unavailable; try again later")
	errInternal = Reply(451, smtp.EnhancedCode{4, 3, 0},
		"Internal error; try again later")
	errShuttingDown = Reply(421, smtp.EnhancedCode{4, 3, 2}, "Relay shutting down; try again later")
)

// dataIdleReply and dataTooSlowReply end a transfer the client let stall
// or trickle.
func dataIdleReply(idle time.Duration) *smtp.SMTPError {
	return Reply(421, smtp.EnhancedCode{4, 4, 2}, "Idle for more than %s during message data; closing", idle)
}

func dataTooSlowReply(rate int64) *smtp.SMTPError {
	return Reply(421, smtp.EnhancedCode{4, 4, 2}, "Message data arriving slower than %d bytes per second; closing", rate)
}

// replyLine formats a reply as its one line on the wire, without CRLF.
func replyLine(e *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
}

// hopError turns what went wrong with a next hop into the reply the relay
// gives upstream: the next hop's own 4xx/5xx reply keeps its class, code and
// text (prefixed with the hop's name); anything else (no connection, time-out,
// TLS failure, connection lost) becomes a 4xx, so the sender keeps the
// message and retries.
func hopError(hop, stage string, err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 600 {
		enh := se.EnhancedCode
		if enh == smtp.EnhancedCodeNotSet || enh == smtp.NoEnhancedCode {
			enh = smtp.EnhancedCode{se.Code / 100, 0, 0}
		}
		code := se.Code
		if code == 421 {
			// The next hop closing its channel is not the relay closing
			// this one: tell the client to retry, and keep talking.
			code = 451
		}
		return &smtp.SMTPError{Code: code, EnhancedCode: enh,
			Message: fmt.Sprintf("%s answered %s: %d %s", hop, stage, se.Code, oneLine(se.Message))}
	}
	var ne net.Error
	var tlsErr *tlsError
	var te *tls.CertificateVerificationError
	var re tls.RecordHeaderError
	var ae tls.AlertError
	switch {
	case errors.As(err, &tlsErr), errors.As(err, &te), errors.As(err, &re), errors.As(err, &ae):
		return Reply(454, smtp.EnhancedCode{4, 7, 5}, "%s: TLS failed at %s: %s", hop, stage, oneLine(err.Error()))
	case errors.As(err, &ne) && ne.Timeout():
		return Reply(451, smtp.EnhancedCode{4, 4, 2}, "%s timed out at %s", hop, stage)
	case stage == "connect":
		return Reply(451, smtp.EnhancedCode{4, 4, 1}, "%s unreachable: %s", hop, oneLine(err.Error()))
	default:
		return Reply(451, smtp.EnhancedCode{4, 4, 2}, "%s: connection failed at %s: %s", hop, stage, oneLine(err.Error()))
	}
}

// oneLine keeps a reply text on one line and short.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// isVerdict reports whether err, from a next hop, is its reply on the
// message (a 4xx or 5xx other than 421) rather than a failure of the hop.
func isVerdict(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code != 421
}

// replyCode is the reply code an error would produce, for logs.
func replyCode(err error) int {
	if err == nil {
		return 250
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 451
}
