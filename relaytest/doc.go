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
//     back from its own queue.
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
// All servers listen on 127.0.0.1 with a random port unless told otherwise,
// keep everything in memory, and stop every goroutine they start on Close.
// go-smtp (github.com/emersion/go-smtp) speaks SMTP on both sides; go-message
// (github.com/emersion/go-message) parses MIME.
package relaytest
