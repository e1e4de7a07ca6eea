package headers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-message/textproto"
)

// FuzzHeaderMatchesTextproto parses arbitrary input with ReadHeaderLimits and
// with go-message's textproto.ReadHeader, which the relay used before, and
// checks that they agree: both fail or neither; the same raw fields in the
// same order, the same body, the same bytes written; the same Get, Values
// and Has for every name present (in any case) and a few absent; and the
// same again after removing fields and prepending others.
//
// Deliberate difference: ReadHeaderLimits refuses a NUL byte anywhere in the
// header block. (The other, a last line of a multiple of the read buffer's
// size at the end of the data, needs a buffer smaller than the input; the
// textproto reader here has a larger one.)
func FuzzHeaderMatchesTextproto(f *testing.F) {
	for _, s := range []string{
		crlf(origin + "\nbody\n"),
		"", "\r\n", "\n", "A: 1", "A: 1\r\n", "A: 1\r\n\r\nbody",
		"A: 1\n b\n\nbody", "A:1\r\n\r\n", "A : 1\r\n\r\n", "A\t:\t1 \t\r\n\r\n",
		" A: 1\r\n\r\n", "\tA: 1\r\n\r\n", "A B: 1\r\n\r\n", "A\x01: 1\r\n\r\n",
		": x\r\nB: 2\r\n\r\n", ":\r\n \r\n\r\n", "A: 1\r\nno colon\r\n\r\n", "A: 1\r\nB",
		"A: x\r\r\n\r\n", "A: x\rB: y\r\n\r\n", "A: 1\r\n\r", "A: 1\r\n\r\r\n",
		"A: 1\r\n \r\n\r\n", "A: 1\r\n\t\r\n \r\nB:\r\n\r\n", "X: a\r\n  b  \r\n\tc\r\n\r\n",
		"a/b: 1\r\nA/B: 2\r\nA/b: 3\r\n\r\n", "Message-Id: <x>\r\nmessage-id: <y>\r\nMESSAGE-ID:\r\n\r\n",
		"\xc3\xa9: x\r\n\r\n", "A: \xc3\xa9\r\n\r\n", "A: 1\r\n\r\n\x00", "A: \x00\r\n\r\n",
		"A\x00: 1\r\n\r\n", ":\x00\r\n\r\n", "A: 1\r\n \x00\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	// Lines longer than the read buffer, and line endings split across its
	// end.
	for _, n := range []int{readAhead - 5, readAhead - 4, readAhead - 3, 2*readAhead + 1} {
		for _, eol := range []string{"\r\n", "\n"} {
			f.Add([]byte("A: " + strings.Repeat("x", n) + eol + " " + strings.Repeat("y", n) + eol + "B: 1" + eol + eol + "body"))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), len(in)+16)
		th, terr := textproto.ReadHeader(br)
		consumed := len(in) - br.Buffered()
		h, body, err := ReadHeaderLimits(bytes.NewReader(in), Limits{MaxBytes: 2*len(in) + 8, MaxFields: len(in) + 1})

		switch {
		case bytes.IndexByte(in[:consumed], 0) >= 0:
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("NUL in the header block: err = %v, want ErrMalformedHeader", err)
			}
			return
		case terr != nil:
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("textproto: %v; ReadHeaderLimits: %v, want ErrMalformedHeader", terr, err)
			}
			return
		case err != nil:
			t.Fatalf("textproto accepts, ReadHeaderLimits: %v", err)
		}
		if rest, _ := io.ReadAll(body); !bytes.Equal(rest, in[consumed:]) {
			t.Fatalf("body = %q, want %q", rest, in[consumed:])
		}
		// However the data arrives, the result is the same.
		if len(in) <= 4<<10 {
			h1, _, err := ReadHeaderLimits(iotest.OneByteReader(bytes.NewReader(in)), Limits{MaxBytes: 2*len(in) + 8, MaxFields: len(in) + 1})
			if err != nil || !reflect.DeepEqual(h1.Fields(), h.Fields()) {
				t.Fatalf("read a byte at a time: %v, %q; at once: %q", err, h1.Fields(), h.Fields())
			}
		}
		names := []string{"", "Subject", "message-id", "X-Top", "a/b"}
		for _, fl := range h.Fields() {
			names = append(names, fl.Name, strings.ToLower(fl.Name), strings.ToUpper(fl.Name))
		}
		sameAsTextproto(t, "parsed", h, &th, names)

		// Remove the fields named like the first one, then prepend two.
		if fs := h.Fields(); len(fs) > 0 {
			m := nameSet(map[string]bool{strings.ToLower(fs[0].Name): true})
			tfs := th.Fields()
			n := 0
			for tfs.Next() {
				if raw, _ := tfs.Raw(); m.Match(rawName(raw)) {
					tfs.Del()
					n++
				}
			}
			if got := h.Remove(m); got != n {
				t.Fatalf("Remove(%q) = %d, textproto removed %d", fs[0].Name, got, n)
			}
		}
		top := []Field{{Raw: []byte("X-Top: 1\r\n")}, {Raw: []byte("x-top :  2 \r\n\tcont\r\n")}}
		h.Prepend(top...)
		for i := len(top) - 1; i >= 0; i-- {
			th.AddRaw(top[i].Raw)
		}
		sameAsTextproto(t, "after Remove and Prepend", h, &th, names)
	})
}

// sameAsTextproto fails t unless h and th hold the same fields and answer
// Get, Values and Has alike for names.
func sameAsTextproto(t *testing.T, when string, h *Header, th *textproto.Header, names []string) {
	t.Helper()
	var want [][]byte
	for fs := th.Fields(); fs.Next(); {
		raw, _ := fs.Raw()
		want = append(want, raw)
	}
	got := h.Fields()
	if len(got) != len(want) || h.Len() != len(want) {
		t.Fatalf("%s: %d fields (Len %d), textproto %d:\n%q\n%q", when, len(got), h.Len(), len(want), got, want)
	}
	for i := range want {
		if !bytes.Equal(got[i].Raw, want[i]) || got[i].Name != rawName(want[i]) {
			t.Fatalf("%s: field %d = %q %q, textproto %q", when, i, got[i].Name, got[i].Raw, want[i])
		}
	}
	var out, tout bytes.Buffer
	n, err := h.WriteTo(&out)
	if terr := textproto.WriteHeader(&tout, *th); err != nil || terr != nil {
		t.Fatalf("%s: WriteTo: %v; textproto: %v", when, err, terr)
	}
	if !bytes.Equal(out.Bytes(), tout.Bytes()) || n != int64(out.Len()) || h.Size() != out.Len() {
		t.Fatalf("%s: wrote %q (n %d, Size %d), textproto %q", when, out.Bytes(), n, h.Size(), tout.Bytes())
	}
	for _, k := range names {
		if g, w := h.Get(k), th.Get(k); g != w {
			t.Fatalf("%s: Get(%q) = %q, textproto %q", when, k, g, w)
		}
		if g, w := h.Values(k), th.Values(k); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: Values(%q) = %q, textproto %q", when, k, g, w)
		}
		if g, w := h.Has(k), th.Has(k); g != w {
			t.Fatalf("%s: Has(%q) = %v, textproto %v", when, k, g, w)
		}
	}
}

// BenchmarkReadHeader parses the header block of a realistic Exchange Online
// message: the corpus message with the largest header block when the corpus
// is present, and a generated one of the same shape always.
func BenchmarkReadHeader(b *testing.B) {
	b.Run("generated", func(b *testing.B) { benchRead(b, generatedExchangeHeader()) })
	b.Run("corpus", func(b *testing.B) { benchRead(b, largestCorpusMessage(b)) })
}

func benchRead(b *testing.B, msg []byte) {
	b.ReportAllocs()
	b.SetBytes(int64(bytes.Index(msg, []byte("\r\n\r\n")) + 4))
	for b.Loop() {
		h, _, err := ReadHeader(bytes.NewReader(msg), 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		if h.MessageID() == "" {
			b.Fatal("no Message-ID")
		}
	}
}

// largestCorpusMessage returns the corpus message with the largest header
// block, with CRLF line endings; it skips b without a corpus.
func largestCorpusMessage(b *testing.B) []byte {
	var best []byte
	for _, f := range corpusFiles(b) {
		m := readCorpus(b, f)
		if bytes.Index(m, []byte("\r\n\r\n")) > bytes.Index(best, []byte("\r\n\r\n")) {
			best = m
		}
	}
	return best
}

// generatedExchangeHeader returns a message whose header block looks like one
// that left Exchange Online through an OnPremises connector: about a hundred
// fields and 15 KB, trace fields, signatures and the X-MS-Exchange-* blocks,
// many of them folded.
func generatedExchangeHeader() []byte {
	var b strings.Builder
	for i := range 8 {
		fmt.Fprintf(&b, "Received: from AM0PR01MB%04d.eurprd01.prod.outlook.com (2603:10a6:208:%x::1)\r\n"+
			" by AM0PR01MB%04d.eurprd01.prod.outlook.com with HTTPS id 15.20.%d.%d;\r\n"+
			" Tue, 3 Dec 2024 09:%02d:17 +0000\r\n", 1000+i, i, 2000+i, 7000+i, 10+i, i)
	}
	long := func(name string, n int) {
		b.WriteString(name + ":")
		for i := range n {
			fmt.Fprintf(&b, "\r\n\t%s%04d", strings.Repeat("QmFzZTY0RGF0YQ", 5), i)
		}
		b.WriteString("\r\n")
	}
	long("ARC-Seal", 6)
	long("ARC-Message-Signature", 10)
	long("ARC-Authentication-Results", 4)
	long("DKIM-Signature", 8)
	long("X-Microsoft-Antispam-Message-Info", 40)
	long("X-MS-Exchange-AntiSpam-MessageData-0", 30)
	for _, f := range []string{
		"From: Alice Example <alice@contoso.com>",
		"To: Bob Example <bob@fabrikam.example>, Carol <carol@fabrikam.example>",
		"CC: team@contoso.com",
		"Subject: Quarterly report: figures for the board meeting next week",
		"Thread-Topic: Quarterly report: figures for the board meeting next week",
		"Thread-Index: AQHbRZ3kP8n4c1Y2TkqLqR0wF0F0Ew==",
		"Date: Tue, 3 Dec 2024 09:17:01 +0000",
		"Message-ID: <AM0PR01MB12345678ABCDEF0123456789ABCDEF@AM0PR01MB1234.eurprd01.prod.outlook.com>",
		"Accept-Language: en-US",
		"Content-Language: en-US",
		"X-MS-Has-Attach:",
		"X-MS-TNEF-Correlator:",
		"MIME-Version: 1.0",
		"Content-Type: multipart/alternative;\r\n\tboundary=\"_000_AM0PR01MB12345678ABCDEF_\"",
		"X-MS-Exchange-SenderADCheck: 1",
		"X-MS-Exchange-AntiSpam-Relay: 0",
		"X-MS-Exchange-AntiSpam-MessageData-ChunkCount: 1",
		"X-MS-PublicTrafficType: Email",
		"X-MS-TrafficTypeDiagnostic: AM0PR01MB1234:EE_|DB9PR01MB5678:EE_",
		"X-MS-Office365-Filtering-Correlation-Id: 5c1b2a3d-0000-4000-8000-0123456789ab",
		"X-Microsoft-Antispam: BCL:0;ARA:13230040|366016|1800799024|376014|38070700018;",
		"X-Forefront-Antispam-Report: CIP:255.255.255.255;CTRY:;LANG:en;SCL:1;SRV:;IPV:NLI;SFV:NSPM;\r\n H:AM0PR01MB1234.eurprd01.prod.outlook.com;PTR:;CAT:NONE;SFS:(13230040)(366016);DIR:OUT;SFP:1101;",
		"X-OriginatorOrg: contoso.com",
		"X-MS-Exchange-CrossTenant-AuthAs: Internal",
		"X-MS-Exchange-CrossTenant-AuthSource: AM0PR01MB1234.eurprd01.prod.outlook.com",
		"X-MS-Exchange-CrossTenant-Network-Message-Id: 5c1b2a3d-0000-4000-8000-0123456789ab",
		"X-MS-Exchange-CrossTenant-originalarrivaltime: 03 Dec 2024 09:17:01.1234 (UTC)",
		"X-MS-Exchange-CrossTenant-fromentityheader: Hosted",
		"X-MS-Exchange-CrossTenant-id: 72f988bf-86f1-41af-91ab-2d7cd011db47",
		"X-MS-Exchange-CrossTenant-mailboxtype: HOSTED",
		"X-MS-Exchange-CrossTenant-userprincipalname: 3Hk1rF0tX9mQ2wZ8pV5cY7nB4dS6aL0jE1uO3iK9hG2fR5tY8w==",
		"X-MS-Exchange-Transport-CrossTenantHeadersStamped: AM0PR01MB1234",
		"X-OrganizationHeadersPreserved: AM0PR01MB1234.eurprd01.prod.outlook.com",
	} {
		b.WriteString(f + "\r\n")
	}
	for i := range 14 {
		fmt.Fprintf(&b, "X-MS-Exchange-CrossPremises-Field%02d: value %d of the organization header block\r\n", i, i)
	}
	for i := range 30 {
		fmt.Fprintf(&b, "X-MS-Exchange-AntiSpam-Field%02d: %s\r\n", i, strings.Repeat("ab", 20+i))
	}
	b.WriteString("\r\nbody\r\n")
	return []byte(b.String())
}

// TestReadHeaderMemory bounds what one parse allocates: a small multiple of
// the header bytes it holds, a small constant per field, and the read-ahead
// buffer of the reader it returns. The inputs are the largest header blocks
// the defaults admit: 1 MiB of four-byte fields (which the field limit cuts
// short) and 1 MiB of 1 KiB fields.
func TestReadHeaderMemory(t *testing.T) {
	const (
		maxBytes = 1 << 20
		maxField = 1000
		perField = 64 // bytes of bookkeeping allowed per field
		factor   = 3  // allowed multiple of the header bytes held
	)
	kib := func() []byte {
		var b bytes.Buffer
		for i := 0; b.Len()+1100 <= maxBytes-2; i++ {
			fmt.Fprintf(&b, "X-Pad-%04d: %s\r\n", i, strings.Repeat("x", 1100-14))
		}
		return append(b.Bytes(), "\r\nbody"...)
	}()
	tests := []struct {
		name   string
		in     []byte
		held   int // header bytes the parser needs to hold
		fields int // fields the parser needs to index
	}{
		{
			name:   "tiny fields",
			in:     append(bytes.Repeat([]byte("a:\r\n"), (maxBytes-2)/4), "\r\nbody"...),
			held:   (maxField + 1) * 4,
			fields: maxField + 1,
		},
		{
			name:   "1 KiB fields",
			in:     kib,
			held:   len(kib) - len("\r\nbody"),
			fields: bytes.Count(kib, []byte("\r\n")) - 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := func() { ReadHeader(bytes.NewReader(tt.in), maxBytes) }
			allocs := testing.AllocsPerRun(5, parse)
			bytesPer := allocatedBytes(5, parse)
			limit := factor*tt.held + perField*tt.fields + readAhead
			t.Logf("%d header bytes, %d fields: %.0f allocations, %d bytes allocated per parse (limit %d, %.2f× the header bytes)",
				tt.held, tt.fields, allocs, bytesPer, limit, float64(bytesPer)/float64(tt.held))
			if bytesPer > limit {
				t.Errorf("a parse allocates %d bytes, more than %d", bytesPer, limit)
			}
			if allocs > 64 {
				t.Errorf("a parse makes %.0f allocations, more than 64", allocs)
			}
		})
	}
}

// allocatedBytes returns the mean number of bytes f allocates per call.
func allocatedBytes(runs int, f func()) int {
	f() // warm up, as testing.AllocsPerRun does
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return int(after.TotalAlloc-before.TotalAlloc) / runs
}

// A NUL byte anywhere in the header block is refused, naming the field.
func TestReadHeaderRefusesNUL(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // "" for no error
	}{
		{name: "in a value", in: "From: a@b\r\nSubject: a\x00b\r\n\r\nbody", wantErr: `malformed header: NUL byte in field "Subject"`},
		{name: "in a continuation line", in: "Subject: a\r\n \x00\r\n\r\n", wantErr: `NUL byte in field "Subject"`},
		{name: "alone", in: "X-Test:\x00\r\n\r\n", wantErr: `NUL byte in field "X-Test"`},
		{name: "in a name", in: "Sub\x00ject: a\r\n\r\n", wantErr: `NUL byte in field "Sub\x00ject"`},
		{name: "in a field without a name", in: ": \x00\r\n\r\n", wantErr: `NUL byte in field ""`},
		{name: "in the body", in: "Subject: a\r\n\r\n\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadHeader(strings.NewReader(tt.in), 1<<10)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("err = %v, want none", err)
			case tt.wantErr == "":
			case !errors.Is(err, ErrMalformedHeader) || !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("err = %v, want ErrMalformedHeader with %q", err, tt.wantErr)
			}
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// endless returns a counting reader of first and then line, repeated (a
// million times: as good as forever here), a byte at a time.
func endless(first, line string) io.Reader {
	r := io.MultiReader(strings.NewReader(first), strings.NewReader(strings.Repeat(line, 1<<20)))
	return &countingReader{r: iotest.OneByteReader(r)}
}

func TestReadHeaderLimits(t *testing.T) {
	fields := func(n int) string { return strings.Repeat("a: b\r\n", n) + "\r\nbody" }
	tests := []struct {
		name     string
		in       io.Reader
		lim      Limits
		wantErr  []error
		wantText string
		maxRead  int // the most bytes ReadHeaderLimits may read; 0: no check
	}{
		{name: "at the field limit", in: strings.NewReader(fields(10)), lim: Limits{MaxFields: 10}},
		{name: "one field over", in: strings.NewReader(fields(11)), lim: Limits{MaxFields: 10},
			wantErr: []error{ErrTooManyFields, ErrHeaderTooLarge}, wantText: "more than 10 header fields"},
		{name: "default field limit", in: strings.NewReader(fields(DefaultMaxHeaderFields))},
		{name: "one over the default field limit", in: strings.NewReader(fields(DefaultMaxHeaderFields + 1)),
			wantErr: []error{ErrTooManyFields}, wantText: "more than 1000 header fields"},
		{name: "fields without a name do not count", in: strings.NewReader(strings.Repeat(":\r\n", 20) + fields(10)), lim: Limits{MaxFields: 10}},
		{name: "endless tiny fields stop at the field limit", in: endless("", "a:\r\n"),
			wantErr: []error{ErrTooManyFields}, maxRead: (DefaultMaxHeaderFields + 1) * 4},
		{name: "endless folded field stops at the byte limit", in: endless("A:\r\n", " a\r\n"), lim: Limits{MaxBytes: 4 << 10},
			wantErr: []error{ErrHeaderTooLarge}, wantText: "more than 4096 bytes", maxRead: 4 << 10},
		{name: "byte limit before field limit", in: strings.NewReader(fields(100)), lim: Limits{MaxBytes: 300},
			wantErr: []error{ErrHeaderTooLarge}},
		{name: "default byte limit", in: strings.NewReader("A: " + strings.Repeat("x", DefaultMaxHeaderBytes) + "\r\n\r\n"),
			wantErr: []error{ErrHeaderTooLarge}, maxRead: DefaultMaxHeaderBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body, err := ReadHeaderLimits(tt.in, tt.lim)
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %v, want it to say %q", err, tt.wantText)
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if rest, _ := io.ReadAll(body); string(rest) != "body" || h.Get("a") != "b" {
					t.Errorf("body %q, a = %q", rest, h.Get("a"))
				}
			}
			if c, ok := tt.in.(*countingReader); ok && c.n > tt.maxRead+readAhead {
				t.Errorf("read %d bytes, more than %d", c.n, tt.maxRead+readAhead)
			}
		})
	}
}

// Errors of the underlying reader come back wrapped, not as syntax errors,
// except a connection cut short.
func TestReadHeaderReadErrors(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		err     error
		wantErr []error
		notErr  error
	}{
		{name: "read error", err: boom, wantErr: []error{boom}, notErr: ErrMalformedHeader},
		{name: "cut short", err: io.ErrUnexpectedEOF, wantErr: []error{ErrMalformedHeader, io.ErrUnexpectedEOF}},
	}
	for _, tt := range tests {
		for _, at := range []string{"A: 1\r\n", "A: 1\r\nB: ", "A: 1\r\n "} {
			r := io.MultiReader(strings.NewReader(at), iotest.ErrReader(tt.err))
			_, _, err := ReadHeader(r, 1<<10)
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("%s after %q: err = %v, want %v", tt.name, at, err, want)
				}
			}
			if tt.notErr != nil && errors.Is(err, tt.notErr) {
				t.Errorf("%s after %q: err = %v, is %v", tt.name, at, err, tt.notErr)
			}
		}
	}
}

// Syntax errors name what is wrong briefly, however long the line.
func TestReadHeaderErrorsAreShort(t *testing.T) {
	for _, in := range []string{
		strings.Repeat("x", 100000) + "\r\n\r\n",
		"A: 1\r\n" + strings.Repeat("x", 100000) + "\r\n\r\n",
		strings.Repeat("x", 50000) + " y: 1\r\n\r\n",
		" " + strings.Repeat("x", 100000) + "\r\n\r\n",
	} {
		_, _, err := ReadHeader(strings.NewReader(in), 1<<20)
		if !errors.Is(err, ErrMalformedHeader) || len(err.Error()) > 200 {
			t.Errorf("err = %.300v (%d bytes), want a short ErrMalformedHeader", err, len(err.Error()))
		}
	}
}

// The lookups the relay makes on every message allocate nothing but the
// strings they return.
func TestLookupsAllocate(t *testing.T) {
	h, _, err := ReadHeader(bytes.NewReader(generatedExchangeHeader()), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	none := MustMatcher("X-Not-There", "X-Absent-*")
	tests := []struct {
		name string
		f    func()
		max  float64
	}{
		{"Has present", func() { h.Has("x-ms-exchange-crosstenant-id") }, 0},
		{"Has absent", func() { h.Has("X-Not-There") }, 0},
		{"Get absent", func() { h.Get("X-Not-There") }, 0},
		{"Get present", func() { h.Get("message-id") }, 1},
		{"Get folded", func() { h.Get("X-Forefront-Antispam-Report") }, 1},
		{"Values absent", func() { h.Values("X-Not-There") }, 0},
		{"Remove nothing", func() { h.Remove(none) }, 0},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.f); got > tt.max {
			t.Errorf("%s: %.0f allocations, want at most %.0f", tt.name, got, tt.max)
		}
	}
}

// BenchmarkCaptureRestore records a realistic Exchange header block (the
// tenant leg) and restores it onto the block as a vendor that stripped the
// Microsoft fields returns it (the return leg).
func BenchmarkCaptureRestore(b *testing.B) {
	msg := generatedExchangeHeader()
	orig, _, err := ReadHeader(bytes.NewReader(msg), 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	capture, restore := MustMatcher(DefaultCapture...), MustMatcher(DefaultRestore...)
	rec := &Record{Ref: "benchref", MessageID: orig.MessageID(), Fields: orig.Capture(capture)}
	stripped := bytes.ReplaceAll(msg, []byte("\r\nX-MS-Exchange-CrossPremises-"), []byte("\r\nX-Dropped-"))
	r := NewRestorer(restore)
	b.ReportAllocs()
	for b.Loop() {
		h, _, err := ReadHeader(bytes.NewReader(stripped), 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		_ = h.Capture(capture)
		r.Restore(h, rec)
	}
}
