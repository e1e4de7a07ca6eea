package tnef_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf16"

	"github.com/emersion/go-message"

	"github.com/recallrelay/recallrelay/tnef"
)

// Shared test data, relative to the package directory.
const (
	samplesDir = "../../shared/testsuites/tnef"
	corpusDir  = "../../shared/corpus/exchange"
)

// sentinels lists every error a well-formed call may wrap.
var sentinels = []error{tnef.ErrNotTNEF, tnef.ErrTruncated, tnef.ErrLimit, tnef.ErrMalformed, tnef.ErrNoMessageClass}

// sentinel returns the sentinel err wraps, or nil.
func sentinel(err error) error {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(samplesDir, name))
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("TNEF samples not available (%v); skipping", err)
	} else if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSamples reads every sample stream. The expectations come from the
// README beside the samples and from a hex dump of each file: files whose
// README entry is "(none)" carry the class only as PidTagMessageClass.
func TestSamples(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file       string
		key        uint16
		attrClass  string // attMessageClass
		propClass  string // PidTagMessageClass in attMAPIProps
		correlator string // PidTagTnefCorrelationKey
		class      string // MessageClass result
		err        error  // MessageClass and Scan error
	}{
		{file: "attachments.tnef", key: 0x0f33, attrClass: "IPM.Microsoft Mail.Note", correlator: "00000000CFF233DD7623274EB78A4912C247A0E464532700"},
		{file: "one-file.tnef", key: 0x0237, attrClass: "IPM.Microsoft Mail.Note", correlator: "<14341.17488.631053.695454@localhost.localdomain>"},
		{file: "two-files.tnef", key: 0x0237, attrClass: "IPM.Microsoft Mail.Note", correlator: "<14341.17573.560761.368512@localhost.localdomain>"},
		{file: "unicode-mapi-attr-name.tnef", key: 0x69ec, attrClass: "IPM.Microsoft Mail.Note", propClass: "IPM.Note", correlator: "<3471F010E285B744A23B2B4A58D1FD3851E817DA@PM24-EX1.pm24.local>"},
		{file: "unicode-mapi-attr.tnef", key: 0x408f, attrClass: "IPM.Microsoft Mail.Note", propClass: "IPM.Note", correlator: "<011fdf9d1a754260a583e5c6c89061d3@WIN-N56837RFTER.exchange.local>"},
		{file: "garbage-at-end.tnef", key: 0x0415, attrClass: "IPM.Microsoft Mail.Read Receipt", correlator: "00000000653B2DFFC774174DB06A3308DCE26501E4032000"},
		{file: "multi-value-attribute.tnef", key: 0x1512, attrClass: "IPM.Note.Microsoft.Voicemail.UM.CA", correlator: "<a8de74d7-1e8a-4e2e-abd8-a311ea0cfb88@sv-ex13-prd2.infinera.com>"},
		{file: "triples.tnef", key: 0xea64, attrClass: "IPM.Appointment"},
		{file: "MAPI_OBJECT.tnef", key: 0x0008, attrClass: "IPM.Microsoft Mail.Note", correlator: "<BF55F48D9D4AD51190C500D0B7BB2C6E089088FE@xau03.aus.hp.com>"},
		{file: "data-before-name.tnef", key: 0x000d, attrClass: "IPM.Microsoft Mail.Note", correlator: "<NEBBJICMOKLANKBNHOELOEENCCAA.Adam@PTM.com>"},
		{file: "long-filename.tnef", key: 0x1422, attrClass: "IPM.Microsoft Mail.Note", correlator: "<A58643BEDEF7D211BABB0008C75D853F0173A32E@fhpri01.compuware.com>"},
		{file: "missing-filenames.tnef", key: 0x0601, attrClass: "IPM.Microsoft Mail.Note", correlator: "<41D7BC0B968CD111B6A100805FA774F503F2AAEB@itbne-msg01.incorrect.bhp.com.au>"},
		{file: "rtf.tnef", key: 0x0c02, attrClass: "IPM.Microsoft Mail.Note", correlator: "<013501bf1643$6d982290$17ce15d1@hornet.vireo.com>"},
		// README "(none)": the class is a MAPI property only.
		{file: "MAPI_ATTACH_DATA_OBJ.tnef", key: 0x01af, propClass: "IPM.Note", correlator: "<BBDA395B19A3D3119A0E0000F8D02CA902AEBCE8@ODIN>"},
		{file: "body.tnef", key: 0x1125, propClass: "IPM.Note", correlator: "<4520F6151DAF2A44BA878BF2F380348E26E5@br-exch-dev1.brexchange.dolphinsearch.com>"},
		{file: "multi-name-property.tnef", key: 0xc6c7, propClass: "IPM.Appointment"},
		// Well-formed up to the attachments, then base64 text where the
		// next attribute would start: ignored as trailing garbage.
		{file: "panic.tnef", key: 0x1e7c, attrClass: "IPM.Microsoft Mail.Note", propClass: "IPM.Note", correlator: "<VI1PR07MB1486473A0B5207810BB98E10EDCA0@VI1PR07MB1486.eurprd07.prod.outlook.com>"},
		{file: "badchecksum.tnef", err: tnef.ErrNotTNEF},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data := readSample(t, tc.file)
			wantClass := tc.attrClass
			if wantClass == "" {
				wantClass = tc.propClass
			}

			class, err := tnef.MessageClass(bytes.NewReader(data), tnef.Limits{})
			if !errors.Is(err, tc.err) || class != wantClass {
				t.Fatalf("MessageClass = %q, %v; want %q, %v", class, err, wantClass, tc.err)
			}

			for name, r := range map[string]io.Reader{
				"bytes":    bytes.NewReader(data),
				"one byte": iotest.OneByteReader(bytes.NewReader(data)),
			} {
				info, err := tnef.Scan(r, tnef.Limits{MaxAttributes: -1})
				if tc.err != nil {
					if !errors.Is(err, tc.err) || info != nil {
						t.Fatalf("Scan(%s) = %+v, %v; want nil, %v", name, info, err, tc.err)
					}
					continue
				}
				want := tnef.Info{Key: tc.key, AttributeClass: tc.attrClass, PropertyClass: tc.propClass, Correlator: tc.correlator}
				if err != nil || *info != want {
					t.Fatalf("Scan(%s) = %+v, %v; want %+v", name, info, err, want)
				}
			}

			r := bytes.NewReader(data)
			key, err := tnef.Key(r)
			if !errors.Is(err, tc.err) || key != tc.key {
				t.Fatalf("Key = %#04x, %v; want %#04x, %v", key, err, tc.key, tc.err)
			}
			if tc.err == nil && r.Len() != len(data)-6 {
				t.Errorf("Key consumed %d bytes, want 6", len(data)-r.Len())
			}
		})
	}
}

// TestExchangeCorpus reads the winmail.dat parts of real Exchange Online
// messages.
func TestExchangeCorpus(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(corpusDir, "01[6-9]-*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skipf("Exchange corpus not available at %s; skipping", corpusDir)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			correlator, parts := tnefParts(t, file)
			if len(parts) != 1 {
				t.Fatalf("found %d application/ms-tnef parts, want 1", len(parts))
			}
			class, err := tnef.MessageClass(bytes.NewReader(parts[0]), tnef.Limits{})
			if err != nil || class == "" {
				t.Fatalf("MessageClass = %q, %v; want a class", class, err)
			}
			t.Logf("message class %q", class)

			info, err := tnef.Scan(bytes.NewReader(parts[0]), tnef.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			// Observed in all four: Exchange writes the legacy name in
			// attMessageClass and the MAPI name in attMAPIProps.
			if info.AttributeClass != "IPM.Microsoft Mail.Note" || info.PropertyClass != "IPM.Note" {
				t.Errorf("classes = %q, %q; want IPM.Microsoft Mail.Note, IPM.Note", info.AttributeClass, info.PropertyClass)
			}
			if correlator == "" || info.Correlator != correlator {
				t.Errorf("Correlator = %q, X-MS-TNEF-Correlator = %q; want equal", info.Correlator, correlator)
			}
			key, err := tnef.Key(bytes.NewReader(parts[0]))
			if err != nil || key != info.Key {
				t.Errorf("Key = %#04x, %v; want %#04x", key, err, info.Key)
			}
		})
	}
}

// tnefParts returns the X-MS-TNEF-Correlator field of the message in file,
// unfolded, and the decoded bodies of its application/ms-tnef parts.
func tnefParts(t *testing.T, file string) (string, [][]byte) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e, err := message.Read(f)
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatal(err)
	}
	correlator := strings.Join(strings.Fields(e.Header.Get("X-MS-TNEF-Correlator")), "")
	var parts [][]byte
	err = e.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) {
			return err
		}
		if typ, _, _ := part.Header.ContentType(); typ != "application/ms-tnef" {
			return nil
		}
		b, err := io.ReadAll(part.Body)
		if err != nil {
			return err
		}
		parts = append(parts, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return correlator, parts
}

// Synthetic streams.

const (
	levelMessage    = 1
	levelAttachment = 2

	attTnefVersion   = 0x00089006
	attOemCodepage   = 0x00069007
	attMessageClass  = 0x00078008
	attSubject       = 0x00018004
	attMessageID     = 0x00018009
	attMAPIProps     = 0x00069003
	attAttachRendDat = 0x00069002
	attAttachData    = 0x0006800f
	attAttachment    = 0x00069005
)

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// attr encodes an attribute with a correct checksum.
func attr(level byte, id uint32, data []byte) []byte {
	var sum uint16
	for _, c := range data {
		sum += uint16(c)
	}
	return cat([]byte{level}, le32(id), le32(uint32(len(data))), data, le16(sum))
}

// rawAttr encodes an attribute header with a declared length and checksum
// that need not match data.
func rawAttr(level byte, id, size uint32, data []byte, sum uint16) []byte {
	return cat([]byte{level}, le32(id), le32(size), data, le16(sum))
}

func header(key uint16) []byte { return cat(le32(tnef.Signature), le16(key)) }

// preamble is the attTnefVersion and attOemCodepage pair every encoder
// writes first.
func preamble() [][]byte {
	return [][]byte{
		attr(levelMessage, attTnefVersion, le32(0x00010000)),
		attr(levelMessage, attOemCodepage, cat(le32(1252), le32(0))),
	}
}

func stream(key uint16, attrs ...[]byte) []byte {
	return cat(header(key), cat(attrs...))
}

func pad(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func str8(s string) []byte { return []byte(s + "\x00") }

func utf16le(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s + "\x00")) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

// props encodes a MAPI property list.
func props(ps ...[]byte) []byte { return cat(le32(uint32(len(ps))), cat(ps...)) }

// varProp encodes a variable-length (or multi-valued variable-length)
// property.
func varProp(typ, id uint16, vals ...[]byte) []byte {
	b := cat(le16(typ), le16(id), le32(uint32(len(vals))))
	for _, v := range vals {
		b = cat(b, le32(uint32(len(v))), pad(v))
	}
	return b
}

// fixedProp encodes a single fixed-length value, padded.
func fixedProp(typ, id uint16, v []byte) []byte { return cat(le16(typ), le16(id), pad(v)) }

// mvFixedProp encodes a multi-valued fixed-length property.
func mvFixedProp(typ, id uint16, vals ...[]byte) []byte {
	b := cat(le16(typ), le16(id), le32(uint32(len(vals))))
	for _, v := range vals {
		b = cat(b, pad(v))
	}
	return b
}

var psetid = bytes.Repeat([]byte{0xA5}, 16)

// namedStr encodes the tag and string name of a named property; the value
// follows.
func namedStr(typ, id uint16, name string) []byte {
	n := utf16le(name)
	return cat(le16(typ), le16(id), psetid, le32(1), le32(uint32(len(n))), pad(n))
}

// namedID encodes the tag and numeric name of a named property.
func namedID(typ, id uint16, lid uint32) []byte {
	return cat(le16(typ), le16(id), psetid, le32(0), le32(lid))
}

// noise is a set of properties of every encoding the reader must skip
// before reaching the ones it looks for.
func noise() [][]byte {
	return [][]byte{
		fixedProp(0x0002, 0x0017, le16(1)),                          // PidTagImportance, Integer16
		fixedProp(0x000B, 0x0057, le16(1)),                          // Boolean
		fixedProp(0x0003, 0x0E07, le32(9)),                          // Integer32
		fixedProp(0x0040, 0x0039, make([]byte, 8)),                  // Time
		fixedProp(0x0048, 0x6000, bytes.Repeat([]byte{7}, 16)),      // Guid
		varProp(0x001E, 0x0037, str8("Subject IPM.Outlook.Recall")), // subject, string8
		varProp(0x001F, 0x0E1D, utf16le("normalized")),              // Unicode
		varProp(0x0102, 0x0071, []byte{1, 2, 3, 4, 5}),              // Binary, padded
		varProp(0x0102, 0x1000, nil),                                // empty Binary
		varProp(0x101F, 0x3A4F, utf16le("a"), utf16le("bc")),        // multi-valued Unicode
		varProp(0x101E, 0x001A, str8("IPM.Decoy")),                  // message class ID, wrong type
		mvFixedProp(0x1002, 0x6001, le16(1), le16(2), le16(3)),      // multi-valued Integer16
		mvFixedProp(0x1014, 0x6002, make([]byte, 8)),                // multi-valued Integer64
		cat(namedStr(0x001F, 0x8001, "Keywords"), le32(1), le32(4), utf16le("k")),
		cat(namedID(0x0003, 0x8002, 0x8205), le32(5)),
		cat(namedID(0x101E, 0x8003, 1), le32(2), le32(2), pad(str8("x")), le32(0)),
		varProp(0x000D, 0x3701, cat(bytes.Repeat([]byte{3}, 16), []byte("obj"))), // Object
	}
}

// recallStream is a classic Outlook recall request: attMessageClass
// IPM.Outlook.Recall, MAPI properties and an attachment. It returns the
// stream and the offset at which each attribute ends.
func recallStream() ([]byte, []int) {
	attrs := append(preamble(),
		attr(levelMessage, attMessageClass, str8("IPM.Outlook.Recall")),
		attr(levelMessage, attSubject, str8("Recall: Quarterly numbers")),
		attr(levelMessage, attMessageID, str8("A46BD61B3ADCF1419C4F0E87828ABD99")),
		attr(levelMessage, attMAPIProps, props(append(noise(),
			varProp(0x001F, 0x001A, utf16le("IPM.Outlook.Recall")),
			varProp(0x0102, 0x007F, str8("<recall@example.com>")))...)),
		attr(levelAttachment, attAttachRendDat, make([]byte, 14)),
		attr(levelAttachment, attAttachData, bytes.Repeat([]byte("data"), 50)),
	)
	b := header(0x1234)
	var ends []int
	for _, a := range attrs {
		b = cat(b, a)
		ends = append(ends, len(b))
	}
	return b, ends
}

// propsOnlyStream carries its class only in attMAPIProps, which ends the
// stream.
func propsOnlyStream(classProp []byte) []byte {
	return stream(7, append(preamble(),
		attr(levelMessage, attSubject, str8("hello")),
		attr(levelMessage, attMAPIProps, props(append(noise(), classProp)...)))...)
}

func TestSynthetic(t *testing.T) {
	t.Parallel()
	recall, _ := recallStream()
	big := tnef.Limits{MaxAttributeBytes: 1 << 40, MaxTotalBytes: 1 << 40}
	tests := []struct {
		name  string
		data  []byte
		lim   tnef.Limits
		class string
		err   error
		info  *tnef.Info // if set, the expected Scan result
	}{
		{name: "recall", data: recall, class: "IPM.Outlook.Recall",
			info: &tnef.Info{Key: 0x1234, AttributeClass: "IPM.Outlook.Recall", PropertyClass: "IPM.Outlook.Recall", Correlator: "<recall@example.com>"}},
		{name: "props only unicode", data: propsOnlyStream(varProp(0x001F, 0x001A, utf16le("IPM.Outlook.Recall"))), class: "IPM.Outlook.Recall",
			info: &tnef.Info{Key: 7, PropertyClass: "IPM.Outlook.Recall"}},
		{name: "props only string8", data: propsOnlyStream(varProp(0x001E, 0x001A, str8("IPM.Recall.Report"))), class: "IPM.Recall.Report"},
		{name: "props only non-ASCII unicode", data: propsOnlyStream(varProp(0x001F, 0x001A, utf16le("IPM.Note.Ünïcødé.𝄞"))), class: "IPM.Note.Ünïcødé.𝄞"},
		{name: "attribute wins over property",
			data:  stream(1, attr(levelMessage, attMessageClass, str8("IPM.Microsoft Mail.Note")), attr(levelMessage, attMAPIProps, props(varProp(0x001F, 0x001A, utf16le("IPM.Note"))))),
			class: "IPM.Microsoft Mail.Note"},
		{name: "attribute after props still wins",
			data:  stream(1, attr(levelMessage, attMAPIProps, props(varProp(0x001F, 0x001A, utf16le("IPM.Note")))), attr(levelMessage, attMessageClass, str8("IPM.Outlook.Recall"))),
			class: "IPM.Outlook.Recall"},
		{name: "first attribute wins",
			data:  stream(1, attr(levelMessage, attMessageClass, str8("IPM.Outlook.Recall")), attr(levelMessage, attMessageClass, str8("IPM.Note"))),
			class: "IPM.Outlook.Recall"},
		{name: "empty attribute falls back to property",
			data:  stream(1, attr(levelMessage, attMessageClass, str8("")), attr(levelMessage, attMAPIProps, props(varProp(0x001E, 0x001A, str8("IPM.Note"))))),
			class: "IPM.Note"},
		{name: "attribute without NUL", data: stream(1, attr(levelMessage, attMessageClass, []byte("IPM.Note"))), class: "IPM.Note"},
		{name: "attachment-level class ignored",
			data: stream(1, attr(levelAttachment, attMessageClass, str8("IPM.Outlook.Recall")), attr(levelAttachment, attMAPIProps, props(varProp(0x001E, 0x001A, str8("IPM.Note"))))),
			err:  tnef.ErrNoMessageClass},
		{name: "attachment props ignored",
			data: stream(1, attr(levelAttachment, attAttachment, props(varProp(0x001E, 0x001A, str8("IPM.Note"))))),
			err:  tnef.ErrNoMessageClass},
		{name: "no class", data: stream(1, preamble()...), err: tnef.ErrNoMessageClass},
		{name: "header only", data: header(1), err: tnef.ErrNoMessageClass},
		{name: "trailing garbage", data: cat(recall, []byte("\r\n--boundary--\r\n")), class: "IPM.Outlook.Recall"},
		{name: "garbage instead of first attribute", data: cat(header(1), []byte("\x00garbage")), err: tnef.ErrMalformed},
		{name: "bad signature", data: cat([]byte("PK\x03\x04"), recall[4:]), err: tnef.ErrNotTNEF},
		{name: "short bad signature", data: []byte("GI"), err: tnef.ErrNotTNEF},
		{name: "empty input", data: nil, err: tnef.ErrTruncated},
		{name: "bad class checksum",
			data: stream(1, rawAttr(levelMessage, attMessageClass, 9, str8("IPM.Note"), 0xBEEF)),
			err:  tnef.ErrMalformed},
		{name: "bad checksum elsewhere ignored",
			data:  stream(1, rawAttr(levelMessage, attSubject, 2, str8("x"), 0xBEEF), rawAttr(levelMessage, attMAPIProps, 4, le32(0), 1), attr(levelMessage, attMessageClass, str8("IPM.Note"))),
			class: "IPM.Note"},
		{name: "unknown property type",
			data: stream(1, attr(levelMessage, attMAPIProps, props(fixedProp(0x0099, 0x0001, le32(0)), varProp(0x001E, 0x001A, str8("IPM.Note"))))),
			err:  tnef.ErrMalformed},
		{name: "bad named property kind",
			data: stream(1, attr(levelMessage, attMAPIProps, props(cat(le16(0x0003), le16(0x8000), psetid, le32(2), le32(0))))),
			err:  tnef.ErrMalformed},
		{name: "property count overruns attribute",
			data: stream(1, attr(levelMessage, attMAPIProps, cat(le32(3), varProp(0x001E, 0x001A, str8("IPM.Note"))))),
			err:  tnef.ErrMalformed},
		{name: "value overruns attribute",
			data: stream(1, attr(levelMessage, attMAPIProps, cat(le32(1), le16(0x001E), le16(0x001A), le32(1), le32(100), pad(str8("IPM.Note"))))),
			err:  tnef.ErrMalformed},
		{name: "value count overruns attribute",
			data: stream(1, attr(levelMessage, attMAPIProps, cat(le32(1), le16(0x1003), le16(0x6000), le32(0x40000000)))),
			err:  tnef.ErrMalformed},
		{name: "bytes after last property tolerated",
			data:  stream(1, attr(levelMessage, attMAPIProps, cat(props(varProp(0x001E, 0x001A, str8("IPM.Note"))), make([]byte, 12)))),
			class: "IPM.Note"},
		{name: "too many props", lim: tnef.Limits{MaxProps: 5}, data: propsOnlyStream(varProp(0x001E, 0x001A, str8("IPM.Note"))), err: tnef.ErrLimit},
		{name: "too many attributes", lim: tnef.Limits{MaxAttributes: 3}, data: recall, err: tnef.ErrLimit},
		{name: "attribute too long", lim: tnef.Limits{MaxAttributeBytes: 199}, data: recall, err: tnef.ErrLimit},
		{name: "stream too long", lim: tnef.Limits{MaxTotalBytes: int64(len(recall) - 1)}, data: recall, err: tnef.ErrLimit},
		{name: "stream exactly at limit", lim: tnef.Limits{MaxTotalBytes: int64(len(recall))}, data: recall, class: "IPM.Outlook.Recall"},
		{name: "class attribute over 64 KiB", lim: big,
			data: stream(1, attr(levelMessage, attMessageClass, bytes.Repeat([]byte("A"), 64<<10+1))),
			err:  tnef.ErrLimit},
		{name: "class property over 64 KiB", lim: big,
			data: stream(1, attr(levelMessage, attMAPIProps, props(varProp(0x001E, 0x001A, bytes.Repeat([]byte("A"), 64<<10+1))))),
			err:  tnef.ErrLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			class, err := tnef.MessageClass(bytes.NewReader(tc.data), tc.lim)
			if class != tc.class || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("MessageClass = %q, %v; want %q, %v", class, err, tc.class, tc.err)
			}
			if tc.info != nil {
				info, err := tnef.Scan(bytes.NewReader(tc.data), tc.lim)
				if err != nil || *info != *tc.info {
					t.Fatalf("Scan = %+v, %v; want %+v", info, err, tc.info)
				}
			}
		})
	}
}

// TestTruncated cuts valid streams at every byte offset. A TNEF stream has
// no end marker, so a cut at an attribute boundary is itself a valid stream;
// every other cut must be reported as truncated.
func TestTruncated(t *testing.T) {
	t.Parallel()
	recall, ends := recallStream()
	const classAttr = 2 // index of attMessageClass in recallStream
	boundary := map[int]int{6: -1}
	for i, end := range ends {
		boundary[end] = i
	}
	for n := 0; n <= len(recall); n++ {
		class, err := tnef.MessageClass(bytes.NewReader(recall[:n]), tnef.Limits{})
		i, ok := boundary[n]
		switch {
		case ok && i >= classAttr:
			if err != nil || class != "IPM.Outlook.Recall" {
				t.Errorf("recall cut at %d (after attribute %d) = %q, %v; want IPM.Outlook.Recall", n, i, class, err)
			}
		case ok:
			if !errors.Is(err, tnef.ErrNoMessageClass) {
				t.Errorf("recall cut at %d (after attribute %d) = %q, %v; want ErrNoMessageClass", n, i, class, err)
			}
		default:
			if !errors.Is(err, tnef.ErrTruncated) || class != "" {
				t.Errorf("recall cut at %d = %q, %v; want ErrTruncated", n, class, err)
			}
		}
	}

	// The class is in the last attribute: every proper prefix fails.
	for _, variant := range [][]byte{
		propsOnlyStream(varProp(0x001F, 0x001A, utf16le("IPM.Outlook.Recall"))),
		propsOnlyStream(varProp(0x001E, 0x001A, str8("IPM.Outlook.Recall"))),
	} {
		for n := 0; n < len(variant); n++ {
			class, err := tnef.MessageClass(bytes.NewReader(variant[:n]), tnef.Limits{})
			if err == nil || class != "" || (!errors.Is(err, tnef.ErrTruncated) && !errors.Is(err, tnef.ErrNoMessageClass)) {
				t.Errorf("props-only stream cut at %d = %q, %v; want ErrTruncated or ErrNoMessageClass", n, class, err)
			}
		}
	}

	// A real sample: no panic, and a success can only report the class of
	// the whole stream.
	sample := readSample(t, "one-file.tnef")
	for n := 0; n < len(sample); n++ {
		class, err := tnef.MessageClass(bytes.NewReader(sample[:n]), tnef.Limits{})
		if err == nil && class != "IPM.Microsoft Mail.Note" || err != nil && sentinel(err) == nil {
			t.Errorf("one-file.tnef cut at %d = %q, %v", n, class, err)
		}
	}
}

// TestHugeLength declares lengths of up to 4 GiB over a few bytes of input:
// the reader must fail fast without allocating anything near that size.
func TestHugeLength(t *testing.T) {
	const huge = 0xFFFFFFF0
	big := tnef.Limits{MaxAttributeBytes: 1 << 40, MaxTotalBytes: 1 << 40, MaxProps: math.MaxInt}
	tests := []struct {
		name string
		lim  tnef.Limits
		data []byte
		err  error
	}{
		{"class attribute, default limits", tnef.Limits{}, stream(1, rawAttr(levelMessage, attMessageClass, huge, str8("IPM"), 0)), tnef.ErrLimit},
		{"class attribute, raised limits", big, stream(1, rawAttr(levelMessage, attMessageClass, huge, str8("IPM"), 0)), tnef.ErrLimit},
		{"skipped attribute, default limits", tnef.Limits{}, stream(1, rawAttr(levelAttachment, attAttachData, huge, []byte("abc"), 0)), tnef.ErrLimit},
		{"skipped attribute, raised limits", big, stream(1, rawAttr(levelAttachment, attAttachData, huge, []byte("abc"), 0)), tnef.ErrTruncated},
		{"props attribute, raised limits", big, stream(1, rawAttr(levelMessage, attMAPIProps, huge, props(fixedProp(0x0003, 0x0E07, le32(1))), 0)), tnef.ErrTruncated},
		{"property count", tnef.Limits{}, stream(1, rawAttr(levelMessage, attMAPIProps, 4, le32(huge), 0)), tnef.ErrLimit},
		{"property count, raised limits", big, stream(1, rawAttr(levelMessage, attMAPIProps, huge, le32(huge), 0)), tnef.ErrMalformed},
		{"class value", big, stream(1, rawAttr(levelMessage, attMAPIProps, huge, cat(le32(1), le16(0x001E), le16(0x001A), le32(1), le32(huge-100)), 0)), tnef.ErrLimit},
		{"skipped value", big, stream(1, rawAttr(levelMessage, attMAPIProps, huge, cat(le32(1), le16(0x0102), le16(0x1000), le32(1), le32(huge-100)), 0)), tnef.ErrTruncated},
		{"named property name", big, stream(1, rawAttr(levelMessage, attMAPIProps, huge, cat(le32(1), le16(0x0003), le16(0x8000), psetid, le32(1), le32(huge-100)), 0)), tnef.ErrTruncated},
		{"value count", big, stream(1, rawAttr(levelMessage, attMAPIProps, huge, cat(le32(1), le16(0x101F), le16(0x0001), le32(huge/4-10)), 0)), tnef.ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := tnef.MessageClass(bytes.NewReader(tc.data), tc.lim)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tc.err) {
				t.Fatalf("MessageClass error = %v; want %v", err, tc.err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("allocated %d bytes", alloc)
			}
		})
	}
}

// TestReadError checks that an I/O error of the underlying reader is
// returned as such, not mistaken for a truncated or malformed stream.
func TestReadError(t *testing.T) {
	t.Parallel()
	recall, ends := recallStream()
	boom := errors.New("boom")
	for _, n := range []int{0, 3, 6, ends[0], ends[2] - 5, ends[5] - 5, ends[len(ends)-1] - 1} {
		r := io.MultiReader(bytes.NewReader(recall[:n]), iotest.ErrReader(boom))
		if _, err := tnef.MessageClass(r, tnef.Limits{}); !errors.Is(err, boom) || sentinel(err) != nil {
			t.Errorf("error after %d bytes: got %v, want boom", n, err)
		}
	}
	if _, err := tnef.Key(io.MultiReader(bytes.NewReader(recall[:5]), iotest.ErrReader(boom))); !errors.Is(err, boom) {
		t.Errorf("Key error = %v, want boom", err)
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data []byte
		key  uint16
		err  error
	}{
		{"stream", stream(0xBEEF, preamble()...), 0xBEEF, nil},
		{"header only", header(0x0102), 0x0102, nil},
		{"empty", nil, 0, tnef.ErrTruncated},
		{"partial signature", header(1)[:3], 0, tnef.ErrTruncated},
		{"no key", header(1)[:5], 0, tnef.ErrTruncated},
		{"bad signature", []byte("Received: x"), 0, tnef.ErrNotTNEF},
		{"short bad signature", []byte{0x78, 0x00}, 0, tnef.ErrNotTNEF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, err := tnef.Key(bytes.NewReader(tc.data))
			if key != tc.key || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("Key = %#04x, %v; want %#04x, %v", key, err, tc.key, tc.err)
			}
		})
	}
}

func FuzzMessageClass(f *testing.F) {
	recall, _ := recallStream()
	f.Add(recall)
	f.Add(propsOnlyStream(varProp(0x001F, 0x001A, utf16le("IPM.Outlook.Recall"))))
	f.Add(propsOnlyStream(varProp(0x001E, 0x001A, str8("IPM.Note"))))
	f.Add(header(1))
	if files, _ := filepath.Glob(filepath.Join(samplesDir, "*.tnef")); len(files) > 0 {
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	lim := tnef.Limits{MaxAttributes: 200, MaxAttributeBytes: 1 << 20, MaxTotalBytes: 4 << 20, MaxProps: 2000}
	f.Fuzz(func(t *testing.T, data []byte) {
		class, err := tnef.MessageClass(bytes.NewReader(data), lim)
		if (err == nil) == (class == "") {
			t.Fatalf("MessageClass = %q, %v", class, err)
		}
		if err != nil && sentinel(err) == nil {
			t.Fatalf("error %v wraps none of the package's errors", err)
		}

		// The result must not depend on how the input is chunked.
		class2, err2 := tnef.MessageClass(iotest.OneByteReader(bytes.NewReader(data)), lim)
		if class2 != class || sentinel(err2) != sentinel(err) {
			t.Fatalf("one byte at a time: %q, %v; at once: %q, %v", class2, err2, class, err)
		}

		info, err := tnef.Scan(bytes.NewReader(data), lim)
		if err != nil {
			return
		}
		key, err := tnef.Key(bytes.NewReader(data))
		if err != nil || key != info.Key {
			t.Fatalf("Key = %#04x, %v; Scan found %#04x", key, err, info.Key)
		}
	})
}
