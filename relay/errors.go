package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

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
	errTruncated = Reply(451, smtp.EnhancedCode{4, 3, 0},
		"Message data ended before the announced chunk size; nothing was delivered")
	errStore = Reply(451, smtp.EnhancedCode{4, 3, 0},
		"Origin record store unavailable; try again later")
	errShuttingDown = Reply(421, smtp.EnhancedCode{4, 3, 2}, "Relay shutting down; try again later")
)

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
	var te *tls.CertificateVerificationError
	var re tls.RecordHeaderError
	switch {
	case errors.As(err, &te), errors.As(err, &re), strings.Contains(err.Error(), "tls:"):
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
