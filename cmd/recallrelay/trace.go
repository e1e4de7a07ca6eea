package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
)

// traceDefaultLimit is the default of trace --limit.
const traceDefaultLimit = 20

// traceValueWidth is how many characters of a captured field's value the
// human-readable output of trace shows.
const traceValueWidth = 60

// How trace reads its argument (--as).
const (
	lookupAuto      = "auto"
	lookupRef       = "ref"
	lookupMessageID = "message-id"
	lookupAddress   = "address"
)

// traceStore is what trace reads: a store and its read side.
type traceStore interface {
	store.Store
	store.Inspector
}

// traceOptions are the flags and argument of trace.
type traceOptions struct {
	config string
	query  string
	as     string
	limit  int
	json   bool
}

// cmdTrace prints what the store holds about the messages that a reference,
// a Message-ID or an address names. It returns an error, and so makes the
// command exit 1, when no live record matches.
func cmdTrace(args []string, stdout io.Writer) error {
	opts, err := parseTraceArgs(args)
	if err != nil {
		return err
	}
	cfg, _, err := loadConfig(opts.config)
	if err != nil {
		return err
	}
	st, err := openTraceStore(cfg.Store)
	if err != nil {
		return err // its errors name the store
	}
	defer st.Close()
	res, err := trace(context.Background(), st, opts)
	if err != nil {
		return err
	}
	if opts.json {
		err = writeTraceJSON(stdout, res)
	} else {
		err = writeTraceText(stdout, res)
	}
	if err != nil {
		return err
	}
	if len(res.records) == 0 {
		return res.noMatch()
	}
	return nil
}

// parseTraceArgs parses the flags of trace, before or after its one
// argument.
func parseTraceArgs(args []string) (traceOptions, error) {
	var o traceOptions
	fs := newFlags("trace")
	fs.StringVar(&o.config, "config", "", "configuration file")
	fs.StringVar(&o.as, "as", lookupAuto, "read the argument as: auto, ref, message-id or address")
	fs.IntVar(&o.limit, "limit", traceDefaultLimit, "show at most this many records; an address scan stops there")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return o, usageError{err}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case o.config == "":
		return o, usageError{errors.New("--config FILE is required")}
	case len(pos) != 1:
		return o, usageError{fmt.Errorf("want one Message-ID, reference or address, got %d arguments", len(pos))}
	case strings.TrimSpace(pos[0]) == "":
		return o, usageError{errors.New("empty Message-ID, reference or address")}
	case o.limit < 1:
		return o, usageError{fmt.Errorf("--limit %d: must be at least 1", o.limit)}
	}
	switch o.as {
	case lookupAuto, lookupRef, lookupMessageID, lookupAddress:
	default:
		return o, usageError{fmt.Errorf("--as %q: want auto, ref, message-id or address", o.as)}
	}
	o.query = strings.TrimSpace(pos[0])
	return o, nil
}

// openTraceStore opens the store that c configures for reading: Redis as
// serve opens it, the embedded store read-only, which is possible only while
// no relay has it open.
func openTraceStore(c config.Store) (traceStore, error) {
	if c.Embedded() {
		// The file name is openStore's.
		path := boltPath(c)
		b, err := store.OpenBoltReadOnly(store.BoltConfig{Path: path})
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w\n(the embedded store can be read only while no relay runs on it: stop recallrelay serve, or trace on Redis)", err)
		}
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	st, err := openStore(c)
	if err != nil {
		return nil, err
	}
	ts, ok := st.(traceStore)
	if !ok {
		st.Close()
		return nil, fmt.Errorf("%T cannot be inspected", st)
	}
	return ts, nil
}

// traceResult is what trace found.
type traceResult struct {
	query  string // the argument as given
	lookup string // how it was read: lookupRef, lookupMessageID or lookupAddress
	key    string // what was looked up: the ref, the normalized Message-ID or the address
	// triedMessageID is, when an argument that could be a Message-ID or
	// an address was scanned for as an address, the Message-ID looked up
	// first.
	triedMessageID string
	limit          int
	// scanned is the number of records an address lookup read, or -1.
	scanned int
	// truncated reports that more records may match than records holds.
	truncated bool
	// total is the number of records the Message-ID index holds for key,
	// before the limit; 0 for the other lookups.
	total   int
	records []tracedRecord
}

// tracedRecord is one matching record with what the store knows about it.
type tracedRecord struct {
	rec *headers.Record
	ttl time.Duration // negative: the record has no expiry
	dlv store.Deliveries
}

// trace looks up the records that o.query names in st and reads their
// lifetime and delivery state. Finding nothing is no error: the result
// holds no records.
func trace(ctx context.Context, st traceStore, o traceOptions) (*traceResult, error) {
	res := &traceResult{query: o.query, limit: o.limit, scanned: -1}
	lookup, key := classifyTrace(o.query, o.as)
	var recs []*headers.Record
	var err error
	switch lookup {
	case lookupRef:
		res.lookup, res.key = lookupRef, key
		var rec *headers.Record
		rec, err = st.Get(ctx, key)
		if err == nil {
			recs = []*headers.Record{rec}
		} else if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	case lookupMessageID:
		res.lookup, res.key = lookupMessageID, key
		recs, err = res.byMessageID(ctx, st)
	case lookupAddress:
		res.lookup, res.key = lookupAddress, key
		recs, err = res.byAddress(ctx, st, key)
	case lookupEither:
		// An argument with '@' and no '<': a Message-ID without its angle
		// brackets, or an address. The index answers the first at once.
		res.lookup, res.key = lookupMessageID, "<"+key+">"
		recs, err = res.byMessageID(ctx, st)
		if err == nil && len(recs) == 0 {
			res.lookup, res.key, res.triedMessageID = lookupAddress, key, res.key
			recs, err = res.byAddress(ctx, st, key)
		}
	default:
		return nil, fmt.Errorf("trace: unknown lookup %q", lookup)
	}
	if err != nil {
		return nil, err
	}
	for _, rec := range recs {
		tr := tracedRecord{rec: rec}
		tr.ttl, err = st.TTL(ctx, rec.Ref)
		if err == nil {
			tr.dlv, err = st.Deliveries(ctx, rec.Ref)
		}
		if errors.Is(err, store.ErrNotFound) {
			continue // expired since it was found
		}
		if err != nil {
			return nil, err
		}
		res.records = append(res.records, tr)
	}
	return res, nil
}

// lookupEither is the lookup of an argument that may be a Message-ID or an
// address; classifyTrace returns it only for --as auto.
const lookupEither = "either"

// classifyTrace returns how to look q up, given --as, and the key to look
// up: a reference as it is; a Message-ID normalized as
// headers.NormalizeMessageID does, with angle brackets added if it had
// none; an address as it is; for lookupEither, q without brackets.
//
// With --as auto: a value of the reference header ("v=1; k=…; r=<ref>; …")
// is read as the ref it names; a string shaped like a reference is one;
// anything with '<' is a Message-ID; anything else with '@' is either a
// Message-ID or an address; the rest is a Message-ID.
func classifyTrace(q, as string) (lookup, key string) {
	msgID := func(q string) string {
		id := headers.NormalizeMessageID(q)
		if !strings.HasPrefix(id, "<") {
			id = "<" + id + ">"
		}
		return id
	}
	switch as {
	case lookupRef:
		return lookupRef, q
	case lookupMessageID:
		return lookupMessageID, msgID(q)
	case lookupAddress:
		return lookupAddress, q
	}
	if ref, ok := refInHeader(q); ok {
		return lookupRef, ref
	}
	switch {
	case headers.ValidRef(q):
		return lookupRef, q
	case strings.Contains(q, "<"):
		return lookupMessageID, msgID(q)
	case strings.Contains(q, "@"):
		return lookupEither, strings.Join(strings.Fields(q), "")
	default:
		return lookupMessageID, msgID(q)
	}
}

// refInHeader returns the ref of a reference header value, optionally with
// the field name in front ("X-RecallRelay-Ref: v=1; k=k1; r=…; …"). It does
// not verify the signature: trace only reads.
func refInHeader(q string) (string, bool) {
	if name, v, ok := strings.Cut(q, ":"); ok && strings.EqualFold(strings.TrimSpace(name), headers.DefaultRefHeader) {
		q = v
	}
	q = strings.TrimSpace(q)
	if !strings.HasPrefix(q, "v=1;") {
		return "", false
	}
	for _, tag := range strings.Split(q, ";") {
		k, v, _ := strings.Cut(tag, "=")
		if strings.TrimSpace(k) == "r" && headers.ValidRef(strings.TrimSpace(v)) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// byMessageID returns the first res.limit records with the Message-ID
// res.key, "<id>", or the bare id: the relay records a Message-ID field
// without angle brackets as it is (headers.NormalizeMessageID).
func (res *traceResult) byMessageID(ctx context.Context, st traceStore) ([]*headers.Record, error) {
	recs, err := st.ByMessageID(ctx, res.key)
	if err != nil {
		return nil, err
	}
	if bare := strings.TrimSuffix(strings.TrimPrefix(res.key, "<"), ">"); bare != "" && bare != res.key {
		more, err := st.ByMessageID(ctx, bare)
		if err != nil {
			return nil, err
		}
		recs = append(recs, more...)
		sortTraced(recs)
	}
	res.total = len(recs)
	if len(recs) > res.limit {
		recs, res.truncated = recs[:res.limit], true
	}
	return recs, nil
}

// byAddress scans the store for records whose MAIL FROM or a recipient is
// addr, ignoring case, and stops at res.limit of them.
func (res *traceResult) byAddress(ctx context.Context, st traceStore, addr string) ([]*headers.Record, error) {
	var recs []*headers.Record
	seen := map[string]bool{}
	res.scanned = 0
	err := st.Scan(ctx, func(rec *headers.Record) bool {
		res.scanned++
		if seen[rec.Ref] || !hasAddress(rec, addr) {
			return true
		}
		seen[rec.Ref] = true
		recs = append(recs, rec)
		if len(recs) == res.limit {
			res.truncated = true
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	sortTraced(recs)
	return recs, nil
}

// sortTraced orders records as the store's lookups do: by time received,
// then by ref.
func sortTraced(recs []*headers.Record) {
	slices.SortFunc(recs, func(a, b *headers.Record) int {
		return cmp.Or(a.ReceivedAt.Compare(b.ReceivedAt), strings.Compare(a.Ref, b.Ref))
	})
}

// hasAddress reports whether addr is the MAIL FROM or a recipient of rec,
// comparing whole addresses ignoring case: a search must not miss a message
// for the case of a local part, which Exchange never varies anyway.
func hasAddress(rec *headers.Record, addr string) bool {
	if strings.EqualFold(rec.MailFrom, addr) {
		return true
	}
	for _, r := range rec.Rcpts {
		if strings.EqualFold(r, addr) {
			return true
		}
	}
	return false
}

// what describes the lookup for messages.
func (res *traceResult) what() string {
	switch res.lookup {
	case lookupRef:
		return "reference " + res.key
	case lookupMessageID:
		return "Message-ID " + res.key
	default:
		return "MAIL FROM or recipient " + res.key
	}
}

// noMatch is the error of a trace that found nothing.
func (res *traceResult) noMatch() error {
	var s string
	switch {
	case res.triedMessageID != "":
		s = fmt.Sprintf("no live record has Message-ID %s, nor MAIL FROM or a recipient %s (%d records scanned)",
			cleanText(res.triedMessageID), cleanText(res.key), res.scanned)
	case res.lookup == lookupAddress:
		s = fmt.Sprintf("no live record has MAIL FROM or a recipient %s (%d records scanned)", cleanText(res.key), res.scanned)
	case res.lookup == lookupRef:
		s = fmt.Sprintf("no live record under reference %s", cleanText(res.key))
	default:
		s = fmt.Sprintf("no live record has Message-ID %s", cleanText(res.key))
	}
	return errors.New(s + "; records are kept for store.record_ttl after the tenant leg")
}

// recipientRow is the delivery state of one recipient, as trace prints it.
type recipientRow struct {
	addr     string
	state    store.RecipientState
	recorded bool // an envelope recipient of the record
}

// recipients returns the record's envelope recipients with their delivery
// state, then any recipient with delivery state that the envelope lacks.
func (tr tracedRecord) recipients() []recipientRow {
	var rows []recipientRow
	for _, r := range tr.rec.Rcpts {
		rows = append(rows, recipientRow{addr: r, state: tr.dlv.For(r), recorded: true})
	}
	var extra []string
	for k := range tr.dlv.Recipients {
		// Keys compare as headers.SameAddress compares addresses.
		if !slices.ContainsFunc(tr.rec.Rcpts, func(r string) bool { return headers.SameAddress(r, k) }) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		rows = append(rows, recipientRow{addr: k, state: tr.dlv.Recipients[k]})
	}
	return rows
}

// stateName is the delivery state in the words of trace's JSON.
func stateName(s store.RecipientState) string {
	switch s.Delivery {
	case store.DeliveryConfirmed:
		return "delivered"
	case store.DeliveryInFlight:
		return "in_flight"
	default:
		return "not_yet"
	}
}

// fieldValue returns the value of a raw header field, unfolded.
func fieldValue(raw []byte) string {
	_, v, ok := strings.Cut(string(raw), ":")
	if !ok {
		v = string(raw)
	}
	v = strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v)
	return strings.TrimSpace(v)
}

// cleanText makes s safe to print on a terminal: control and bidirectional
// formatting characters and invalid UTF-8 become U+FFFD, so that nothing a
// client sent can move the cursor or reorder the text.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return utf8.RuneError
		}
		return r
	}, s)
}

// shorten returns s with blanks collapsed, cut to width characters with an
// ellipsis.
func shorten(s string, width int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// humanDuration rounds d for reading: to the second, or the millisecond
// under a second.
func humanDuration(d time.Duration) string {
	if d < time.Second && d > -time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// writeTraceText prints res for a person.
func writeTraceText(w io.Writer, res *traceResult) error {
	var b strings.Builder
	switch n := len(res.records); {
	case n == 0:
		// The error says it.
	case res.lookup == lookupAddress:
		fmt.Fprintf(&b, "%s: %d %s (%d records scanned)\n", cleanText(res.what()), n, plural(n, "record", "records"), res.scanned)
	default:
		fmt.Fprintf(&b, "%s: %d %s\n", cleanText(res.what()), n, plural(n, "record", "records"))
	}
	for _, tr := range res.records {
		b.WriteString("\n")
		writeRecordText(&b, tr)
	}
	if res.truncated {
		if res.lookup == lookupAddress {
			fmt.Fprintf(&b, "\nstopped after %d %s (--limit %d): more records may match\n",
				len(res.records), plural(len(res.records), "match", "matches"), res.limit)
		} else {
			fmt.Fprintf(&b, "\nshowing %d of %d records (--limit %d)\n", len(res.records), res.total, res.limit)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeRecordText prints one record.
func writeRecordText(b *strings.Builder, tr tracedRecord) {
	rec, dlv := tr.rec, tr.dlv
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t%s\n", label, cleanText(fmt.Sprintf(format, args...)))
	}
	fmt.Fprintf(tw, "record %s\n", cleanText(rec.Ref))
	line("received", "%s", rec.ReceivedAt.UTC().Format("2006-01-02 15:04:05.000 MST"))
	line("listener", "%s", orDash(rec.Listener))
	line("client", "%s, HELO %s", orDash(rec.ClientAddr), orDash(rec.Helo))
	line("tls", "%s", cmp.Or(rec.TLS, "none"))
	line("mail from", "<%s>%s", rec.MailFrom, mailParams(rec.Params))
	line("message-id", "%s", orDash(rec.MessageID))
	if len(rec.Route) > 0 {
		line("vendors", "%s", strings.Join(rec.Route, " → "))
	} else {
		line("vendors", "-")
	}
	switch ttl := tr.ttl; {
	case ttl < 0:
		line("expires", "never (the record has no expiry)")
	default:
		line("expires", "in %s", humanDuration(ttl))
	}
	// The relay counts a return only when it acknowledges a copy without
	// delivering it, every recipient having had the message already.
	line("duplicates", "%d %s from the vendor acknowledged without delivery", dlv.Returns, plural(int(dlv.Returns), "copy", "copies"))
	tw.Flush()

	rows := tr.recipients()
	fmt.Fprintf(b, "  recipients (%d)\n", len(rows))
	tw = tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		state := "not yet"
		switch r.state.Delivery {
		case store.DeliveryConfirmed:
			state = "delivered"
		case store.DeliveryInFlight:
			state = fmt.Sprintf("in flight, lease ends in %s", humanDuration(r.state.LeaseEnd.Sub(dlv.At)))
		case store.DeliveryLapsed:
			state = fmt.Sprintf("not yet (a claim's lease lapsed %s ago)", humanDuration(dlv.At.Sub(r.state.LeaseEnd)))
		}
		if !r.recorded {
			state += " (not an envelope recipient)"
		}
		fmt.Fprintf(tw, "    %s\t%s\n", cleanText(r.addr), state)
	}
	tw.Flush()

	fmt.Fprintf(b, "  fields (%d captured)\n", len(rec.Fields))
	tw = tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	for _, f := range rec.Fields {
		fmt.Fprintf(tw, "    %s\t%s\n", cleanText(f.Name), cleanText(shorten(fieldValue(f.Raw), traceValueWidth)))
	}
	tw.Flush()
}

// nonNil returns s, or an empty slice for nil, so that JSON shows [].
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orDash(s string) string { return cmp.Or(s, "-") }

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// mailParams renders the MAIL FROM parameters, with a leading blank.
func mailParams(p headers.MailParams) string {
	var s string
	if p.Size > 0 {
		s += fmt.Sprintf(" SIZE=%d", p.Size)
	}
	if p.Body != "" {
		s += " BODY=" + p.Body
	}
	if p.SMTPUTF8 {
		s += " SMTPUTF8"
	}
	return s
}

// The JSON form of trace's output.
type (
	traceJSON struct {
		Query     string       `json:"query"`
		Lookup    string       `json:"lookup"` // ref, message-id or address
		Key       string       `json:"key"`    // what was looked up
		Limit     int          `json:"limit"`
		Truncated bool         `json:"truncated"`         // more records may match
		Scanned   *int         `json:"scanned,omitempty"` // records an address lookup read
		Records   []recordJSON `json:"records"`
	}
	recordJSON struct {
		Ref         string             `json:"ref"`
		ReceivedAt  time.Time          `json:"received_at"`
		Listener    string             `json:"listener"`
		ClientAddr  string             `json:"client_addr"`
		Helo        string             `json:"helo"`
		TLS         string             `json:"tls"`
		MailFrom    string             `json:"mail_from"`
		Params      headers.MailParams `json:"params"`
		Rcpts       []string           `json:"rcpts"`
		MessageID   string             `json:"message_id"`
		Fingerprint string             `json:"fingerprint"`
		Route       []string           `json:"route"`
		// TTLMillis is the remaining lifetime; null when the record has
		// no expiry.
		TTLMillis *int64 `json:"ttl_ms"`
		// Returns is the store's return count: the copies the relay
		// acknowledged without delivery because every recipient had
		// the message already.
		Returns    int64           `json:"returns"`
		StateAt    time.Time       `json:"state_at"` // the store's clock when the state was read
		Recipients []recipientJSON `json:"recipients"`
		Fields     []fieldJSON     `json:"fields"`
	}
	recipientJSON struct {
		Address string `json:"address"`
		State   string `json:"state"` // delivered, in_flight or not_yet
		// EnvelopeRecipient is false for a recipient with delivery state
		// that the record's envelope lacks.
		EnvelopeRecipient bool `json:"envelope_recipient"`
		// LeaseEnd is when the latest unconfirmed claim's lease ends
		// (in_flight) or ended (not_yet after a lapsed claim).
		LeaseEnd *time.Time `json:"lease_end,omitempty"`
	}
	fieldJSON struct {
		Name  string `json:"name"`
		Value string `json:"value"` // unfolded, whole
	}
)

// writeTraceJSON prints res as one JSON document.
func writeTraceJSON(w io.Writer, res *traceResult) error {
	out := traceJSON{
		Query: res.query, Lookup: res.lookup, Key: res.key,
		Limit: res.limit, Truncated: res.truncated,
		Records: []recordJSON{},
	}
	if res.lookup == lookupAddress {
		out.Scanned = &res.scanned
	}
	for _, tr := range res.records {
		rec := tr.rec
		r := recordJSON{
			Ref: rec.Ref, ReceivedAt: rec.ReceivedAt,
			Listener: rec.Listener, ClientAddr: rec.ClientAddr, Helo: rec.Helo, TLS: rec.TLS,
			MailFrom: rec.MailFrom, Params: rec.Params, Rcpts: nonNil(rec.Rcpts),
			MessageID: rec.MessageID, Fingerprint: rec.Fingerprint, Route: nonNil(rec.Route),
			Returns: tr.dlv.Returns, StateAt: tr.dlv.At,
			Recipients: []recipientJSON{}, Fields: []fieldJSON{},
		}
		if tr.ttl >= 0 {
			ms := tr.ttl.Milliseconds()
			r.TTLMillis = &ms
		}
		for _, row := range tr.recipients() {
			rj := recipientJSON{Address: row.addr, State: stateName(row.state), EnvelopeRecipient: row.recorded}
			if !row.state.LeaseEnd.IsZero() {
				end := row.state.LeaseEnd
				rj.LeaseEnd = &end
			}
			r.Recipients = append(r.Recipients, rj)
		}
		for _, f := range rec.Fields {
			r.Fields = append(r.Fields, fieldJSON{Name: f.Name, Value: fieldValue(f.Raw)})
		}
		out.Records = append(out.Records, r)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // Message-IDs and addresses keep their < and >
	return enc.Encode(out)
}
