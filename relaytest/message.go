package relaytest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Message is a message with its SMTP envelope, ready to be sent.
type Message struct {
	Name string   // where it came from: a file's base name, or "gen-NN-kind" (see GenerateOptions.NamePrefix)
	Kind string   // what it is ("plain", "tnef", "recall-request", ...); "file" when loaded
	From string   // MAIL FROM address
	To   []string // RCPT TO addresses
	UTF8 bool     // the envelope needs SMTPUTF8
	Data []byte   // the message, CRLF line endings, ending with CRLF
}

// Default fallback addresses of a Loader.
const (
	DefaultFallbackFrom = "sender@relaytest.invalid"
	DefaultFallbackRcpt = "postmaster@relaytest.invalid"
)

// Loader reads .eml files into Messages. The zero value is ready to use.
type Loader struct {
	// FallbackFrom is the MAIL FROM used when the header names no sender;
	// DefaultFallbackFrom when empty.
	FallbackFrom string
	// FallbackRcpts are the recipients used when the header names none;
	// DefaultFallbackRcpt when empty.
	FallbackRcpts []string
}

// LoadDir reads every .eml file of dir with a zero Loader.
func LoadDir(dir string) ([]Message, error) { return Loader{}.LoadDir(dir) }

// LoadFile reads one .eml file with a zero Loader.
func LoadFile(path string) (Message, error) { return Loader{}.LoadFile(path) }

// LoadDir reads every file of dir whose name ends in ".eml" (any case), sorted
// by name; subdirectories are not read.
func (l Loader) LoadDir(dir string) ([]Message, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("relaytest: load %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.EqualFold(filepath.Ext(e.Name()), ".eml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	out := make([]Message, 0, len(names))
	for _, name := range names {
		m, err := l.LoadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// LoadFile reads one message file. Bare LF line endings become CRLF and a
// missing final line ending is added (an SMTP client adds it anyway, and
// byte comparisons must see what is sent). The envelope comes from the
// header: MAIL FROM is the address in From (else Sender, else Return-Path),
// the recipients are the To and Cc addresses without duplicates; the
// Loader's fallbacks fill in what the header lacks. UTF8 is set when an
// envelope address is not ASCII.
func (l Loader) LoadFile(path string) (Message, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Message{}, fmt.Errorf("relaytest: load: %w", err)
	}
	data := ToCRLF(raw)
	m, err := l.FromData(data)
	if err != nil {
		return Message{}, fmt.Errorf("relaytest: load %s: %w", path, err)
	}
	m.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	return m, nil
}

// FromData builds a Message (Kind "file") from CRLF message data, taking the
// envelope from its header as LoadFile describes.
func (l Loader) FromData(data []byte) (Message, error) {
	rawHeader, _ := splitHeaderBody(data)
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(rawHeader)))
	if err != nil && !errors.Is(err, io.EOF) {
		return Message{}, fmt.Errorf("parse header: %w", err)
	}
	m := Message{Kind: "file", Data: data}
	for _, key := range []string{"From", "Sender", "Return-Path"} {
		if addrs := headerAddresses(h, key); len(addrs) > 0 {
			m.From = addrs[0]
			break
		}
	}
	if m.From == "" {
		m.From = l.FallbackFrom
		if m.From == "" {
			m.From = DefaultFallbackFrom
		}
	}
	seen := make(map[string]bool)
	for _, key := range []string{"To", "Cc"} {
		for _, a := range headerAddresses(h, key) {
			if k := strings.ToLower(a); !seen[k] {
				seen[k] = true
				m.To = append(m.To, a)
			}
		}
	}
	if len(m.To) == 0 {
		m.To = append([]string(nil), l.FallbackRcpts...)
		if len(m.To) == 0 {
			m.To = []string{DefaultFallbackRcpt}
		}
	}
	m.UTF8 = !isASCII(m.From)
	for _, a := range m.To {
		if !isASCII(a) {
			m.UTF8 = true
		}
	}
	return m, nil
}

// ToCRLF returns data with every bare LF turned into CRLF and a final CRLF
// added when data does not end with a line ending. CRLF pairs are kept.
func ToCRLF(data []byte) []byte {
	out := make([]byte, 0, len(data)+bytes.Count(data, []byte("\n"))+2)
	for i, c := range data {
		if c == '\n' && (i == 0 || data[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// addrParser parses address lists without decoding display names into UTF-8:
// only the addresses are needed, and a display name in a charset the
// standard library does not know must not make the whole list unreadable.
func addrParser() *mail.AddressParser {
	return &mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
	}}
}

// bracketed matches addresses in angle brackets, for lists the RFC 5322
// parser refuses.
var bracketed = regexp.MustCompile(`<([^<>\s]+@[^<>\s]+)>`)

// headerAddresses returns the addresses of every field named key.
func headerAddresses(h textproto.Header, key string) []string {
	var out []string
	for f := h.FieldsByKey(key); f.Next(); {
		v := strings.TrimSpace(f.Value())
		if v == "" || v == "<>" {
			continue
		}
		if list, err := addrParser().ParseList(v); err == nil {
			for _, a := range list {
				out = append(out, a.Address)
			}
			continue
		}
		if ms := bracketed.FindAllStringSubmatch(v, -1); len(ms) > 0 {
			for _, m := range ms {
				out = append(out, m[1])
			}
			continue
		}
		for _, tok := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == ';' }) {
			if strings.Contains(tok, "@") {
				out = append(out, strings.Trim(tok, "<>\""))
			}
		}
	}
	return out
}
