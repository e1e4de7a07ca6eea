package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/relay"
)

// The log is one observer: its message line has the same field names on
// both legs, plus each leg's own, as the README documents them.
func TestLogObserverMessageLine(t *testing.T) {
	tests := []struct {
		name  string
		rcpts relay.RecipientLogging
		o     relay.Outcome
		keys  string
		check map[string]any // field values to check
	}{
		{"tenant, routed by rules", "", relay.Outcome{Leg: "tenant", Session: "s1", Client: "192.0.2.1", MessageID: "<m@x>", Ref: "r", From: "a@x", Rcpts: 2,
			Recipients: []string{"b@x", "c@x"}, Size: 10, Route: "signatures", Rules: []string{"sign"}, Decision: "route signatures", RouteNotes: []string{"n"},
			Result: "delivered", Code: 250, Duration: time.Millisecond, TLS: "TLS 1.3 TLS_AES_128_GCM_SHA256", KeyID: "k1", HopReply: "2.0.0 OK queued as 4Xy"},
			"client code decision duration_ms from key_id leg level message message_id next_hop_reply rcpt_count ref result route_notes rules session size tls vendor",
			map[string]any{"session": "s1", "key_id": "k1", "next_hop_reply": "2.0.0 OK queued as 4Xy"}},
		{"return, vendor rewrote the Message-ID, recipients hashed", relay.RecipientsHash, relay.Outcome{Leg: "return", Session: "s2", Client: "192.0.2.2", Auth: "cert:vendor", MatchedBy: "reference",
			MessageID: "<orig@x>", ClientMessageID: "<rewritten@vendor>", Recipients: []string{"Bob@X"},
			Suppressed: []string{"b@x"}, Result: "rejected", Code: 550, Err: errors.New("refused")},
			"auth client client_message_id code duration_ms error from leg level matched_by message message_id rcpt_count rcpt_hashes ref removed restored result session size suppressed vendor",
			map[string]any{"message_id": "<orig@x>", "client_message_id": "<rewritten@vendor>"}},
		{"recipients in full", relay.RecipientsFull, relay.Outcome{Leg: "tenant", Recipients: []string{"b@x"}, Result: "delivered", Code: 250},
			"client code duration_ms from leg level message message_id rcpt_count rcpts ref result session size vendor", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			relay.LogObserver{Log: zerolog.New(&buf), Recipients: tt.rcpts}.MessageDone(&tt.o)
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("%v: %s", err, buf.String())
			}
			var keys []string
			for k := range line {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if got := strings.Join(keys, " "); got != tt.keys {
				t.Errorf("fields\n got %s\nwant %s", got, tt.keys)
			}
			if line["message"] != "message" || line["result"] != tt.o.Result || line["leg"] != tt.o.Leg {
				t.Errorf("line %s", buf.String())
			}
			for k, v := range tt.check {
				if line[k] != v {
					t.Errorf("%s = %v, want %v", k, line[k], v)
				}
			}
			if tt.rcpts == relay.RecipientsHash && strings.Contains(buf.String(), "@") && strings.Contains(buf.String(), "Bob") {
				t.Errorf("hashed recipients leak an address: %s", buf.String())
			}
		})
	}
}

// Every observer sees every message's outcome with its stages, and a
// MemoryObserver can be waited on.
func TestObserversSeeOutcomes(t *testing.T) {
	h := newHarness(t, nil)
	out := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
	if code, text := h.sendBack(vendorise(out, false, false), "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
	o := h.waitOutcome(t, func(o relay.Outcome) bool { return o.Leg == "return" })
	tenant := h.waitOutcome(t, func(o relay.Outcome) bool { return o.Leg == "tenant" })
	if tenant.Ref == "" || tenant.Ref != o.Ref || o.MatchedBy != "reference" || o.Result != "delivered" || o.Code != 250 ||
		o.HopReply == "" || o.Size == 0 || o.Stages.Header <= 0 || o.Stages.Store <= 0 || o.Stages.HopReply <= 0 || o.Duration < o.Stages.HopReply {
		t.Errorf("return outcome %+v", o)
	}
	if !reflect.DeepEqual(o.Restored, []string{"thread-topic", "x-ms-exchange-crosspremises-antispam-scancontext",
		"x-ms-exchange-crosspremises-authas", "x-ms-exchange-crosspremises-authsource", "x-organizationheaderspreserved"}) {
		t.Errorf("restored %v", o.Restored)
	}
}

// Ready says whether the relay should get mail: listeners up, store
// reachable, not shutting down; Sessions counts open sessions per leg.
func TestReadyAndSessions(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	if err := h.relay.Ready(ctx); err != nil {
		t.Fatalf("Ready = %v", err)
	}
	c := dial(t, h.relay.TenantAddr())
	if n := h.relay.Sessions(); n["tenant"] != 1 || n["return"] != 0 {
		t.Errorf("Sessions = %v", n)
	}
	c.cmd(221, "QUIT")
	h.store.(interface{ Close() error }).Close()
	if err := h.relay.Ready(ctx); !errors.Is(err, relay.ErrNotReady) || !strings.Contains(err.Error(), "store") {
		t.Errorf("Ready with the store closed = %v", err)
	}
}

// The return leg's outcome names the message by its original Message-ID,
// with the one the vendor rewrote beside it, and the key that verified the
// reference; every outcome carries its connection's session id.
func TestReturnOutcomeNamesTheOriginal(t *testing.T) {
	h := newHarness(t, nil)
	out := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
	if code, text := h.sendBack(vendorise(out, false, true), "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
	o := h.waitOutcome(t, func(o relay.Outcome) bool { return o.Leg == "return" })
	if o.MessageID != "<orig-1@AM0PR01MB1.eurprd01.prod.outlook.com>" || o.ClientMessageID != "<rewritten@vendor.example>" ||
		o.KeyID != "t1" || len(o.Session) != 16 {
		t.Errorf("outcome: message_id %q client_message_id %q key_id %q session %q", o.MessageID, o.ClientMessageID, o.KeyID, o.Session)
	}
	tenant := h.waitOutcome(t, func(o relay.Outcome) bool { return o.Leg == "tenant" })
	if tenant.KeyID != "t1" || tenant.Session == o.Session || strings.Join(tenant.Recipients, ",") != "bob@fabrikam.example" {
		t.Errorf("tenant outcome: key_id %q session %q recipients %v", tenant.KeyID, tenant.Session, tenant.Recipients)
	}
}
