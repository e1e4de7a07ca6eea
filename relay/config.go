package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/headers"
)

// This file is the relay's configuration: every setting, its default and
// its enum values, under the names the YAML configuration file gives them
// (package config maps the file onto these types beside its own fields).
// A setting is either Static, held for the relay's life, or Policy, which
// Reload replaces: the split is in the types, so the compiler keeps a
// restart-only setting out of a reload.

// Config is everything a Relay needs.
type Config struct {
	Static
	Policy
}

// Static is what a relay holds from New to Shutdown: changing it needs a
// restart.
type Static struct {
	// Hostname names the relay in its greeting, EHLO and Received fields,
	// and is the default HELO towards next hops. Default "localhost".
	Hostname string

	Tenant ListenerConfig // tenant → relay
	Return ListenerConfig // vendor → relay

	// Store keeps origin records between the legs. Required.
	Store Store

	// Log receives the relay's log lines: a LogObserver over it is always
	// the first observer.
	Log zerolog.Logger
	// LogRecipients is how the log's message lines show recipients;
	// default RecipientsNone.
	LogRecipients RecipientLogging
	// Observers are told of every message's outcome and of the relay's
	// other events (see Observer), after the log.
	Observers []Observer
	// HopPool configures the pool of idle next-hop connections; zero
	// values take DefaultHopPool's.
	HopPool HopPool
}

// Policy is what Reload replaces while the relay runs; each transaction
// uses the Policy in force at its MAIL FROM until it ends. Zero values
// take the documented defaults; Signer, Vendors and Target are required.
type Policy struct {
	// Vendors are the services the tenant leg sends mail to, by name.
	Vendors []NextHop
	// Router routes each message; nil sends everything to Vendors[0].
	Router Router
	// SpoolDir holds message bodies the router must read before it
	// decides (attachments, winmail.dat); default os.TempDir().
	SpoolDir string
	// Target is the tenant: where the return leg reinjects mail.
	Target NextHop

	Signer *headers.Signer
	// RefHeader names the reference header; default headers.DefaultRefHeader.
	RefHeader string
	// Capture selects the fields recorded on the tenant leg; Restore those
	// put back on the return leg. Defaults: headers.DefaultCapture and
	// headers.DefaultRestore.
	Capture, Restore *headers.Matcher
	// LoopMarker is added on the return leg so the tenant's transport rule
	// does not route the message out again. Default DefaultLoopMarkerName:
	// DefaultLoopMarkerValue.
	LoopMarker *headers.Field
	// NoReceived turns off the Received trace field the relay adds (the
	// configuration file's headers.received: false).
	NoReceived bool
	// RecordTTL is how long origin records live; default DefaultRecordTTL.
	RecordTTL time.Duration
	// StoreTimeout bounds each store operation; default DefaultStoreTimeout.
	StoreTimeout time.Duration
	// ReturnWithoutRecord is what the return leg does with mail that has
	// no valid origin record; default ReturnReject.
	ReturnWithoutRecord ReturnPolicy
	// FallbackMatching says who may be matched without the reference;
	// default FallbackTrusted.
	FallbackMatching FallbackMatching

	// PassUnrecorded lets the tenant leg send a message on to the vendor
	// when its origin record cannot be written (store down), instead of
	// answering 451 4.3.0. Such a message has no record when it returns, so
	// the return leg treats it per ReturnWithoutRecord. Off by default.
	PassUnrecorded bool

	// Duplicates is what the return leg does with a message the vendor
	// sends back again for a recipient the tenant already accepted it for;
	// default DuplicatesSuppress.
	Duplicates DuplicatePolicy
	// MaxDuplicateReturns bounds how many copies of one record's message
	// the return leg acknowledges without delivering (every recipient had
	// it already): a replaying vendor gets 550 5.7.1 beyond it. First
	// deliveries need no bound: each recipient is delivered at most once.
	// Default DefaultMaxDuplicateReturns.
	MaxDuplicateReturns int
	// ClaimLease is how long a delivery claim holds while the tenant has not
	// answered; it must outlast Target's timeouts. Default: Target's
	// ConnectTimeout + CommandTimeout + FinalTimeout + DataTimeout.
	ClaimLease time.Duration

	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Policy defaults that are not a whole struct.
const (
	DefaultRecordTTL           = 72 * time.Hour
	DefaultStoreTimeout        = 5 * time.Second
	DefaultMaxDuplicateReturns = 10
	DefaultLoopMarkerName      = "X-RecallRelay-Processed"
	DefaultLoopMarkerValue     = "true"
)

// ListenerConfig configures one leg's SMTP listener. Zero values take the
// values of DefaultListener.
type ListenerConfig struct {
	// Listen is host:port to listen on ("127.0.0.1:0" picks a free port).
	Listen string
	// TLS enables STARTTLS; nil disables it.
	TLS *tls.Config

	// MaxMessageSize is the SIZE advertised and enforced, in bytes
	// (552 5.3.4 beyond).
	MaxMessageSize int64
	// MaxHeaderSize bounds the header block in bytes, MaxHeaderFields in
	// fields (552 5.3.4 beyond either).
	MaxHeaderSize   int
	MaxHeaderFields int
	// MaxRecipients bounds RCPT TO per transaction (452 4.5.3 beyond).
	MaxRecipients int
	// MaxLineLength bounds a command or data line (500 beyond).
	MaxLineLength int
	// CommandTimeout is the idle time allowed waiting for a command;
	// DataTimeout between reads of message data (421 4.4.2).
	CommandTimeout, DataTimeout time.Duration
	// MinDataRate bounds a whole DATA or BDAT transfer, in bytes per
	// second: a transfer that has received n bytes must be done within
	// DataTimeout + n/MinDataRate of its start (421 4.4.2, then the
	// connection closes). It stops a client that trickles a byte every few
	// seconds and so never trips DataTimeout. Negative disables it.
	MinDataRate int64
	// BareLineEndings is what to do with a bare CR or LF in message data.
	BareLineEndings BareLineEndings

	// AllowNets are the client networks allowed to connect; empty allows
	// every address. Others get 554 5.7.1 at connect.
	AllowNets []netip.Prefix
	// MaxConnections and MaxConnectionsPerClient bound open connections
	// (421 4.7.0 beyond).
	MaxConnections, MaxConnectionsPerClient int
	// MaxCommandsBeforeMail bounds the command lines a client may send
	// before its first MAIL FROM (421 4.7.0, then the connection is
	// closed).
	MaxCommandsBeforeMail int
	// MaxErrors is how many refused commands a connection may collect
	// before the relay answers 421 and closes it.
	MaxErrors int
	// RequireTLS refuses MAIL FROM before STARTTLS (530 5.7.0).
	RequireTLS bool
	// ClientCertNames, when set, lets a client authenticate with a TLS
	// client certificate that verifies against TLS.ClientCAs (set
	// TLS.ClientAuth to tls.VerifyClientCertIfGiven) and whose subject
	// common name or a DNS name is in the list: the vendors' certificates.
	ClientCertNames []string
	// Users, when set, offers SMTP AUTH PLAIN and LOGIN after STARTTLS, for
	// vendors that cannot do mutual TLS.
	Users Authenticator
	// With ClientCertNames or Users set, a client must authenticate one way
	// or the other before MAIL FROM (530 5.7.0).
}

// DefaultListener returns the listener defaults: the one place they are
// written.
func DefaultListener() ListenerConfig {
	return ListenerConfig{
		MaxMessageSize:          150_000_000, // Exchange Online's limit
		MaxHeaderSize:           headers.DefaultMaxHeaderBytes,
		MaxHeaderFields:         headers.DefaultMaxHeaderFields,
		MaxRecipients:           1000,
		MaxLineLength:           2000, // RFC 5321 allows 1000
		CommandTimeout:          5 * time.Minute,
		DataTimeout:             5 * time.Minute,
		MinDataRate:             500, // as Postfix's smtpd_min_data_rate
		BareLineEndings:         BareLineReject,
		MaxConnections:          500,
		MaxConnectionsPerClient: 50,
		MaxCommandsBeforeMail:   100,
		MaxErrors:               20,
	}
}

func (l ListenerConfig) withDefaults() ListenerConfig {
	d := DefaultListener()
	setInt64 := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	setInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	setInt64(&l.MaxMessageSize, d.MaxMessageSize)
	setInt(&l.MaxHeaderSize, d.MaxHeaderSize)
	setInt(&l.MaxHeaderFields, d.MaxHeaderFields)
	setInt(&l.MaxRecipients, d.MaxRecipients)
	setInt(&l.MaxLineLength, d.MaxLineLength)
	setDur(&l.CommandTimeout, d.CommandTimeout)
	setDur(&l.DataTimeout, d.DataTimeout)
	if l.MinDataRate == 0 {
		l.MinDataRate = d.MinDataRate
	}
	if l.BareLineEndings == "" {
		l.BareLineEndings = d.BareLineEndings
	}
	setInt(&l.MaxConnections, d.MaxConnections)
	setInt(&l.MaxConnectionsPerClient, d.MaxConnectionsPerClient)
	setInt(&l.MaxCommandsBeforeMail, d.MaxCommandsBeforeMail)
	setInt(&l.MaxErrors, d.MaxErrors)
	return l
}

// NextHop is where one leg delivers: the vendor's smart host on the tenant
// leg, the tenant (reinjection) on the return leg. Zero values take the
// values of DefaultNextHop.
type NextHop struct {
	// Name identifies the hop in replies and logs ("signatures",
	// "tenant").
	Name string
	// Address is host:port.
	Address string
	// HELO is the name the relay gives in EHLO; default Static.Hostname.
	HELO     string
	StartTLS StartTLSMode
	// TLS is used for STARTTLS: ServerName (defaults to Address's host),
	// RootCAs, Certificates (the client certificate Exchange's inbound
	// connector checks), InsecureSkipVerify.
	TLS *tls.Config

	ConnectTimeout time.Duration // dialling and the greeting
	CommandTimeout time.Duration // each command's reply
	DataTimeout    time.Duration // idle time while writing the message
	FinalTimeout   time.Duration // reply to end-of-data
}

// DefaultNextHop returns the next-hop defaults: the one place they are
// written.
func DefaultNextHop() NextHop {
	return NextHop{
		StartTLS:       StartTLSOpportunistic,
		ConnectTimeout: 30 * time.Second,
		CommandTimeout: 5 * time.Minute,
		DataTimeout:    5 * time.Minute,
		FinalTimeout:   10 * time.Minute,
	}
}

func (h NextHop) withDefaults(hostname string) NextHop {
	d := DefaultNextHop()
	if h.StartTLS == "" {
		h.StartTLS = d.StartTLS
	}
	for _, p := range []struct{ v, d *time.Duration }{
		{&h.ConnectTimeout, &d.ConnectTimeout}, {&h.CommandTimeout, &d.CommandTimeout},
		{&h.DataTimeout, &d.DataTimeout}, {&h.FinalTimeout, &d.FinalTimeout},
	} {
		if *p.v <= 0 {
			*p.v = *p.d
		}
	}
	if h.HELO == "" {
		h.HELO = hostname
	}
	return h
}

func (h *NextHop) validate() error {
	if h.Name == "" {
		return errors.New("next hop without a name")
	}
	if _, _, err := net.SplitHostPort(h.Address); err != nil {
		return fmt.Errorf("next hop %s: address %q: %w", h.Name, h.Address, err)
	}
	return h.StartTLS.Check()
}

// The enums: each value is the one the configuration file uses, and ""
// stands for the default.
type (
	// StartTLSMode is a next hop's STARTTLS policy.
	StartTLSMode string
	// BareLineEndings is what a listener does with a bare CR or bare LF in
	// message data.
	BareLineEndings string
	// ReturnPolicy is what the return leg does with mail that has no valid
	// origin record.
	ReturnPolicy string
	// DuplicatePolicy is what the return leg does with a copy of a message
	// for a recipient the tenant already accepted it for.
	DuplicatePolicy string
	// FallbackMatching says whose returning mail may be matched to its
	// record without the signed reference, by Message-ID or fingerprint.
	FallbackMatching string
)

// The enums' values.
//
//   - StartTLSMode: StartTLSOpportunistic (the default) uses STARTTLS when
//     the next hop offers it; StartTLSRequired fails (4xx upstream) unless
//     STARTTLS succeeds; StartTLSOff never uses it.
//   - BareLineEndings: BareLineReject (the default) refuses the message
//     (550 5.6.0); BareLineNormalize turns every bare CR and bare LF into
//     CRLF.
//   - ReturnPolicy: ReturnReject (the default) answers 550 5.7.1;
//     ReturnStrip delivers the message with every organization header
//     removed, so that the tenant treats it as external mail.
//   - DuplicatePolicy: DuplicatesSuppress (the default) acknowledges a copy
//     and does not deliver it again; DuplicatesDeliver delivers every copy.
//   - FallbackMatching: FallbackTrusted (the default) allows fallback
//     matching only for a client that authenticated (client certificate or
//     SMTP AUTH) or that the return listener's AllowNets admitted, or on a
//     return listener bound to a loopback address; FallbackOff matches by
//     reference only; FallbackAny allows it for every client of the return
//     listener, and then anyone who can reach it and knows a recorded
//     message's Message-ID (or Date, From, To and Subject) and sender can
//     deliver any content to a recipient not yet delivered, with the
//     recorded organization headers restored.
const (
	StartTLSOpportunistic, StartTLSRequired, StartTLSOff StartTLSMode     = "opportunistic", "required", "off"
	BareLineReject, BareLineNormalize                    BareLineEndings  = "reject", "normalize"
	ReturnReject, ReturnStrip                            ReturnPolicy     = "reject", "strip"
	DuplicatesSuppress, DuplicatesDeliver                DuplicatePolicy  = "suppress", "deliver"
	FallbackTrusted, FallbackOff, FallbackAny            FallbackMatching = "trusted", "off", "any"
)

// Check reports a value that is none of the enum's.
func (m StartTLSMode) Check() error {
	return checkEnum(m, StartTLSOff, StartTLSOpportunistic, StartTLSRequired)
}
func (b BareLineEndings) Check() error { return checkEnum(b, BareLineReject, BareLineNormalize) }
func (p ReturnPolicy) Check() error    { return checkEnum(p, ReturnReject, ReturnStrip) }
func (p DuplicatePolicy) Check() error { return checkEnum(p, DuplicatesSuppress, DuplicatesDeliver) }
func (f FallbackMatching) Check() error {
	return checkEnum(f, FallbackTrusted, FallbackOff, FallbackAny)
}

// checkEnum accepts "" (the default) and the allowed values.
func checkEnum[T ~string](v T, allowed ...T) error {
	if v == "" || slices.Contains(allowed, v) {
		return nil
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return fmt.Errorf("%q is not one of %s", string(v), strings.Join(names, ", "))
}
