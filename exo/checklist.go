package exo

import (
	"fmt"
	"strings"
)

// Checklist returns the verification checklist for s, in plain text: what
// to check before the scripts run, in message trace and in a delivered
// message's header afterwards, and a recall test. What it says a real
// tenant shows is what Microsoft documents and what the repository's
// corpus of real messages shows; it has not been observed against a
// tenant set up by these scripts.
func (s *Setup) Checklist() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	n := s.names
	p("recallrelay: Exchange Online verification checklist, topology %s", s.Topology)
	p("")
	p("Before running the setup script")
	p("  [ ] recallrelay check --production --config FILE lists nothing (TLS required on")
	p("      both listeners, the tenant client certificate set, no placeholders).")
	p("  [ ] %s resolves in public DNS and accepts SMTP on port 25 from Exchange", s.Hostname)
	p("      Online (listeners.tenant.allow_nets holds the Exchange Online ranges:")
	p("      %s).", strings.Join(ExchangeOnlineRanges, ", "))
	if s.Topology == ViaTenant {
		p("  [ ] %s (the return listener) resolves and accepts SMTP on port 25 from", s.ReturnHost)
		p("      the same ranges (listeners.return.allow_nets).")
	} else {
		p("  [ ] The vendor delivers processed mail to the relay's return listener")
		p("      (%s), and listeners.return.allow_nets holds the vendor's addresses.", s.ReturnListen)
	}
	p("  [ ] %s (the inbound connector's TlsSenderCertificateName, a name on", s.CertName)
	p("      tenant.client_cert_file) is an accepted domain of the tenant")
	p("      (Get-AcceptedDomain).")
	p("  [ ] recallrelay check --connect --config FILE reaches the vendors and the")
	p("      tenant (STARTTLS, client certificate presented).")
	p("")
	p("After the setup script")
	p("  [ ] Get-InboundConnector '%s', Get-OutboundConnector '%s'", n.inbound, n.outbound)
	p("      and Get-TransportRule list what the script created; the skip rules")
	p("      have lower Priority numbers (run earlier) than '%s'.", n.route)
	p("  [ ] In the Exchange admin center (Mail flow > Connectors), validate the")
	p("      outbound connector '%s': the test message must be delivered to %s.", n.outbound, s.Hostname)
	p("")
	p("Send a test message from one mailbox of the organization to another, then")
	p("  [ ] Message trace (Exchange admin center > Mail flow > Message trace, or")
	p("      Get-MessageTraceV2 -SenderAddress <you> -RecipientAddress <them>, then")
	p("      Get-MessageTraceDetailV2 -MessageTraceId <id> -RecipientAddress <them>;")
	p("      the older Get-MessageTrace cmdlets are deprecated) shows: the transport")
	p("      rule '%s' matched; the message sent through the outbound", n.route)
	p("      connector '%s' to %s; the message received again", n.outbound, s.Hostname)
	if s.Topology == ViaTenant {
		p("      from the vendor (its own inbound connector); the rule '%s...'", s.names.returnsPrefix())
		p("      matched and the message sent through '%s' to %s;", n.returnOutbound, s.ReturnHost)
		p("      the message received from the relay; delivered, once.")
	} else {
		p("      (from the relay, after the vendor); delivered, once. No second")
		p("      send to the relay: a second one means a loop.")
	}
	p("  [ ] The relay's log shows the message on the tenant leg and on the return")
	p("      leg (\"result\":\"delivered\"); recallrelay trace --config FILE <Message-ID>")
	p("      shows its record and each recipient delivered.")
	p("  [ ] The delivered message's header (Outlook: File > Properties > Internet")
	p("      headers; or Microsoft's Message Header Analyzer) has:")
	p("        %s: %s (the relay delivered it back);", s.LoopMarker.Name, s.LoopMarker.Value)
	p("        X-MS-Exchange-Organization-* fields again, among them")
	p("        X-MS-Exchange-Organization-AuthAs: Internal and an")
	p("        X-MS-Exchange-Organization-AuthSource naming a server of the tenant:")
	p("        the inbound connector '%s' matched and promoted the", n.inbound)
	p("        restored X-MS-Exchange-CrossPremises-* fields;")
	p("        X-MS-Exchange-CrossTenant-AuthAs: Internal;")
	p("        the Received fields of %s and of the vendor;", s.Hostname)
	p("        the vendor's work (a signature, a scan stamp);")
	p("        the Message-ID the sender's Sent Items copy has (unchanged).")
	p("      Authentication-Results and the message trace must not show the")
	p("      message as received from the internet (anonymous, external): if they")
	p("      do, the inbound connector did not match (certificate name, accepted")
	p("      domain, TLS).")
	p("")
	p("Recall test")
	p("  [ ] Send a test message internally; in Outlook, recall it (Recall This")
	p("      Message). The recall report reads \"succeeded\" for the recipient, and")
	p("      the message is gone from the recipient's mailbox.")
	p("  [ ] Message trace of the recall request shows a skip rule (or the route")
	p("      rule's exception) and no send to %s: recall traffic never", s.Hostname)
	p("      leaves Exchange Online. Its header, if delivered, carries %s.", SkipHeader)
	p("  [ ] Set-OrganizationConfig -MessageRecallEnabled is not $false")
	p("      (Get-OrganizationConfig | Format-List MessageRecallEnabled).")
	p("")
	p("Undo")
	p("  [ ] recallrelay exo-setup --remove generates the removal script (route")
	p("      rule first, inbound connector last).")
	return b.String()
}

// returnsPrefix is the common start of the return rules' names.
func (n names) returnsPrefix() string {
	if len(n.returns) == 0 {
		return ""
	}
	p := n.returns[0]
	if i := strings.LastIndex(p, " return "); i >= 0 {
		return p[:i+len(" return")]
	}
	return p
}
