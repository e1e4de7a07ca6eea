package loadgen

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Comparison is a run against a target and the same load against the
// built-in sink: the target's figures divided by the sink's.
type Comparison struct {
	MsgPerSec float64 `json:"msg_per_sec"`
	MBPerSec  float64 `json:"mb_per_sec"`
	P50       float64 `json:"latency_p50"`
	P99       float64 `json:"latency_p99"`
}

// Compare returns target / direct.
func Compare(target, direct *Result) Comparison {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	return Comparison{
		MsgPerSec: div(target.MsgPerSec, direct.MsgPerSec), MBPerSec: div(target.MBPerSec, direct.MBPerSec),
		P50: div(target.Latency.P50, direct.Latency.P50), P99: div(target.Latency.P99, direct.Latency.P99),
	}
}

// WriteTable writes results as a table, labels naming the rows, then the
// errors of every run and, with cmp, the ratios.
func WriteTable(w io.Writer, labels []string, results []*Result, cmp *Comparison) error {
	if len(results) > 0 {
		r := results[0]
		fmt.Fprintf(w, "%s; %s; %d sender(s)\n\n", r.Describe, r.Mode, r.Senders)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSENT\tACCEPTED\tFAILED\tCONNS\tSECONDS\tMSG/S\tMB/S\tP50 MS\tP90 MS\tP99 MS\tMAX MS\tPEAK RSS")
	for i, r := range results {
		rss := "-"
		if r.RSS != nil {
			rss = fmt.Sprintf("%s (VmHWM %s)", FormatSize(r.RSS.MaxRSS<<10), FormatSize(r.RSS.VmHWM<<10))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.2f\t%.1f\t%.2f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\n",
			labels[i], r.Attempted, r.Accepted, r.Failed, r.Connections, r.Seconds, r.MsgPerSec, r.MBPerSec,
			r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, rss)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i, r := range results {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "%s: %d × %s, e.g. %s\n", labels[i], e.Count, e.Key, oneLine(e.Example))
		}
	}
	if cmp != nil {
		fmt.Fprintf(w, "\ntarget / direct sink: msg/s %.2fx, MB/s %.2fx, p50 latency %.2fx, p99 latency %.2fx\n",
			cmp.MsgPerSec, cmp.MBPerSec, cmp.P50, cmp.P99)
	}
	return nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.ReplaceAll(s, "\n", " / ")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}
