// Package relaytest provides fake mail servers and test messages for
// exercising an SMTP relay that sits between a Microsoft 365 tenant and a
// third-party mail service, over real SMTP on the loopback interface.
//
// The pieces mirror the round trip Exchange Online makes through an add-on
// service:
//
//   - A Sender delivers messages the way Exchange Online delivers to a smart
//     host, retrying temporary failures.
//   - A Vendor receives mail like a signature or scanning service, applies a
//     chain of Behaviors (footers, re-encoding, header stripping, recipient
//     splitting, duplicates, dropped connections, ...) and sends the result
//     back from its own queue. With the exchange-second-pass behaviour a
//     Vendor stands in for Exchange Online itself in the "via-tenant"
//     topology: it receives what the real vendor sent back, replaces the
//     organization fields with those Exchange stamps on mail from outside
//     that it sends out through an OnPremises connector, and relays the
//     message on to the relay's return listener.
//   - A Tenant receives the reinjected mail and records every delivery
//     exactly as received; fault hooks make it refuse data or recipients.
//
// Generate produces realistic Exchange Online messages (plain, HTML, inline
// images, attachments, TNEF, 8-bit, SMTPUTF8, recall requests and reports,
// calendar requests) with the X-MS-Exchange-CrossPremises-* header block a
// connector with CloudServicesMailEnabled adds; LoadDir reads .eml files.
// GenerateOptions chooses the kinds, their number, the senders and the
// recipients; GenerateMessages is the variant that returns invalid options
// as an error. Within one call names, Subjects and Message-IDs are unique.
// With TestNames every message carries its name in an X-Relaytest-Name
// field (TestNameHeader), which identifies a delivery even where a service
// changes the Subject. The field is not part of the recall identity: a
// service may keep or drop it.
//
// CompareIdentity tells whether a delivered message still carries what
// recall needs to find the original: Message-ID, the CrossPremises block,
// X-OrganizationHeadersPreserved, X-MS-TNEF-Correlator and a few more
// fields, byte for byte, and the TNEF parts. Its IdentityResult names what
// went missing, changed or was added, carries the sent and delivered bytes
// of each (Changes, TNEF), and reports a message that had no identity to
// begin with (NoIdentity); Explain prints all of it for a failing test.
//
// Inspection helpers look into a delivered message with go-message:
// HeaderValues (unfolded values), RawFields (exact bytes, folding and line
// endings included), ParseHeader (go-message's mail.Header), WalkParts and
// Parts (every MIME entity with its path, type, file name and decoded
// body), TextParts (text decoded from its transfer encoding and charset to
// UTF-8) and HasTNEF (a winmail.dat part).
//
// Behaviours (ParseBehaviors, Behaviors): passthrough, footer-text,
// footer-html, reencode, strip-ms-headers, strip-unknown-headers,
// rewrite-message-id, split-recipients, tempfail-first, delay,
// drop-mid-data, duplicate, flatten-tnef, stamp-marker,
// exchange-second-pass, and the combination signature-service. A Registry
// adds behaviours of one's own, and named combinations, to the built-ins:
// NewRegistry, Register, RegisterCombination, then Registry.Parse reads
// lists mixing both. There is no package-wide registry: ParseBehaviors
// always knows exactly the built-ins.
//
// Tests find their mail by the TestNameHeader field they stamp on what they
// send, since a service under test may rewrite Message-ID: Tenant and Vendor
// record numbered deliveries (Delivery.Seq, Delivery.Helo,
// Delivery.AuthUser) and offer WaitFor, ByTestName, ByMessageID,
// ExpectNoMore, and DeliveryFor to follow a Vendor's ReturnOutcome to the
// delivery it produced. Both servers can offer and require AUTH, and a
// Vendor and a Sender can log in to their next hop. StartTenant,
// StartVendor, NewTestSender and SelfSignedTLS set things up for a
// testing.TB and clean up after it.
//
// All servers listen on 127.0.0.1 with a random port unless told otherwise,
// keep everything in memory, and stop every goroutine they start on Close.
// go-smtp (github.com/emersion/go-smtp) speaks SMTP on both sides; go-message
// (github.com/emersion/go-message) parses MIME.
package relaytest
