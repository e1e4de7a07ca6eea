package metrics_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/recallrelay/recallrelay/internal/looptest"
	"github.com/recallrelay/recallrelay/metrics"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/store/storetest"
)

const (
	from = "ann@contoso.com"
	to   = "bob@fabrikam.example"
	to2  = "cyd@fabrikam.example"
	// message's Message-ID must never show in a label.
	messageID = "<m1@contoso.com>"
	message   = "From: " + from + "\r\nTo: " + to + "\r\nSubject: test\r\nMessage-ID: " + messageID + "\r\n" +
		"X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n\r\nHello.\r\n"
)

// env is a relay with Metrics as an observer, between two recording SMTP
// servers: vendor receives what the tenant leg forwards, tenant what the
// return leg reinjects.
type env struct {
	reg    *prometheus.Registry
	relay  *relay.Relay
	store  relay.Store
	vendor *relaytest.Tenant
	tenant *relaytest.Tenant
	cfg    relay.Config
}

func newEnv(t *testing.T, mod func(*relay.Config)) *env {
	t.Helper()
	e := &env{reg: prometheus.NewPedanticRegistry(), vendor: looptest.Recorder(t, nil), tenant: looptest.Recorder(t, nil)}
	var r *relay.Relay
	m, err := metrics.New(e.reg, metrics.Options{Sessions: func() map[string]int { return r.Sessions() }})
	if err != nil {
		t.Fatal(err)
	}
	cfg := looptest.Config(t, e.tenant.Addr(), looptest.Hop("vendor", e.vendor.Addr()))
	cfg.Observers = []relay.Observer{m}
	cfg.Store = storetest.Bolt(t)
	cfg.Vendors[0].CommandTimeout, cfg.Target.CommandTimeout = 5*time.Second, 5*time.Second
	if mod != nil {
		mod(&cfg)
	}
	e.cfg, e.store = cfg, cfg.Store
	r = looptest.Start(t, cfg)
	e.relay = r
	return e
}

// client speaks SMTP line by line.
type client struct {
	t *testing.T
	c net.Conn
	*textproto.Conn
}

// dial connects to addr and returns the client and the greeting's code.
func dial(t *testing.T, addr string) (*client, int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, Conn: textproto.NewConn(c)}
	code, _, _ := cl.ReadResponse(0)
	return cl, code
}

// cmd sends a command and returns its reply's code.
func (c *client) cmd(format string, args ...any) int {
	c.t.Helper()
	if err := c.PrintfLine(format, args...); err != nil {
		c.t.Fatal(err)
	}
	code, _, _ := c.ReadResponse(0)
	return code
}

// send sends one message to addr and returns the code of the first reply
// that refused it, or of the reply to end of data. A recipient refused
// with 452 is skipped: the message goes to the others.
func send(t *testing.T, addr, data string, rcpts ...string) int {
	t.Helper()
	c, code := dial(t, addr)
	if code != 220 {
		return code
	}
	defer c.cmd("QUIT")
	if code := c.cmd("EHLO client.test"); code != 250 {
		return code
	}
	if code := c.cmd("MAIL FROM:<%s>", from); code != 250 {
		return code
	}
	for _, r := range rcpts {
		if code := c.cmd("RCPT TO:<%s>", r); code != 250 && code != 452 {
			return code
		}
	}
	if code := c.cmd("DATA"); code != 354 {
		return code
	}
	if _, err := c.c.Write([]byte(data + ".\r\n")); err != nil {
		t.Fatal(err)
	}
	code, _, _ = c.ReadResponse(0)
	return code
}

// series gathers g and returns every sample by name and labels, as
// `name{a="x",b="y"}`: counters and gauges by value, histograms by their
// _count. It fails the test when a label value could identify a message,
// an address or a client.
func series(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				if v := lp.GetValue(); strings.ContainsAny(v, "@<>") || strings.Contains(v, "127.0.0.1") {
					t.Errorf("%s: label %s=%q identifies a message, an address or a client", mf.GetName(), lp.GetName(), v)
				}
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(ls)
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()+"_count{"+strings.Join(ls, ",")+"}"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// checkCounters fails the test unless every sample in want has its value
// and every counter not in want is zero.
func checkCounters(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok && strings.Contains(k, "_total{") && v != 0 {
			t.Errorf("unexpected %s = %v", k, v)
		}
	}
}

func TestRelayEvents(t *testing.T) {
	tests := []struct {
		name string
		mod  func(t *testing.T, c *relay.Config)
		act  func(t *testing.T, e *env)
		want map[string]float64
	}{
		{
			name: "delivered on both legs",
			act: func(t *testing.T, e *env) {
				if code := send(t, e.relay.TenantAddr(), message, to); code != 250 {
					t.Fatalf("tenant leg: %d", code)
				}
				out := e.vendor.Deliveries()[0].Data
				if code := send(t, e.relay.ReturnAddr(), string(out), to); code != 250 {
					t.Fatalf("return leg: %d", code)
				}
			},
			want: map[string]float64{
				`recallrelay_messages_total{code_class="2xx",leg="tenant",matched_by="n/a",result="delivered"}`:       1,
				`recallrelay_messages_total{code_class="2xx",leg="return",matched_by="reference",result="delivered"}`: 1,
				`recallrelay_message_duration_seconds_count{leg="tenant"}`:                                            1,
				`recallrelay_message_duration_seconds_count{leg="return"}`:                                            1,
				`recallrelay_message_size_bytes_count{leg="tenant"}`:                                                  1,
				`recallrelay_message_size_bytes_count{leg="return"}`:                                                  1,
				`recallrelay_message_stage_duration_seconds_count{leg="tenant",stage="header"}`:                       1,
				`recallrelay_message_stage_duration_seconds_count{leg="tenant",stage="route"}`:                        1,
				`recallrelay_message_stage_duration_seconds_count{leg="tenant",stage="transfer"}`:                     1,
				`recallrelay_message_stage_duration_seconds_count{leg="tenant",stage="hop_reply"}`:                    1,
				`recallrelay_message_stage_duration_seconds_count{leg="return",stage="route"}`:                        0,
				`recallrelay_message_stage_duration_seconds_count{leg="return",stage="store"}`:                        1,
				`recallrelay_message_stage_duration_seconds_count{leg="return",stage="hop_reply"}`:                    1,
			},
		},
		{
			name: "vendor refuses and tempfails",
			act: func(t *testing.T, e *env) {
				e.vendor.RejectNextData(1, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "spam"})
				if code := send(t, e.relay.TenantAddr(), message, to); code != 554 {
					t.Fatalf("refused: %d", code)
				}
				e.vendor.RejectNextData(1, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "queue full"})
				if code := send(t, e.relay.TenantAddr(), message, to); code != 451 {
					t.Fatalf("tempfailed: %d", code)
				}
			},
			want: map[string]float64{
				`recallrelay_messages_total{code_class="5xx",leg="tenant",matched_by="n/a",result="rejected"}`: 1,
				`recallrelay_messages_total{code_class="4xx",leg="tenant",matched_by="n/a",result="tempfail"}`: 1,
				`recallrelay_message_duration_seconds_count{leg="tenant"}`:                                     2,
			},
		},
		{
			name: "return without a record",
			act: func(t *testing.T, e *env) {
				if code := send(t, e.relay.ReturnAddr(), message, to); code != 550 {
					t.Fatalf("return leg: %d", code)
				}
			},
			want: map[string]float64{
				`recallrelay_messages_total{code_class="5xx",leg="return",matched_by="none",result="rejected"}`: 1,
			},
		},
		{
			name: "too many recipients",
			mod:  func(_ *testing.T, c *relay.Config) { c.Tenant.MaxRecipients = 1 },
			act: func(t *testing.T, e *env) {
				if code := send(t, e.relay.TenantAddr(), message, to, to2); code != 250 {
					t.Fatalf("tenant leg: %d", code)
				}
			},
			want: map[string]float64{
				`recallrelay_limits_hit_total{leg="tenant",limit="too_many_recipients"}`:                        1,
				`recallrelay_messages_total{code_class="2xx",leg="tenant",matched_by="n/a",result="delivered"}`: 1,
			},
		},
		{
			name: "vendor unreachable",
			mod: func(t *testing.T, c *relay.Config) {
				c.Vendors[0].Address = deadAddr(t)
				c.Vendors[0].ConnectTimeout = 5 * time.Second
			},
			act: func(t *testing.T, e *env) {
				if code := send(t, e.relay.TenantAddr(), message, to); code != 451 {
					t.Fatalf("tenant leg: %d", code)
				}
			},
			want: map[string]float64{
				`recallrelay_next_hop_failures_total{hop="vendor",leg="tenant",stage="connect"}`: 1,
			},
		},
		{
			name: "store down",
			act: func(t *testing.T, e *env) {
				if err := e.store.Close(); err != nil {
					t.Fatal(err)
				}
				if code := send(t, e.relay.TenantAddr(), message, to); code != 451 {
					t.Fatalf("tenant leg: %d", code)
				}
			},
			want: map[string]float64{
				// The tenant leg writes the record before the end of data.
				`recallrelay_store_errors_total{leg="tenant",op="put"}`:                                        1,
				`recallrelay_messages_total{code_class="4xx",leg="tenant",matched_by="n/a",result="tempfail"}`: 1,
			},
		},
		{
			name: "refused by allow_nets",
			mod: func(_ *testing.T, c *relay.Config) {
				c.Tenant.AllowNets = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
			},
			act: func(t *testing.T, e *env) {
				if _, code := dial(t, e.relay.TenantAddr()); code != 554 {
					t.Fatalf("connect: %d", code)
				}
			},
			want: map[string]float64{`recallrelay_connections_refused_total{leg="tenant",reason="allow_nets"}`: 1},
		},
		{
			name: "refused: too many from one client",
			mod:  func(_ *testing.T, c *relay.Config) { c.Return.MaxConnectionsPerClient = 1 },
			act: func(t *testing.T, e *env) {
				// go-smtp opens the session at EHLO.
				if c, code := dial(t, e.relay.ReturnAddr()); code != 220 || c.cmd("EHLO client.test") != 250 {
					t.Fatalf("first connection: %d", code)
				}
				if _, code := dial(t, e.relay.ReturnAddr()); code != 421 {
					t.Fatalf("second connection: %d", code)
				}
			},
			want: map[string]float64{
				`recallrelay_connections_refused_total{leg="return",reason="per_client"}`: 1,
				`recallrelay_sessions_open{leg="return"}`:                                 1,
			},
		},
		{
			name: "refused: too many in total",
			mod:  func(_ *testing.T, c *relay.Config) { c.Tenant.MaxConnections = 1 },
			act: func(t *testing.T, e *env) {
				if c, code := dial(t, e.relay.TenantAddr()); code != 220 || c.cmd("EHLO client.test") != 250 {
					t.Fatalf("first connection: %d", code)
				}
				if _, code := dial(t, e.relay.TenantAddr()); code != 421 {
					t.Fatalf("second connection: %d", code)
				}
			},
			want: map[string]float64{
				`recallrelay_connections_refused_total{leg="tenant",reason="total"}`: 1,
				`recallrelay_sessions_open{leg="tenant"}`:                            1,
				`recallrelay_sessions_open{leg="return"}`:                            0,
			},
		},
		{
			name: "reloads",
			act: func(t *testing.T, e *env) {
				if err := e.relay.Reload(e.cfg.Policy); err != nil {
					t.Fatal(err)
				}
				if err := e.relay.Reload(relay.Policy{}); err == nil {
					t.Fatal("an empty policy reloaded")
				}
			},
			want: map[string]float64{
				`recallrelay_config_reloads_total{outcome="ok"}`:     1,
				`recallrelay_config_reloads_total{outcome="failed"}`: 1,
				`recallrelay_config_generation{}`:                    1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *relay.Config) {
				if tt.mod != nil {
					tt.mod(t, c)
				}
			})
			tt.act(t, e)
			checkCounters(t, series(t, e.reg), tt.want)
		})
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Values outside each label's known set count as "other": nothing the
// relay or a client writes into an event can become a new series.
func TestLabelsBounded(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := metrics.New(reg, metrics.Options{Sessions: func() map[string]int {
		return map[string]int{"tenant": 2, "return": 1, "eve@example.com": 3, "x": 1}
	}})
	if err != nil {
		t.Fatal(err)
	}
	hostile := "mallory@evil.example <m@evil> 203.0.113.9"
	m.MessageDone(&relay.Outcome{Leg: hostile, Result: hostile, Code: 999, MatchedBy: hostile, MessageID: messageID, From: from})
	m.MessageDone(&relay.Outcome{Leg: "return", Result: "tempfail", Code: 451, MatchedBy: hostile})
	m.MessageDone(&relay.Outcome{Leg: "return", Result: "rejected", Code: 550})
	m.LimitHit(relay.LimitHit{Leg: "tenant", Limit: hostile, Reply: hostile})
	m.StoreFailed(relay.StoreFailed{Leg: "return", Op: hostile, Ref: hostile, Err: errors.New(hostile)})
	m.NextHopFailed(relay.NextHopFailed{Leg: "return", Hop: "", Stage: hostile, Err: errors.New(hostile)})
	m.ConnectionRefused(relay.ConnectionRefused{Leg: "tenant", Client: "203.0.113.9", Reply: hostile})
	m.StoreFailed(relay.StoreFailed{Leg: "return", Op: "lookup message-id", Ref: messageID})
	m.NextHopFailed(relay.NextHopFailed{Leg: "tenant", Hop: "signatures", Stage: "end of data"})

	checkCounters(t, series(t, reg), map[string]float64{
		`recallrelay_messages_total{code_class="other",leg="other",matched_by="n/a",result="other"}`:     1,
		`recallrelay_messages_total{code_class="4xx",leg="return",matched_by="other",result="tempfail"}`: 1,
		`recallrelay_messages_total{code_class="5xx",leg="return",matched_by="n/a",result="rejected"}`:   1,
		`recallrelay_limits_hit_total{leg="tenant",limit="other"}`:                                       1,
		`recallrelay_store_errors_total{leg="return",op="other"}`:                                        1,
		`recallrelay_store_errors_total{leg="return",op="lookup_message_id"}`:                            1,
		`recallrelay_next_hop_failures_total{hop="unknown",leg="return",stage="other"}`:                  1,
		`recallrelay_next_hop_failures_total{hop="signatures",leg="tenant",stage="end_of_data"}`:         1,
		`recallrelay_connections_refused_total{leg="tenant",reason="other"}`:                             1,
		`recallrelay_sessions_open{leg="tenant"}`:                                                        2,
		`recallrelay_sessions_open{leg="return"}`:                                                        1,
		`recallrelay_sessions_open{leg="other"}`:                                                         4,
	})
}

// The scrape-time collectors and the build information.
func TestCollectors(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	reg := prometheus.NewPedanticRegistry()
	_, err := metrics.New(reg, metrics.Options{
		Sessions: func() map[string]int { return map[string]int{"tenant": 3, "return": 0} },
		Certificates: func() []metrics.CertExpiry {
			return []metrics.CertExpiry{
				{Name: "/etc/recallrelay/tenant.pem", NotAfter: now.Add(48 * time.Hour)},
				{Name: "/etc/recallrelay/old.pem", NotAfter: now.Add(-time.Minute)},
				// The same file twice (a reload in between): the earlier expiry counts.
				{Name: "/etc/recallrelay/tenant.pem", NotAfter: now.Add(24 * time.Hour)},
			}
		},
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	version, revision := metrics.BuildVersion()
	got := series(t, reg)
	for k, v := range map[string]float64{
		`recallrelay_sessions_open{leg="tenant"}`:                                                                         3,
		`recallrelay_sessions_open{leg="return"}`:                                                                         0,
		`recallrelay_certificate_expires_in_seconds{file="/etc/recallrelay/tenant.pem"}`:                                  24 * 3600,
		`recallrelay_certificate_expires_in_seconds{file="/etc/recallrelay/old.pem"}`:                                     -60,
		fmt.Sprintf(`recallrelay_build_info{go_version=%q,revision=%q,version=%q}`, runtime.Version(), revision, version): 1,
		`recallrelay_config_generation{}`:                                                                                 0,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if version == "" || revision == "" {
		t.Errorf("BuildVersion() = %q, %q", version, revision)
	}
}

// The metrics follow Prometheus's naming conventions (promlint).
func TestLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := metrics.New(reg, metrics.Options{
		Sessions:     func() map[string]int { return map[string]int{"tenant": 0, "return": 0} },
		Certificates: func() []metrics.CertExpiry { return []metrics.CertExpiry{{Name: "c.pem", NotAfter: time.Now()}} },
		Runtime:      true,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.MessageDone(&relay.Outcome{Leg: "tenant", Result: "delivered", Code: 250, Stages: relay.Stages{Header: time.Millisecond}})
	m.NextHopFailed(relay.NextHopFailed{Leg: "tenant", Hop: "v", Stage: "connect"})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "recallrelay_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

// New registers all or nothing.
func TestNewConflict(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "recallrelay_config_generation", Help: "taken"}))
	if _, err := metrics.New(reg, metrics.Options{}); err == nil || !strings.Contains(err.Error(), "metrics: register") {
		t.Fatalf("New on a registry that has one of its metrics: %v", err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 1 {
		t.Errorf("after a failed New the registry has %d series (%v), want only the one it had", n, err)
	}
	if _, err := metrics.New(nil, metrics.Options{}); err == nil {
		t.Error("New without a registerer")
	}
}
