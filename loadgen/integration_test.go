package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/internal/testpki"
	"github.com/recallrelay/recallrelay/relaytest"
)

// received is a message a server got: envelope and bytes.
type received struct {
	from string
	to   []string
	data []byte
}

var seqRE = regexp.MustCompile(`LG([0-9a-f]{8})\.([0-9]{10})`)

// checkReceived asserts that got is exactly messages 0..n-1 of src, each
// once, byte for byte, with its envelope.
func checkReceived(t *testing.T, src Source, n int64, got []received) {
	t.Helper()
	if int64(len(got)) != n {
		t.Fatalf("server received %d messages, want %d", len(got), n)
	}
	seen := map[int64]bool{}
	for _, r := range got {
		m := seqRE.FindSubmatch(r.data)
		if m == nil {
			t.Fatalf("received a message without a loadgen Message-ID: %.200q", r.data)
		}
		i, _ := strconv.ParseInt(string(m[2]), 10, 64)
		if seen[i] {
			t.Fatalf("message %d received twice", i)
		}
		seen[i] = true
		want := src.Message(i)
		if !bytes.Equal(r.data, want.Bytes()) {
			t.Fatalf("message %d differs: got %d bytes, want %d", i, len(r.data), want.Size)
		}
		if r.from != want.From || fmt.Sprint(r.to) != fmt.Sprint(want.To) {
			t.Fatalf("message %d envelope %s -> %v, want %s -> %v", i, r.from, r.to, want.From, want.To)
		}
	}
}

type variant struct {
	name string
	cfg  Config
}

func variants() []variant {
	return []variant{
		{"DATA", Config{Senders: 3, PerConn: 1}},
		{"DATA+PIPELINING+reuse", Config{Senders: 2, PerConn: 5, Pipelining: true}},
		{"DATA+PIPELINING+RSET", Config{Senders: 2, PerConn: 0, Pipelining: true, RSET: true}},
		{"BDAT", Config{Senders: 2, PerConn: 3, BDAT: true, ChunkSize: 4000}},
		{"BDAT+PIPELINING", Config{Senders: 3, PerConn: 0, BDAT: true, ChunkSize: 1000, Pipelining: true, RSET: true}},
	}
}

func sources(t *testing.T) map[string]Source {
	syn, err := NewSynthetic(SyntheticOptions{Size: 150_001})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := NewExchange(ExchangeOptions{}) // 8-bit, SMTPUTF8, several recipients, lines that start with '.'
	if err != nil {
		t.Fatal(err)
	}
	exPad, err := NewExchange(ExchangeOptions{Size: 40_003})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]Source{"synthetic": syn, "exchange": ex, "exchange-padded": exPad}
}

func runLoad(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != cfg.Messages || res.Failed != 0 || len(res.Errors) != 0 {
		t.Fatalf("accepted %d of %d, errors %+v", res.Accepted, cfg.Messages, res.Errors)
	}
	if res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.MsgPerSec <= 0 {
		t.Fatalf("figures: %+v", res)
	}
	return res
}

func TestAgainstSinks(t *testing.T) {
	for _, impl := range []string{SinkFast, SinkGoSMTP} {
		for sname, src := range sources(t) {
			for _, v := range variants() {
				t.Run(impl+"/"+sname+"/"+v.name, func(t *testing.T) {
					s, err := StartSink(SinkConfig{Impl: impl, Keep: 1000})
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					cfg := v.cfg
					cfg.Addr, cfg.Source, cfg.Messages = s.Addr(), src, 25
					res := runLoad(t, cfg)
					var bytesSent int64
					for i := int64(0); i < cfg.Messages; i++ {
						bytesSent += src.Message(i).Size
					}
					st := s.Stats()
					if st.Messages != 25 || st.Bytes != bytesSent || res.Bytes != bytesSent {
						t.Fatalf("sink counted %d messages, %d bytes; sent %d bytes (result says %d)", st.Messages, st.Bytes, bytesSent, res.Bytes)
					}
					var got []received
					for _, k := range s.Kept() {
						got = append(got, received{k.From, k.To, k.Data})
					}
					checkReceived(t, src, cfg.Messages, got)
				})
			}
		}
	}
}

// TestAgainstTenant runs the generator against relaytest's Tenant, a
// recording go-smtp server written independently of the sink.
func TestAgainstTenant(t *testing.T) {
	for sname, src := range sources(t) {
		for _, v := range variants() {
			t.Run(sname+"/"+v.name, func(t *testing.T) {
				tn := relaytest.StartTenant(t, relaytest.TenantConfig{})
				cfg := v.cfg
				cfg.Addr, cfg.Source, cfg.Messages = tn.Addr(), src, 14
				runLoad(t, cfg)
				var got []received
				for _, d := range tn.Deliveries() {
					got = append(got, received{d.MailFrom, d.Rcpts, d.Data})
				}
				checkReceived(t, src, cfg.Messages, got)
			})
		}
	}
}

func TestStartTLS(t *testing.T) {
	ca := testpki.NewCA(t, "loadgen test CA")
	cert := ca.Issue(t, "sink.test", x509.ExtKeyUsageServerAuth)
	src, _ := NewSynthetic(SyntheticOptions{Size: 5000})
	for _, impl := range []string{SinkFast, SinkGoSMTP} {
		t.Run(impl, func(t *testing.T) {
			s, err := StartSink(SinkConfig{Impl: impl, Keep: 100, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			cfg := Config{Addr: s.Addr(), Source: src, Messages: 10, Senders: 2, PerConn: 3, Pipelining: true, BDAT: impl == SinkFast,
				TLSConfig: &tls.Config{RootCAs: ca.Pool, ServerName: "sink.test"}}
			runLoad(t, cfg)
			var got []received
			for _, k := range s.Kept() {
				got = append(got, received{k.From, k.To, k.Data})
			}
			checkReceived(t, src, 10, got)
		})
	}
}

// TestRefusals: refused recipients and refused data are counted by reply
// code, and the connection goes on.
func TestRefusals(t *testing.T) {
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{})
	for _, pipe := range []bool{false, true} {
		for _, bdat := range []bool{false, true} {
			tn.Reset()
			tn.RejectRcpt("gone@example.com", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
			tn.RejectNextData(2, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"})
			src, _ := NewSynthetic(SyntheticOptions{Size: 3000, To: []string{"ok@example.com", "gone@example.com"}})
			res, err := Run(context.Background(), Config{Addr: tn.Addr(), Source: src, Messages: 6, PerConn: 0,
				Pipelining: pipe, BDAT: bdat, ChunkSize: 1000})
			if err != nil {
				t.Fatal(err)
			}
			keys := map[string]int64{}
			for _, e := range res.Errors {
				keys[e.Key] = e.Count
			}
			if res.Accepted != 4 || keys["451"] != 2 || keys["550"] != 6 || res.Connections != 1 {
				t.Fatalf("pipelining %v bdat %v: accepted %d, errors %+v, connections %d", pipe, bdat, res.Accepted, res.Errors, res.Connections)
			}
			// all recipients refused: the message fails with the RCPT code
			src2, _ := NewSynthetic(SyntheticOptions{Size: 3000, To: []string{"gone@example.com"}})
			res, _ = Run(context.Background(), Config{Addr: tn.Addr(), Source: src2, Messages: 3, PerConn: 0, Pipelining: pipe, BDAT: bdat})
			if res.Accepted != 0 || len(res.Errors) != 1 || res.Errors[0].Key != "550" || res.Errors[0].Count != 3 || res.Connections != 1 {
				t.Fatalf("pipelining %v bdat %v, all refused: %+v", pipe, bdat, res)
			}
		}
	}
}

// dotSource makes messages whose lines begin with dots, across buffer
// boundaries: what DATA must stuff and a sink unstuff.
type dotSource struct{}

func (dotSource) Describe() string { return "dot lines" }

func (dotSource) Message(i int64) Message {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Message-ID: <LG00000000.%010d@x>\r\n\r\n", i)
	lines := []string{".", "..", ".x.", "a.b", "...", "x", ". .", ""}
	for k := 0; b.Len() < 70_000+int(i)*997; k++ {
		b.WriteString(lines[(k+int(i))%len(lines)])
		b.WriteString("\r\n")
	}
	data := b.Bytes()
	return Message{From: "a@example.com", To: []string{"b@example.com"}, Size: int64(len(data)), Content: bytes.NewReader(data)}
}

func TestDotLines(t *testing.T) {
	for _, impl := range []string{SinkFast, SinkGoSMTP} {
		t.Run(impl, func(t *testing.T) {
			s, err := StartSink(SinkConfig{Impl: impl, Keep: 100})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			runLoad(t, Config{Addr: s.Addr(), Source: dotSource{}, Messages: 20, Senders: 2, PerConn: 0, Pipelining: true})
			var got []received
			for _, k := range s.Kept() {
				got = append(got, received{k.From, k.To, k.Data})
			}
			checkReceived(t, dotSource{}, 20, got)
		})
	}
}
