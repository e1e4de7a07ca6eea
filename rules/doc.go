// Package rules decides, per message leaving the Microsoft 365 tenant,
// where it goes: through a chain of vendors, straight back to the tenant
// (bypass), or nowhere (reject, tempfail). It speaks the language of
// Exchange transport rules, which mail admins know: conditions on header
// fields, words, senders and recipients, exceptions (ExceptIf), header
// actions (SetHeader, RemoveHeader) and StopRuleProcessing; and it ships
// recall-safe defaults that no rule can override.
//
// The package is pure logic plus a streaming body scanner (ScanBody); the
// relay calls it and does the SMTP.
//
// # Rules file
//
// A rules file is YAML, decoded strictly (unknown keys are errors):
//
//	organization:
//	  accepted_domains: [contoso.com, contoso.onmicrosoft.com]
//	defaults:                  # each on unless set to false
//	  recall_bypass: true      # recall requests and reports bypass every vendor
//	  loop_protection: true    # messages carrying a loop marker bypass
//	  null_sender_bypass: true # MAIL FROM:<> (bounces, DSNs) bypasses
//	  calendar_bypass: true    # calendar items bypass
//	  vendor_markers: [X-CodeTwoProcessed, X-ExclaimerHostedSignatures-MessageProcessed, X-ProcessedByTemplafy]
//	  scan_incomplete: bypass  # or reject, tempfail: see "Incomplete body scans"
//	default_route: [signature] # required; [] means bypass
//	rules:
//	  - name: sign-external    # required, unique
//	    priority: 10           # lower runs first; default 10, 20, 30... by position
//	    when:   {...}          # every condition listed must hold
//	    except: {...}          # the rule does not apply if any condition listed holds
//	    actions:
//	      route: [signature, scanner]  # or bypass: true, reject: {...}, tempfail: {...}
//	      set_header: [{name: X-Foo, value: bar}]  # exact field names,
//	      remove_header: [X-Bar]                   # never patterns
//	    stop: true             # StopRuleProcessing
//
// Conditions (under when or except; inside one condition the values are
// alternatives, as in Exchange):
//
//   - header_exists: [names]: a field of one of the names is present.
//   - header_contains: {header, words}: a field of that name contains one of
//     the words or phrases as whole words, ignoring case (see below).
//   - header_matches: {header, patterns}: a field of that name matches one
//     of the RE2 patterns (unanchored, case-sensitive unless (?i)).
//   - subject_contains: [words], subject_matches: [patterns]: the same for
//     Subject. Field values are RFC 2047-decoded before matching.
//   - sender: {addresses, domains, patterns}: the envelope sender (MAIL
//     FROM) is one of the addresses, is in one of the domains, or matches
//     one of the patterns (case-insensitive). A domain entry matches that
//     domain only, not its subdomains. The null sender matches nothing.
//   - recipient: {...}: the same for any envelope recipient.
//   - sender_in_organization: true|false: the envelope sender's domain is
//     (is not) an accepted domain; the null sender is not in the
//     organization.
//   - recipients_outside_organization: any|all|none: how many recipients
//     are outside the accepted domains.
//   - size_over: 10MB: the message is larger: a number of bytes, or a
//     number with a unit, written as every size of recallrelay's files
//     (10MB, 512KiB, 64k; the syntax is documented on yamlconf.ByteSize,
//     go doc ./internal/yamlconf ByteSize).
//   - attachment_extension: [pdf, .docx, tar.gz]: an attachment's file name
//     ends in one of them, ignoring case.
//   - attachment_content_type: [application/pdf, image/*]: an attachment
//     has one of the media types.
//   - message_class: [IPM.Note, IPM.Schedule.Meeting.*]: the message class
//     of the TNEF (winmail.dat) part, exact or by prefix, ignoring case. A
//     message without a TNEF part has no class and matches none.
//   - predicate: [names]: one of the predicates below holds.
//
// Words and phrases match as Exchange's HeaderContainsWords does: whole
// words, case-insensitively, white space runs counting as one space;
// "urgent" matches "URGENT!" but not "urgently". In scripts written without
// spaces (Chinese, Japanese, Thai, ...) any position counts as a word
// boundary.
//
// Header field names compare case-insensitively everywhere.
//
// Header actions take exact field names: set_header sets the field of that
// name, remove_header removes the fields of that name. A name holding "*"
// is refused ("X-MS-Exchange-*": header actions take exact field names,
// not patterns): a rule removes or sets named fields, and a pattern could
// reach the fields below. Rules can neither set nor remove, under any
// case, the fields recall and the round trip depend on
// (headers.DefaultRestore, headers.Firewall: Message-ID,
// X-MS-Exchange-CrossPremises-*, X-MS-Exchange-Organization-*,
// X-OrganizationHeadersPreserved, X-MS-TNEF-Correlator, Thread-Index, ...),
// the MIME structure (Content-*, MIME-Version), the fields Exchange strips
// and re-stamps when the message comes back in (X-MS-Exchange-CrossTenant-*,
// X-MS-Exchange-Transport-CrossTenantHeadersStamped, X-OriginatorOrg), nor
// the relay's loop marker and reference header (CompileOptions.LoopMarker,
// CompileOptions.RefHeader). Parse refuses the fixed names, Compile the
// relay's; Protected tells them all, for the relay to check each header
// action again when it applies it.
//
// A rule has at most one routing action: route, bypass, reject (5xx,
// default 550 5.7.1) or tempfail (4xx, default 451 4.7.1); the class of an
// enhanced code must match its reply code.
//
// # Evaluation
//
// The recall-safe defaults run first and are final: the message bypasses
// every vendor, unchanged, and user rules are not evaluated. Then the rules
// run by priority (ties in file order). Header actions accumulate over the
// matching rules. The last matching rule with a routing action decides the
// route, as later Exchange rules override earlier ones; a matching rule
// with stop ends the evaluation, and a matching reject or tempfail ends it
// at once. Without a routing action, default_route applies.
//
// # Incomplete body scans
//
// ScanBody is bounded (ScanLimits: multipart nesting deeper than 16, more
// than 1000 parts, a part header block over 64 KiB) and reads past what it
// cannot parse. When it could not see the whole body (a limit stopped it;
// a multipart had no boundary, a broken part header or delimiter line, so
// its remaining parts could not be found; the winmail.dat part could not
// be read) it marks the BodyInfo Incomplete, with the reason. A part it did
// not see might be a winmail.dat of class IPM.Outlook.Recall, so recall
// classification must not trust what it saw:
//
//   - A condition on the body (attachment_extension,
//     attachment_content_type, message_class, and the predicates
//     recall-request, recall-report, calendar, encrypted-or-signed) that
//     holds on the parts seen holds; one that does not is undecided.
//   - When a rule reached is undecided, the parts seen cannot settle the
//     decision, and the scan-incomplete fail-safe decides instead of the
//     rules: by default the message bypasses every vendor, unchanged, like
//     recall traffic (Decision.Matched "builtin:scan-incomplete-bypass",
//     Decision.Final, and Decision.Reason "the body scan did not finish:
//     message part 1000: more than 1000 parts (scan limit)").
//   - It does not apply when a built-in default bypassed the message on
//     what was seen (a recall field, a loop marker, a recall class or
//     calendar part seen before the scan stopped), nor when the rules
//     reached are decided without the parts not seen (a header rule with
//     stop matched first; no rule reads the body).
//
// defaults.scan_incomplete chooses what the fail-safe does: bypass (the
// default: recall is never broken, but such a message skips the vendors,
// as any message carrying a recall field does), reject (550 5.6.0,
// "builtin:scan-incomplete-reject") or tempfail (451 4.6.0,
// "builtin:scan-incomplete-tempfail"), for a scanning vendor that nothing
// may evade: then a recall request hidden that way fails instead of
// reaching the vendor. A message that merely lacks its final close
// delimiter is not incomplete: every line of it was read.
//
// # Predicates
//
// Each predicate is built on the facts in
// ../shared/docs/exchange-round-trip.md (section 4) and on the real Exchange
// Online messages in ../shared/corpus/exchange (cited by file number).
//
// recall-request: the message is a request to recall an earlier message.
// It holds when any of these holds:
//   - an X-MS-Exchange-RecallReportGenerated field is present (documented
//     in section 4; corpus 001-004, 010, 011, 013-015);
//   - an X-MS-TrafficTypeDiagnostic value ends, after its last colon or
//     semicolon, in EE_MessageRecallEmail (cloud recall; 001, 002, 014) or
//     EE_LegacyOutlookRecall (classic Outlook; 003, 004);
//   - the legacy Outlook recall artefact: X-CallingTelephoneNumber holds a
//     message class ("IPM.Note") and X-VoiceMessageDuration and
//     X-FaxNumberOfPages are present. Observed on all twelve recalls
//     submitted from Outlook (003-013, 015), including the six that carry
//     no recall field at all (005-009, 012), and on none of the 64
//     ordinary messages of the corpus. These are Exchange's MIME names of
//     unified-messaging MAPI properties; a telephone-number field holding
//     the class of the recalled message is, we infer, the recall request's
//     properties leaking through that mapping. A real voice-mail message
//     carries a telephone number there, not a message class;
//   - the TNEF message class is IPM.Outlook.Recall (section 4: classic
//     Outlook recalls may travel as winmail.dat). No corpus message has
//     one; the tests build one.
//
// The localized "Recall:" subject prefix (撤回, 回收, ...) is not used: a
// person may write "Recall: the figures", and the corpus shows no recall
// that the fields above miss.
//
// recall-report: the message reports a recall's outcome:
// X-MS-Exchange-Generated-Message-Source is "Transport Message Recall
// Routing Agent" (section 4), or the TNEF message class starts with
// IPM.Recall.Report.
//
// auto-generated: Auto-Submitted is present with a value other than "no"
// (RFC 3834), or X-MS-Exchange-Generated-Message-Source is present, whatever
// the agent (section 4: "Mailbox Rules Agent", "Transport Rule Agent",
// "Journal Agent", the recall agent). Precedence: bulk, junk or list does
// not count: mailing lists stamp it on mail people write (every vger copy
// in the corpus carries Precedence: bulk), and the tenant's own list
// software would too.
//
// calendar: the message or one of its parts is text/calendar or
// application/ics (020, 021), or the TNEF message class is
// IPM.Schedule.Meeting.* or IPM.Appointment(.*).
//
// encrypted-or-signed: the message or one of its parts is
// multipart/signed, multipart/encrypted, application/(x-)pkcs7-mime,
// application/pgp-encrypted, or a detached signature
// (application/(x-)pkcs7-signature, application/pgp-signature). Corpus: 057
// (S/MIME inside a list's multipart/mixed), 058 (PGP/MIME), 059 (S/MIME).
//
// already-processed: the relay's loop marker (CompileOptions.LoopMarker) or
// one of defaults.vendor_markers is present, whatever its value (section 1).
// Corpus 033 went through CodeTwo's signature service and carries
// X-CodeTwoProcessed: true; sent to a vendor again it would loop.
//
// Predicates on header fields trust the header block: the tenant leg
// receives mail only from the tenant's outbound connector, so a forged
// recall field can make a message skip the vendors but not make it
// internal or recallable.
//
// # When the relay decides
//
// DecideEnvelope decides from the envelope when nothing else can matter
// (the relay asks it at MAIL FROM); NeedsBody and NeedsBodyFor tell whether
// the body must be scanned (only multipart and TNEF messages, and only when
// a condition needs it: whenever recall classification could depend on the
// body, unless the header block settles the decision); Decide decides on
// the whole message, with the BodyInfo of ScanBody as it is, Incomplete or
// not; Explain says why; ClassifyRecall tells recall traffic by the same
// signs. Protected tells the header fields no header action may touch.
package rules
