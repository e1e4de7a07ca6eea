package relaytest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TestName returns the value of the first TestNameHeader field of the
// top-level header of data (unfolded, surrounding blanks removed), or ""
// when there is none.
func TestName(data []byte) string { return headerValue(data, TestNameHeader) }

// MessageID returns the Message-ID of the top-level header of data without
// the angle brackets and surrounding blanks, or "" when there is none.
func MessageID(data []byte) string { return normalizeMessageID(headerValue(data, "Message-ID")) }

// TestName returns the TestNameHeader value of the delivered message (see
// the function TestName).
func (d Delivery) TestName() string { return TestName(d.Data) }

// MessageID returns the Message-ID of the delivered message as it arrived,
// without angle brackets (see the function MessageID).
func (d Delivery) MessageID() string { return MessageID(d.Data) }

// headerValue returns the unfolded, trimmed value of the first top-level
// header field named name (compared case-insensitively).
func headerValue(data []byte, name string) string {
	for _, f := range exactFields(data) {
		if strings.EqualFold(f.Name, name) {
			line := unfold(f.Raw)
			_, v, _ := strings.Cut(string(line), ":")
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// normalizeMessageID removes blanks and one pair of angle brackets.
func normalizeMessageID(id string) string {
	id = strings.TrimSpace(id)
	if strings.HasPrefix(id, "<") && strings.HasSuffix(id, ">") {
		id = id[1 : len(id)-1]
	}
	return strings.TrimSpace(id)
}

// MatchTestName returns a predicate for WaitFor that matches deliveries whose
// TestNameHeader value is name.
func MatchTestName(name string) func(Delivery) bool {
	return func(d Delivery) bool { return d.TestName() == name }
}

// MatchMessageID returns a predicate for WaitFor that matches deliveries
// whose Message-ID, as delivered, is id (with or without angle brackets).
// A service that rewrites Message-ID makes this miss: match on the test
// name then.
func MatchMessageID(id string) func(Delivery) bool {
	id = normalizeMessageID(id)
	return func(d Delivery) bool { return d.MessageID() == id }
}

// journal is the append-only record of the deliveries one server accepted.
// It numbers them (Delivery.Seq) and wakes up waiters when one is added.
type journal struct {
	who string // "tenant", "vendor NAME": prefix of error messages

	mu      sync.Mutex
	seq     int
	list    []Delivery
	changed chan struct{} // closed and replaced whenever list grows
}

func newJournal(who string) *journal {
	return &journal{who: who, changed: make(chan struct{})}
}

// add numbers d, whatever its Seq was, records it and returns it numbered.
// The result shares its slices with the recorded copy, which must not
// change: a caller clones it before handing it to anyone.
func (j *journal) add(d Delivery) Delivery {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	d.Seq = j.seq
	j.list = append(j.list, d)
	close(j.changed)
	j.changed = make(chan struct{})
	return d
}

// reset forgets the deliveries; numbering goes on.
func (j *journal) reset() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.list = nil
}

func (j *journal) all() []Delivery {
	j.mu.Lock()
	defer j.mu.Unlock()
	return cloneDeliveries(j.list)
}

// filter returns copies of the deliveries pred accepts, in order.
func (j *journal) filter(pred func(Delivery) bool) []Delivery {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Delivery
	for _, d := range j.list {
		if pred(d) {
			out = append(out, d.clone())
		}
	}
	return out
}

func (j *journal) bySeq(seq int) (Delivery, bool) {
	ds := j.filter(func(d Delivery) bool { return d.Seq == seq })
	if len(ds) == 0 {
		return Delivery{}, false
	}
	return ds[0], true
}

// snapshot returns the recorded deliveries and the channel closed on the
// next change.
func (j *journal) snapshot() ([]Delivery, chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.list[:len(j.list):len(j.list)], j.changed
}

// waitFor returns the first recorded delivery pred accepts, waiting for one
// until ctx is done. pred is called without locks held, once per delivery.
// when describes the limit in the error ("after 5s", "before the context
// ended").
func (j *journal) waitFor(ctx context.Context, pred func(Delivery) bool, when string) (Delivery, error) {
	checked := 0 // highest Seq given to pred (Reset may shorten the list)
	scan := func(list []Delivery) (Delivery, bool) {
		for _, x := range list {
			if x.Seq <= checked {
				continue
			}
			checked = x.Seq
			if d := x.clone(); pred(d) {
				return d, true
			}
		}
		return Delivery{}, false
	}
	for {
		list, ch := j.snapshot()
		if d, ok := scan(list); ok {
			return d, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			list, _ = j.snapshot()
			if d, ok := scan(list); ok {
				return d, nil
			}
			return Delivery{}, fmt.Errorf("relaytest: %s: no matching delivery %s (%w); %s",
				j.who, when, ctx.Err(), describeDeliveries(list))
		}
	}
}

// waitCount waits until at least n deliveries are recorded and returns all
// of them; when ctx ends first it returns what it has with an error.
func (j *journal) waitCount(ctx context.Context, n int, when string) ([]Delivery, error) {
	for {
		list, ch := j.snapshot()
		if len(list) >= n {
			return cloneDeliveries(list), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			list, _ = j.snapshot()
			if len(list) >= n {
				return cloneDeliveries(list), nil
			}
			return cloneDeliveries(list), fmt.Errorf("relaytest: %s: %d of %d deliveries %s (%w)",
				j.who, len(list), n, when, ctx.Err())
		}
	}
}

// ctxEnded is how the waits with a context describe their limit in errors.
const ctxEnded = "before the context ended"

// waitForTimeout is waitFor with a time limit instead of a context.
func (j *journal) waitForTimeout(pred func(Delivery) bool, timeout time.Duration) (Delivery, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return j.waitFor(ctx, pred, fmt.Sprintf("after %v", timeout))
}

// waitCountTimeout is waitCount with a time limit instead of a context.
func (j *journal) waitCountTimeout(n int, timeout time.Duration) ([]Delivery, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return j.waitCount(ctx, n, fmt.Sprintf("after %v", timeout))
}

// expectNoMore waits d and fails as soon as a delivery with a Seq greater
// than after is recorded, or when ctx ends before d has passed.
func (j *journal) expectNoMore(ctx context.Context, after int, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		list, ch := j.snapshot()
		if err := j.extraAfter(list, after); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-timer.C:
			list, _ = j.snapshot()
			return j.extraAfter(list, after)
		case <-ctx.Done():
			list, _ = j.snapshot()
			if err := j.extraAfter(list, after); err != nil {
				return err
			}
			return fmt.Errorf("relaytest: %s: context ended before the %v quiet period was over: %w", j.who, d, ctx.Err())
		}
	}
}

// extraAfter reports the deliveries of list numbered above after.
func (j *journal) extraAfter(list []Delivery, after int) error {
	var more []Delivery
	for _, x := range list {
		if x.Seq > after {
			more = append(more, x)
		}
	}
	if len(more) == 0 {
		return nil
	}
	return fmt.Errorf("relaytest: %s: %d unexpected deliveries after #%d: %s",
		j.who, len(more), after, describeDeliveries(more))
}

// maxDescribed bounds how many deliveries an error message lists.
const maxDescribed = 10

// describeDeliveries renders deliveries for an error message, one clause
// each: sequence number, envelope, test name, Message-ID and Subject.
func describeDeliveries(ds []Delivery) string {
	if len(ds) == 0 {
		return "nothing recorded"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d recorded:", len(ds))
	for i, d := range ds {
		if i == maxDescribed {
			fmt.Fprintf(&b, " ... and %d more", len(ds)-maxDescribed)
			break
		}
		fmt.Fprintf(&b, " [#%d from=<%s> to=%v", d.Seq, d.MailFrom, d.Rcpts)
		if name := d.TestName(); name != "" {
			fmt.Fprintf(&b, " name=%q", name)
		}
		if id := d.MessageID(); id != "" {
			fmt.Fprintf(&b, " message-id=<%s>", id)
		}
		if s := headerValue(d.Data, "Subject"); s != "" {
			fmt.Fprintf(&b, " subject=%q", s)
		}
		b.WriteString("]")
	}
	return b.String()
}

// queuedMark introduces the queue identifier in the reply a server of this
// package gives to an accepted message: "250 2.0.0 OK: queued as 7@ADDR",
// where 7 is the Delivery's Seq and ADDR the address the server listens on.
const queuedMark = "queued as "

// queueID returns the identifier of a delivery recorded by the server
// listening on addr.
func queueID(seq int, addr string) string { return strconv.Itoa(seq) + "@" + addr }

// seqFromReply returns the Seq in a reply of the server listening on addr,
// as queueID wrote it.
func seqFromReply(reply, addr string) (int, bool) {
	i := strings.LastIndex(reply, queuedMark)
	if i < 0 || addr == "" {
		return 0, false
	}
	id := reply[i+len(queuedMark):]
	if sp := strings.IndexAny(id, " \t\r\n"); sp >= 0 {
		id = id[:sp]
	}
	num, at, ok := strings.Cut(id, "@")
	if !ok || at != addr {
		return 0, false
	}
	seq, err := strconv.Atoi(num)
	if err != nil || seq <= 0 {
		return 0, false
	}
	return seq, true
}

// deliveryFor finds the delivery j recorded for outcome o, sent to the
// server listening on addr.
func (j *journal) deliveryFor(o ReturnOutcome, addr string) (Delivery, bool) {
	if !o.Result.Accepted || len(o.Result.Replies) == 0 {
		return Delivery{}, false
	}
	seq, ok := seqFromReply(o.Result.Replies[len(o.Result.Replies)-1], addr)
	if !ok {
		return Delivery{}, false
	}
	return j.bySeq(seq)
}
