package loadgen

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Reply
		err      string // substring of the error; "" for none
		errIs    error
	}{
		{name: "single", in: "250 OK\r\n", want: Reply{250, []string{"OK"}}},
		{name: "code only", in: "250\r\n", want: Reply{250, []string{""}}},
		{name: "multiline", in: "250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
			want: Reply{250, []string{"mx.example", "PIPELINING", "CHUNKING"}}},
		{name: "multiline empty continuation", in: "220-\r\n220 ready\r\n", want: Reply{220, []string{"", "ready"}}},
		{name: "leaves the next reply", in: "354 go\r\n250 next\r\n", want: Reply{354, []string{"go"}}},
		{name: "code changes", in: "250-a\r\n251 b\r\n", err: `code 251 in a reply that began with 250`},
		{name: "bad separator", in: "250_x\r\n", err: `separator '_'`},
		{name: "letters", in: "2x0 OK\r\n", err: `code "2x0" is not three digits`},
		{name: "first digit", in: "650 OK\r\n", err: `first digit not 1 to 5`},
		{name: "short", in: "25\r\n", err: "shorter than a three-digit code"},
		{name: "bare LF", in: "250 OK\n", err: "bare LF"},
		{name: "too long", in: "250 " + strings.Repeat("x", MaxReplyLine) + "\r\n", err: "longer than"},
		{name: "EOF mid-line", in: "250 O", errIs: io.ErrUnexpectedEOF},
		{name: "EOF mid-reply", in: "250-a\r\n", errIs: io.ErrUnexpectedEOF},
		{name: "EOF", in: "", errIs: io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadReply(bufio.NewReaderSize(strings.NewReader(tc.in), 16))
			switch {
			case tc.errIs != nil:
				if !errors.Is(err, tc.errIs) {
					t.Fatalf("err = %v, want %v", err, tc.errIs)
				}
			case tc.err != "":
				var me *MalformedReplyError
				if !errors.As(err, &me) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want a MalformedReplyError with %q", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case !reflect.DeepEqual(got, tc.want):
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	// too many lines
	in := strings.Repeat("250-x\r\n", MaxReplyLines+1)
	if _, err := ReadReply(bufio.NewReader(strings.NewReader(in))); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("err = %v", err)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 50, 7 * time.Millisecond},
		{"one p99", ms(7), 99, 7 * time.Millisecond},
		{"two p50", ms(1, 2), 50, 1 * time.Millisecond},
		{"two p51", ms(1, 2), 51, 2 * time.Millisecond},
		{"100 p50", ms(hundred...), 50, 50 * time.Millisecond},
		{"100 p90", ms(hundred...), 90, 90 * time.Millisecond},
		{"100 p99", ms(hundred...), 99, 99 * time.Millisecond},
		{"100 p100", ms(hundred...), 100, 100 * time.Millisecond},
		{"10 p99", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"10 p90", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{"tiny p", ms(1, 2, 3), 0.1, 1 * time.Millisecond},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: Percentile(p%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
	st := latencyStats(ms(5, 1, 3, 2, 4))
	if st.P50 != 3 || st.Max != 5 || st.Mean != 3 {
		t.Errorf("latencyStats = %+v", st)
	}
}

// ReadReply never panics, and what it accepts it gives back: a code in
// range, each line's text as sent.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 OK\r\n", "250-a\r\n250 b\r\n", "354 go\r\n", "25 x\r\n", "250-a\r\n251 b\r\n", "250\r\n", "\r\n", "250 a\nb\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReader(strings.NewReader(in))
		r, err := ReadReply(br)
		if err != nil {
			return
		}
		if r.Code < 100 || r.Code > 599 {
			t.Fatalf("%q: accepted code %d", in, r.Code)
		}
		for _, line := range r.Lines {
			if !strings.Contains(in, line) {
				t.Fatalf("%q: line %q not in the input", in, line)
			}
		}
	})
}
