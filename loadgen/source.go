package loadgen

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/recallrelay/recallrelay/relaytest"
)

// Message is one message of a Source: its envelope and its content, which
// is written, never held whole.
type Message struct {
	From     string
	To       []string
	UTF8     bool  // the envelope needs SMTPUTF8
	EightBit bool  // the content has 8-bit bytes (MAIL ... BODY=8BITMIME)
	Size     int64 // exactly the bytes Content writes
	// Content writes the message: CRLF lines, ending in CRLF, not
	// dot-stuffed. It may be called more than once.
	Content io.WriterTo
}

// Bytes returns the whole content (for tests and small messages).
func (m Message) Bytes() []byte {
	var b bytes.Buffer
	b.Grow(int(m.Size))
	_, _ = m.Content.WriteTo(&b)
	return b.Bytes()
}

// A Source makes the messages of a run. Message(i) is the i-th message
// (i from 0); it must be safe for concurrent use and deterministic, so that
// a test can make message i again and compare it with what a server got.
type Source interface {
	Message(i int64) Message
	// Describe says what the messages are, for reports.
	Describe() string
}

// Default envelope, the one smtp-source uses in the peer benchmark.
const (
	DefaultFrom = "sender@example.com"
	DefaultRcpt = "rcpt@example.com"
)

// idWidth is the fixed width of the message number in Message-IDs, so a
// message's size does not depend on its number.
const idWidth = 10

func seqString(nonce string, i int64) string {
	return fmt.Sprintf("LG%s.%0*d", nonce, idWidth, i%10_000_000_000)
}

// NewNonce returns 8 random hex digits, to tell runs' Message-IDs apart
// (a relay that suppresses duplicates must not see a run's messages as
// repeats of the previous run's).
func NewNonce() string { return fmt.Sprintf("%08x", rand.Uint32()) }

// ---------------------------------------------------------------- synthetic --

// SyntheticOptions configures NewSynthetic.
type SyntheticOptions struct {
	Size  int64    // exact size of every message in bytes
	From  string   // DefaultFrom when empty
	To    []string // DefaultRcpt when empty
	Nonce string   // in every Message-ID; NewNonce() when empty
}

// Synthetic makes text/plain messages of an exact size: a small header
// block with a unique Message-ID, then dot-safe CRLF lines (printable ASCII
// words, 40 to 78 characters, never starting with '.') streamed from one
// precomputed 64 KiB block, so any size costs the same memory.
type Synthetic struct {
	opts SyntheticOptions
	hlen int64 // header size without padding
}

// syntheticSubject begins the Subject of a synthetic message.
const syntheticSubject = "loadgen message "

// NewSynthetic returns the source; it fails when Size is smaller than the
// header block (about 300 bytes).
func NewSynthetic(o SyntheticOptions) (*Synthetic, error) {
	if o.From == "" {
		o.From = DefaultFrom
	}
	if len(o.To) == 0 {
		o.To = []string{DefaultRcpt}
	}
	if o.Nonce == "" {
		o.Nonce = NewNonce()
	}
	s := &Synthetic{opts: o}
	s.hlen = int64(len(s.header(0, 0)))
	if o.Size < s.hlen {
		return nil, fmt.Errorf("message size %d is below the %d-byte header block", o.Size, s.hlen)
	}
	return s, nil
}

func (s *Synthetic) Describe() string {
	return fmt.Sprintf("synthetic text/plain, %s", FormatSize(s.opts.Size))
}

func (s *Synthetic) header(i int64, pad int) []byte {
	var b bytes.Buffer
	b.WriteString("From: Load Generator <" + s.opts.From + ">\r\n")
	b.WriteString("To: ")
	for k, t := range s.opts.To {
		if k > 0 {
			b.WriteString(",\r\n ")
		}
		b.WriteString("<" + t + ">")
	}
	b.WriteString("\r\nSubject: " + syntheticSubject + seqString(s.opts.Nonce, i) + strings.Repeat("+", pad) + "\r\n")
	b.WriteString("Date: Mon, 03 Mar 2025 08:00:00 +0000\r\n")
	b.WriteString("Message-ID: <" + seqString(s.opts.Nonce, i) + "@loadgen.invalid>\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	return b.Bytes()
}

func (s *Synthetic) Message(i int64) Message {
	pad := 0
	if s.opts.Size-s.hlen == 1 { // a line needs at least CRLF: grow the header instead
		pad = 1
	}
	h := s.header(i, pad)
	return Message{
		From: s.opts.From, To: s.opts.To, Size: s.opts.Size,
		Content: &textContent{head: h, body: s.opts.Size - int64(len(h))},
	}
}

// textContent is a header followed by n bytes of dot-safe lines.
type textContent struct {
	head []byte
	body int64
}

func (c *textContent) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(c.head)
	total := int64(n)
	if err != nil {
		return total, err
	}
	m, err := writeLines(w, textBlock, c.body)
	return total + m, err
}

// lineBlock is a precomputed run of complete CRLF lines.
type lineBlock struct {
	data []byte
	ends []int // end offset of every line, ascending
	fill []byte
}

// textBlock: words, lines of 40 to 78 characters; fill makes a final line
// of any length (letters: dot-safe).
var textBlock = func() *lineBlock {
	words := strings.Fields("the relay keeps mail internal and recallable while it makes a round trip " +
		"through a third party service signature scanner exchange online connector header message " +
		"tenant vendor return leg record restore quarterly report meeting agenda budget forecast " +
		"please review attached draft thanks regards team project update schedule")
	rng := rand.New(rand.NewPCG(1, 2))
	b := &lineBlock{fill: bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz"), 40)}
	for len(b.data) < 64<<10-100 {
		want := 40 + rng.IntN(39)
		line := words[rng.IntN(len(words))]
		for len(line) < want {
			w := words[rng.IntN(len(words))]
			if len(line)+1+len(w) > 78 {
				break
			}
			line += " " + w
		}
		b.data = append(b.data, line...)
		b.data = append(b.data, '\r', '\n')
		b.ends = append(b.ends, len(b.data))
	}
	return b
}()

// writeLines writes exactly n bytes of complete CRLF lines from blk: whole
// blocks, then a prefix of the block ending at a line end, then one final
// line of filler (at least CRLF). n == 1 cannot be done and writes nothing
// (callers avoid it).
func writeLines(w io.Writer, blk *lineBlock, n int64) (int64, error) {
	var total int64
	for left := n - total; left >= int64(len(blk.data)) && left-int64(len(blk.data)) != 1; left = n - total {
		k, err := w.Write(blk.data)
		total += int64(k)
		if err != nil {
			return total, err
		}
	}
	rem := int(n - total)
	if rem == 0 {
		return total, nil
	}
	if rem == 1 {
		return total, errors.New("loadgen: cannot write a 1-byte line")
	}
	// the longest prefix ending at a line end that leaves 0 or >= 2 bytes
	j := sort.SearchInts(blk.ends, rem+1) - 1 // ends[j] <= rem
	prefix := 0
	for ; j >= 0; j-- {
		if d := rem - blk.ends[j]; d == 0 || d >= 2 {
			prefix = blk.ends[j]
			break
		}
	}
	k, err := w.Write(blk.data[:prefix])
	total += int64(k)
	if err != nil || prefix == rem {
		return total, err
	}
	last := rem - prefix // 2 .. longest line + 1
	if last > 2 {
		k, err = w.Write(blk.fill[:last-2])
		total += int64(k)
		if err != nil {
			return total, err
		}
	}
	k, err = w.Write(crlf)
	return total + int64(k), err
}

// crlf is the line end writeLines writes after a filler line. Writers must
// not modify it (io.Writer).
var crlf = []byte("\r\n")

// ----------------------------------------------------------------- exchange --

// ExchangeOptions configures NewExchange.
type ExchangeOptions struct {
	Seed      int64  // for relaytest.Generate
	OrgDomain string // for relaytest.Generate
	// Size, when positive, is the exact size of every message: only the
	// generated messages with a multipart/mixed body (an attachment, TNEF)
	// are used, each padded with a base64 attachment "padding.bin" written
	// from a precomputed block. Without it the twelve generated messages
	// are sent as they are, in turn.
	Size  int64
	From  string   // MAIL FROM instead of the generated message's
	To    []string // RCPT TO instead of the generated message's
	Nonce string   // in every Message-ID; NewNonce() when empty
}

// Exchange sends relaytest.Generate's realistic Exchange Online messages
// in turn, each with a unique Message-ID (the generated one with
// "LG<nonce>.<number>" put in front of its local part).
type Exchange struct {
	opts  ExchangeOptions
	tmpls []exTemplate
}

type exTemplate struct {
	name          string
	from          string
	to            []string
	utf8, eight   bool
	pre, mid, end []byte // pre + id + mid [+ padding] + end
	// The padding, when Size is set: padHead, padFull full base64 lines of
	// base64Block, then padTail. Built once, shared by every message.
	padHead []byte // "--boundary\r\n...X-Padding: xxx\r\n\r\n"; nil: no padding
	padFull int64  // full base64 lines
	padTail []byte // the last, partial base64 line with its CRLF; nil: none
}

const padHeadFmt = "--%s\r\nContent-Type: application/octet-stream; name=\"padding.bin\"\r\n" +
	"Content-Description: padding.bin\r\nContent-Disposition: attachment; filename=\"padding.bin\"\r\n" +
	"Content-Transfer-Encoding: base64\r\nX-Padding: "

// NewExchange returns the source. It fails when Size is too small for
// every generated message with an attachment.
func NewExchange(o ExchangeOptions) (*Exchange, error) {
	if o.Nonce == "" {
		o.Nonce = NewNonce()
	}
	idLen := len(seqString(o.Nonce, 0)) + 1
	x := &Exchange{opts: o}
	smallest := int64(-1)
	for _, m := range relaytest.Generate(relaytest.GenerateOptions{Seed: o.Seed, OrgDomain: o.OrgDomain}) {
		data := m.Data
		hend := bytes.Index(data, []byte("\r\n\r\n"))
		mid := bytes.Index(data[:hend+2], []byte("\nMessage-ID:"))
		if hend < 0 || mid < 0 {
			continue
		}
		lt := mid + bytes.IndexByte(data[mid:], '<') + 1
		t := exTemplate{name: m.Name, from: m.From, to: m.To, utf8: m.UTF8, eight: has8bit(data),
			pre: data[:lt], mid: data[lt:]}
		if o.From != "" {
			t.from = o.From
		}
		if len(o.To) > 0 {
			t.to = o.To
		}
		if o.Size > 0 {
			boundary, ok := mixedBoundary(data[:hend+2])
			if !ok {
				continue
			}
			closing := bytes.LastIndex(data, []byte("\r\n--"+boundary+"--"))
			if closing < lt {
				continue
			}
			t.mid, t.end = data[lt:closing+2], data[closing+2:]
			head := fmt.Appendf(nil, padHeadFmt, boundary)
			fixed := int64(len(data) + idLen + len(head) + 1 + 4) // X-Padding: x CRLF CRLF
			if smallest < 0 || fixed < smallest {
				smallest = fixed
			}
			avail := o.Size - fixed
			if avail < 0 {
				continue
			}
			fill, partial := 1, 0 // characters of the X-Padding value and of the partial line
			t.padFull = avail / 78
			if rem := int(avail % 78); rem >= 6 {
				partial = (rem - 2) / 4 * 4
				fill += rem - partial - 2
			} else {
				fill += rem
			}
			head = append(head, bytes.Repeat([]byte{'x'}, fill)...)
			t.padHead = append(head, "\r\n\r\n"...)
			if partial > 0 {
				t.padTail = append(base64Block.data[:partial:partial], '\r', '\n')
			}
		}
		x.tmpls = append(x.tmpls, t)
	}
	if len(x.tmpls) == 0 {
		if o.Size > 0 {
			return nil, fmt.Errorf("message size %d is below the smallest padded Exchange message (%d bytes)", o.Size, smallest)
		}
		return nil, errors.New("no generated messages")
	}
	return x, nil
}

func (x *Exchange) Describe() string {
	names := make([]string, len(x.tmpls))
	for i, t := range x.tmpls {
		names[i] = strings.TrimPrefix(t.name, "gen-")
	}
	s := "Exchange messages (" + strings.Join(names, ", ") + ")"
	if x.opts.Size > 0 {
		s += " padded to " + FormatSize(x.opts.Size)
	}
	return s
}

// Templates returns the names of the generated messages used, in turn.
func (x *Exchange) Templates() []string {
	out := make([]string, len(x.tmpls))
	for i, t := range x.tmpls {
		out[i] = t.name
	}
	return out
}

func (x *Exchange) Message(i int64) Message {
	t := &x.tmpls[i%int64(len(x.tmpls))]
	c := &exContent{t: t, id: []byte(seqString(x.opts.Nonce, i) + ".")}
	size := int64(len(t.pre) + len(c.id) + len(t.mid) + len(t.end))
	if t.padHead != nil {
		size += int64(len(t.padHead)+len(t.padTail)) + t.padFull*78
	}
	return Message{From: t.from, To: t.to, UTF8: t.utf8, EightBit: t.eight, Size: size, Content: c}
}

type exContent struct {
	t  *exTemplate
	id []byte
}

func (c *exContent) WriteTo(w io.Writer) (int64, error) {
	t := c.t
	var total int64
	write := func(b []byte) error {
		n, err := w.Write(b)
		total += int64(n)
		return err
	}
	for _, b := range [][]byte{t.pre, c.id, t.mid} {
		if err := write(b); err != nil {
			return total, err
		}
	}
	if t.padHead != nil {
		if err := write(t.padHead); err != nil {
			return total, err
		}
		n, err := writeLines(w, base64Block, t.padFull*78)
		total += n
		if err != nil {
			return total, err
		}
		if t.padTail != nil {
			if err := write(t.padTail); err != nil {
				return total, err
			}
		}
	}
	return total, write(t.end)
}

// base64Block: 840 lines of 76 base64 characters of random bytes (every
// line decodes on its own, as a mail client's encoder writes them).
var base64Block = func() *lineBlock {
	rng := rand.New(rand.NewPCG(3, 4))
	b := &lineBlock{}
	raw := make([]byte, 57)
	for i := 0; i < 840; i++ {
		for k := range raw {
			raw[k] = byte(rng.Uint32())
		}
		b.data = base64.StdEncoding.AppendEncode(b.data, raw)
		b.data = append(b.data, '\r', '\n')
		b.ends = append(b.ends, len(b.data))
	}
	return b
}()

// mixedBoundary returns the boundary of a multipart/mixed header block.
func mixedBoundary(header []byte) (string, bool) {
	lower := bytes.ToLower(header)
	i := bytes.Index(lower, []byte("\ncontent-type:"))
	if i < 0 {
		return "", false
	}
	rest := lower[i+len("\ncontent-type:"):]
	if !bytes.HasPrefix(bytes.TrimLeft(rest, " \t"), []byte("multipart/mixed")) {
		return "", false
	}
	j := bytes.Index(rest, []byte("boundary="))
	if j < 0 {
		return "", false
	}
	v := header[i+len("\ncontent-type:")+j+len("boundary="):]
	if len(v) > 0 && v[0] == '"' {
		v = v[1:]
		if k := bytes.IndexByte(v, '"'); k >= 0 {
			return string(v[:k]), true
		}
		return "", false
	}
	k := bytes.IndexAny(v, "; \t\r\n")
	if k < 0 {
		return "", false
	}
	return string(v[:k]), true
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// FormatSize writes a byte count as "4 KiB", "1 MiB", "1.5 MiB" or "300 B".
func FormatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	f, u := float64(n), 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d %s", int64(f), units[u])
	}
	return fmt.Sprintf("%.1f %s", f, units[u])
}
