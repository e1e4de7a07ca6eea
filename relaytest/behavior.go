package relaytest

import (
	"fmt"
	"time"

	"github.com/emersion/go-smtp"
)

// A Behavior is one thing a Vendor does to the mail it handles. Every
// Behavior implements at least one of Transformer, EnvelopeTransformer,
// ReceiveFilter and ReturnPlanner; a Vendor applies them in the order they
// are listed.
type Behavior interface {
	// Name returns the behaviour as ParseBehaviors accepts it, including
	// its parameter if it has one (e.g. "delay=2s").
	Name() string
}

// A Transformer changes the message the vendor sends back.
type Transformer interface {
	Behavior
	// Transform returns the transformed message. data is CRLF-terminated
	// and must not be modified; the result may share memory with it. On
	// error the vendor skips this transform and sends the message on.
	Transform(data []byte) ([]byte, error)
}

// An EnvelopeTransformer changes the message the vendor sends back knowing
// the envelope it was received with, as a signature service that decides
// per sender does. A Vendor calls TransformEnvelope instead of Transform
// when a behaviour implements both.
type EnvelopeTransformer interface {
	Behavior
	// TransformEnvelope returns the transformed message. env is the
	// envelope the vendor received the message with (a copy), data as for
	// Transformer.Transform; on error the vendor skips this transform and
	// sends the message on.
	TransformEnvelope(env Envelope, data []byte) ([]byte, error)
}

// A ReceiveFilter decides about an inbound message once its data has been
// received, before the vendor answers the final dot.
type ReceiveFilter interface {
	Behavior
	// Receive returns nil to accept d or the SMTP error to answer instead;
	// a refused message is neither stored nor sent back. It may be called
	// concurrently.
	Receive(d *Delivery) *smtp.SMTPError
}

// A ReturnPlanner changes how the vendor sends a processed message back.
type ReturnPlanner interface {
	Behavior
	// Plan adjusts p, which starts as one transaction with the envelope
	// the message was received with.
	Plan(p *ReturnPlan)
}

// Envelope is the SMTP envelope of one transaction.
type Envelope struct {
	From string   // MAIL FROM address, without angle brackets
	To   []string // RCPT TO addresses
	UTF8 bool     // send with the SMTPUTF8 parameter
}

// ReturnPlan describes how a Vendor sends one processed message back.
type ReturnPlan struct {
	// Delay is waited before the first transaction.
	Delay time.Duration
	// Transactions are sent one after the other, each with the processed
	// message and its own envelope.
	Transactions []Envelope
	// AbortAttempts is how many first attempts of every transaction are cut
	// off in the middle of DATA (see Sender.AbortData).
	AbortAttempts int
}

// BehaviorInfo describes one behaviour name ParseBehaviors accepts.
type BehaviorInfo struct {
	Name        string // e.g. "delay"
	Param       string // parameter syntax and default, empty if none
	Description string // one line
}

type behaviorDef struct {
	info BehaviorInfo
	// make builds the behaviour; param is "" when none was given.
	make func(param string) (Behavior, error)
	// combo lists the behaviours a named combination expands to.
	combo []string
}

// Default parameter values.
const (
	DefaultFooterText     = "-- \r\nThis message was processed by fakemta."
	DefaultFooterHTML     = `<div class="fakemta-footer" style="font-family:sans-serif;font-size:9pt">This message was processed by fakemta.</div>`
	DefaultMarker         = "X-CodeTwoProcessed: true"
	DefaultVendorDomain   = "vendor.relaytest.invalid"
	DefaultDelay          = time.Second
	signatureServiceCombo = "signature-service"
)

// registry returns the behaviour definitions in listing order. It is a
// function, not a package variable, so that nothing global can be changed.
func registry() []behaviorDef {
	noParam := func(b Behavior) func(string) (Behavior, error) {
		return func(p string) (Behavior, error) {
			if p != "" {
				return nil, fmt.Errorf("takes no parameter")
			}
			return b, nil
		}
	}
	return []behaviorDef{
		{info: BehaviorInfo{"passthrough", "", "send the message back byte-identical"},
			make: noParam(passthrough{})},
		{info: BehaviorInfo{"footer-text", "=TEXT (default: a fakemta signature)", "append a footer to every text/plain part, keeping its transfer encoding"},
			make: func(p string) (Behavior, error) { return newFooterText(p), nil }},
		{info: BehaviorInfo{"footer-html", "=HTML (default: a fakemta signature)", "insert a footer before </body> of every text/html part; wrap a plain-text-only message into multipart/alternative"},
			make: func(p string) (Behavior, error) { return newFooterHTML(p), nil }},
		{info: BehaviorInfo{"reencode", "", "re-encode 7bit/8bit text parts (text/plain quoted-printable, other text base64) and re-fold the header at 78 columns"},
			make: noParam(reencode{})},
		{info: BehaviorInfo{"strip-ms-headers", "", "drop every header field whose name starts with X-MS-"},
			make: noParam(stripMSHeaders{})},
		{info: BehaviorInfo{"strip-unknown-headers", "", "keep only RFC 5322 and MIME header fields, drop all others (X-*, Thread-*, ...)"},
			make: noParam(stripUnknownHeaders{})},
		{info: BehaviorInfo{"rewrite-message-id", "=DOMAIN (default " + DefaultVendorDomain + ")", "replace Message-ID with a new one of the vendor's domain"},
			make: newRewriteMessageID},
		{info: BehaviorInfo{"split-recipients", "", "send back one transaction per recipient"},
			make: noParam(splitRecipients{})},
		{info: BehaviorInfo{"tempfail-first", "", "answer 451 4.7.1 to the first DATA of every distinct message, accept its retry"},
			make: func(p string) (Behavior, error) {
				if p != "" {
					return nil, fmt.Errorf("takes no parameter")
				}
				return newTempfailFirst(), nil // stateful: one per occurrence
			}},
		{info: BehaviorInfo{"delay", "=DURATION (default 1s)", "wait before sending back"},
			make: newDelay},
		{info: BehaviorInfo{"drop-mid-data", "", "cut the first send-back attempt of every transaction off in the middle of DATA; the retry sends it whole"},
			make: noParam(dropMidData{})},
		{info: BehaviorInfo{"duplicate", "", "send the result back twice, in two transactions"},
			make: noParam(duplicate{})},
		{info: BehaviorInfo{"flatten-tnef", "", "remove application/ms-tnef (winmail.dat) parts"},
			make: noParam(flattenTNEF{})},
		{info: BehaviorInfo{"stamp-marker", "=FIELD: VALUE (default " + DefaultMarker + ")", "add the vendor's loop-marker header field"},
			make: newStampMarker},
		{info: BehaviorInfo{"exchange-second-pass", "", "act as Exchange Online's second pass (via-tenant): swap the Organization/CrossPremises/CrossTenant fields for those of anonymous mail sent out through a CloudServicesMailEnabled connector, add a Received field"},
			make: noParam(newExchangeSecondPass())},
		{info: BehaviorInfo{signatureServiceCombo, "", "footer-html + reencode + strip-unknown-headers + stamp-marker"},
			combo: []string{"footer-html", "reencode", "strip-unknown-headers", "stamp-marker"}},
	}
}

// Behaviors lists every behaviour name ParseBehaviors accepts, named
// combinations included.
func Behaviors() []BehaviorInfo { return NewRegistry().Behaviors() }

// ParseBehaviors parses a comma-separated behaviour list such as
// "footer-html,delay=2s,stamp-marker=X-Processed: yes" with the built-in
// behaviours; see Registry.Parse, and Registry for lists with behaviours of
// one's own.
func ParseBehaviors(list string) ([]Behavior, error) { return NewRegistry().Parse(list) }

// MustParseBehaviors is ParseBehaviors for lists known to be valid, such as
// constants in tests; it panics on error.
func MustParseBehaviors(list string) []Behavior {
	b, err := ParseBehaviors(list)
	if err != nil {
		panic(err)
	}
	return b
}
