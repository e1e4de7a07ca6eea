package status_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/status"
)

// clock is a settable clock for the recorder and the page.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newClock() *clock { return &clock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)} }

func delivered(leg, id, ref, from string, rcpts ...string) *relay.Outcome {
	return &relay.Outcome{Leg: leg, MessageID: id, Ref: ref, From: from, Recipients: rcpts, Rcpts: len(rcpts),
		Route: "signatures", Hop: map[string]string{"tenant": "signatures", "return": "tenant"}[leg],
		Result: "delivered", Code: 250, HopReply: "2.0.0 Ok: queued as " + id}
}

func TestSearch(t *testing.T) {
	ms := []status.Message{
		{MessageID: "<A1@contoso.com>", Ref: "refone", From: "lynne@contoso.com", Recipients: []string{"Pradeep@Contoso.com"}},
		{MessageID: "<vendor-rewrote@sig.example>", ClientMessageID: "", Ref: "reftwo", From: "megan@contoso.com", Recipients: []string{"alex@fabrikam.com"}},
		{MessageID: "<B2@contoso.com>", ClientMessageID: "<vendor-2@sig.example>", Ref: "", From: "", Recipients: nil},
	}
	tests := []struct {
		q    string
		want []int // indexes into ms
	}{
		{"", []int{0, 1, 2}},
		{"   ", []int{0, 1, 2}},
		{"<A1@contoso.com>", []int{0}},
		{"a1@CONTOSO.com", []int{0}},         // brackets optional, case ignored
		{"<vendor-2@sig.example>", []int{2}}, // the id a vendor sent finds the original
		{"refone", []int{0}},                 // a reference, whole
		{"refo", nil},                        // references are not searched in part
		{"pradeep@contoso.com", []int{0}},    // a recipient, case ignored
		{"fabrikam.com", []int{1}},           // part of an address
		{"contoso.com", []int{0, 1, 2}},      // ids and addresses alike
		{"nobody@nowhere.invalid", nil},
	}
	for _, tt := range tests {
		got := status.Search(ms, tt.q)
		var idx []int
		for _, g := range got {
			for i := range ms {
				if ms[i].MessageID == g.MessageID {
					idx = append(idx, i)
				}
			}
		}
		if fmt.Sprint(idx) != fmt.Sprint(tt.want) {
			t.Errorf("Search(%q) = %v, want %v", tt.q, idx, tt.want)
		}
	}
}

func TestRecorderKeepsNewestAndCountsAll(t *testing.T) {
	r := status.New(status.Config{Keep: 3})
	for i := range 5 {
		r.MessageDone(delivered("tenant", fmt.Sprintf("<%d@x>", i), "", "a@x", "b@x"))
	}
	s := r.Snapshot()
	var ids []string
	for _, m := range s.Messages {
		ids = append(ids, m.MessageID)
	}
	if got, want := strings.Join(ids, " "), "<4@x> <3@x> <2@x>"; got != want {
		t.Errorf("kept %s, want the newest three, newest first: %s", got, want)
	}
	if n := s.Totals.Count("tenant", ""); n != 5 {
		t.Errorf("totals count %d tenant-leg messages, want all 5", n)
	}
	if n := s.Totals.Count("tenant", "delivered"); n != 5 {
		t.Errorf("totals count %d delivered, want 5", n)
	}
}

// A hop's state follows its last event: a refusal or an unreachable hop
// after a success makes it failing, a success after that clears it.
func TestRecorderHopStates(t *testing.T) {
	c := newClock()
	r := status.New(status.Config{Now: c.now})
	r.MessageDone(delivered("tenant", "<1@x>", "r1", "a@x", "b@x"))
	c.t = c.t.Add(time.Minute)
	r.NextHopFailed(relay.NextHopFailed{Leg: "tenant", Hop: "signatures", Stage: "connect", Code: 451,
		Err: errors.New("dial tcp 127.0.0.1:1: connection refused")})
	c.t = c.t.Add(time.Minute)
	refused := delivered("return", "<2@x>", "r2", "a@x", "b@x")
	refused.Result, refused.Code, refused.HopReply = "rejected", 550, "5.7.1 Relay access denied"
	refused.Err = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "tenant refused: Relay access denied"}
	r.MessageDone(refused)
	c.t = c.t.Add(time.Minute)
	r.MessageDone(&relay.Outcome{Leg: "tenant", MessageID: "<3@x>", Result: "tempfail", Code: 451}) // reached no hop
	s := r.Snapshot()
	sig, tenant := s.Hops["signatures"], s.Hops["tenant"]
	if sig.Successes != 1 || sig.Failures != 1 || sig.LastFailureStage != "connect" ||
		!sig.LastFailure.After(sig.LastSuccess) || !strings.Contains(sig.LastFailureReply, "connection refused") {
		t.Errorf("signatures = %+v, want one success then a connect failure", sig)
	}
	if tenant.Successes != 0 || tenant.Failures != 1 || tenant.LastFailureReply != "5.7.1 Relay access denied" ||
		tenant.LastFailureMessageID != "<2@x>" {
		t.Errorf("tenant = %+v, want the refusal of <2@x>", tenant)
	}
	if _, ok := s.Hops[""]; ok {
		t.Error("a message that reached no hop made a hop of no name")
	}
	c.t = c.t.Add(time.Minute)
	r.MessageDone(delivered("tenant", "<4@x>", "r4", "a@x", "b@x"))
	if h := r.Snapshot().Hops["signatures"]; !h.LastSuccess.After(h.LastFailure) || h.Successes != 2 {
		t.Errorf("after a new success signatures = %+v", h)
	}
	r.StoreFailed(relay.StoreFailed{Leg: "return", Op: "lookup", Err: errors.New("dial tcp: i/o timeout")})
	if st := r.Snapshot().Store; st.Failures != 1 || st.LastOp != "lookup" || st.LastError != "dial tcp: i/o timeout" {
		t.Errorf("store = %+v", st)
	}
}

// source is a relay as the page sees it.
type source struct {
	ready error
}

func (s source) Listeners() []relay.ListenerInfo {
	lc := relay.DefaultListener()
	return []relay.ListenerInfo{{Leg: "tenant", Addr: "127.0.0.1:2525", Config: lc, Sessions: 2}, {Leg: "return", Addr: "127.0.0.1:2526", Config: lc}}
}

func (s source) NextHops() ([]relay.NextHop, relay.NextHop) {
	return []relay.NextHop{{Name: "signatures", Address: "sig.example:25", StartTLS: relay.StartTLSRequired}},
		relay.NextHop{Name: "tenant", Address: "contoso-com.mail.protection.outlook.com:25", StartTLS: relay.StartTLSRequired}
}

func (s source) Ready(context.Context) error { return s.ready }

func get(t *testing.T, h http.Handler, query string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?"+query, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestPage(t *testing.T) {
	c := newClock()
	r := status.New(status.Config{Now: c.now})
	r.MessageDone(delivered("tenant", "<A1@contoso.com>", "refone", "lynne@contoso.com", "pradeep@contoso.com"))
	r.MessageDone(delivered("return", "<A1@contoso.com>", "refone", "lynne@contoso.com", "pradeep@contoso.com"))
	hostile := delivered("tenant", `<"><script>alert(1)</script>@evil>`, "", "x@evil", "y@contoso.com")
	r.MessageDone(hostile)
	page := func(rcpts relay.RecipientLogging, ready error) http.Handler {
		return status.NewPage(status.PageConfig{Recorder: r, Source: source{ready: ready}, Version: "recallrelay v1.2.3",
			Started: c.t.Add(-90 * time.Minute), Now: c.now, Recipients: rcpts,
			Summary: func() (string, string) { return "hostname: relay.contoso.com\n", "3 rules" }})
	}

	code, body := get(t, page(relay.RecipientsNone, nil), "")
	if code != 200 {
		t.Fatalf("GET / = %d", code)
	}
	for _, want := range []string{
		"recallrelay v1.2.3", "up <span id=\"uptime\">1h30m0s</span>", "Ready: listeners up",
		`<td class="num" data-result="all">2</td>`, // two tenant-leg messages
		"sig.example:25", "contoso-com.mail.protection.outlook.com:25", "2.0.0 Ok: queued as",
		"127.0.0.1:2525", "<td>required</td>", "143.1 MiB", // a hop's STARTTLS mode; the listener's default size limit
		"hostname: relay.contoso.com", "Rules: 3 rules",
		"3 messages kept (at most 1000)",
		"&lt;script&gt;", // escaped
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("a Message-ID's markup reached the page unescaped")
	}
	if strings.Contains(body, "pradeep@contoso.com") {
		t.Error("recipients: none shows a recipient's address")
	}

	_, body = get(t, page(relay.RecipientsFull, nil), "q="+url.QueryEscape("refone"))
	if n := strings.Count(body, `<tr class="message"`); n != 2 {
		t.Errorf("search by reference lists %d messages, want both legs' 2", n)
	}
	if !strings.Contains(body, "2 of the last 1000 kept messages match") || !strings.Contains(body, "pradeep@contoso.com") {
		t.Error("search result lacks its count or, with recipients: full, the recipient")
	}
	_, body = get(t, page(relay.RecipientsHash, nil), "q="+url.QueryEscape("PRADEEP@contoso.com"))
	if n := strings.Count(body, `<tr class="message"`); n != 2 || strings.Contains(body, "pradeep@contoso.com</td>") {
		t.Errorf("search by address lists %d messages, want 2, hashed", n)
	}

	_, body = get(t, page(relay.RecipientsNone, errors.New("relay: not ready: store: connection refused")), "")
	if !strings.Contains(body, "Not ready: relay: not ready: store: connection refused") {
		t.Error("page does not say the relay is not ready")
	}
	if code, _ := get(t, page(relay.RecipientsNone, nil), "q="+strings.Repeat("a", 600)); code != http.StatusBadRequest {
		t.Errorf("an over-long search = %d, want 400", code)
	}
}

func TestPageHeaders(t *testing.T) {
	rec := httptest.NewRecorder()
	status.NewPage(status.PageConfig{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	h := rec.Result().Header
	for k, want := range map[string]string{
		"Content-Type":    "text/html; charset=utf-8",
		"Cache-Control":   "no-store",
		"X-Frame-Options": "DENY",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q: scripts are not ruled out", csp)
	}
}
