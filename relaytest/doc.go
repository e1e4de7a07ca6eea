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
// CompareIdentity tells whether a delivered message still carries what
// recall needs to find the original.
//
// Behaviours (ParseBehaviors, Behaviors): passthrough, footer-text,
// footer-html, reencode, strip-ms-headers, strip-unknown-headers,
// rewrite-message-id, split-recipients, tempfail-first, delay,
// drop-mid-data, duplicate, flatten-tnef, stamp-marker,
// exchange-second-pass, and the combination signature-service.
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
