package relaytest

import (
	"bytes"
	"encoding/binary"
	"time"
	"unicode/utf16"
)

// A minimal TNEF (Transport Neutral Encapsulation Format, winmail.dat)
// writer, [MS-OXTNEF]. No Go library writes TNEF, so this is in-house; it
// produces just what Exchange-generated test messages need: the stream
// signature and key, message-level attributes with checksums, the
// attMessageClass attribute and an attMsgProps block carrying the MAPI
// properties that tie the stream to its message (PR_TNEF_CORRELATION_KEY)
// and describe it.

const (
	tnefSignature = 0x223E9F78

	tnefLevelMessage = 0x01

	attTnefVersion  = 0x00089006
	attOemCodepage  = 0x00069007
	attMessageClass = 0x00078008
	attPriority     = 0x0004800D
	attDateSent     = 0x00038005
	attSubject      = 0x00018004
	attMsgProps     = 0x00069003

	ptLong    = 0x0003
	ptBoolean = 0x000B
	ptUnicode = 0x001F
	ptBinary  = 0x0102

	prMessageClassW      = 0x001A<<16 | ptUnicode
	prSubjectW           = 0x0037<<16 | ptUnicode
	prBodyW              = 0x1000<<16 | ptUnicode
	prTNEFCorrelationKey = 0x007F<<16 | ptBinary
	prInternetCPID       = 0x3FDE<<16 | ptLong
	prRTFInSync          = 0x0E1F<<16 | ptBoolean
)

// tnefMessage describes the winmail.dat stream to write.
type tnefMessage struct {
	Key          uint16    // the stream key (any non-zero value)
	MessageClass string    // e.g. "IPM.Note", "IPM.Outlook.Recall"
	Subject      string    // ASCII for the legacy attSubject attribute
	Body         string    // plain text body
	Correlator   string    // X-MS-TNEF-Correlator value (the Message-ID)
	Sent         time.Time // attDateSent
}

// bytes encodes m as a TNEF stream.
func (m tnefMessage) bytes() []byte {
	var buf bytes.Buffer
	le := binary.LittleEndian
	buf.Write(le.AppendUint32(nil, tnefSignature))
	buf.Write(le.AppendUint16(nil, m.Key))

	attr := func(id uint32, data []byte) {
		buf.WriteByte(tnefLevelMessage)
		buf.Write(le.AppendUint32(nil, id))
		buf.Write(le.AppendUint32(nil, uint32(len(data))))
		buf.Write(data)
		buf.Write(le.AppendUint16(nil, tnefChecksum(data)))
	}
	attr(attTnefVersion, le.AppendUint32(nil, 0x00010000))
	attr(attOemCodepage, le.AppendUint32(le.AppendUint32(nil, 1252), 0))
	attr(attPriority, le.AppendUint16(nil, 2))
	attr(attDateSent, tnefDate(m.Sent))
	attr(attMessageClass, append([]byte(m.MessageClass), 0))
	attr(attSubject, append([]byte(m.Subject), 0))

	var props propWriter
	props.unicode(prMessageClassW, m.MessageClass)
	props.unicode(prSubjectW, m.Subject)
	props.unicode(prBodyW, m.Body)
	props.binary(prTNEFCorrelationKey, append([]byte(m.Correlator), 0))
	props.long(prInternetCPID, 65001)
	props.long(prRTFInSync, 1)
	attr(attMsgProps, props.bytes())
	return buf.Bytes()
}

// tnefChecksum is the attribute checksum: the sum of the data bytes modulo
// 65536.
func tnefChecksum(data []byte) uint16 {
	var sum uint16
	for _, b := range data {
		sum += uint16(b)
	}
	return sum
}

// tnefDate encodes a TNEF date attribute: year, month, day, hour, minute,
// second and day of week, as 16-bit little-endian integers.
func tnefDate(t time.Time) []byte {
	t = t.UTC()
	var out []byte
	for _, v := range []int{t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second(), int(t.Weekday())} {
		out = binary.LittleEndian.AppendUint16(out, uint16(v))
	}
	return out
}

// propWriter encodes a MAPI property list as stored in attMsgProps: a count,
// then for each property its tag and value; variable-length values carry a
// value count and a length and are padded to four bytes.
type propWriter struct {
	n   uint32
	buf bytes.Buffer
}

func (p *propWriter) tag(tag uint32) {
	p.n++
	p.buf.Write(binary.LittleEndian.AppendUint32(nil, tag))
}

func (p *propWriter) long(tag uint32, v uint32) {
	p.tag(tag)
	p.buf.Write(binary.LittleEndian.AppendUint32(nil, v))
}

func (p *propWriter) binary(tag uint32, v []byte) {
	p.tag(tag)
	le := binary.LittleEndian
	p.buf.Write(le.AppendUint32(nil, 1))
	p.buf.Write(le.AppendUint32(nil, uint32(len(v))))
	p.buf.Write(v)
	for i := len(v); i%4 != 0; i++ {
		p.buf.WriteByte(0)
	}
}

func (p *propWriter) unicode(tag uint32, s string) {
	var v []byte
	for _, u := range utf16.Encode([]rune(s)) {
		v = binary.LittleEndian.AppendUint16(v, u)
	}
	p.binary(tag, append(v, 0, 0))
}

func (p *propWriter) bytes() []byte {
	return append(binary.LittleEndian.AppendUint32(nil, p.n), p.buf.Bytes()...)
}
