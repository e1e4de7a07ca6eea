package relaytest

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// rawFields returns the raw bytes of every field of h, top to bottom.
func rawFields(h textproto.Header) ([][]byte, error) {
	var out [][]byte
	for f := h.Fields(); f.Next(); {
		raw, err := f.Raw()
		if err != nil {
			return nil, fmt.Errorf("header field %q: %w", f.Key(), err)
		}
		out = append(out, raw)
	}
	return out, nil
}

// headerOf builds a header holding exactly the given raw fields, in order.
// Each raw field must contain a colon and end with CRLF.
func headerOf(raws [][]byte) textproto.Header {
	var h textproto.Header
	// AddRaw inserts at the top, so add bottom-up.
	for i := len(raws) - 1; i >= 0; i-- {
		h.AddRaw(raws[i])
	}
	return h
}

// mapFields rebuilds h, replacing every field by what fn returns for it
// (nothing to drop it, the field itself to keep it). key is the field name
// as written, value its unfolded value.
func mapFields(h textproto.Header, fn func(key string, raw []byte) [][]byte) (textproto.Header, error) {
	raws, err := rawFields(h)
	if err != nil {
		return textproto.Header{}, err
	}
	var out [][]byte
	for _, raw := range raws {
		out = append(out, fn(fieldName(raw), raw)...)
	}
	return headerOf(out), nil
}

// fieldName returns the name of a raw header field as written (original
// case, surrounding blanks removed).
func fieldName(raw []byte) string {
	i := bytes.IndexByte(raw, ':')
	if i < 0 {
		return ""
	}
	return strings.TrimRight(string(raw[:i]), " \t")
}

// hasPrefixFold reports whether s begins with prefix, ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// unfold removes the line breaks of a folded header field (RFC 5322 section
// 2.2.3: a CRLF immediately followed by WSP is removed, the WSP is kept) and
// its final line ending.
func unfold(raw []byte) []byte {
	raw = bytes.TrimRight(raw, "\r\n")
	var out []byte
	for {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			return append(out, raw...)
		}
		line := raw[:i]
		line = bytes.TrimSuffix(line, []byte("\r"))
		out = append(out, line...)
		raw = raw[i+1:]
	}
}

// refold unfolds a raw header field and folds it again so that no line is
// longer than width where a blank allows it. Folds are placed before a space
// or tab, so unfolding the result gives back exactly the unfolded input: the
// field's meaning does not change, its bytes usually do.
func refold(raw []byte, width int) []byte {
	line := unfold(raw)
	colon := bytes.IndexByte(line, ':')
	var out []byte
	for len(line) > width {
		// Last blank at or before width, not inside the field name and not
		// directly after the colon (that would leave a name-only line).
		cut := -1
		for i := width; i > colon+1 && i > 0; i-- {
			if i < len(line) && (line[i] == ' ' || line[i] == '\t') && !isBlankOnly(line[:i]) {
				cut = i
				break
			}
		}
		if cut < 0 {
			// No blank early enough: fold at the first blank after width.
			for i := width + 1; i < len(line); i++ {
				if line[i] == ' ' || line[i] == '\t' {
					cut = i
					break
				}
			}
		}
		if cut < 0 {
			break
		}
		out = append(out, line[:cut]...)
		out = append(out, '\r', '\n')
		line = line[cut:]
		colon = -1
	}
	out = append(out, line...)
	return append(out, '\r', '\n')
}

func isBlankOnly(b []byte) bool {
	return len(bytes.Trim(b, " \t")) == 0
}

// exactField is one header field with its bytes exactly as they appear in
// the message, line endings included.
type exactField struct {
	Name string // as written
	Raw  []byte
}

// exactFields splits the header of a message into fields without any
// normalization. It is written in-house because go-message's textproto
// rewrites every line ending of a raw field to CRLF, and the recall identity
// check must notice a changed line ending too. Lines before the first field
// that are not fields, and lines without a colon, are returned with an empty
// name.
func exactFields(msg []byte) []exactField {
	header, _ := splitHeaderBody(msg)
	var fields []exactField
	for off := 0; off < len(header); {
		nl := bytes.IndexByte(header[off:], '\n')
		end := len(header)
		if nl >= 0 {
			end = off + nl + 1
		}
		line := header[off:end]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the blank line ending the header
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			last := &fields[len(fields)-1]
			last.Raw = header[off-len(last.Raw) : end]
		} else {
			fields = append(fields, exactField{Name: fieldName(line), Raw: line})
		}
		off = end
	}
	return fields
}
