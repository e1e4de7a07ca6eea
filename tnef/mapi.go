package tnef

import (
	"encoding/binary"
	"unicode/utf16"
)

// MAPI property types ([MS-OXCDATA] section 2.11.1) as encoded in attMAPIProps.
const (
	ptInteger16    = 0x0002
	ptInteger32    = 0x0003
	ptFloating32   = 0x0004
	ptFloating64   = 0x0005
	ptCurrency     = 0x0006
	ptFloatingTime = 0x0007
	ptErrorCode    = 0x000A
	ptBoolean      = 0x000B
	ptObject       = 0x000D
	ptInteger64    = 0x0014
	ptString8      = 0x001E
	ptUnicode      = 0x001F
	ptTime         = 0x0040
	ptGUID         = 0x0048
	ptServerID     = 0x00FB
	ptBinary       = 0x0102

	ptMultiValued = 0x1000
)

// Property IDs the reader looks for.
const (
	pidMessageClass   = 0x001A // PidTagMessageClass
	pidCorrelationKey = 0x007F // PidTagTnefCorrelationKey, binary

	firstNamedID = 0x8000 // IDs from here on are named properties
)

// Kinds of named property names.
const (
	mnidID     = 0
	mnidString = 1
)

// fixedSize returns the encoded size of a value of the fixed-length property
// type typ before padding, or 0 if typ is not a fixed-length type.
func fixedSize(typ uint16) int64 {
	switch typ {
	case ptInteger16, ptBoolean:
		return 2
	case ptInteger32, ptFloating32, ptErrorCode:
		return 4
	case ptFloating64, ptCurrency, ptFloatingTime, ptInteger64, ptTime:
		return 8
	case ptGUID:
		return 16
	}
	return 0
}

// isVariable reports whether typ is a variable-length property type, encoded
// as a value count followed by (length, data, padding) per value.
func isVariable(typ uint16) bool {
	switch typ {
	case ptString8, ptUnicode, ptBinary, ptObject, ptServerID:
		return true
	}
	return false
}

// pad4 returns n rounded up to a multiple of 4.
func pad4(n int64) int64 {
	return (n + 3) &^ 3
}

// propReader parses the data of an attMAPIProps attribute as it streams by.
// Every read is checked against left, the attribute bytes not yet consumed,
// before any input is read or memory allocated.
//
// The encoding (MsgPropertyList in [MS-OXTNEF]) is a 4-byte property
// count, then per property: a 2-byte type and a 2-byte ID; for IDs of 0x8000
// and above a 16-byte property set GUID, a 4-byte kind and either a 4-byte
// numeric name (kind 0) or a 4-byte byte length and a UTF-16LE name padded to
// 4 bytes (kind 1); then the value. A single fixed-length value is stored
// padded to 4 bytes. Multi-valued and variable-length types store a 4-byte
// value count, then each value: fixed-length ones padded to 4 bytes,
// variable-length ones as a 4-byte length and the data padded to 4 bytes.
type propReader struct {
	s    *scanner
	left int64
}

// scan reads the whole property list, records PidTagMessageClass and
// PidTagTnefCorrelationKey in info, and skips any bytes after the last
// property.
func (p *propReader) scan(info *Info) error {
	count, err := p.u32("property count")
	if err != nil {
		return err
	}
	if int64(count) > int64(p.s.lim.MaxProps) {
		return p.s.errf(ErrLimit, "%d MAPI properties, limit is %d", count, p.s.lim.MaxProps)
	}
	// Each property takes at least its 4-byte tag.
	if int64(count)*4 > p.left {
		return p.s.errf(ErrMalformed, "%d MAPI properties cannot fit in %d bytes", count, p.left)
	}
	for i := uint32(0); i < count; i++ {
		if err := p.prop(info); err != nil {
			return err
		}
	}
	// Bytes after the declared properties are not covered by the
	// specification; tolerate them.
	return p.skip(p.left, "data after the MAPI properties")
}

// prop reads one property.
func (p *propReader) prop(info *Info) error {
	typ, err := p.u16("property type")
	if err != nil {
		return err
	}
	id, err := p.u16("property ID")
	if err != nil {
		return err
	}
	if id >= firstNamedID {
		if err := p.skip(16, "named property GUID"); err != nil {
			return err
		}
		kind, err := p.u32("named property kind")
		if err != nil {
			return err
		}
		switch kind {
		case mnidID:
			if err := p.skip(4, "named property ID"); err != nil {
				return err
			}
		case mnidString:
			n, err := p.u32("named property name length")
			if err != nil {
				return err
			}
			if err := p.skip(pad4(int64(n)), "named property name"); err != nil {
				return err
			}
		default:
			return p.s.errf(ErrMalformed, "named property kind %d", kind)
		}
	}

	base := typ &^ ptMultiValued
	multi := typ&ptMultiValued != 0
	if size := fixedSize(base); size > 0 {
		n := int64(1)
		if multi {
			c, err := p.u32("value count")
			if err != nil {
				return err
			}
			n = int64(c)
		}
		// n*pad4(size) cannot overflow: n < 2^32, pad4(size) <= 16.
		return p.skip(n*pad4(size), "property value")
	}
	if !isVariable(base) {
		return p.s.errf(ErrMalformed, "property %#04x has unknown type %#04x", id, typ)
	}

	c, err := p.u32("value count")
	if err != nil {
		return err
	}
	n := int64(c)
	// Each value takes at least its 4-byte length.
	if n*4 > p.left {
		return p.s.errf(ErrMalformed, "%d values cannot fit in %d bytes", n, p.left)
	}
	var dst *string
	switch {
	case id == pidMessageClass && (typ == ptString8 || typ == ptUnicode) && info.PropertyClass == "":
		dst = &info.PropertyClass
	case id == pidCorrelationKey && typ == ptBinary && info.Correlator == "":
		dst = &info.Correlator
	}
	for j := int64(0); j < n; j++ {
		size, err := p.u32("value length")
		if err != nil {
			return err
		}
		if dst != nil && j == 0 {
			b, err := p.value(int64(size))
			if err != nil {
				return err
			}
			if typ == ptUnicode {
				*dst = decodeUTF16(b)
			} else {
				*dst = cString(b)
			}
			if err := p.skip(pad4(int64(size))-int64(size), "value padding"); err != nil {
				return err
			}
			continue
		}
		if err := p.skip(pad4(int64(size)), "property value"); err != nil {
			return err
		}
	}
	return nil
}

// need checks that n more bytes are left in the attribute.
func (p *propReader) need(n int64, what string) error {
	if n > p.left {
		return p.s.errf(ErrMalformed, "%s of %d bytes overruns the attribute (%d bytes left)", what, n, p.left)
	}
	return nil
}

func (p *propReader) read(b []byte, what string) error {
	if err := p.need(int64(len(b)), what); err != nil {
		return err
	}
	p.left -= int64(len(b))
	if err := p.s.readFull(b); err != nil {
		return p.s.wrap(err, what)
	}
	return nil
}

func (p *propReader) skip(n int64, what string) error {
	if err := p.need(n, what); err != nil {
		return err
	}
	p.left -= n
	if err := p.s.skip(n); err != nil {
		return p.s.wrap(err, what)
	}
	return nil
}

func (p *propReader) u16(what string) (uint16, error) {
	var b [2]byte
	if err := p.read(b[:], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b[:]), nil
}

func (p *propReader) u32(what string) (uint32, error) {
	var b [4]byte
	if err := p.read(b[:], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

// value reads a property value of n bytes that the reader keeps.
func (p *propReader) value(n int64) ([]byte, error) {
	if err := p.need(n, "property value"); err != nil {
		return nil, err
	}
	if n > maxValueBytes {
		return nil, p.s.errf(ErrLimit, "property value of %d bytes exceeds %d", n, maxValueBytes)
	}
	b := make([]byte, n)
	if err := p.read(b, "property value"); err != nil {
		return nil, err
	}
	return b, nil
}

// decodeUTF16 decodes UTF-16LE text up to its first NUL character. A trailing
// odd byte is ignored; unpaired surrogates become U+FFFD.
func decodeUTF16(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
