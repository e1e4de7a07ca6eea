package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

func TestClassifyTrace(t *testing.T) {
	const ref = "abcdefghijklmnopqrstuvwxyz"
	tests := []struct {
		q, as      string
		wantLookup string
		wantKey    string
	}{
		{ref, lookupAuto, lookupRef, ref},
		{"v=1; k=k1; r=" + ref + "; t=1700000000; s=xyz", lookupAuto, lookupRef, ref},
		{"X-RecallRelay-Ref: v=1; k=k1; r=" + ref + "; h=1; t=1; s=x", lookupAuto, lookupRef, ref},
		{"v=1; k=k1; r=NOT-A-REF; t=1", lookupAuto, lookupMessageID, "<v=1;k=k1;r=NOT-A-REF;t=1>"},
		{"<a.b@contoso.example>", lookupAuto, lookupMessageID, "<a.b@contoso.example>"},
		{"Message-ID: <a.b@contoso.example> (comment)", lookupAuto, lookupMessageID, "<a.b@contoso.example>"},
		{"a.b@contoso.example", lookupAuto, lookupEither, "a.b@contoso.example"},
		{"a.b@contoso.example", lookupMessageID, lookupMessageID, "<a.b@contoso.example>"},
		{"a.b@contoso.example", lookupAddress, lookupAddress, "a.b@contoso.example"},
		{"no-at-sign", lookupAuto, lookupMessageID, "<no-at-sign>"},
		{"ref-1", lookupRef, lookupRef, "ref-1"},
		{ref, lookupMessageID, lookupMessageID, "<" + ref + ">"},
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZ", lookupAuto, lookupMessageID, "<ABCDEFGHIJKLMNOPQRSTUVWXYZ>"},
	}
	for _, tt := range tests {
		lookup, key := classifyTrace(tt.q, tt.as)
		if lookup != tt.wantLookup || key != tt.wantKey {
			t.Errorf("classifyTrace(%q, %s) = %s %q, want %s %q", tt.q, tt.as, lookup, key, tt.wantLookup, tt.wantKey)
		}
	}
}

func TestTraceText(t *testing.T) {
	tests := []struct{ in, wantClean, wantShort string }{
		{"plain", "plain", "plain"},
		{"esc\x1b[2Jape", "esc\uFFFD[2Jape", "esc\x1b[2Jape"},
		{"bidi\u202eevil", "bidi\uFFFDevil", "bidi\u202eevil"},
		{"bad\xffutf8", "bad\uFFFDutf8", "bad\xffutf8"},
		{"a  b\t c", "a  b\uFFFD c", "a b c"},
		{strings.Repeat("x", 70), strings.Repeat("x", 70), strings.Repeat("x", 59) + "…"},
	}
	for _, tt := range tests {
		if got := cleanText(tt.in); got != tt.wantClean {
			t.Errorf("cleanText(%q) = %q, want %q", tt.in, got, tt.wantClean)
		}
		if got := shorten(tt.in, traceValueWidth); got != tt.wantShort {
			t.Errorf("shorten(%q) = %q, want %q", tt.in, got, tt.wantShort)
		}
	}
	if got := fieldValue([]byte("Thread-Topic: =?utf-8?B?R3I=?=\r\n =?utf-8?B?w6Q=?=\r\n")); got != "=?utf-8?B?R3I=?= =?utf-8?B?w6Q=?=" {
		t.Errorf("fieldValue unfolded to %q", got)
	}
}

// traceFixture is a store with three records, and the configuration that
// names it.
type traceFixture struct {
	config     string
	ref1, ref2 string // alice's messages
	ref3       string // someone else's
	ref4       string // recorded with a Message-ID without angle brackets
	writer     store.Store
	closeWrite func() // lets trace open the store
}

// traceConfig writes a configuration with the given store section.
func traceConfig(t *testing.T, storeSection string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "recallrelay.yaml")
	err := os.WriteFile(p, []byte(`listeners:
  tenant: {listen: "127.0.0.1:2525"}
  return: {listen: "127.0.0.1:2526"}
vendors:
  - {name: signatures, address: "127.0.0.1:10025"}
tenant: {address: "127.0.0.1:10026"}
reference:
  keys:
    - {id: k1, secret: "0123456789abcdef0123456789abcdef"}
store:
`+storeSection), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fillTraceStore writes the fixture's records and their delivery state.
func fillTraceStore(t *testing.T, st store.Store, f *traceFixture) {
	t.Helper()
	ctx := context.Background()
	at := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	f.ref1, f.ref2, f.ref3, f.ref4 = headers.NewRef(), headers.NewRef(), headers.NewRef(), headers.NewRef()
	recs := []*headers.Record{
		{
			Ref: f.ref1, MailFrom: "alice@contoso.example",
			Params:     headers.MailParams{Size: 4321, Body: "8BITMIME"},
			Rcpts:      []string{"bob@contoso.example", "Carol@Fabrikam.Example", "dave@contoso.example", "erin@contoso.example"},
			ReceivedAt: at, Listener: "127.0.0.1:2525", ClientAddr: "40.107.1.2:49152",
			Helo: "EUR05-AM6-obe.outbound.protection.outlook.com\x1b[31m", TLS: "TLS1.3 TLS_AES_256_GCM_SHA384",
			MessageID: "<trace.1@contoso.example>", Fingerprint: "fp1",
			Fields: []headers.Field{
				{Name: "X-MS-Exchange-CrossPremises-AuthAs", Raw: []byte("X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n")},
				{Name: "Thread-Topic", Raw: []byte("Thread-Topic: =?utf-8?B?R3LDvMOfZQ==?=\r\n =?utf-8?B?w6TDtsO8?=\r\n")},
				{Name: "X-MS-Exchange-CrossPremises-Antispam-ScanContext", Raw: []byte("X-MS-Exchange-CrossPremises-Antispam-ScanContext: DIR:Outbound;SFV:NSPM;SKIP:0;" + strings.Repeat("A", 100) + "\r\n")},
			},
			Route: []string{"signatures", "scanner"},
		},
		{
			Ref: f.ref2, MailFrom: "alice@contoso.example", Rcpts: []string{"frank@contoso.example"},
			ReceivedAt: at.Add(time.Minute), Listener: "127.0.0.1:2525", ClientAddr: "40.107.1.3:49153",
			MessageID: "<trace.2@contoso.example>", Route: []string{"signatures"},
		},
		{
			Ref: f.ref3, MailFrom: "grace@contoso.example", Rcpts: []string{"heidi@contoso.example"},
			ReceivedAt: at.Add(2 * time.Minute), Listener: "127.0.0.1:2525", ClientAddr: "40.107.1.4:49154",
			MessageID: "<trace.3@contoso.example>", Route: []string{"signatures"},
		},
		{
			Ref: f.ref4, MailFrom: "ivan@contoso.example", Rcpts: []string{"judy@contoso.example"},
			ReceivedAt: at.Add(3 * time.Minute), Listener: "127.0.0.1:2525", ClientAddr: "40.107.1.5:49155",
			MessageID: "bare.4@contoso.example", Route: []string{"signatures"},
		},
	}
	for _, rec := range recs {
		if err := st.Put(ctx, rec, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Confirm(ctx, f.ref1, "bob@contoso.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Claim(ctx, f.ref1, "Carol@fabrikam.EXAMPLE", 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Claim(ctx, f.ref1, "dave@contoso.example", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Claim(ctx, f.ref1, "mallory@contoso.example", 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := st.CountReturn(ctx, f.ref1); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond) // dave's lease lapses
}

// traceStores returns, per store kind, a function that sets up the fixture.
func traceStores() map[string]func(t *testing.T) *traceFixture {
	return map[string]func(t *testing.T) *traceFixture{
		"bolt": func(t *testing.T) *traceFixture {
			dir := t.TempDir()
			f := &traceFixture{config: traceConfig(t, "  data_dir: "+dir+"\n")}
			st, err := store.OpenBolt(store.BoltConfig{Path: filepath.Join(dir, "records.db")})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			fillTraceStore(t, st, f)
			f.writer = st
			f.closeWrite = func() {
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
			}
			return f
		},
		"redis": func(t *testing.T) *traceFixture {
			st := storetest.Redis(t)
			url := os.Getenv("REDIS_URL")
			if url == "" {
				url = storetest.DefaultRedisURL
			}
			f := &traceFixture{config: traceConfig(t, "  redis: {url: \""+url+"\", key_prefix: \""+st.KeyPrefix()+"\"}\n")}
			fillTraceStore(t, st, f)
			f.writer = st
			f.closeWrite = func() {} // Redis is shared: trace reads alongside
			return f
		},
	}
}

// TestTrace runs the trace command over each store and checks its output.
func TestTrace(t *testing.T) {
	t.Setenv(config.EnvRedisURL, "")
	t.Setenv(config.EnvRedisPassword, "")
	for kind, setup := range traceStores() {
		t.Run(kind, func(t *testing.T) {
			f := setup(t)
			f.closeWrite()
			tests := []struct {
				name     string
				args     []string
				wantCode int
				wantOut  []string // regular expressions stdout must match
				notOut   []string // regular expressions it must not match
				wantErr  string
			}{
				{"message-id", []string{"<trace.1@contoso.example>"}, 0, []string{
					`(?m)^Message-ID <trace\.1@contoso\.example>: 1 record$`,
					`(?m)^record ` + f.ref1 + `$`,
					`(?m)^  received +2025-03-14 09:26:53\.000 UTC$`,
					`(?m)^  listener +127\.0\.0\.1:2525$`,
					`(?m)^  client +40\.107\.1\.2:49152, HELO EUR05-AM6-obe\.outbound\.protection\.outlook\.com\x{FFFD}\[31m$`,
					`(?m)^  tls +TLS1\.3 TLS_AES_256_GCM_SHA384$`,
					`(?m)^  mail from +<alice@contoso\.example> SIZE=4321 BODY=8BITMIME$`,
					`(?m)^  vendors +signatures → scanner$`,
					`(?m)^  expires +in (59m5\d|1h0m0)s$`,
					`(?m)^  duplicates +2 copies from the vendor acknowledged without delivery$`,
					`(?m)^  recipients \(5\)$`,
					`(?m)^    bob@contoso\.example +delivered$`,
					`(?m)^    Carol@Fabrikam\.Example +in flight, lease ends in (9m5\d|10m0)s$`,
					`(?m)^    dave@contoso\.example +not yet \(a claim's lease lapsed \d+ms ago\)$`,
					`(?m)^    erin@contoso\.example +not yet$`,
					`(?m)^    mallory@contoso\.example +in flight, lease ends in .* \(not an envelope recipient\)$`,
					`(?m)^  fields \(3 captured\)$`,
					`(?m)^    X-MS-Exchange-CrossPremises-AuthAs +Internal$`,
					`(?m)^    Thread-Topic +=\?utf-8\?B\?R3LDvMOfZQ==\?= =\?utf-8\?B\?w6TDtsO8\?=$`,
					`(?m)^    X-MS-Exchange-CrossPremises-Antispam-ScanContext +DIR:Outbound;SFV:NSPM;SKIP:0;A{30}…$`,
				}, []string{"\x1b", f.ref2, "stopped after"}, ""},
				{"message-id without brackets", []string{"trace.2@contoso.example"}, 0, []string{
					`(?m)^Message-ID <trace\.2@contoso\.example>: 1 record$`, `(?m)^record ` + f.ref2 + `$`,
					`(?m)^  vendors +signatures$`, `(?m)^  tls +none$`, `(?m)^    frank@contoso\.example +not yet$`,
					`(?m)^  duplicates +0 copies from the vendor acknowledged without delivery$`, `(?m)^  fields \(0 captured\)$`,
				}, nil, ""},
				{"message-id forced", []string{"--as", "message-id", "trace.2@contoso.example"}, 0, []string{`record ` + f.ref2}, nil, ""},
				{"bare message-id", []string{"bare.4@contoso.example"}, 0, []string{`(?m)^Message-ID <bare\.4@contoso\.example>: 1 record$`, `(?m)^  message-id +bare\.4@contoso\.example$`}, nil, ""},
				{"bare message-id in brackets", []string{"<bare.4@contoso.example>"}, 0, []string{`(?m)^record ` + f.ref4 + `$`}, nil, ""},
				{"reference", []string{f.ref3}, 0, []string{`(?m)^reference ` + f.ref3 + `: 1 record$`, `heidi@contoso\.example`}, nil, ""},
				{"reference header", []string{"X-RecallRelay-Ref: v=1; k=k1; r=" + f.ref2 + "; t=1741944413; s=AAAA"}, 0, []string{`(?m)^record ` + f.ref2 + `$`}, nil, ""},
				{"address", []string{"ALICE@contoso.example"}, 0, []string{
					`(?m)^MAIL FROM or recipient ALICE@contoso\.example: 2 records \(4 records scanned\)$`,
					`(?s)record ` + f.ref1 + `.*record ` + f.ref2, // by time received
				}, []string{f.ref3, "stopped after"}, ""},
				{"address of a recipient, flags last", []string{"heidi@contoso.example", "--config", f.config}, 0, []string{`record ` + f.ref3}, nil, ""},
				{"address limited", []string{"--limit", "1", "--as", "address", "alice@contoso.example"}, 0, []string{
					`(?m)^MAIL FROM or recipient alice@contoso\.example: 1 record \(\d records scanned\)$`,
					`(?m)^stopped after 1 match \(--limit 1\): more records may match$`,
				}, nil, ""},
				{"missing message-id", []string{"<nothing@contoso.example>"}, 1, nil, []string{"."},
					"recallrelay trace: no live record has Message-ID <nothing@contoso.example>; records are kept for store.record_ttl"},
				{"missing address", []string{"nobody@contoso.example"}, 1, nil, []string{"."},
					"no live record has Message-ID <nobody@contoso.example>, nor MAIL FROM or a recipient nobody@contoso.example (4 records scanned)"},
				{"missing reference", []string{"aaaaaaaaaaaaaaaaaaaaaaaaaa"}, 1, nil, nil, "no live record under reference aaaaaaaaaaaaaaaaaaaaaaaaaa"},
				{"no argument", nil, 2, nil, nil, "want one Message-ID, reference or address, got 0 arguments"},
				{"two arguments", []string{"a@b", "c@d"}, 2, nil, nil, "got 2 arguments"},
				{"bad limit", []string{"--limit", "0", "a@b"}, 2, nil, nil, "--limit 0: must be at least 1"},
				{"bad as", []string{"--as", "subject", "a@b"}, 2, nil, nil, `--as "subject"`},
				{"unknown flag", []string{"--frobnicate", "a@b"}, 2, nil, nil, "flag provided but not defined"},
				{"no config", []string{"--config", "", "a@b"}, 2, nil, nil, "--config FILE is required"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					args := append([]string{"trace"}, tt.args...)
					if !slices.Contains(tt.args, "--config") {
						args = append([]string{"trace", "--config", f.config}, tt.args...)
					}
					var out, errb bytes.Buffer
					code := run(args, &out, &errb)
					if code != tt.wantCode {
						t.Errorf("exit %d, want %d; stderr: %s", code, tt.wantCode, errb.String())
					}
					for _, re := range tt.wantOut {
						if !regexp.MustCompile(re).MatchString(out.String()) {
							t.Errorf("stdout does not match %s:\n%s", re, out.String())
						}
					}
					for _, re := range tt.notOut {
						if regexp.MustCompile(re).MatchString(out.String()) {
							t.Errorf("stdout matches %q:\n%s", re, out.String())
						}
					}
					if !strings.Contains(errb.String(), tt.wantErr) {
						t.Errorf("stderr lacks %q:\n%s", tt.wantErr, errb.String())
					}
				})
			}
		})
	}
}

// TestTraceJSON checks the machine-readable output over each store.
func TestTraceJSON(t *testing.T) {
	t.Setenv(config.EnvRedisURL, "")
	t.Setenv(config.EnvRedisPassword, "")
	for kind, setup := range traceStores() {
		t.Run(kind, func(t *testing.T) {
			f := setup(t)
			f.closeWrite()
			var out, errb bytes.Buffer
			if code := run([]string{"trace", "--config", f.config, "--json", "alice@contoso.example"}, &out, &errb); code != 0 {
				t.Fatalf("exit %d; stderr: %s", code, errb.String())
			}
			var got traceJSON
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("%v:\n%s", err, out.String())
			}
			if got.Lookup != lookupAddress || got.Key != "alice@contoso.example" || got.Scanned == nil || *got.Scanned != 4 || got.Truncated || got.Limit != traceDefaultLimit {
				t.Errorf("lookup %s %q, scanned %v, truncated %t, limit %d", got.Lookup, got.Key, got.Scanned, got.Truncated, got.Limit)
			}
			if len(got.Records) != 2 || got.Records[0].Ref != f.ref1 || got.Records[1].Ref != f.ref2 {
				t.Fatalf("records %+v, want %s then %s", got.Records, f.ref1, f.ref2)
			}
			r := got.Records[0]
			if r.MailFrom != "alice@contoso.example" || r.MessageID != "<trace.1@contoso.example>" || r.Returns != 2 ||
				r.TTLMillis == nil || *r.TTLMillis <= 0 || *r.TTLMillis > time.Hour.Milliseconds() ||
				strings.Join(r.Route, ",") != "signatures,scanner" || r.Params.Size != 4321 || r.StateAt.IsZero() {
				t.Errorf("record %+v", r)
			}
			wantStates := []struct {
				addr, state string
				recorded    bool
				lease       bool
			}{
				{"bob@contoso.example", "delivered", true, false},
				{"Carol@Fabrikam.Example", "in_flight", true, true},
				{"dave@contoso.example", "not_yet", true, true},
				{"erin@contoso.example", "not_yet", true, false},
				{"mallory@contoso.example", "in_flight", false, true},
			}
			if len(r.Recipients) != len(wantStates) {
				t.Fatalf("recipients %+v", r.Recipients)
			}
			for i, w := range wantStates {
				g := r.Recipients[i]
				if g.Address != w.addr || g.State != w.state || g.EnvelopeRecipient != w.recorded || (g.LeaseEnd != nil) != w.lease {
					t.Errorf("recipient %d = %+v, want %+v", i, g, w)
				}
			}
			if len(r.Fields) != 3 || r.Fields[1].Name != "Thread-Topic" || r.Fields[1].Value != "=?utf-8?B?R3LDvMOfZQ==?= =?utf-8?B?w6TDtsO8?=" ||
				!strings.HasSuffix(r.Fields[2].Value, strings.Repeat("A", 100)) {
				t.Errorf("fields %+v", r.Fields)
			}

			// Nothing found: an empty list, exit 1.
			out.Reset()
			errb.Reset()
			if code := run([]string{"trace", "--config", f.config, "--json", "<nothing@x>"}, &out, &errb); code != 1 {
				t.Errorf("exit %d for no match, want 1", code)
			}
			var none traceJSON
			if err := json.Unmarshal(out.Bytes(), &none); err != nil || none.Records == nil || len(none.Records) != 0 || none.Scanned != nil {
				t.Errorf("no match: %v, %+v", err, none)
			}
		})
	}
}

// TestTraceEmbeddedInUse checks that trace on an embedded store that a relay
// holds fails, saying why, and that it creates no store where there is none.
func TestTraceEmbeddedInUse(t *testing.T) {
	t.Setenv(config.EnvRedisURL, "")
	f := traceStores()["bolt"](t)
	_ = f.writer // still open: the relay
	var out, errb bytes.Buffer
	if code := run([]string{"trace", "--config", f.config, "<trace.1@contoso.example>"}, &out, &errb); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "locked by another process") || !strings.Contains(errb.String(), "stop recallrelay serve") {
		t.Errorf("stderr does not say the store is in use:\n%s", errb.String())
	}

	dir := filepath.Join(t.TempDir(), "none")
	cfg := traceConfig(t, "  data_dir: "+dir+"\n")
	errb.Reset()
	if code := run([]string{"trace", "--config", cfg, "<trace.1@contoso.example>"}, &out, &errb); code != 1 {
		t.Errorf("exit %d without a store file, want 1", code)
	}
	if !strings.Contains(errb.String(), "no such file") {
		t.Errorf("stderr does not say the store file is missing:\n%s", errb.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("trace created %s: %v", dir, err)
	}
}
