package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relaytest"
)

// testNameHeader is the header field that names the test a message belongs
// to (relaytest.TestNameHeader). It takes precedence over Message-ID in
// saved file names and when a delivery is matched to a sent message.
const testNameHeader = relaytest.TestNameHeader

// defaultLinger is how long a tenant given --expect keeps serving after the
// expected mail has arrived: relaytest calls the data hook before the reply
// is written, and closing at once could cut the last client off before it
// reads its 250.
const defaultLinger = 500 * time.Millisecond

func (a *app) tenant(ctx context.Context, args []string) error {
	fs := a.newFlags("tenant", "[--listen ADDR] [--domain NAME] [--save-dir DIR] [--compare-dir DIR] [--expect N|all] [TLS and AUTH flags]",
		`Receive mail like the Microsoft 365 tenant's inbound endpoint and print one line per
delivery. With --save-dir every delivery is also written to a .eml file with a .json
sidecar of its envelope; with --compare-dir every delivery that matches a sent .eml
file (by X-Relaytest-Name, else Message-ID) is checked for what recall needs, and a
delivery that lost part of its identity is explained with the sent and delivered
bytes. With --auth clients must log in. With --expect the tenant exits once the
expected mail has arrived (status 0), after --expect-timeout (status 1) or on SIGINT
or SIGTERM (status 1 if the mail has not all arrived); it also exits with status 1
when a compared delivery lost part of its identity. Otherwise it runs until SIGINT
or SIGTERM.`)
	listen := fs.String("listen", relaytest.DefaultListen, "`ADDR` (host:port) to listen on")
	domain := fs.String("domain", "", "host `NAME` in the greeting (default tenant.relaytest.invalid)")
	requireTLS := fs.Bool("require-tls", false, "refuse MAIL FROM before STARTTLS (needs a TLS flag), as an Exchange connector with RequireTls does")
	srvTLS := registerServerTLS(fs)
	saveDir := fs.String("save-dir", "", "write every delivery to `DIR` as NNNN-NAME.eml with its envelope in NNNN-NAME.json")
	compareDir := fs.String("compare-dir", "", "compare every delivery with the sent .eml file of `DIR` it matches and print the identity result")
	var expect expectation
	fs.Var(&expect, "expect", "exit once the expected mail has arrived: `N|all` - N deliveries, or every message of --compare-dir at least once")
	expectTimeout := fs.Duration("expect-timeout", time.Minute, "with --expect, give up and exit with status 1 after this long")
	linger := fs.Duration("linger", defaultLinger, "with --expect, keep serving this long after the expected mail has arrived, so the last reply reaches its client")
	srvAuth := registerServerAuth(fs)
	if err := a.parse(fs, args); err != nil {
		return err
	}
	tlsConfig, err := srvTLS.config(nonEmpty(*domain, "tenant.relaytest.invalid"))
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	authFunc, requireAuth, err := srvAuth.config()
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	switch {
	case *requireTLS && tlsConfig == nil:
		return a.usageError(fs, "--require-tls needs --tls-cert and --tls-key or --tls-self-signed")
	case expect.all && *compareDir == "":
		return a.usageError(fs, "--expect all needs --compare-dir")
	case *expectTimeout <= 0 || *linger < 0:
		return a.usageError(fs, "--expect-timeout must be positive and --linger not negative")
	}

	rec := &tenantRecorder{out: a.stdout, errOut: a.stderr, expect: expect, done: make(chan struct{})}
	if *compareDir != "" {
		if rec.sent, err = loadSent(*compareDir); err != nil {
			return err
		}
		for _, w := range rec.sent.warnings {
			fmt.Fprintf(a.stderr, "fakemta tenant: %s\n", w)
		}
		rec.delivered = make([]int, len(rec.sent.msgs))
	}
	if *saveDir != "" {
		if rec.seq, err = prepareSaveDir(*saveDir); err != nil {
			return err
		}
		rec.saveDir = *saveDir
	}

	t, err := relaytest.NewTenant(relaytest.TenantConfig{
		Listen: *listen, Domain: *domain, TLSConfig: tlsConfig, RequireTLS: *requireTLS,
		Auth: authFunc, RequireAuth: requireAuth, ErrorLog: a.logger(),
	})
	if err != nil {
		return err
	}
	// The data hook, not OnDelivery: a message that cannot be saved is
	// refused with a 4xx instead of being lost.
	t.SetDataHook(rec.hook)
	if err := t.Start(); err != nil {
		return err
	}
	a.announce("tenant", t.Addr())

	var timeout <-chan time.Time
	if expect.set() {
		timer := time.NewTimer(*expectTimeout)
		defer timer.Stop()
		timeout = timer.C
	}
	var runErr error
	select {
	case <-ctx.Done():
		if progress, unmet := rec.unmet(); unmet {
			runErr = fmt.Errorf("interrupted: %s", progress)
		}
	case <-rec.done:
		lingerTimer := time.NewTimer(*linger)
		select {
		case <-lingerTimer.C:
		case <-ctx.Done():
			lingerTimer.Stop()
		}
	case <-timeout:
		runErr = fmt.Errorf("timed out after %v: %s", *expectTimeout, rec.progress())
	}
	closeErr := t.Close()
	if err := rec.summary(); err != nil && runErr == nil {
		runErr = err
	}
	return errors.Join(runErr, closeErr)
}

// expectation is the value of --expect: a number of deliveries or "all".
type expectation struct {
	n   int
	all bool
}

func (e *expectation) set() bool { return e.n > 0 || e.all }

func (e *expectation) String() string {
	switch {
	case e == nil || !e.set():
		return ""
	case e.all:
		return "all"
	}
	return strconv.Itoa(e.n)
}

// Set parses "all" or a positive number.
func (e *expectation) Set(s string) error {
	if s == "all" {
		*e = expectation{all: true}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return fmt.Errorf("want a positive number or \"all\", not %q", s)
	}
	*e = expectation{n: n}
	return nil
}

// tenantRecorder handles every delivery of "fakemta tenant": it saves,
// prints and compares it and counts it towards --expect.
type tenantRecorder struct {
	out, errOut io.Writer
	saveDir     string      // "" without --save-dir
	sent        *sentIndex  // nil without --compare-dir
	expect      expectation // zero without --expect
	done        chan struct{}

	mu         sync.Mutex
	seq        int   // last sequence number used in saveDir
	count      int   // deliveries accepted
	delivered  []int // deliveries matched, per sent message
	compared   int
	damaged    []string // "name: result" of every compared delivery not intact
	noIdentity int      // compared deliveries whose sent message had no identity fields
	unmatched  int
	finished   bool // done is closed
}

var errCannotSave = &smtp.SMTPError{
	Code:         451,
	EnhancedCode: smtp.EnhancedCode{4, 3, 0},
	Message:      "fakemta tenant: cannot save the message, try again later",
}

// hook is the tenant's data hook. Deliveries are handled one at a time so
// that their lines and sequence numbers follow one order.
func (r *tenantRecorder) hook(d *relaytest.Delivery) *smtp.SMTPError {
	id, name := identityFields(d.Data)
	r.mu.Lock()
	defer r.mu.Unlock()
	line := fmt.Sprintf("delivery from=<%s> rcpts=%s size=%d message-id=%s",
		d.MailFrom, strings.Join(d.Rcpts, ","), len(d.Data), nonEmpty(id, "-"))
	if d.TLS {
		line += " tls"
	}
	if d.AuthUser != "" {
		line += " user=" + d.AuthUser
	}
	if r.saveDir != "" {
		file, err := r.save(d, r.seq+1, id, name)
		if err != nil {
			fmt.Fprintf(r.errOut, "fakemta tenant: refusing a message from <%s>: %v\n", d.MailFrom, err)
			return errCannotSave
		}
		r.seq++
		line += " saved=" + file
	}
	r.count++
	fmt.Fprintln(r.out, line)
	if r.sent != nil {
		r.compare(d.Data, id, name)
	}
	if !r.finished && r.expectMet() {
		r.finished = true
		close(r.done)
	}
	return nil
}

// compare matches data, whose Message-ID and test-name fields are id and
// name (see identityFields), with a sent message and prints the identity
// result; r.mu is held.
func (r *tenantRecorder) compare(data []byte, id, name string) {
	i, by, ok := r.sent.match(id, name)
	if !ok {
		r.unmatched++
		fmt.Fprintf(r.out, "  identity: no sent message with this %s or Message-ID\n", testNameHeader)
		return
	}
	m := r.sent.msgs[i]
	res := relaytest.CompareIdentity(m.data, data)
	r.compared++
	r.delivered[i]++
	// String says "no identity fields" for a sent message recall could
	// not have found anyway: "intact" would claim a check that did not
	// happen.
	fmt.Fprintf(r.out, "  identity %s (by %s): %s\n", m.name, by, res)
	switch {
	case !res.Intact:
		r.damaged = append(r.damaged, m.name+": "+res.String())
		for _, l := range strings.Split(strings.TrimSuffix(res.Explain(), "\n"), "\n") {
			fmt.Fprintf(r.out, "    %s\n", l)
		}
	case res.NoIdentity:
		r.noIdentity++
	}
}

// expectMet reports whether --expect is satisfied; r.mu is held.
func (r *tenantRecorder) expectMet() bool {
	switch {
	case r.expect.all:
		for _, n := range r.delivered {
			if n == 0 {
				return false
			}
		}
		return true
	case r.expect.n > 0:
		return r.count >= r.expect.n
	}
	return false
}

// progress says how far --expect got.
func (r *tenantRecorder) progress() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.progressLocked()
}

// unmet reports whether --expect is set and the expected mail has not all
// arrived yet, and if so says how far it got (see progress).
func (r *tenantRecorder) unmet() (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.expect.set() || r.finished {
		return "", false
	}
	return r.progressLocked(), true
}

// progressLocked is progress with r.mu held.
func (r *tenantRecorder) progressLocked() string {
	if r.expect.all {
		missing := r.missing()
		return fmt.Sprintf("%d of %d sent messages delivered; not delivered: %s",
			len(r.delivered)-len(missing), len(r.delivered), strings.Join(missing, ", "))
	}
	return fmt.Sprintf("%d of %d deliveries", r.count, r.expect.n)
}

// missing lists the sent messages not delivered yet; r.mu is held.
func (r *tenantRecorder) missing() []string {
	var out []string
	for i, n := range r.delivered {
		if n == 0 {
			out = append(out, r.sent.msgs[i].name)
		}
	}
	return out
}

// summary prints the identity summary of --compare-dir and fails when a
// compared delivery was not intact.
func (r *tenantRecorder) summary() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sent == nil {
		return nil
	}
	missing := r.missing()
	fmt.Fprintf(r.out, "identity summary: %d deliveries compared, %d intact, %d not intact, %d with no identity fields, %d matched no sent message; %d of %d sent messages delivered\n",
		r.compared, r.compared-len(r.damaged)-r.noIdentity, len(r.damaged), r.noIdentity, r.unmatched, len(r.delivered)-len(missing), len(r.delivered))
	if len(missing) > 0 {
		fmt.Fprintf(r.out, "  not delivered: %s\n", strings.Join(missing, ", "))
	}
	for _, d := range r.damaged {
		fmt.Fprintf(r.out, "  not intact: %s\n", d)
	}
	if len(r.damaged) > 0 {
		return fmt.Errorf("%d of %d compared deliveries lost part of their identity", len(r.damaged), r.compared)
	}
	return nil
}

// envelopeRecord is the .json sidecar of a saved delivery.
type envelopeRecord struct {
	Seq       int       `json:"seq"`
	File      string    `json:"file"`                 // the .eml file beside it
	MailFrom  string    `json:"mail_from"`            // without angle brackets
	RcptTo    []string  `json:"rcpt_to"`              // accepted recipients, in order
	Size      int       `json:"size"`                 // bytes of the message as received
	SizeParam int64     `json:"size_param,omitempty"` // SIZE= of MAIL FROM
	Body      string    `json:"body,omitempty"`       // BODY= of MAIL FROM
	SMTPUTF8  bool      `json:"smtputf8"`
	Remote    string    `json:"remote"` // client address
	TLS       bool      `json:"tls"`
	Received  time.Time `json:"received"`
	MessageID string    `json:"message_id,omitempty"`
	TestName  string    `json:"test_name,omitempty"` // the X-Relaytest-Name field
	Helo      string    `json:"helo"`                // the client's last HELO or EHLO name
	User      string    `json:"user,omitempty"`      // the user name the client logged in as with AUTH
}

// save writes d as seq's .eml file and its envelope as the .json sidecar
// (first, so that a watcher that sees the .eml finds the sidecar) and
// returns the .eml file's name. id and name are d's Message-ID and
// test-name fields (see identityFields).
func (r *tenantRecorder) save(d *relaytest.Delivery, seq int, id, name string) (string, error) {
	base := fmt.Sprintf("%04d-%s", seq, sanitizeName(nonEmpty(name, id)))
	rec := envelopeRecord{
		Seq: seq, File: base + ".eml", MailFrom: d.MailFrom, RcptTo: d.Rcpts, Size: len(d.Data),
		SizeParam: d.Size, Body: d.Body, SMTPUTF8: d.UTF8, Remote: d.Remote, TLS: d.TLS, Received: d.At,
		MessageID: id, TestName: name, Helo: d.Helo, User: d.AuthUser,
	}
	if rec.RcptTo == nil {
		rec.RcptTo = []string{}
	}
	// Unescaped, so that <id@host> reads as it is in the message.
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rec); err != nil {
		return "", err
	}
	if err := writeFileAtomic(r.saveDir, base+".json", js.Bytes()); err != nil {
		return "", err
	}
	if err := writeFileAtomic(r.saveDir, base+".eml", d.Data); err != nil {
		return "", err
	}
	return rec.File, nil
}

// savedName matches the files save writes; the group is the sequence.
var savedName = regexp.MustCompile(`^([0-9]+)-.*\.(eml|json)$`)

// prepareSaveDir creates dir if needed and returns the highest sequence
// number of the files already in it, so that a new run adds to them.
func prepareSaveDir(dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("--save-dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("--save-dir: %w", err)
	}
	last := 0
	for _, e := range entries {
		if m := savedName.FindStringSubmatch(e.Name()); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil && n > last {
				last = n
			}
		}
	}
	return last, nil
}

// sentMessage is one message of --compare-dir.
type sentMessage struct {
	name string // the file's base name
	data []byte
}

// sentIndex finds the sent message a delivery is a copy of.
type sentIndex struct {
	msgs     []sentMessage
	byName   map[string]int // X-Relaytest-Name → index
	byID     map[string]int // Message-ID → index
	warnings []string
}

// loadSent reads the .eml files of dir with relaytest.LoadDir and indexes
// them by X-Relaytest-Name and Message-ID; the first file wins when two
// carry the same value.
func loadSent(dir string) (*sentIndex, error) {
	msgs, err := relaytest.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("--compare-dir: %w", err)
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("--compare-dir: no .eml files in %s", dir)
	}
	s := &sentIndex{byName: make(map[string]int), byID: make(map[string]int)}
	var noKey []string
	for i, m := range msgs {
		s.msgs = append(s.msgs, sentMessage{name: m.Name, data: m.Data})
		id, name := identityFields(m.Data)
		if id == "" && name == "" {
			noKey = append(noKey, m.Name)
			continue
		}
		for _, k := range []struct {
			index        map[string]int
			field, value string
		}{{s.byName, testNameHeader, name}, {s.byID, "Message-Id", id}} {
			if k.value == "" {
				continue
			}
			if j, dup := k.index[k.value]; dup {
				s.warnings = append(s.warnings, fmt.Sprintf("--compare-dir: %s and %s have the same %s %s; deliveries are compared with %s",
					msgs[j].Name, m.Name, k.field, k.value, msgs[j].Name))
				continue
			}
			k.index[k.value] = i
		}
	}
	if len(noKey) > 0 {
		sort.Strings(noKey)
		s.warnings = append(s.warnings, fmt.Sprintf("--compare-dir: no %s and no Message-ID, never matched: %s",
			testNameHeader, strings.Join(noKey, ", ")))
	}
	return s, nil
}

// match returns the index of the sent message a delivery whose Message-ID
// and test-name fields are id and name (see identityFields) is a copy of,
// and what matched ("test name" or "message-id").
func (s *sentIndex) match(id, name string) (int, string, bool) {
	if name != "" {
		if i, ok := s.byName[name]; ok {
			return i, "test name", true
		}
	}
	if id != "" {
		if i, ok := s.byID[id]; ok {
			return i, "message-id", true
		}
	}
	return 0, "", false
}

// nonEmpty returns s, or def when s is empty.
func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
