package headers

import (
	"crypto/sha256"
	"encoding/hex"
	"mime"
	"net/mail"
	"sort"
	"strconv"
	"strings"

	"github.com/emersion/go-message/charset"
)

// wordDecoder decodes RFC 2047 encoded words in every charset go-message
// knows (ISO-2022-JP, GB2312, Big5, KS C 5601 … all occur in Exchange mail).
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// MessageID returns the msg-id of the message's first Message-ID field,
// normalized for lookups: unfolded, comments and blanks around it removed,
// angle brackets kept. It returns "" when there is none or it is empty.
func (h *Header) MessageID() string {
	return NormalizeMessageID(h.Get("Message-ID"))
}

// NormalizeMessageID extracts "<...>" from a Message-ID field value; a value
// without angle brackets is returned trimmed, as some senders omit them.
func NormalizeMessageID(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j >= 0 {
			return v[i : i+j+1]
		}
	}
	return strings.Join(strings.Fields(v), "")
}

// Fingerprint identifies a message by fields vendors leave alone in meaning,
// even when they re-encode or re-fold them: Date (as an instant), From, To and
// Cc (as sorted, lower-cased address lists) and Subject (decoded, blanks
// collapsed). It is "" when the message has none of these fields. It is a
// fallback index only: the return leg accepts a match by fingerprint only
// when it is unique and the envelope agrees with the record.
func (h *Header) Fingerprint() string {
	date := h.Get("Date")
	from := h.Get("From")
	to := h.Values("To")
	cc := h.Values("Cc")
	subject := h.Get("Subject")
	if date == "" && from == "" && len(to) == 0 && len(cc) == 0 && subject == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString("date=" + normDate(date) + "\x00")
	b.WriteString("from=" + normAddrs([]string{from}) + "\x00")
	b.WriteString("to=" + normAddrs(to) + "\x00")
	b.WriteString("cc=" + normAddrs(cc) + "\x00")
	b.WriteString("subject=" + normText(subject))
	sum := sha256.Sum256([]byte(b.String()))
	return "fp1-" + hex.EncodeToString(sum[:16])
}

func normDate(v string) string {
	if t, err := mail.ParseDate(v); err == nil {
		return strconv.FormatInt(t.Unix(), 10)
	}
	return normText(v)
}

func normAddrs(values []string) string {
	var addrs []string
	p := mail.AddressParser{WordDecoder: wordDecoder}
	for _, v := range values {
		if strings.TrimSpace(v) == "" {
			continue
		}
		list, err := p.ParseList(v)
		if err != nil {
			addrs = append(addrs, normText(v))
			continue
		}
		for _, a := range list {
			addrs = append(addrs, strings.ToLower(a.Address))
		}
	}
	sort.Strings(addrs)
	return strings.Join(addrs, ",")
}

func normText(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		v = d
	}
	return strings.ToLower(strings.Join(strings.Fields(v), " "))
}
