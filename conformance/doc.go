// Package conformance measures whether Exchange recall survives a vendor
// round trip: it sends the same Exchange Online messages through a matrix of
// vendor behaviours, once directly and once through recallrelay, and reports
// per cell how many messages arrived exactly once per recipient with their
// recall identity intact, why the others did not, and how much recall
// traffic reached the vendor. It backs the "recallrelay conformance"
// command, with which vendors prove that their service keeps recall
// working.
//
// # The matrix
//
// Rows are Cases: DefaultCases lists every behaviour of the fake vendor in
// package relaytest (each with its default parameter, delay shortened to
// 200ms), the named combination signature-service and two more
// combinations, scanner and strip-and-rewrite. Columns are Paths:
//
//   - PathDirect: tenant → vendor → tenant. A relaytest.Sender delivers to
//     a relaytest.Vendor whose return address is a relaytest.Tenant.
//   - PathRelay: tenant → relay tenant leg → vendor → relay return leg →
//     tenant, with a relay started by Config.StartRelay.
//
// Every cell gets fresh servers and a fresh relay with an empty store, and
// sends the same messages with a few concurrent senders. A cell waits for
// the fake vendor to go idle (an external vendor: for deliveries naming
// every accepted recipient), then for no new delivery during Settle, all
// within CellTimeout.
//
// Deliveries are matched to sent messages by headers.Header.Fingerprint
// (Date, From, To, Cc, Subject, robust to re-folding and re-encoding) and
// recipient; Run refuses a message set whose fingerprints are not unique.
// A message survives when every envelope recipient received it exactly once
// and relaytest.CompareIdentity found every delivery of it intact:
// Message-ID, every X-MS-Exchange-CrossPremises-* field,
// X-OrganizationHeadersPreserved, X-MS-TNEF-Correlator, X-MS-Has-Attach and
// the recall markers byte-identical, none of them added, and every
// winmail.dat part byte-identical.
//
// Recall traffic reaching the vendor is counted from what the fake vendor
// received, recognized as the relay recognizes it (ClassifyRecall, which is
// rules.ClassifyRecall). Through the relay the count is 0: the recall-safe
// rules send recall requests and reports straight back to the tenant, and
// Gate.NoRecallToVendor makes that a CI verdict. Behind the relay, an
// external vendor's intake cannot be observed: the count is null.
//
// # DKIM
//
// Before sending, the run signs every message with a tenant DKIM key of its
// own (ed25519, go-msgauth), over the fields Exchange Online signs, and
// checks the signature on every delivery (dkim_intact). It is reported,
// not part of survival: a vendor that changes the body breaks it for good,
// while one that only drops or rewrites signed fields (Message-ID,
// X-MS-Exchange-SenderADCheck) has them put back by the relay.
//
// # What the relay cannot restore
//
// The relay records header fields, not bodies. Measured over the generated
// messages and the shared Exchange corpus, every behaviour reaches 100 %
// through the relay except:
//
//   - flatten-tnef: the vendor deletes the application/ms-tnef
//     (winmail.dat) part. The correlator header comes back, but the TNEF
//     part it must match (and the message class and MAPI properties inside
//     it) is gone, and the relay has no copy of bodies to put it back.
//     Expected damage: pass it to Gate.ExpectDamage.
//
// tempfail-first reaches 100 % because the tenant leg derives the reference
// from the message and its envelope: the retry of a message the vendor
// refused once goes out byte-identical, and the vendor recognizes it.
// duplicate and split-recipients reach 100 % because the relay's return leg
// suppresses repeat deliveries per recipient; drop-mid-data and delay
// because senders retry and nothing is lost in the wait; header stripping,
// re-encoding and Message-ID rewriting because the return leg restores the
// recorded fields byte for byte.
//
// # JSON report
//
// Report.WriteJSON writes (ReadReport reads) one object. Field names are
// stable within a "version":
//
//	version            1
//	started            RFC 3339 time the run started (UTC)
//	duration_seconds   wall time of the whole run
//	params             messages (count), message_source, vendor ("fake" or
//	                   host:port), return_listen (external vendor only),
//	                   paths, senders, settle_ms, cell_timeout_ms
//	cases[]            name, behaviors, and per path a cell object under
//	                   "direct" and "relay" (absent when not run)
//
// A cell object:
//
//	sent               messages sent
//	not_accepted       messages the first hop never accepted
//	recipients         (message, recipient) pairs sent
//	delivered_once     pairs delivered exactly once
//	lost               pairs never delivered
//	duplicated         pairs delivered more than once
//	deliveries         transactions the tenant recorded
//	unmatched          deliveries matching no sent message
//	extra_recipients   recipients of matched deliveries the message was not
//	                   sent to
//	identity_intact    messages delivered with every delivery intact
//	dkim_intact        messages delivered with the tenant's DKIM signature
//	                   valid on every delivery
//	survived           messages intact and delivered once to every recipient
//	survival_percent   100 × survived / sent
//	recall_to_vendor   {"requests": n, "reports": n}, or null when not
//	                   observable
//	damage             missing, changed, added: messages per lower-case
//	                   identity field name; tnef_lost, tnef_changed:
//	                   messages; summary: one line, "none" at 100 %
//	messages[]         name, kind, recall ("request", "report" or absent),
//	                   accepted, send_error, recipients[] {address,
//	                   deliveries}, identity_intact, identity (the
//	                   CompareIdentity summary, or "not delivered"),
//	                   missing/changed/added (field names), tnef_lost,
//	                   tnef_changed, survived, dkim_intact
//	incomplete         why the cell stopped waiting early (absent if it
//	                   did not)
//	duration_seconds   wall time of the cell
//
// Report.WriteText renders the terminal table and Report.WriteHTML a
// self-contained page (inline CSS and SVG chart, no scripts). Gate turns a
// report into a CI verdict.
package conformance
