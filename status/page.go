package status

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/relay"
)

// Source is what the page reads of the running relay: *relay.Relay.
type Source interface {
	Listeners() []relay.ListenerInfo
	NextHops() (vendors []relay.NextHop, target relay.NextHop)
	Ready(ctx context.Context) error
}

// PageConfig configures the status page.
type PageConfig struct {
	Recorder *Recorder
	Source   Source
	// Version is shown in the title line (recallrelay version's output).
	Version string
	// Started is when the process started, for the uptime.
	Started time.Time
	// Summary returns the configuration in force as `recallrelay check`
	// prints it, and the rules summary; nil leaves both out.
	Summary func() (config, rules string)
	// Recipients is how the page shows recipients, as the log does:
	// relay.RecipientsNone (a count), RecipientsHash or RecipientsFull.
	// The search finds addresses whichever it is.
	Recipients relay.RecipientLogging
	// Show bounds the rows of the message table; default DefaultShow.
	Show int
	// ReadyTimeout bounds the readiness check the page makes; default 2s.
	ReadyTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives template errors.
	Log zerolog.Logger
}

// DefaultShow is how many messages the page lists by default.
const DefaultShow = 100

// maxQuery bounds the search text.
const maxQuery = 512

// results are the message results, in the order the totals show them.
var results = []string{"delivered", "bypassed", "forwarded", "suppressed", "tempfail", "rejected"}

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"join":  strings.Join,
	"class": resultClass,
}).Parse(pageHTML))

// Page serves the status page: GET with an optional q (the search).
type Page struct {
	cfg PageConfig
}

// NewPage returns the status page handler.
func NewPage(cfg PageConfig) *Page {
	if cfg.Show <= 0 {
		cfg.Show = DefaultShow
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Recipients == "" {
		cfg.Recipients = relay.RecipientsNone
	}
	return &Page{cfg: cfg}
}

// The template's data.
type (
	pageData struct {
		Version, Uptime, Now string
		Ready                string // "" when ready
		Totals               []totalRow
		Results              []string
		Hops                 []hopRow
		Listeners            []listenerRow
		Store                storeRow
		Reload               string
		Rules, Config        string
		Query                string
		Matched, Kept, Shown int
		Messages             []messageRow
		Recipients           string
	}
	totalRow struct {
		Leg      string
		All      int
		ByResult []int
	}
	hopRow struct {
		Name, Role, Address, StartTLS string
		Successes, Failures           int
		LastSuccess, LastSuccessReply string
		LastFailure, LastFailureReply string
		Failing                       bool // the last event was a failure
	}
	listenerRow struct {
		Leg, Addr, TLS, Clients string
		Sessions, MaxConns      int
		MaxPerClient            int
		MaxSize                 string
		MaxRcpts                int
		Timeouts                string
	}
	storeRow struct {
		Failures                   int
		LastFailure, LastOp, Error string
	}
	messageRow struct {
		At, Leg, MessageID, ClientMessageID, Ref, From string
		Recipients                                     string
		Route, MatchedBy, Result, Reply                string
		Code                                           int
		Size, Duration                                 string
	}
)

func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	if len(q) > maxQuery {
		http.Error(w, fmt.Sprintf("search text over %d bytes", maxQuery), http.StatusBadRequest)
		return
	}
	d := p.data(r.Context(), q)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// No script at all; inline style only; the search form posts here.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	var b strings.Builder
	if err := pageTemplate.Execute(&b, d); err != nil {
		p.cfg.Log.Error().Str("component", "admin").Err(err).Msg("status page")
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte(b.String()))
}

func (p *Page) data(ctx context.Context, q string) pageData {
	now := p.cfg.Now()
	d := pageData{
		Version: p.cfg.Version, Now: now.UTC().Format(timeLayout), Results: results, Query: q,
		Recipients: string(p.cfg.Recipients),
	}
	if !p.cfg.Started.IsZero() {
		d.Uptime = now.Sub(p.cfg.Started).Truncate(time.Second).String()
	}
	if p.cfg.Summary != nil {
		d.Config, d.Rules = p.cfg.Summary()
	}
	var snap Snapshot
	if p.cfg.Recorder != nil {
		snap = p.cfg.Recorder.Snapshot()
	}
	if p.cfg.Source != nil {
		rctx, cancel := context.WithTimeout(ctx, p.cfg.ReadyTimeout)
		if err := p.cfg.Source.Ready(rctx); err != nil {
			d.Ready = err.Error()
		}
		cancel()
		d.Listeners = listenerRows(p.cfg.Source.Listeners())
	}
	for _, leg := range []string{"tenant", "return"} {
		row := totalRow{Leg: leg, All: snap.Totals.Count(leg, "")}
		for _, res := range results {
			row.ByResult = append(row.ByResult, snap.Totals.Count(leg, res))
		}
		d.Totals = append(d.Totals, row)
	}
	d.Hops = p.hopRows(snap.Hops, now)
	d.Store = storeRow{Failures: snap.Store.Failures, LastOp: snap.Store.LastOp, Error: snap.Store.LastError,
		LastFailure: ago(snap.Store.LastFailure, now)}
	switch {
	case snap.Reloads == 0:
		d.Reload = "none since start"
	case snap.ReloadError != "":
		d.Reload = fmt.Sprintf("%d; the last, %s, was refused: %s", snap.Reloads, ago(snap.ReloadAt, now), snap.ReloadError)
	default:
		d.Reload = fmt.Sprintf("%d; the last %s", snap.Reloads, ago(snap.ReloadAt, now))
	}
	found := Search(snap.Messages, q)
	d.Matched, d.Kept = len(found), snap.Kept
	if len(found) > p.cfg.Show {
		found = found[:p.cfg.Show]
	}
	d.Shown = len(found)
	for _, m := range found {
		d.Messages = append(d.Messages, p.messageRow(m))
	}
	return d
}

// hopRows lists the configured next hops, vendors first, then any other
// hop the recorder saw (one a reload removed).
func (p *Page) hopRows(seen map[string]HopState, now time.Time) []hopRow {
	var rows []hopRow
	listed := map[string]bool{}
	add := func(name, role, addr, starttls string) {
		h := seen[name]
		listed[name] = true
		rows = append(rows, hopRow{
			Name: name, Role: role, Address: addr, StartTLS: starttls,
			Successes: h.Successes, Failures: h.Failures,
			LastSuccess: ago(h.LastSuccess, now), LastSuccessReply: h.LastSuccessReply,
			LastFailure: ago(h.LastFailure, now), LastFailureReply: failureText(h),
			Failing: h.LastFailure.After(h.LastSuccess),
		})
	}
	if p.cfg.Source != nil {
		vendors, target := p.cfg.Source.NextHops()
		for _, v := range vendors {
			add(v.Name, "vendor", v.Address, string(v.StartTLS))
		}
		add(target.Name, "tenant", target.Address, string(target.StartTLS))
	}
	var others []string
	for name := range seen {
		if !listed[name] {
			others = append(others, name)
		}
	}
	sort.Strings(others)
	for _, name := range others {
		add(name, "no longer configured", "", "")
	}
	return rows
}

func failureText(h HopState) string {
	if h.LastFailure.IsZero() {
		return ""
	}
	s := "at " + h.LastFailureStage + ": " + h.LastFailureReply
	if h.LastFailureMessageID != "" {
		s += " (" + h.LastFailureMessageID + ")"
	}
	return s
}

func listenerRows(ls []relay.ListenerInfo) []listenerRow {
	var rows []listenerRow
	for _, l := range ls {
		c := l.Config
		t := "none"
		switch {
		case c.TLS != nil && c.RequireTLS:
			t = "STARTTLS required"
		case c.TLS != nil:
			t = "STARTTLS offered"
		}
		clients := "any address"
		if loopback(l.Addr) {
			clients = "this machine only (loopback)"
		}
		if len(c.AllowNets) > 0 {
			nets := make([]string, len(c.AllowNets))
			for i, n := range c.AllowNets {
				nets[i] = n.String()
			}
			clients = strings.Join(nets, ", ")
		}
		if len(c.ClientCertNames) > 0 {
			clients += "; client certificate " + strings.Join(c.ClientCertNames, ", ")
		}
		if c.Users != nil {
			clients += "; SMTP AUTH"
		}
		rows = append(rows, listenerRow{
			Leg: l.Leg, Addr: l.Addr, TLS: t, Clients: clients, Sessions: l.Sessions,
			MaxConns: c.MaxConnections, MaxPerClient: c.MaxConnectionsPerClient,
			MaxSize: bytesText(c.MaxMessageSize), MaxRcpts: c.MaxRecipients,
			Timeouts: fmt.Sprintf("command %s, data %s", c.CommandTimeout, c.DataTimeout),
		})
	}
	return rows
}

func (p *Page) messageRow(m Message) messageRow {
	row := messageRow{
		At: m.At.UTC().Format(timeLayout), Leg: m.Leg, MessageID: m.MessageID, ClientMessageID: m.ClientMessageID,
		Ref: m.Ref, From: m.From, Route: m.Route, MatchedBy: m.MatchedBy, Result: m.Result, Code: m.Code,
		Reply: m.Reply, Size: bytesText(m.Size), Duration: m.Duration.Round(time.Millisecond).String(),
	}
	switch p.cfg.Recipients {
	case relay.RecipientsFull:
		row.Recipients = strings.Join(m.Recipients, ", ")
	case relay.RecipientsHash:
		hs := make([]string, len(m.Recipients))
		for i, rc := range m.Recipients {
			sum := sha256.Sum256([]byte(strings.ToLower(rc)))
			hs[i] = hex.EncodeToString(sum[:6])
		}
		row.Recipients = strings.Join(hs, ", ")
	default:
		row.Recipients = fmt.Sprintf("%d", len(m.Recipients))
	}
	return row
}

const timeLayout = "2006-01-02 15:04:05 UTC"

// ago says when t was, relative to now: "never" for the zero time.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < time.Second {
		return t.UTC().Format(timeLayout) + " (just now)"
	}
	return t.UTC().Format(timeLayout) + " (" + d.Truncate(time.Second).String() + " ago)"
}

func bytesText(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// loopback reports whether addr (host:port) is a loopback address, which
// only this machine reaches.
func loopback(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().IsLoopback()
}

// resultClass is the CSS class of a result cell.
func resultClass(r string) string {
	if r == "tempfail" || r == "rejected" {
		return "bad"
	}
	return "ok"
}
