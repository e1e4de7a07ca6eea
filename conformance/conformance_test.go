package conformance

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/internal/looptest"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// testRelay starts relays the way the other tests do (looptest.Config),
// an embedded store per relay. The command's own starter
// (startLocalRelay, package main) cannot be imported here; the command's
// tests run the matrix through it.
func testRelay(t *testing.T) StartRelayFunc {
	return func(c RelayConfig) (RunningRelay, error) {
		cfg := looptest.Config(t, c.TenantAddr, looptest.Hop("vendor", c.VendorAddr))
		cfg.Store = storetest.Bolt(t)
		if c.ReturnListen != "" {
			cfg.Return.Listen = c.ReturnListen
		}
		r, err := relay.New(cfg)
		if err != nil {
			return RunningRelay{}, err
		}
		if err := r.Start(); err != nil {
			return RunningRelay{}, err
		}
		return RunningRelay{TenantAddr: r.TenantAddr(), ReturnAddr: r.ReturnAddr(), Stop: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r.Shutdown(ctx)
		}}, nil
	}
}

func smallCases() []Case {
	var out []Case
	for _, c := range DefaultCases() {
		switch c.Name {
		case "passthrough", "strip-ms-headers", "flatten-tnef":
			out = append(out, c)
		}
	}
	return out
}

// runSmall runs the small matrix: passthrough, strip-ms-headers and
// flatten-tnef on both paths over the generated messages.
func runSmall(t *testing.T) *Report {
	t.Helper()
	var progress []Progress
	rep, err := Run(context.Background(), Config{
		Cases:       smallCases(),
		StartRelay:  testRelay(t),
		Settle:      200 * time.Millisecond,
		CellTimeout: 20 * time.Second,
		Progress:    func(p Progress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(progress) != 12 || progress[11].Done != 6 || progress[11].Total != 6 || progress[11].Result == nil {
		t.Errorf("progress: %d calls, last %+v; want 12 calls ending at 6/6 with a result", len(progress), progress[len(progress)-1])
	}
	return rep
}

func caseByName(t *testing.T, r *Report, name string) CaseResult {
	t.Helper()
	for _, c := range r.Cases {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no case %q in the report", name)
	return CaseResult{}
}

func TestRunSmallMatrix(t *testing.T) {
	t.Parallel()
	rep := runSmall(t)
	msgs := relaytest.Generate(relaytest.GenerateOptions{Seed: 1})
	rcpts := 0
	for _, m := range msgs {
		rcpts += len(m.To)
	}

	t.Run("passthrough survives on both paths", func(t *testing.T) {
		c := caseByName(t, rep, "passthrough")
		for _, cell := range []*CellResult{c.Direct, c.Relay} {
			if cell == nil {
				t.Fatal("missing cell")
			}
			if !cell.Complete() || cell.SurvivalPercent != 100 || cell.DeliveredOnce != rcpts || cell.Recipients != rcpts ||
				cell.IdentityIntact != len(msgs) || cell.Unmatched != 0 || cell.Incomplete != "" || cell.Damage.Summary != "none" {
				t.Errorf("cell %+v; want every message once and intact", cell)
			}
			if cell.RecallToVendor == nil {
				t.Error("recall traffic to the fake vendor not measured")
			}
		}
		// Generate has two recall requests (plain and TNEF) and one report;
		// on the direct path all of them go to the vendor.
		if got := *c.Direct.RecallToVendor; got != (RecallCount{Requests: 2, Reports: 1}) {
			t.Errorf("direct recall to vendor = %+v, want 2 requests, 1 report", got)
		}
		if r := c.Relay.RecallToVendor; r.Requests > 2 || r.Reports > 1 {
			t.Errorf("relay recall to vendor = %+v: more than was sent", r)
		}
	})

	t.Run("strip-ms-headers breaks the direct path, the relay restores", func(t *testing.T) {
		c := caseByName(t, rep, "strip-ms-headers")
		if c.Direct.SurvivalPercent >= 100 || c.Direct.Survived != 0 {
			t.Errorf("direct survival %.1f%% (%d), want 0", c.Direct.SurvivalPercent, c.Direct.Survived)
		}
		var cp []string
		for f, n := range c.Direct.Damage.Missing {
			if strings.HasPrefix(f, "x-ms-exchange-crosspremises-") && n > 0 {
				cp = append(cp, f)
			}
		}
		if len(cp) == 0 {
			t.Errorf("damage %+v lists no missing CrossPremises field", c.Direct.Damage)
		}
		if !strings.Contains(c.Direct.Damage.Summary, "missing X-MS-Exchange-CrossPremises-* (12)") {
			t.Errorf("summary %q does not name the missing CrossPremises fields", c.Direct.Damage.Summary)
		}
		if c.Direct.DeliveredOnce != rcpts {
			t.Errorf("direct delivered once %d, want %d: stripping headers must not lose mail", c.Direct.DeliveredOnce, rcpts)
		}
		if !c.Relay.Complete() {
			t.Errorf("relay: %s", c.Relay.Damage.Summary)
		}
	})

	t.Run("flatten-tnef loses winmail.dat even through the relay", func(t *testing.T) {
		c := caseByName(t, rep, "flatten-tnef")
		for name, cell := range map[string]*CellResult{"direct": c.Direct, "relay": c.Relay} {
			if cell.Complete() || cell.Damage.TNEFLost != 2 || !strings.Contains(cell.Damage.Summary, "winmail.dat lost in 2") {
				t.Errorf("%s: survived %d/%d, damage %+v; want the 2 TNEF messages lost their winmail.dat", name, cell.Survived, cell.Sent, cell.Damage)
			}
			for _, m := range cell.Messages {
				tnef := m.Kind == relaytest.KindTNEF || m.Kind == relaytest.KindTNEFRecall
				if m.Survived == tnef || m.TNEFLost != tnef {
					t.Errorf("%s: %s (%s): survived %v, TNEF lost %v", name, m.Name, m.Kind, m.Survived, m.TNEFLost)
				}
			}
		}
	})

	t.Run("JSON round-trips with the documented names", func(t *testing.T) {
		var buf bytes.Buffer
		if err := rep.WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		got, err := ReadReport(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, rep) {
			t.Errorf("decoded report differs from the original")
		}
		var generic struct {
			Cases []struct {
				Relay map[string]json.RawMessage `json:"relay"`
			} `json:"cases"`
		}
		if err := json.Unmarshal(buf.Bytes(), &generic); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"sent", "not_accepted", "recipients", "delivered_once", "lost", "duplicated",
			"deliveries", "unmatched", "extra_recipients", "identity_intact", "survived", "survival_percent",
			"recall_to_vendor", "damage", "messages", "duration_seconds"} {
			if _, ok := generic.Cases[0].Relay[k]; !ok {
				t.Errorf("cell JSON has no %q field", k)
			}
		}
	})

	t.Run("HTML is self-contained and well-formed", func(t *testing.T) {
		var buf bytes.Buffer
		if err := rep.WriteHTML(&buf); err != nil {
			t.Fatal(err)
		}
		page := buf.String()
		// The page is written as well-formed XML (void elements closed),
		// so a strict XML parser checks that every element is closed.
		d := xml.NewDecoder(strings.NewReader(page))
		d.Strict, d.Entity = true, xml.HTMLEntity
		var svgs, rects int
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("HTML not well-formed: %v", err)
			}
			if se, ok := tok.(xml.StartElement); ok {
				switch se.Name.Local {
				case "svg":
					svgs++
				case "rect":
					rects++
				case "script", "link", "img", "iframe":
					t.Errorf("page has a <%s> element", se.Name.Local)
				}
				for _, a := range se.Attr {
					if a.Name.Local == "src" || a.Name.Local == "href" {
						t.Errorf("page loads %s=%q", a.Name.Local, a.Value)
					}
				}
			}
		}
		// One legend swatch per path, one bar per case and path.
		if svgs != 1 || rects != 2+2*len(rep.Cases) {
			t.Errorf("%d svg, %d rect; want 1 chart with %d rects", svgs, rects, 2+2*len(rep.Cases))
		}
		for _, want := range []string{"<style>", rep.Started.Format(time.RFC3339), "passthrough", "strip-ms-headers",
			"winmail.dat lost in 2", "gen-05-tnef", "generated (seed 1)", "83.3%"} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
	})

	t.Run("text table", func(t *testing.T) {
		var buf bytes.Buffer
		if err := rep.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, want := range []string{"BEHAVIOUR", "DIRECT", "RELAY", "RECALL→VENDOR", "2 req, 1 rep",
			"strip-ms-headers, direct: identity damaged in 12 of 12", "flatten-tnef, relay:"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "passthrough, ") {
			t.Errorf("a complete cell is listed under damage:\n%s", out)
		}
	})
}

func TestRunIncompleteCellIsAFinding(t *testing.T) {
	t.Parallel()
	start := time.Now()
	msgs := relaytest.Generate(relaytest.GenerateOptions{Seed: 1})[:2]
	rep, err := Run(context.Background(), Config{
		Cases:       []Case{{Name: "slow", Behaviors: "delay=30s"}},
		Paths:       []Path{PathDirect},
		Messages:    msgs,
		Settle:      100 * time.Millisecond,
		CellTimeout: 700 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The vendor holds every message for 30 s: a run that ends before that
	// was ended by the cell timeout, however busy the machine is.
	if d := time.Since(start); d >= 30*time.Second {
		t.Errorf("run took %v; the cell timeout must bound it", d)
	}
	c := rep.Cases[0].Direct
	if c.Incomplete == "" || c.Lost != c.Recipients || c.Survived != 0 || !strings.HasPrefix(c.Damage.Summary, "incomplete") {
		t.Errorf("cell %+v; want incomplete with every recipient lost", c)
	}
}

func TestRunCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, Config{Cases: []Case{{Name: "passthrough"}}, Paths: []Path{PathDirect}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	start := func(RelayConfig) (RunningRelay, error) { return RunningRelay{}, nil }
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"relay path without starter", Config{}, "needs StartRelay"},
		{"unknown path", Config{Paths: []Path{"sideways"}}, "unknown path"},
		{"path twice", Config{Paths: []Path{PathDirect, PathDirect}}, "listed twice"},
		{"unknown behaviour", Config{Cases: []Case{{Name: "x", Behaviors: "teleport"}}, Paths: []Path{PathDirect}}, "unknown behaviour"},
		{"case twice", Config{Cases: []Case{{Name: "x"}, {Name: "x"}}, Paths: []Path{PathDirect}}, "listed twice"},
		{"case without name", Config{Cases: []Case{{}}, Paths: []Path{PathDirect}}, "no name"},
		{"external vendor without return address", Config{VendorAddr: "127.0.0.1:1", Paths: []Path{PathDirect}}, "needs ReturnListen"},
		{"external vendor on both paths", Config{VendorAddr: "127.0.0.1:1", ReturnListen: "127.0.0.1:2", StartRelay: start}, "choose one path"},
		{"external vendor with behaviours", Config{VendorAddr: "127.0.0.1:1", ReturnListen: "127.0.0.1:2", Paths: []Path{PathDirect},
			Cases: []Case{{Name: "x", Behaviors: "duplicate"}}}, "fake vendor only"},
		{"return address without external vendor", Config{ReturnListen: "127.0.0.1:2", StartRelay: start}, "only used with an external vendor"},
		{"vendor TLS without external vendor", Config{VendorTLS: &tls.Config{}, StartRelay: start}, "only used with an external vendor"},
		{"HELO without external vendor", Config{HELO: "mta.example.com", StartRelay: start}, "only used with an external vendor"},
		{"return TLS without external vendor", Config{ReturnTLS: &tls.Config{}, StartRelay: start}, "only used with an external vendor"},
		{"sender domain with messages", Config{SenderDomain: "example.com", Paths: []Path{PathDirect},
			Messages: relaytest.Generate(relaytest.GenerateOptions{Seed: 1})[:1]}, "cannot be combined with Messages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMessageSetNeedsUniqueFingerprints(t *testing.T) {
	t.Parallel()
	gen := relaytest.Generate(relaytest.GenerateOptions{Seed: 1})
	noFP := relaytest.Message{Name: "bare", To: []string{"a@example.com"}, Data: []byte("X-Foo: bar\r\n\r\nbody\r\n")}
	copyOf := gen[3]
	copyOf.Name = "copy"
	tests := []struct {
		name string
		msgs []relaytest.Message
		want []string // substrings of the error; none: no error
	}{
		{"generated", gen, nil},
		{"same message twice", []relaytest.Message{gen[0], gen[3], copyOf}, []string{gen[3].Name + " and copy have the same fingerprint"}},
		{"no fingerprint fields", []relaytest.Message{gen[0], noFP}, []string{"bare: no Date, From"}},
		{"no recipients", []relaytest.Message{{Name: "nobody", Data: gen[0].Data}}, []string{"nobody: no recipients"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newMessageSet(tt.msgs)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want %q", err, w)
				}
			}
		})
	}
}

// The shared corpus of real Exchange messages must be usable as a message
// set: no two messages may share a fingerprint.
func TestCorpusFingerprintsUnique(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "..", "shared", "corpus", "exchange")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no Exchange corpus at %s", dir)
	}
	msgs, err := relaytest.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newMessageSet(msgs); err != nil {
		t.Fatal(err)
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	gen := relaytest.Generate(relaytest.GenerateOptions{Seed: 1})
	var plain, multi relaytest.Message
	for _, m := range gen {
		switch m.Kind {
		case relaytest.KindPlain:
			plain = m
		case relaytest.KindMultiRcpt:
			multi = m
		}
	}
	if len(multi.To) < 2 {
		t.Fatalf("multi-recipient message has %d recipients", len(multi.To))
	}
	set, err := newMessageSet([]relaytest.Message{plain, multi})
	if err != nil {
		t.Fatal(err)
	}
	ok := []relaytest.Result{{Accepted: true}, {Accepted: true}}
	deliver := func(m relaytest.Message, rcpts ...string) relaytest.Delivery {
		return relaytest.Delivery{Rcpts: rcpts, Data: m.Data}
	}
	// A re-folded Subject, a footer and a new Message-ID: the fingerprint
	// still matches, the identity does not.
	if !bytes.Contains(plain.Data, []byte("\r\nMessage-ID:")) {
		t.Fatal("test message has no Message-ID field")
	}
	damaged := bytes.Replace(plain.Data, []byte("\r\nMessage-ID:"), []byte("\r\nMessage-ID: <new@vendor.example>\r\nX-Old-Message-ID:"), 1)
	damaged = bytes.Replace(damaged, []byte("\r\n\r\n"), []byte("\r\n\r\nFooter.\r\n"), 1)
	upper := strings.ToUpper(multi.To[0])

	tests := []struct {
		name       string
		results    []relaytest.Result
		deliveries []relaytest.Delivery
		check      func(t *testing.T, c *CellResult)
	}{
		{"all once", ok, []relaytest.Delivery{deliver(plain, plain.To...), deliver(multi, multi.To...)}, func(t *testing.T, c *CellResult) {
			if !c.Complete() || c.Lost+c.Duplicated != 0 || c.IdentityIntact != 2 {
				t.Errorf("%+v", c)
			}
		}},
		{"split per recipient, case-insensitive", ok, []relaytest.Delivery{deliver(plain, plain.To...), deliver(multi, upper), deliver(multi, multi.To[1:]...)}, func(t *testing.T, c *CellResult) {
			if !c.Complete() || c.DeliveredOnce != c.Recipients {
				t.Errorf("%+v", c)
			}
		}},
		{"one recipient twice", ok, []relaytest.Delivery{deliver(plain, plain.To...), deliver(multi, multi.To...), deliver(multi, multi.To[0])}, func(t *testing.T, c *CellResult) {
			if c.Duplicated != 1 || c.Survived != 1 || c.Messages[1].Survived || c.Messages[1].Recipients[0].Deliveries != 2 || c.IdentityIntact != 2 {
				t.Errorf("%+v", c)
			}
		}},
		{"lost and not accepted", []relaytest.Result{{Accepted: true}, {Err: errors.New("550 no")}}, []relaytest.Delivery{deliver(plain, plain.To...)}, func(t *testing.T, c *CellResult) {
			if c.Lost != len(multi.To) || c.NotAccepted != 1 || c.Messages[1].Identity != "not delivered" || c.Messages[1].SendError != "550 no" {
				t.Errorf("%+v", c)
			}
			if !strings.Contains(c.Damage.Summary, "1 of 2 messages not accepted") || !strings.Contains(c.Damage.Summary, "recipients lost") {
				t.Errorf("summary %q", c.Damage.Summary)
			}
		}},
		{"identity damaged on one delivery", ok, []relaytest.Delivery{deliver(plain, plain.To...), {Rcpts: plain.To, Data: damaged}, deliver(multi, multi.To...)}, func(t *testing.T, c *CellResult) {
			m := c.Messages[0]
			if m.IdentityIntact || !slices.Equal(m.Changed, []string{"message-id"}) || c.Damage.Changed["message-id"] != 1 || c.IdentityIntact != 1 {
				t.Errorf("%+v", c)
			}
			if !strings.Contains(c.Damage.Summary, "changed Message-ID (1)") {
				t.Errorf("summary %q", c.Damage.Summary)
			}
		}},
		{"unmatched and extra recipients", ok, []relaytest.Delivery{deliver(plain, append([]string{"stranger@example.com"}, plain.To...)...), deliver(multi, multi.To...),
			{Rcpts: []string{"x@example.com"}, Data: []byte("Subject: bounce\r\n\r\n")}}, func(t *testing.T, c *CellResult) {
			if c.Unmatched != 1 || c.ExtraRecipients != 1 || !c.Complete() || c.Deliveries != 3 {
				t.Errorf("%+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, evaluate(set, tt.results, tt.deliveries))
		})
	}
}

// tnefStream builds a minimal TNEF stream carrying one attMessageClass.
func tnefStream(class string) []byte {
	le16 := func(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }
	le32 := func(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
	data := append([]byte(class), 0)
	var sum uint16
	for _, b := range data {
		sum += uint16(b)
	}
	var out []byte
	out = append(out, le32(0x223E9F78)...)
	out = append(out, le16(1)...)
	out = append(out, 1)
	out = append(out, le32(0x00078008)...)
	out = append(out, le32(uint32(len(data)))...)
	out = append(out, data...)
	return append(out, le16(sum)...)
}

// mimeWithTNEF wraps a TNEF stream into a message, as content type typ.
func mimeWithTNEF(typ, stream string) []byte {
	return []byte("From: a@contoso.com\r\nTo: b@contoso.com\r\nSubject: Recall: x\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" +
		"--b\r\nContent-Type: " + typ + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" + stream + "\r\n--b--\r\n")
}

func TestClassifyRecall(t *testing.T) {
	t.Parallel()
	b64 := func(class string) string {
		var sb strings.Builder
		enc := base64.NewEncoder(base64.StdEncoding, &sb)
		enc.Write(tnefStream(class))
		enc.Close()
		return sb.String()
	}
	tests := []struct {
		name string
		data []byte
		want RecallKind
	}{
		{"request header", []byte("Subject: Recall: x\r\nX-MS-Exchange-RecallReportGenerated: true\r\n\r\nbody\r\n"), RecallRequest},
		{"request header, lower case", []byte("subject: Recall: x\r\nx-ms-exchange-recallreportgenerated: true\r\n\r\n"), RecallRequest},
		{"report header", []byte("Subject: r\r\nX-MS-Exchange-Generated-Message-Source: Transport Message Recall Routing Agent\r\n\r\n"), RecallReport},
		{"report header beats request header", []byte("X-MS-Exchange-RecallReportGenerated: true\r\nX-MS-Exchange-Generated-Message-Source:\r\n Transport Message Recall Routing Agent\r\n\r\n"), RecallReport},
		{"other generated mail", []byte("X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\r\n\r\n"), NotRecall},
		{"TNEF recall class", mimeWithTNEF("application/ms-tnef", b64("IPM.Outlook.Recall")), RecallRequest},
		{"TNEF report class", mimeWithTNEF("application/vnd.ms-tnef", b64("IPM.Recall.Report.Success")), RecallReport},
		{"winmail.dat as octet-stream", mimeWithTNEF(`application/octet-stream; name="winmail.dat"`, b64("IPM.Outlook.Recall")), RecallRequest},
		{"TNEF note", mimeWithTNEF("application/ms-tnef", b64("IPM.Note")), NotRecall},
		{"broken TNEF", mimeWithTNEF("application/ms-tnef", "AAAA"), NotRecall},
		{"plain message", []byte("Subject: Recall: looks like one\r\n\r\nbut is not\r\n"), NotRecall},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassifyRecall(tt.data); got != tt.want {
				t.Errorf("ClassifyRecall = %q, want %q", got, tt.want)
			}
		})
	}
	// The generated set: requests by header and by TNEF, reports by header.
	for _, m := range relaytest.Generate(relaytest.GenerateOptions{Seed: 1}) {
		want := NotRecall
		switch m.Kind {
		case relaytest.KindRecallRequest, relaytest.KindTNEFRecall:
			want = RecallRequest
		case relaytest.KindRecallReport:
			want = RecallReport
		}
		if got := ClassifyRecall(m.Data); got != want {
			t.Errorf("%s: %q, want %q", m.Name, got, want)
		}
		if m.Kind == relaytest.KindTNEFRecall {
			// Without its headers, the TNEF class alone still tells.
			var kept []string
			for _, l := range strings.SplitAfter(string(m.Data), "\r\n") {
				if !strings.HasPrefix(strings.ToLower(l), "x-ms-exchange-recallreport") {
					kept = append(kept, l)
				}
			}
			if got := ClassifyRecall([]byte(strings.Join(kept, ""))); got != RecallRequest {
				t.Errorf("%s without recall headers: %q, want request", m.Name, got)
			}
		}
	}
}

func TestDefaultCases(t *testing.T) {
	t.Parallel()
	cases := DefaultCases()
	names := map[string]string{}
	for _, c := range cases {
		if _, dup := names[c.Name]; dup {
			t.Errorf("case %s twice", c.Name)
		}
		names[c.Name] = c.Behaviors
		if _, err := relaytest.ParseBehaviors(c.Behaviors); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	for _, b := range relaytest.Behaviors() {
		if _, ok := names[b.Name]; !ok {
			t.Errorf("behaviour %s is not in the matrix", b.Name)
		}
	}
	for name, want := range map[string]string{
		"delay":             "delay=200ms",
		"signature-service": "signature-service",
		"scanner":           "reencode,stamp-marker=X-Scanner-Processed: yes",
		"strip-and-rewrite": "strip-ms-headers,rewrite-message-id,footer-text",
	} {
		if names[name] != want {
			t.Errorf("%s = %q, want %q", name, names[name], want)
		}
	}
}
