// Package tnef implements a minimal, streaming reader for Transport Neutral
// Encapsulation Format streams ([MS-OXTNEF]), the "winmail.dat" payload of
// application/ms-tnef MIME parts written by Microsoft Exchange and Outlook.
//
// The reader learns only what a relay needs to recognise a message without
// decoding it: the stream key, the message class and the TNEF correlation key.
// It reads the stream once, front to back, and never holds more than a few
// small values in memory: attribute data it does not need (attachment
// contents, bodies, most MAPI properties) is skipped, not buffered, and every
// declared length is checked against the remaining input and the configured
// Limits before anything is read or allocated.
//
// It is written in-house because no maintained Go library reads TNEF in a
// streaming, bounded way: github.com/teamwork/tnef, the usual choice, decodes
// the whole stream, attachments included, into memory.
//
// A TNEF stream is a 4-byte signature (0x223E9F78, little-endian), a 2-byte
// key and a sequence of attributes. Each attribute is a level byte (1 for the
// message, 2 for an attachment), a 4-byte attribute ID (type<<16 | id), a
// 4-byte data length, the data, and a 2-byte checksum (the sum of the data
// bytes modulo 65536). All integers are little-endian.
//
// [MS-OXTNEF]: https://learn.microsoft.com/en-us/openspecs/exchange_server_protocols/ms-oxtnef/
package tnef

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Signature is the value of the first four bytes of every TNEF stream, read
// as a little-endian integer.
const Signature uint32 = 0x223E9F78

// Attribute levels.
const (
	levelMessage    = 0x01
	levelAttachment = 0x02
)

// Attribute IDs, type<<16 | id.
const (
	attMessageClass = 0x00078008 // atpWord, holds a NUL-terminated string
	attMAPIProps    = 0x00069003 // atpByte: message-level MAPI property list
)

// maxValueBytes bounds every value the reader keeps in memory: the
// attMessageClass data, PidTagMessageClass and PidTagTnefCorrelationKey.
// Message classes are shorter than 256 characters and correlation keys are
// Message-IDs, so a larger value is treated as hostile input.
const maxValueBytes = 64 << 10

// Errors returned by this package. They are wrapped with context (attribute
// index, ID and stream offset); test for them with errors.Is.
var (
	// ErrNotTNEF reports that the input does not start with the TNEF
	// signature.
	ErrNotTNEF = errors.New("tnef: not a TNEF stream")
	// ErrTruncated reports that the input ended inside the signature, the
	// key or an attribute.
	ErrTruncated = errors.New("tnef: truncated stream")
	// ErrLimit reports that the stream exceeds one of the Limits.
	ErrLimit = errors.New("tnef: limit exceeded")
	// ErrMalformed reports a structurally invalid stream: an inconsistent
	// length, an unknown property type, a bad attMessageClass checksum.
	ErrMalformed = errors.New("tnef: malformed stream")
	// ErrNoMessageClass is returned by MessageClass for a well-formed
	// stream that carries no message class.
	ErrNoMessageClass = errors.New("tnef: no message class")
)

// Limits bounds the work done on one stream. A zero (or negative) field
// selects its default. Exceeding a limit yields an error wrapping ErrLimit.
type Limits struct {
	// MaxAttributes is the largest number of attributes read.
	// Default: 10000.
	MaxAttributes int
	// MaxAttributeBytes is the largest declared data length accepted for any
	// attribute, whether it is examined or skipped. Default: 64 MiB.
	MaxAttributeBytes int64
	// MaxTotalBytes is the largest stream size accepted, signature and key
	// included. Default: 200 MiB.
	MaxTotalBytes int64
	// MaxProps is the largest property count accepted in an attMAPIProps
	// attribute. Default: 100000.
	MaxProps int
}

// Default limits, used for zero fields of Limits.
const (
	DefaultMaxAttributes     = 10000
	DefaultMaxAttributeBytes = 64 << 20
	DefaultMaxTotalBytes     = 200 << 20
	DefaultMaxProps          = 100000
)

func (l Limits) withDefaults() Limits {
	if l.MaxAttributes <= 0 {
		l.MaxAttributes = DefaultMaxAttributes
	}
	if l.MaxAttributeBytes <= 0 {
		l.MaxAttributeBytes = DefaultMaxAttributeBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if l.MaxProps <= 0 {
		l.MaxProps = DefaultMaxProps
	}
	return l
}

// Info is what Scan learns from a TNEF stream.
type Info struct {
	// Key is the 16-bit key that follows the signature.
	Key uint16
	// AttributeClass is the data of the first message-level attMessageClass
	// attribute up to its terminating NUL, or "" if there is none. Exchange
	// writes legacy names here for some classes, e.g.
	// "IPM.Microsoft Mail.Note" for IPM.Note.
	AttributeClass string
	// PropertyClass is the first PidTagMessageClass property (0x001A, string8
	// or Unicode) of the message-level attMAPIProps attribute, without
	// terminating NULs, or "" if there is none. It holds the MAPI name of
	// the class (e.g. "IPM.Note").
	PropertyClass string
	// Correlator is the first PidTagTnefCorrelationKey property (0x007F0102)
	// of the message-level attMAPIProps attribute, without terminating NULs,
	// or "" if there is none. Exchange ignores the MAPI properties of a TNEF
	// part unless this value equals the X-MS-TNEF-Correlator header field of
	// the message (MS-OXCMAIL).
	Correlator string
}

// MessageClass returns AttributeClass if it is not empty and PropertyClass
// otherwise.
func (info *Info) MessageClass() string {
	if info.AttributeClass != "" {
		return info.AttributeClass
	}
	return info.PropertyClass
}

// MessageClass reads the TNEF stream r to its end and returns its message
// class: the attMessageClass attribute if present, PidTagMessageClass from
// the attMAPIProps attribute otherwise (see Info.MessageClass). It returns
// ErrNoMessageClass if the stream is well-formed but has neither.
//
// The attMessageClass value is returned as stored, in the stream's OEM code
// page; message classes are ASCII in practice.
func MessageClass(r io.Reader, lim Limits) (string, error) {
	info, err := Scan(r, lim)
	if err != nil {
		return "", err
	}
	class := info.MessageClass()
	if class == "" {
		return "", ErrNoMessageClass
	}
	return class, nil
}

// Key reads the signature and the 16-bit key that start a TNEF stream. It
// reads at most six bytes from r, so r can be read further afterwards.
//
// The key is a legacy field of the stream format. The value Exchange checks
// against the X-MS-TNEF-Correlator header field is a MAPI property inside
// the stream, reported by Scan as Info.Correlator.
func Key(r io.Reader) (uint16, error) {
	var b [6]byte
	n, err := io.ReadFull(r, b[:])
	return parseHeader(b[:n], err)
}

// parseHeader checks the signature and returns the key from b, the bytes
// read of the 6-byte stream header, and err, the error of that read.
func parseHeader(b []byte, err error) (uint16, error) {
	var sig [4]byte
	binary.LittleEndian.PutUint32(sig[:], Signature)
	for i := 0; i < len(b) && i < len(sig); i++ {
		if b[i] != sig[i] {
			return 0, fmt.Errorf("%w: signature % x, want % x", ErrNotTNEF, b[:min(len(b), 4)], sig)
		}
	}
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return 0, fmt.Errorf("%w: %d-byte input, the stream header is 6 bytes", ErrTruncated, len(b))
	case err != nil:
		return 0, fmt.Errorf("tnef: reading stream header: %w", err)
	}
	return binary.LittleEndian.Uint16(b[4:6]), nil
}

// Scan reads the TNEF stream r to its end and reports its key, message
// classes and correlation key.
//
// Only message-level (level 1) attMessageClass and attMAPIProps attributes
// are examined; all other attribute data is skipped unread. The checksum of
// attMessageClass is verified; other checksums are ignored. Data after the
// last attribute that cannot start an attribute (a byte other than level 1
// or 2 where the next attribute would begin) is ignored as trailing garbage,
// as some encoders append a line break or other bytes; the input ending
// inside an attribute is an error wrapping ErrTruncated.
//
// Scan reads r through a buffer and may read past the end of the stream.
// Errors from r other than io.EOF are returned wrapped.
func Scan(r io.Reader, lim Limits) (*Info, error) {
	s := &scanner{br: bufio.NewReader(r), lim: lim.withDefaults(), attr: -1}
	return s.scan()
}

// scanner holds the state of one Scan.
type scanner struct {
	br  *bufio.Reader
	lim Limits
	off int64 // stream bytes consumed so far

	// The attribute being read, for error context.
	attr      int // index, -1 before the first attribute
	attrID    uint32
	attrStart int64
}

func (s *scanner) scan() (*Info, error) {
	var hdr [6]byte
	n, err := io.ReadFull(s.br, hdr[:])
	s.off += int64(n)
	key, err := parseHeader(hdr[:n], err)
	if err != nil {
		return nil, err
	}
	info := &Info{Key: key}
	for i := 0; ; i++ {
		start := s.off
		level, err := s.br.ReadByte()
		if err == io.EOF {
			return info, nil
		} else if err != nil {
			return nil, fmt.Errorf("tnef: reading stream at offset %d: %w", s.off, err)
		}
		s.off++
		if level != levelMessage && level != levelAttachment {
			if i == 0 {
				return nil, s.errf(ErrMalformed, "invalid attribute level %#02x", level)
			}
			// Trailing garbage: the stream ended with the previous
			// attribute.
			return info, nil
		}
		if i >= s.lim.MaxAttributes {
			return nil, s.errf(ErrLimit, "more than %d attributes", s.lim.MaxAttributes)
		}
		var h [8]byte
		if err := s.readFull(h[:]); err != nil {
			return nil, s.wrap(err, "attribute header")
		}
		id := binary.LittleEndian.Uint32(h[0:4])
		size := int64(binary.LittleEndian.Uint32(h[4:8]))
		s.attr, s.attrID, s.attrStart = i, id, start
		if size > s.lim.MaxAttributeBytes {
			return nil, s.errf(ErrLimit, "attribute length %d exceeds %d", size, s.lim.MaxAttributeBytes)
		}
		if end := s.off + size + 2; end > s.lim.MaxTotalBytes {
			return nil, s.errf(ErrLimit, "attribute ends at byte %d, stream limit is %d", end, s.lim.MaxTotalBytes)
		}
		switch {
		case level == levelMessage && id == attMessageClass:
			class, err := s.readMessageClass(size)
			if err != nil {
				return nil, err
			}
			if info.AttributeClass == "" {
				info.AttributeClass = class
			}
		case level == levelMessage && id == attMAPIProps:
			pr := propReader{s: s, left: size}
			if err := pr.scan(info); err != nil {
				return nil, err
			}
			if err := s.skip(2); err != nil { // checksum, not verified
				return nil, s.wrap(err, "attribute checksum")
			}
		default:
			if err := s.skip(size + 2); err != nil {
				return nil, s.wrap(err, "attribute data")
			}
		}
	}
}

// readMessageClass reads size bytes of attMessageClass data and its checksum
// and returns the data up to the first NUL.
func (s *scanner) readMessageClass(size int64) (string, error) {
	if size > maxValueBytes {
		return "", s.errf(ErrLimit, "attMessageClass length %d exceeds %d", size, maxValueBytes)
	}
	b := make([]byte, size+2)
	if err := s.readFull(b); err != nil {
		return "", s.wrap(err, "attMessageClass")
	}
	data := b[:size]
	if got, want := checksum(data), binary.LittleEndian.Uint16(b[size:]); got != want {
		return "", s.errf(ErrMalformed, "attMessageClass checksum %#04x, want %#04x", want, got)
	}
	return cString(data), nil
}

// readFull reads len(p) bytes; running out of input is ErrTruncated.
func (s *scanner) readFull(p []byte) error {
	n, err := io.ReadFull(s.br, p)
	s.off += int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return ErrTruncated
	}
	return err
}

// skip discards n bytes; running out of input is ErrTruncated.
func (s *scanner) skip(n int64) error {
	m, err := io.CopyN(io.Discard, s.br, n)
	s.off += m
	if err == io.EOF {
		return ErrTruncated
	}
	return err
}

// wrap adds context to an error from readFull or skip.
func (s *scanner) wrap(err error, what string) error {
	if err == ErrTruncated {
		return s.errf(ErrTruncated, "input ends inside %s", what)
	}
	return fmt.Errorf("tnef: reading %s at offset %d: %w", what, s.off, err)
}

// errf returns sentinel wrapped with a description and the current position.
func (s *scanner) errf(sentinel error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if s.attr < 0 {
		return fmt.Errorf("%w: %s (offset %d)", sentinel, msg, s.off)
	}
	return fmt.Errorf("%w: attribute %d (ID %#08x at offset %d): %s (offset %d)",
		sentinel, s.attr, s.attrID, s.attrStart, msg, s.off)
}

// checksum returns the TNEF checksum of data: the sum of its bytes modulo
// 65536.
func checksum(data []byte) uint16 {
	var sum uint16
	for _, b := range data {
		sum += uint16(b)
	}
	return sum
}

// cString returns b up to its first NUL byte.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
