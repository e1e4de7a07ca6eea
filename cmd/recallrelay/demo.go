package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
)

// demoBehaviors is what the demo's vendor does: what real signature
// services do to mail.
const demoBehaviors = "strip-ms-headers,rewrite-message-id,footer-html,stamp-marker"

// cmdDemo runs tenant → relay → vendor → relay → tenant in this process on
// the built-in defaults (embedded store in a temporary directory) and prints
// per message what the vendor broke and what the relay restored. It fails
// when any message does not arrive exactly once with its recall identity
// intact.
func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo")
	dir := fs.String("messages", "", "send the .eml files of DIR instead of generated Exchange messages")
	behaviors := fs.String("behaviors", demoBehaviors, "the vendor's behaviours (see fakemta behaviors)")
	verbose := fs.Bool("verbose", false, "print the relay's log lines to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bs, err := relaytest.ParseBehaviors(*behaviors)
	if err != nil {
		return usageError{err}
	}
	msgs := relaytest.Generate(relaytest.GenerateOptions{Seed: 1})
	if *dir != "" {
		if msgs, err = relaytest.LoadDir(*dir); err != nil {
			return err
		}
	}

	tenant, err := relaytest.NewTenant(relaytest.TenantConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	if err := tenant.Start(); err != nil {
		return err
	}
	defer tenant.Close()
	vendorAddr, err := freeAddr()
	if err != nil {
		return err
	}
	var logw io.Writer = io.Discard
	if *verbose {
		logw = stderr
	}
	outcomes := &relay.MemoryObserver{}
	r, data, stop, err := startLocalRelay(vendorAddr, tenant.Addr(), "", nil, logw, outcomes)
	if err != nil {
		return err
	}
	defer stop()

	vendor, err := relaytest.NewVendor(relaytest.VendorConfig{
		Name: "signature-vendor", Listen: vendorAddr, ReturnAddr: r.ReturnAddr(), Behaviors: bs,
	})
	if err != nil {
		return err
	}
	if err := vendor.Start(); err != nil {
		return err
	}
	defer vendor.Close()

	fmt.Fprintf(stdout, "recallrelay demo: tenant leg %s, return leg %s, embedded store in %s\n", r.TenantAddr(), r.ReturnAddr(), data)
	fmt.Fprintf(stdout, "vendor at %s does: %s\n\n", vendorAddr, *behaviors)

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MESSAGE\tVENDOR BROKE\tRELAY RESTORED\tAT TENANT\tMS")
	sender := relaytest.Sender{Addr: r.TenantAddr(), Backoff: 100 * time.Millisecond}
	var failed, restoredFields int
	var total time.Duration
	var bypassed int
	for i, m := range msgs {
		start := time.Now()
		mark, returnedBefore := len(outcomes.Outcomes()), len(vendor.Returned())
		res := sender.Send(context.Background(), m)
		if !res.Accepted {
			fmt.Fprintf(tw, "%s\t-\t-\tNOT ACCEPTED: %v\t-\n", m.Name, res.Err)
			failed++
			continue
		}
		delivered, err := tenant.WaitDeliveries(i+1-failed, 15*time.Second)
		if err != nil {
			fmt.Fprintf(tw, "%s\t-\t-\tNOT DELIVERED: %v\t-\n", m.Name, err)
			failed++
			continue
		}
		elapsed := time.Since(start)
		total += elapsed
		vendor.WaitIdle(5 * time.Second)
		returned := vendor.Returned()
		done := outcomes.Outcomes()[mark:]
		broke, repaired := "-", "-"
		switch tl := lastOf(done, "tenant"); {
		case tl.Result == "bypassed":
			// A recall request or report, looped or calendar mail: the
			// rules kept it off the vendor, so there was nothing to break.
			broke = "never sent to the vendor (" + strings.Join(tl.Rules, ", ") + ")"
			bypassed++
		case len(returned) > returnedBefore:
			broke = damage(relaytest.CompareIdentity(m.Data, returned[len(returned)-1].Delivery.Data))
			restored := lastOf(done, "return").Restored
			restoredFields += len(restored)
			repaired = summarize(restored)
		}
		at := relaytest.CompareIdentity(m.Data, delivered[len(delivered)-1].Data)
		verdict := "intact"
		if !at.Intact {
			verdict = "DAMAGED: " + at.String()
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", m.Name, broke, repaired, verdict, elapsed.Milliseconds())
	}
	tw.Flush()
	n := len(msgs)
	fmt.Fprintf(stdout, "\n%d messages, %d delivered intact, %d kept off the vendor by the recall-safe rules, %d fields restored, %.1f ms per message round trip\n",
		n, n-failed, bypassed, restoredFields, float64(total.Microseconds())/1000/float64(max(n-failed, 1)))
	if failed > 0 {
		return fmt.Errorf("%d of %d messages did not survive the round trip", failed, n)
	}
	return nil
}

// damage describes what a vendor did to a message's recall identity.
func damage(r relaytest.IdentityResult) string {
	if r.Intact {
		return "nothing"
	}
	var parts []string
	if len(r.Missing) > 0 {
		parts = append(parts, "dropped "+summarize(r.Missing))
	}
	if len(r.Changed) > 0 {
		parts = append(parts, "changed "+summarize(r.Changed))
	}
	if len(r.Added) > 0 {
		parts = append(parts, "added "+summarize(r.Added))
	}
	if r.TNEFLost {
		parts = append(parts, "lost winmail.dat")
	}
	if r.TNEFChanged {
		parts = append(parts, "changed winmail.dat")
	}
	return strings.Join(parts, "; ")
}

// summarize folds field names into families: "Message-ID, CrossPremises×9, ...".
func summarize(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	var cp int
	var out []string
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, "x-ms-exchange-crosspremises-"):
			cp++
		case n == "message-id":
			out = append(out, "Message-ID")
		case n == "x-organizationheaderspreserved":
			out = append(out, "OrgHeadersPreserved")
		case n == "x-ms-exchange-senderadcheck":
			out = append(out, "SenderADCheck")
		default:
			out = append(out, strings.TrimPrefix(strings.TrimPrefix(n, "x-ms-exchange-"), "x-ms-"))
		}
	}
	if cp > 0 {
		out = append([]string{fmt.Sprintf("CrossPremises×%d", cp)}, out...)
	}
	return strings.Join(out, ", ")
}

// startLocalRelay starts a relay on the built-in defaults, as serve would
// run it, on loopback ports, with its embedded store in a new temporary
// directory: tenant leg → vendorAddr, return leg → tenantAddr. The return
// leg listens on returnListen, or on a free loopback port when it is "",
// and admits the clients in returnAllow (every client when it is empty: a
// return leg other hosts can reach then fails validation).
// stop shuts the relay down and removes the directory.
func startLocalRelay(vendorAddr, tenantAddr, returnListen string, returnAllow []string, logw io.Writer, obs ...relay.Observer) (r *relay.Relay, dataDir string, stop func(), err error) {
	return localRelay{VendorAddr: vendorAddr, TenantAddr: tenantAddr, ReturnListen: returnListen, ReturnAllow: returnAllow,
		Log: logw, Observers: obs}.start()
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// lastOf returns the newest outcome of leg, zero when there is none.
func lastOf(os []relay.Outcome, leg string) relay.Outcome {
	for i := len(os) - 1; i >= 0; i-- {
		if os[i].Leg == leg {
			return os[i]
		}
	}
	return relay.Outcome{}
}
