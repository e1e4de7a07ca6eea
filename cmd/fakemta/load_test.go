package main

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/loadgen"
)

func TestLoadUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"load"}, "exactly one of --to and --sink"},
		{[]string{"load", "--sink", "--to", "127.0.0.1:1"}, "exactly one of --to and --sink"},
		{[]string{"load", "--sink", "--compare-direct"}, "--compare-direct needs --to"},
		{[]string{"load", "--sink", "--pid", "1"}, "--pid needs --to"},
		{[]string{"load", "--sink", "--size", "4XB"}, `--size: invalid size "4XB": unknown unit "XB"`},
		{[]string{"load", "--sink", "--size", "1.5MB"}, `--size: invalid size "1.5MB": fractions are not allowed`},
		{[]string{"load", "--sink", "--size", "-4KiB"}, `--size: invalid size "-4KiB": negative`},
		{[]string{"load", "--sink", "--size", "100"}, "below the"},
		{[]string{"load", "--sink", "--exchange", "--size", "4KiB"}, "smallest padded Exchange message"},
		{[]string{"load", "--sink", "--senders", "0"}, "--senders must be at least 1"},
		{[]string{"load", "--sink", "--tls-server-name", "x"}, "needs --starttls"},
	} {
		code, _, stderr := runApp(t, context.Background(), tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.err) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.err)
		}
	}
}

func TestLoadSink(t *testing.T) {
	t.Parallel()
	code, out, stderr := runApp(t, context.Background(), "load", "--sink", "--messages", "40", "--senders", "3",
		"--per-conn", "4", "--bdat", "--chunk-size", "1KiB", "--size", "10KiB", "--starttls")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"direct sink (fast)", "MSG/S", "BDAT 1 KiB chunks, pipelining, 4 msg/connection, STARTTLS"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestLoadCompareDirectJSON(t *testing.T) {
	t.Parallel()
	target, err := loadgen.StartSink(loadgen.SinkConfig{Impl: loadgen.SinkGoSMTP})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	code, out, stderr := runApp(t, context.Background(), "load", "--to", target.Addr(), "--compare-direct", "--exchange",
		"--messages", "24", "--senders", "2", "--per-conn", "0", "--rset", "--json", "--pid", strconv.Itoa(os.Getpid()))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Runs []struct {
			Label    string         `json:"label"`
			Accepted int64          `json:"accepted"`
			RSS      map[string]any `json:"rss"`
		} `json:"runs"`
		Ratio *loadgen.Comparison `json:"target_over_direct"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(rep.Runs) != 2 || rep.Runs[0].Accepted != 24 || rep.Runs[1].Accepted != 24 || rep.Ratio == nil || rep.Ratio.MsgPerSec <= 0 {
		t.Fatalf("report: %+v", rep)
	}
	if rep.Runs[0].RSS == nil || rep.Runs[1].RSS != nil {
		t.Fatalf("RSS only for the target: %+v", rep.Runs)
	}
	if got := target.Stats().Messages; got != 24 {
		t.Fatalf("target got %d messages", got)
	}
}

// --size and --chunk-size take yamlconf's sizes: KiB and MiB are powers
// of 1024, kB and MB of 1000.
func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
	}{{"4096", 4096}, {"4KiB", 4096}, {"1MiB", 1 << 20}, {"100MB", 100_000_000}, {"10kB", 10_000}, {" 64 KiB ", 65536}} {
		if got, err := parseSize(tc.in); err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
