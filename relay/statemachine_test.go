package relay_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTransactionStateMachine drives both legs with random SMTP command
// sequences (EHLO, MAIL, RCPT, DATA, BDAT chunks of random sizes with and
// without LAST, BDAT 0, RSET and EHLO in the middle of a transfer, NOOP,
// QUIT, connections dropped at any byte) from several clients at once, and
// checks what the next hop received against what each client did:
//
//   - nothing reaches the next hop that its client did not finish sending;
//   - everything that reaches it is complete;
//   - every 250 to end-of-data means the next hop has that message, and a
//     4xx or 5xx means it does not: no reply belongs to another
//     transaction;
//   - on the return leg, each recorded message reaches each recipient at
//     most once, and every 250 means it did reach them: a delivery claim
//     is never released after the tenant accepted;
//   - the relay neither panics nor hangs.
//
// RECALLRELAY_SM_SEED replays a run; RECALLRELAY_SM_CONNS sets its size.
func TestTransactionStateMachine(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RECALLRELAY_SM_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	conns := 40
	if testing.Short() {
		conns = 12
	}
	if s := os.Getenv("RECALLRELAY_SM_CONNS"); s != "" {
		conns, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d (RECALLRELAY_SM_SEED=%d replays this run), %d connections per leg", seed, seed, conns)

	for _, legName := range []string{"tenant", "return"} {
		t.Run(legName, func(t *testing.T) {
			h := newHarness(t, nil)
			m := &machine{t: t, h: h, leg: legName}
			addr := h.relay.TenantAddr()
			if legName == "return" {
				addr = h.relay.ReturnAddr()
				m.recorded = make([][]byte, 6)
				for i := range m.recorded {
					msg := strings.Replace(original, "<orig-1@", fmt.Sprintf("<orig-sm%d@", i), 1)
					m.recorded[i] = vendorise(h.sendOutMessage(msg, "ann@contoso.com", recipients...), false, false)
				}
			}
			var wg sync.WaitGroup
			const clients = 4
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func(c int) {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(seed, uint64(c)+uint64(len(legName))))
					for i := 0; i < conns/clients; i++ {
						m.connection(rng, addr, fmt.Sprintf("%s-%d-%d", legName, c, i))
					}
				}(c)
			}
			wg.Wait()
			time.Sleep(300 * time.Millisecond) // let cut next-hop connections settle
			m.check()
		})
	}
}

// machine is one leg's run: the transactions its clients made and what
// they were told.
type machine struct {
	t        *testing.T
	h        *harness
	leg      string
	recorded [][]byte // return leg: messages as the vendor sends them back

	mu  sync.Mutex
	txs []*smTx
}

// smTx is one transaction as its client saw it.
type smTx struct {
	token    string
	record   int      // return leg: which recorded message
	rcpts    []string // accepted recipients
	finished bool     // the client sent the whole message (dot or BDAT LAST)
	reply    int      // reply to end-of-data; 0 when none came
}

var recipients = []string{"bob@fabrikam.example", "eve@fabrikam.example"}

// connection runs one connection of random transactions.
func (m *machine) connection(rng *rand.Rand, addr, name string) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		m.t.Errorf("%s: dial: %v", name, err)
		return
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &smClient{c: nc, r: textproto.NewReader(bufio.NewReader(nc))}
	if c.read() != 220 || c.cmd("EHLO client.test") != 250 {
		m.t.Errorf("%s: no greeting", name)
		return
	}
	for n := 0; n < 1+rng.IntN(4); n++ {
		tx := &smTx{token: fmt.Sprintf("%s-%d", name, n)}
		m.mu.Lock()
		m.txs = append(m.txs, tx)
		m.mu.Unlock()
		if !m.transaction(rng, c, tx) {
			return // connection gone
		}
		switch rng.IntN(6) {
		case 0:
			c.cmd("RSET")
		case 1:
			c.cmd("NOOP")
		case 2:
			c.cmd("EHLO again.test")
		case 3:
			c.cmd("QUIT")
			return
		}
	}
}

// transaction runs one transaction; false means the connection is gone.
func (m *machine) transaction(rng *rand.Rand, c *smClient, tx *smTx) bool {
	if code := c.cmd("MAIL FROM:<ann@contoso.com>"); code != 250 {
		return code != 0
	}
	for _, rc := range recipients[:1+rng.IntN(len(recipients))] {
		switch c.cmd("RCPT TO:<%s>", rc) {
		case 250:
			tx.rcpts = append(tx.rcpts, rc)
		case 0:
			return false
		}
	}
	if len(tx.rcpts) == 0 {
		return true
	}
	msg := m.message(rng, tx)
	switch mode := rng.IntN(9); mode {
	case 0, 1: // DATA, whole
		if c.cmd("DATA") != 354 {
			return false
		}
		c.write(dotStuff(msg) + ".\r\n")
		tx.finished = true
		tx.reply = c.read()
		return tx.reply != 0
	case 2: // DATA, dropped at a random byte
		if c.cmd("DATA") != 354 {
			return false
		}
		c.write(dotStuff(msg)[:rng.IntN(len(msg))])
		c.c.Close()
		return false
	default: // BDAT in chunks
		return m.bdat(rng, c, tx, msg, mode)
	}
}

// bdat sends msg in random chunks and ends the transfer one way or another.
func (m *machine) bdat(rng *rand.Rand, c *smClient, tx *smTx, msg string, mode int) bool {
	end := len(msg) // how much to send before the ending
	if mode >= 5 {
		end = rng.IntN(len(msg))
	}
	sent := 0
	if mode == 8 && rng.IntN(2) == 0 {
		// An empty chunk first: go-smtp starts the data path without
		// feeding it; an RSET right after resets it before it ran.
		if c.bdat("") != 250 {
			return false
		}
		if rng.IntN(2) == 0 {
			return c.cmd("RSET") != 0
		}
	}
	for sent < end {
		n := min(1+rng.IntN(len(msg)/3+1), end-sent)
		if mode < 5 && sent+n == len(msg) {
			break // the last chunk goes with LAST below
		}
		if c.bdat(msg[sent:sent+n]) != 250 {
			return false
		}
		sent += n
	}
	switch mode {
	case 3, 4: // LAST
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-sent, msg[sent:]))
		tx.finished = true
		tx.reply = c.read()
		return tx.reply != 0
	case 5: // RSET in the middle
		return c.cmd("RSET") != 0
	case 6: // EHLO in the middle, which resets too
		return c.cmd("EHLO midway.test") != 0
	case 7: // a LAST chunk announced longer than sent, then the connection closes
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-sent+50, msg[sent:]))
		c.c.(*net.TCPConn).CloseWrite()
		c.read()
		return false
	default: // dropped
		c.c.Close()
		return false
	}
}

// message is tx's message: on the tenant leg a new one, on the return leg
// one of the recorded messages with a new body trailer, both ending in a
// line that names the transaction.
func (m *machine) message(rng *rand.Rand, tx *smTx) string {
	body := strings.Repeat(".dotted line and filler text of the body\r\n", 1+rng.IntN(300))
	trailer := "END " + tx.token + "\r\n"
	if m.leg == "return" {
		tx.record = rng.IntN(len(m.recorded))
		return string(m.recorded[tx.record]) + body + trailer
	}
	return "From: Ann <ann@contoso.com>\r\nTo: bob@fabrikam.example\r\nSubject: " + tx.token +
		"\r\nMessage-ID: <" + tx.token + "@contoso.com>\r\nX-MS-Exchange-CrossPremises-AuthAs: Internal\r\n\r\n" + body + trailer
}

// goSMTPNilSessionPanic is a panic go-smtp (v0.25) recovers and logs on its
// own: after "BDAT 0" without LAST its goroutine for the transfer may not
// have fetched the session yet when the connection closes (or STARTTLS
// replaces the session), and it then calls Data on a nil session. The
// relay never sees that transfer; nothing is delivered.
var goSMTPNilSessionPanic = regexp.MustCompile(`panic serving [^:]+:\d+: runtime error: invalid memory address or nil pointer dereference.*go-smtp\.\(\*Conn\)\.handlePanic.*go-smtp\.\(\*Conn\)\.handleBdat\.func1\(\)\\n\\t[^\\]*/conn\.go:1059 `)

var endLine = regexp.MustCompile(`END (\S+)\r\n`)

// check compares what the next hop received with what the clients did.
func (m *machine) check() {
	t := m.t
	hop := m.h.vendor
	if m.leg == "return" {
		hop = m.h.tenant
	}
	byToken := map[string]*smTx{}
	for _, tx := range m.txs {
		byToken[tx.token] = tx
	}
	got := map[string]int{}     // deliveries per transaction
	perRcpt := map[string]int{} // return leg: deliveries per record and recipient
	for _, d := range hop.Deliveries() {
		ends := endLine.FindAllStringSubmatch(string(d.Data), -1)
		if len(ends) != 1 || !strings.HasSuffix(string(d.Data), ends[0][0]) {
			t.Errorf("the next hop received an incomplete message:\n%.300s…", d.Data)
			continue
		}
		tok := ends[0][1]
		tx := byToken[tok]
		switch {
		case tx == nil:
			t.Errorf("delivery %s matches no transaction", tok)
			continue
		case !tx.finished:
			t.Errorf("%s: delivered, but the client never finished sending it", tok)
		case tx.reply >= 400:
			t.Errorf("%s: delivered, but the client was told %d", tok, tx.reply)
		}
		got[tok]++
		if m.leg == "return" {
			for _, rc := range d.Rcpts {
				perRcpt[fmt.Sprint(tx.record, rc)]++
			}
		}
	}
	var finished, acked int
	for _, tx := range m.txs {
		if tx.finished {
			finished++
		}
		if tx.reply != 250 {
			continue
		}
		acked++
		if m.leg == "tenant" && got[tx.token] != 1 {
			t.Errorf("%s: acknowledged with 250, delivered %d times", tx.token, got[tx.token])
		}
		if m.leg == "return" {
			for _, rc := range tx.rcpts {
				if perRcpt[fmt.Sprint(tx.record, rc)] != 1 {
					t.Errorf("%s: acknowledged with 250, but record %d reached %s %d times", tx.token, tx.record, rc, perRcpt[fmt.Sprint(tx.record, rc)])
				}
			}
		}
	}
	for k, n := range perRcpt {
		if n > 1 {
			t.Errorf("record and recipient %s delivered %d times", k, n)
		}
	}
	for _, line := range strings.Split(m.h.logs.String(), "\n") {
		if strings.Contains(line, "panic") && !goSMTPNilSessionPanic.MatchString(line) {
			t.Errorf("the relay panicked:\n%s", line)
		}
	}
	t.Logf("%d transactions, %d finished, %d acknowledged, %d delivered", len(m.txs), finished, acked, len(hop.Deliveries()))
	if acked == 0 {
		t.Error("no transaction was acknowledged: the run tested nothing")
	}
}

// smClient is a raw SMTP client that tolerates a connection going away.
type smClient struct {
	c net.Conn
	r *textproto.Reader
}

// cmd sends a command line and returns the reply code, 0 when the
// connection failed.
func (c *smClient) cmd(format string, args ...any) int {
	if !c.write(fmt.Sprintf(format, args...) + "\r\n") {
		return 0
	}
	return c.read()
}

// bdat sends a non-final chunk and returns the reply code.
func (c *smClient) bdat(chunk string) int {
	if !c.write(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk)) {
		return 0
	}
	return c.read()
}

func (c *smClient) write(s string) bool {
	_, err := c.c.Write([]byte(s))
	return err == nil
}

func (c *smClient) read() int {
	code, _, err := c.r.ReadResponse(0)
	if err != nil && code == 0 {
		return 0
	}
	return code
}

// dotStuff doubles leading dots for DATA.
func dotStuff(s string) string {
	return strings.ReplaceAll(s, "\r\n.", "\r\n..")
}
