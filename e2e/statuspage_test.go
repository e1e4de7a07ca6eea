package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/recallrelay/recallrelay/relaytest"
)

// screenshotEnv names a file the status page test writes its screenshot
// to (the README's docs/status-page.png is made so).
const screenshotEnv = "RECALLRELAY_STATUS_SCREENSHOT"

// chromium returns the path of a Chromium or Chrome binary, or skips the
// test (fails it under CI=true, where .ci/run installs Debian's chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium binary (CI=true: .ci/run installs Debian's chromium package)")
	}
	t.Skip("no chromium binary: install Debian's chromium package (or set CHROMIUM) to run the status page test")
	return ""
}

// browser starts a headless Chromium with a fresh profile; every request it
// makes carries the header authorization.
func browser(t *testing.T, authorization string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // tests may run as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1500, 1100),
		// Nothing but the page: this machine's network is closed.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", chromium(t), err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": authorization}}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// The status page, in a real browser, of the real binary after real mail:
// it renders, its numbers are those of the messages sent, a next hop that
// went down shows as failing with its error, and the search finds a
// message by Message-ID, by reference and by address.
func TestStatusPage(t *testing.T) {
	t.Parallel()
	chromium(t) // skip before building anything
	bin := buildRelay(t)
	tenant := startTenant(t)
	tenantListen, returnListen, adminListen := freeAddr(t), freeAddr(t), freeAddr(t)
	vendor := startVendor(t, relaytest.VendorConfig{Name: "signatures", Listen: "127.0.0.1:0", ReturnAddr: returnListen,
		Behaviors: relaytest.MustParseBehaviors("strip-ms-headers,footer-text")})
	dir := t.TempDir()
	const token = "status-page-test-token"
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`hostname: relay.status.test
log: {recipients: full}
store:
  data_dir: %q
reference:
  signing_key: k1
  keys:
    - id: k1
listeners:
  tenant: {listen: %q}
  return: {listen: %q}
vendors:
  - {name: signatures, address: %q, starttls: "off"}
tenant: {address: %q, starttls: "off"}
admin:
  listen: %q
  token_file: %q
`, filepath.Join(dir, "data"), tenantListen, returnListen, vendor.Addr(), tenant.Addr(), adminListen, tokenFile)
	startRelayProcess(t, bin, cfg, tenantListen, returnListen)

	// Every generated message: round trips, and recall and calendar
	// messages, which stay off the vendor.
	msgs := relaytest.Generate(relaytest.GenerateOptions{Seed: 11})
	sender := relaytest.Sender{Addr: tenantListen, Backoff: 50 * time.Millisecond}
	roundTrips := 0
	for _, m := range msgs {
		if res := sender.Send(context.Background(), m); !res.Accepted {
			t.Fatalf("%s not accepted: %v", m.Name, res.Err)
		}
		if !bypassed(m.Kind) {
			roundTrips++
		}
	}
	if _, err := tenant.WaitDeliveries(len(msgs), 15*time.Second); err != nil {
		t.Fatal(err)
	}
	// The vendor goes down: the next message gets a 4xx at the end of its
	// data (the route is known only then), and the page shows the
	// vendor's last failure.
	vendor.Close()
	down := relaytest.Sender{Addr: tenantListen, MaxAttempts: 1}
	if res := down.Send(context.Background(), msgs[0]); res.Accepted {
		t.Fatal("a message was accepted with the vendor down")
	}

	ctx := browser(t, "Basic "+base64.StdEncoding.EncodeToString([]byte("admin:"+token)))
	url := "http://" + adminListen + "/"
	cell := func(leg, result string) int {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(fmt.Sprintf(`#totals tr[data-leg=%q] td[data-result=%q]`, leg, result)))
		if err != nil {
			t.Fatalf("totals %s %s: %v", leg, result, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("totals %s %s: %q is no number", leg, result, s)
		}
		return n
	}
	// The relay counts a message when it answers its client, a moment
	// after the tenant has it: reload until the return leg has them all.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible("#totals")); err != nil {
			t.Fatalf("load %s: %v", url, err)
		}
		if cell("return", "all") >= roundTrips || time.Now().After(deadline) {
			break
		}
	}
	for _, c := range []struct {
		leg, result string
		want        int
	}{
		{"tenant", "all", len(msgs) + 1},
		{"tenant", "delivered", roundTrips},
		{"tenant", "bypassed", len(msgs) - roundTrips},
		{"tenant", "tempfail", 1}, // the one sent with the vendor down
		{"return", "all", roundTrips},
		{"return", "delivered", roundTrips},
		{"return", "rejected", 0},
	} {
		if got := cell(c.leg, c.result); got != c.want {
			t.Errorf("page counts %d %s messages on the %s leg, want %d", got, c.result, c.leg, c.want)
		}
	}
	hop := func(name, field string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(fmt.Sprintf(`#hops tr[data-hop=%q] %s`, name, field)))
		if err != nil {
			t.Fatalf("hop %s: %v", name, err)
		}
		return strings.TrimSpace(s)
	}
	if got := hop("signatures", `td[data-field="successes"]`); got != strconv.Itoa(roundTrips) {
		t.Errorf("the vendor accepted %s messages, says the page; want %d", got, roundTrips)
	}
	if got := hop("signatures", "td.bad"); !strings.Contains(got, "at connect") || !strings.Contains(got, "connection refused") {
		t.Errorf("the vendor's last failure reads %q, want the refused connection", got)
	}
	if got := hop("tenant", `td[data-field="successes"]`); got != strconv.Itoa(len(msgs)) {
		// Round trips on the return leg, and bypassed messages straight
		// from the tenant leg.
		t.Errorf("the tenant accepted %s messages, says the page; want %d", got, len(msgs))
	}
	if ready, err := chromedp.Run(ctx, chromedp.Text("#ready")); err != nil || !strings.HasPrefix(ready, "Ready") {
		t.Errorf("readiness banner %q (%v)", ready, err)
	}
	if shot := os.Getenv(screenshotEnv); shot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", shot)
	}

	search := func(q string) []string {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.SetValue(`#search input[name="q"]`, q)); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(`#search button`))); err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll('#messages tr.message')).map(r => r.dataset.leg + ' ' + r.querySelector('[data-field=message_id]').firstChild.textContent.trim() + ' ' + r.querySelector('[data-field=ref]').textContent.trim())`))
		if err != nil {
			t.Fatalf("search %q: rows: %v", q, err)
		}
		return rows
	}
	// By Message-ID, as a user pastes it from a header: both legs.
	var rt relaytest.Message
	for _, m := range msgs {
		if m.Kind == relaytest.KindMultiRcpt {
			rt = m
		}
	}
	id := messageID(t, rt.Data)
	rows := search(id)
	if len(rows) != 2 || !strings.HasPrefix(rows[0], "return "+id+" ") || !strings.HasPrefix(rows[1], "tenant "+id+" ") {
		t.Fatalf("search %s: rows %q, want the return leg then the tenant leg", id, rows)
	}
	ref := strings.Fields(rows[0])[2]
	if got := search(ref); !slices.Equal(got, rows) {
		t.Errorf("search by reference %s: rows %q, want %q", ref, got, rows)
	}
	// By an address only that message has: the external recipient.
	var only string
	for _, a := range rt.To {
		if strings.HasSuffix(a, "@contoso.com") {
			continue
		}
		only = a
	}
	if only == "" {
		t.Fatal("the multi-recipient message has no recipient outside contoso.com")
	}
	if got := search(strings.ToUpper(only)); !slices.Equal(got, rows) {
		t.Errorf("search by address %s: rows %q, want %q", only, got, rows)
	}
	if got := search("nobody@nowhere.invalid"); len(got) != 0 {
		t.Errorf("search for an address never sent: rows %q", got)
	}
	if matched, err := chromedp.Run(ctx, chromedp.Text("#matched")); err != nil || !strings.HasPrefix(matched, "0 of the last") {
		t.Errorf("no-match summary %q (%v)", matched, err)
	}
}

// bypassed reports whether the relay keeps a generated message of kind off
// the vendor (recall requests and reports, meeting requests).
func bypassed(kind string) bool {
	switch kind {
	case relaytest.KindRecallRequest, relaytest.KindTNEFRecall, relaytest.KindRecallReport, relaytest.KindCalendar:
		return true
	}
	return false
}
