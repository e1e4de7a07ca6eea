package conformance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/recallrelay/recallrelay/relaytest"
)

// Path is the way a message takes from the tenant back to the tenant.
type Path string

const (
	// PathDirect is tenant → vendor → tenant, without the relay.
	PathDirect Path = "direct"
	// PathRelay is tenant → relay tenant leg → vendor → relay return leg
	// → tenant.
	PathRelay Path = "relay"
)

// Defaults of Config.
const (
	DefaultSenders     = 4
	DefaultSettle      = time.Second
	DefaultCellTimeout = 60 * time.Second
	DefaultBackoff     = 100 * time.Millisecond
	// DefaultDelay is the delay behaviour's parameter in DefaultCases:
	// long enough to reorder returns, short enough to keep the matrix fast.
	DefaultDelay = 200 * time.Millisecond
)

// A Case is one row of the matrix: what the vendor does to mail.
type Case struct {
	// Name labels the row and is what Gate.ExpectDamage refers to.
	Name string `json:"name"`
	// Behaviors is the fake vendor's behaviour list in the syntax of
	// relaytest.ParseBehaviors; empty passes mail through unchanged. It
	// must be empty when the run targets an external vendor.
	Behaviors string `json:"behaviors"`
}

// DefaultCases returns the standard matrix: every behaviour name
// relaytest.Behaviors lists (named combinations included), each with its
// default parameter except delay, which waits DefaultDelay; then the
// combinations "scanner" (reencode, stamp-marker=X-Scanner-Processed: yes)
// and "strip-and-rewrite" (strip-ms-headers, rewrite-message-id,
// footer-text).
func DefaultCases() []Case {
	var out []Case
	for _, b := range relaytest.Behaviors() {
		c := Case{Name: b.Name, Behaviors: b.Name}
		if b.Name == "delay" {
			c.Behaviors = "delay=" + DefaultDelay.String()
		}
		out = append(out, c)
	}
	return append(out,
		Case{Name: "scanner", Behaviors: "reencode,stamp-marker=X-Scanner-Processed: yes"},
		Case{Name: "strip-and-rewrite", Behaviors: "strip-ms-headers,rewrite-message-id,footer-text"},
	)
}

// RelayConfig tells a StartRelayFunc where the relay under test sends mail.
type RelayConfig struct {
	// VendorAddr is where the tenant leg sends mail (host:port).
	VendorAddr string
	// TenantAddr is where the return leg reinjects mail (host:port).
	TenantAddr string
	// ReturnListen is the address the return leg must listen on; empty
	// for any free loopback port.
	ReturnListen string
	// VendorTLS, when set, is the TLS configuration of the tenant leg
	// towards the vendor: it must issue STARTTLS with it and never send
	// in plaintext (Config.VendorTLS).
	VendorTLS *tls.Config
	// HELO, when set, is the name the tenant leg gives the vendor in EHLO
	// (Config.HELO).
	HELO string
	// ReturnTLS, when set, makes the return leg offer STARTTLS with it
	// (Config.ReturnTLS).
	ReturnTLS *tls.Config
}

// RunningRelay is a relay a StartRelayFunc started.
type RunningRelay struct {
	// TenantAddr is the tenant leg's address: where the tenant sends mail.
	TenantAddr string
	// ReturnAddr is the return leg's address: where the vendor sends mail
	// back.
	ReturnAddr string
	// Stop shuts the relay down and releases what it holds (its store).
	Stop func()
}

// StartRelayFunc starts a fresh relay, with an empty store, as the product
// runs it. Run calls it once per relay-path cell.
type StartRelayFunc func(RelayConfig) (RunningRelay, error)

// Progress is reported to Config.Progress before and after every cell.
type Progress struct {
	// Done counts the cells finished, Total all cells of the run.
	Done, Total int
	// Case and Path name the cell.
	Case string
	Path Path
	// Result is nil when the cell is starting.
	Result *CellResult
}

// Config configures Run.
type Config struct {
	// Cases are the matrix rows; DefaultCases() when empty (one case
	// named "external" when VendorAddr is set).
	Cases []Case
	// Paths are the matrix columns, in order; both when empty.
	Paths []Path
	// Messages are sent in every cell; relaytest.Generate with Seed 1 when
	// empty. Their header fingerprints (see headers.Header.Fingerprint)
	// must be unique: deliveries are matched to them by fingerprint.
	Messages []relaytest.Message
	// MessageSource describes Messages in the report, e.g. a directory;
	// "generated (seed 1)" when Messages is empty.
	MessageSource string
	// StartRelay starts the relay for relay-path cells. Required when
	// Paths includes PathRelay.
	StartRelay StartRelayFunc
	// VendorAddr, when set, is an external vendor service (host:port)
	// used instead of a fake vendor; ReturnListen is then required: the
	// vendor must send mail back to it. On PathDirect the fake tenant
	// listens there, on PathRelay the relay's return leg does; since both
	// cannot own it at once, Paths must then hold exactly one path.
	VendorAddr   string
	ReturnListen string
	// VendorTLS, HELO and ReturnTLS apply to an external vendor only.
	// VendorTLS, when set, makes every connection to the vendor issue
	// STARTTLS with it and fail without: the tenant's sender's on
	// PathDirect, the relay's tenant leg's on PathRelay (through
	// RelayConfig). Its Certificates are the client certificate the
	// vendor may require.
	VendorTLS *tls.Config
	// HELO, when set, is the EHLO name given to the vendor, in place of
	// relaytest.DefaultHelo on PathDirect and the relay's host name on
	// PathRelay. (Go's SMTP client says "localhost" in the EHLO before
	// STARTTLS; HELO is the one after it.)
	HELO string
	// ReturnTLS, when set, makes the listener on ReturnListen offer
	// STARTTLS with it, so that the vendor can deliver back over TLS.
	ReturnTLS *tls.Config
	// SenderDomain, when set, is the domain of the generated messages'
	// senders and internal recipients (relaytest.GenerateOptions'
	// OrgDomain), so that the vendor applies its configuration for that
	// domain. It cannot be combined with Messages.
	SenderDomain string
	// Senders is how many messages are sent at once in a cell;
	// DefaultSenders when zero.
	Senders int
	// Settle is how long no new delivery may arrive, once the vendor is
	// idle, before a cell is evaluated; DefaultSettle when zero.
	Settle time.Duration
	// CellTimeout bounds every cell from start to evaluation;
	// DefaultCellTimeout when zero.
	CellTimeout time.Duration
	// Backoff is the first retry delay of the tenant's sender and of the
	// fake vendor's return queue; DefaultBackoff when zero.
	Backoff time.Duration
	// Progress, when set, is called before and after every cell, from the
	// goroutine that called Run.
	Progress func(Progress)
}

// withDefaults returns c with its zero fields filled in and checks it.
func (c Config) withDefaults() (Config, error) {
	if c.VendorAddr != "" {
		if c.ReturnListen == "" {
			return c, errors.New("conformance: an external vendor needs ReturnListen, the address it sends mail back to")
		}
		if len(c.Paths) != 1 {
			return c, errors.New("conformance: with an external vendor, choose one path: the tenant (direct) and the relay's return leg cannot both listen on ReturnListen")
		}
		if len(c.Cases) == 0 {
			c.Cases = []Case{{Name: "external"}}
		}
		for _, cs := range c.Cases {
			if cs.Behaviors != "" {
				return c, fmt.Errorf("conformance: case %q: behaviours apply to the fake vendor only, not to %s", cs.Name, c.VendorAddr)
			}
		}
	} else if c.ReturnListen != "" || c.VendorTLS != nil || c.HELO != "" || c.ReturnTLS != nil {
		return c, errors.New("conformance: ReturnListen, VendorTLS, HELO and ReturnTLS are only used with an external vendor (VendorAddr)")
	}
	if len(c.Cases) == 0 {
		c.Cases = DefaultCases()
	}
	seen := map[string]bool{}
	for _, cs := range c.Cases {
		if strings.TrimSpace(cs.Name) == "" {
			return c, errors.New("conformance: a case has no name")
		}
		if seen[cs.Name] {
			return c, fmt.Errorf("conformance: case %q listed twice", cs.Name)
		}
		seen[cs.Name] = true
		if _, err := relaytest.ParseBehaviors(cs.Behaviors); err != nil {
			return c, fmt.Errorf("conformance: case %q: %w", cs.Name, err)
		}
	}
	if len(c.Paths) == 0 {
		c.Paths = []Path{PathDirect, PathRelay}
	}
	seenPath := map[Path]bool{}
	for _, p := range c.Paths {
		if p != PathDirect && p != PathRelay {
			return c, fmt.Errorf("conformance: unknown path %q", p)
		}
		if seenPath[p] {
			return c, fmt.Errorf("conformance: path %q listed twice", p)
		}
		seenPath[p] = true
	}
	if seenPath[PathRelay] && c.StartRelay == nil {
		return c, errors.New("conformance: the relay path needs StartRelay")
	}
	if len(c.Messages) == 0 {
		c.Messages = relaytest.Generate(relaytest.GenerateOptions{Seed: 1, OrgDomain: c.SenderDomain})
		c.MessageSource = "generated (seed 1)"
		if c.SenderDomain != "" {
			c.MessageSource = "generated (seed 1, " + c.SenderDomain + ")"
		}
	} else if c.SenderDomain != "" {
		return c, errors.New("conformance: SenderDomain applies to generated messages; it cannot be combined with Messages")
	}
	if c.MessageSource == "" {
		c.MessageSource = "caller-provided"
	}
	if c.Senders <= 0 {
		c.Senders = DefaultSenders
	}
	if c.Settle <= 0 {
		c.Settle = DefaultSettle
	}
	if c.CellTimeout <= 0 {
		c.CellTimeout = DefaultCellTimeout
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultBackoff
	}
	return c, nil
}

// Run sends the same messages through every cell of the matrix (every case
// on every path), one cell at a time, each with fresh servers and, on the
// relay path, a fresh relay, and reports what arrived at the tenant.
//
// A cell whose vendor or tenant does not settle within CellTimeout is
// evaluated on what arrived and marked Incomplete; that is a finding, not
// an error. Run fails only when the run itself cannot be carried out:
// invalid configuration, messages whose fingerprints collide, a server or
// relay that cannot start, or ctx ending.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	key, err := newDKIMKey()
	if err != nil {
		return nil, err
	}
	signed, err := key.signAll(cfg.Messages)
	if err != nil {
		return nil, err
	}
	set, err := newMessageSet(signed)
	if err != nil {
		return nil, err
	}
	set.dkim = key
	vendor := "fake"
	if cfg.VendorAddr != "" {
		vendor = cfg.VendorAddr
	}
	start := time.Now()
	rep := &Report{
		Version: ReportVersion,
		Started: start.UTC(),
		Params: Params{
			Messages:      len(cfg.Messages),
			MessageSource: cfg.MessageSource,
			Vendor:        vendor,
			ReturnListen:  cfg.ReturnListen,
			SenderDomain:  cfg.SenderDomain,
			EHLO:          cfg.HELO,
			VendorTLS:     cfg.VendorTLS != nil,
			ReturnTLS:     cfg.ReturnTLS != nil,
			Paths:         cfg.Paths,
			Senders:       cfg.Senders,
			SettleMS:      cfg.Settle.Milliseconds(),
			CellTimeoutMS: cfg.CellTimeout.Milliseconds(),
		},
	}
	total := len(cfg.Cases) * len(cfg.Paths)
	done := 0
	for _, cs := range cfg.Cases {
		cr := CaseResult{Name: cs.Name, Behaviors: cs.Behaviors}
		for _, p := range cfg.Paths {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("conformance: %w", err)
			}
			if cfg.Progress != nil {
				cfg.Progress(Progress{Done: done, Total: total, Case: cs.Name, Path: p})
			}
			res, err := runCell(ctx, cfg, set, cs, p)
			if err != nil {
				return nil, fmt.Errorf("conformance: case %s, path %s: %w", cs.Name, p, err)
			}
			done++
			if cfg.Progress != nil {
				cfg.Progress(Progress{Done: done, Total: total, Case: cs.Name, Path: p, Result: res})
			}
			switch p {
			case PathDirect:
				cr.Direct = res
			case PathRelay:
				cr.Relay = res
			}
		}
		rep.Cases = append(rep.Cases, cr)
	}
	rep.DurationSeconds = time.Since(start).Seconds()
	return rep, nil
}

// freeLoopbackAddr returns a loopback address whose port was free just now:
// the fake vendor's address must be known before the relay that sends to it
// starts, and the relay's return address before the vendor is configured.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
