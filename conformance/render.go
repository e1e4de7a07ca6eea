package conformance

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteJSON writes r as indented JSON (the layout is documented in the
// package documentation).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("conformance: write JSON: %w", err)
	}
	return nil
}

// ReadReport decodes a report WriteJSON wrote.
func ReadReport(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("conformance: read JSON report: %w", err)
	}
	return &r, nil
}

// paths returns the paths the report has cells for, in column order.
func (r *Report) paths() []Path {
	var out []Path
	for _, p := range []Path{PathDirect, PathRelay} {
		for _, c := range r.Cases {
			if c.Cell(p) != nil {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// WriteText writes r as a table, one row per case and a group of columns
// per path, followed by the damage summary of every cell below 100 %.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "recallrelay conformance: %d messages (%s), vendor %s, started %s, %d cells in %.1fs\n\n",
		r.Params.Messages, r.Params.MessageSource, r.Params.Vendor, r.Started.Format(time.RFC3339), r.cells(), r.DurationSeconds)
	paths := r.paths()
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	head := []string{"BEHAVIOUR"}
	for _, p := range paths {
		head = append(head, strings.ToUpper(string(p)), "ONCE/LOST/DUP", "IDENTITY", "DKIM", "RECALL→VENDOR")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, c := range r.Cases {
		row := []string{c.Name}
		for _, p := range paths {
			cell := c.Cell(p)
			if cell == nil {
				row = append(row, "-", "-", "-", "-", "-")
				continue
			}
			row = append(row, cell.survivalText(), cell.onceText(),
				fmt.Sprintf("%d/%d", cell.IdentityIntact, cell.Sent), fmt.Sprintf("%d/%d", cell.DKIMIntact, cell.Sent),
				cell.RecallToVendor.text())
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	first := true
	for _, c := range r.Cases {
		for _, p := range paths {
			cell := c.Cell(p)
			if cell == nil || cell.Complete() {
				continue
			}
			if first {
				fmt.Fprintf(bw, "\nDamage (cells below 100%%):\n")
				first = false
			}
			fmt.Fprintf(bw, "  %s, %s: %s\n", c.Name, p, cell.Damage.Summary)
		}
	}
	fmt.Fprintf(bw, "\nONCE/LOST/DUP counts recipients; IDENTITY counts messages with Message-ID, CrossPremises,\n"+
		"TNEF and recall fields intact; DKIM counts messages whose tenant DKIM signature still verifies\n"+
		"(not part of survival); RECALL→VENDOR counts recall requests/reports the vendor received.\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("conformance: write table: %w", err)
	}
	return nil
}

func (r *Report) cells() int {
	n := 0
	for _, c := range r.Cases {
		for _, p := range []Path{PathDirect, PathRelay} {
			if c.Cell(p) != nil {
				n++
			}
		}
	}
	return n
}

// survivalText formats the survival percentage, marked "*" when the cell
// did not settle.
func (c *CellResult) survivalText() string {
	s := fmt.Sprintf("%.1f%%", c.SurvivalPercent)
	if c.Incomplete != "" {
		s += "*"
	}
	return s
}

func (c *CellResult) onceText() string {
	return fmt.Sprintf("%d/%d/%d", c.DeliveredOnce, c.Lost, c.Duplicated)
}

func (rc *RecallCount) text() string {
	if rc == nil {
		return "n/a"
	}
	return fmt.Sprintf("%d req, %d rep", rc.Requests, rc.Reports)
}

// WriteHTML writes r as a self-contained HTML page: inline CSS, an inline
// SVG bar chart of survival per case and path, the table, the run's
// parameters and the damage of every cell below 100 %. It needs no
// JavaScript and loads nothing.
func (r *Report) WriteHTML(w io.Writer) error {
	v := htmlView{R: r, Paths: r.paths(), Started: r.Started.Format(time.RFC3339)}
	v.Chart = newChart(r, v.Paths)
	for _, c := range r.Cases {
		for _, p := range v.Paths {
			if cell := c.Cell(p); cell != nil && !cell.Complete() {
				v.Damaged = append(v.Damaged, damagedCell{Case: c.Name, Behaviors: c.Behaviors, Path: p, Cell: cell})
			}
		}
	}
	if err := htmlTemplate.Execute(w, v); err != nil {
		return fmt.Errorf("conformance: write HTML: %w", err)
	}
	return nil
}

type htmlView struct {
	R       *Report
	Paths   []Path
	Started string
	Chart   chart
	Damaged []damagedCell
}

type damagedCell struct {
	Case, Behaviors string
	Path            Path
	Cell            *CellResult
}

// chart is the geometry of the SVG bar chart, computed here so that the
// template only places elements.
type chart struct {
	Width, Height int
	Ticks         []chartTick
	Rows          []chartRow
	Legend        []chartBar
}

type chartTick struct {
	X     float64
	Label string
}

type chartRow struct {
	Label  string
	LabelY float64
	Bars   []chartBar
}

type chartBar struct {
	Path          Path
	Class         string
	X, Y, W, H    float64
	TextX, TextY  float64
	Text          string
	LegendX, LegY float64
}

const (
	chartLabelW = 180.0
	chartBarMax = 420.0
	chartBarH   = 12.0
	chartTop    = 34.0
)

func newChart(r *Report, paths []Path) chart {
	rowH := float64(len(paths))*(chartBarH+3) + 10
	ch := chart{Width: int(chartLabelW + chartBarMax + 80)}
	ch.Height = int(chartTop + rowH*float64(len(r.Cases)) + 10)
	for _, pct := range []float64{0, 25, 50, 75, 100} {
		ch.Ticks = append(ch.Ticks, chartTick{X: chartLabelW + chartBarMax*pct/100, Label: fmt.Sprintf("%g%%", pct)})
	}
	for i, p := range paths {
		ch.Legend = append(ch.Legend, chartBar{Path: p, Class: "bar-" + string(p), LegendX: chartLabelW + float64(i)*110, LegY: 6})
	}
	for i, c := range r.Cases {
		y := chartTop + float64(i)*rowH
		row := chartRow{Label: c.Name, LabelY: y + rowH/2 - 2}
		for j, p := range paths {
			cell := c.Cell(p)
			b := chartBar{Path: p, Class: "bar-" + string(p), X: chartLabelW, Y: y + float64(j)*(chartBarH+3), H: chartBarH}
			if cell == nil {
				b.Text = "not run"
			} else {
				b.W = chartBarMax * cell.SurvivalPercent / 100
				b.Text = cell.survivalText()
			}
			b.TextX, b.TextY = b.X+b.W+4, b.Y+chartBarH-2
			row.Bars = append(row.Bars, b)
		}
		ch.Rows = append(ch.Rows, row)
	}
	return ch
}

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":    func(c *CellResult) string { return c.survivalText() },
	"once":   func(c *CellResult) string { return c.onceText() },
	"recall": func(rc *RecallCount) string { return rc.text() },
	"cell":   func(c CaseResult, p Path) *CellResult { return c.Cell(p) },
	"ms":     func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() },
	"secs":   func(s float64) string { return fmt.Sprintf("%.1fs", s) },
	"rcpts": func(m MessageResult) string {
		var parts []string
		for _, r := range m.Recipients {
			parts = append(parts, fmt.Sprintf("%s×%d", r.Address, r.Deliveries))
		}
		return strings.Join(parts, ", ")
	},
}).Parse(htmlSource))

const htmlSource = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>recallrelay conformance report</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1d2329; max-width: 1200px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.ok { background: #e6f4ea; }
td.bad { background: #fdecea; }
.params td:first-child { font-weight: 600; }
.muted { color: #57606a; }
details { margin: 0.6em 0; }
summary { cursor: pointer; }
code { font-size: 0.95em; }
svg text { font-family: system-ui, sans-serif; font-size: 11px; fill: #1d2329; }
svg .tick { stroke: #d0d7de; stroke-width: 1; }
svg .bar-direct { fill: #8c9bab; }
svg .bar-relay { fill: #2f7d46; }
</style>
</head>
<body>
<h1>recallrelay conformance report</h1>
<p class="muted">Does recall keep working when mail makes the round trip through the vendor?
A message <em>survives</em> when every recipient received it exactly once and its recall identity
(Message-ID, X-MS-Exchange-CrossPremises-*, X-OrganizationHeadersPreserved, X-MS-TNEF-Correlator,
X-MS-Has-Attach, recall markers, winmail.dat) arrived byte-identical.</p>

<h2>Run</h2>
<table class="params">
<tr><td>Started</td><td>{{.Started}}</td></tr>
<tr><td>Duration</td><td>{{secs .R.DurationSeconds}}</td></tr>
<tr><td>Messages</td><td>{{.R.Params.Messages}} ({{.R.Params.MessageSource}})</td></tr>
<tr><td>Vendor</td><td>{{.R.Params.Vendor}}{{if .R.Params.VendorTLS}} (STARTTLS){{end}}{{if .R.Params.EHLO}}, EHLO {{.R.Params.EHLO}}{{end}}{{if .R.Params.ReturnListen}}, returning to {{.R.Params.ReturnListen}}{{if .R.Params.ReturnTLS}} (STARTTLS offered){{end}}{{end}}</td></tr>
<tr><td>Paths</td><td>{{range $i, $p := .R.Params.Paths}}{{if $i}}, {{end}}{{$p}}{{end}}</td></tr>
<tr><td>Concurrent senders</td><td>{{.R.Params.Senders}}</td></tr>
<tr><td>Settle / cell timeout</td><td>{{ms .R.Params.SettleMS}} / {{ms .R.Params.CellTimeoutMS}}</td></tr>
<tr><td>Report version</td><td>{{.R.Version}}</td></tr>
</table>

<h2>Survival per behaviour</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Chart.Width}}" height="{{.Chart.Height}}" viewBox="0 0 {{.Chart.Width}} {{.Chart.Height}}" role="img" aria-label="survival per behaviour and path">
{{range .Chart.Legend}}<rect class="{{.Class}}" x="{{.LegendX}}" y="{{.LegY}}" width="12" height="12"/><text x="{{.LegendX}}" y="{{.LegY}}" dx="16" dy="10">{{.Path}}</text>
{{end}}{{range .Chart.Ticks}}<line class="tick" x1="{{.X}}" y1="24" x2="{{.X}}" y2="{{$.Chart.Height}}"/><text x="{{.X}}" y="32" text-anchor="middle">{{.Label}}</text>
{{end}}{{range .Chart.Rows}}<text x="174" y="{{.LabelY}}" dy="4" text-anchor="end">{{.Label}}</text>
{{range .Bars}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Path}}: {{.Text}}</title></rect><text x="{{.TextX}}" y="{{.TextY}}">{{.Text}}</text>
{{end}}{{end}}</svg>

<h2>Matrix</h2>
<table>
<tr><th rowspan="2">Behaviour</th><th rowspan="2">Vendor does</th>{{range .Paths}}<th colspan="5">{{.}}</th>{{end}}</tr>
<tr>{{range .Paths}}<th>survival</th><th>once / lost / dup</th><th>identity intact</th><th>DKIM intact</th><th>recall → vendor</th>{{end}}</tr>
{{range $c := .R.Cases}}<tr><td>{{$c.Name}}</td><td><code>{{$c.Behaviors}}</code></td>{{range $p := $.Paths}}{{with cell $c $p}}<td class="num {{if .Complete}}ok{{else}}bad{{end}}">{{pct .}}</td><td class="num">{{once .}}</td><td class="num">{{.IdentityIntact}}/{{.Sent}}</td><td class="num">{{.DKIMIntact}}/{{.Sent}}</td><td class="num">{{recall .RecallToVendor}}</td>{{else}}<td colspan="5">not run</td>{{end}}{{end}}</tr>
{{end}}</table>
<p class="muted">Once / lost / dup count recipients (message × recipient); identity intact counts messages;
recall → vendor counts the recall requests and reports the vendor received (n/a: not observable).
A * marks a cell that did not settle within the cell timeout.</p>

<h2>Damage</h2>
{{if not .Damaged}}<p>Every message survived in every cell.</p>{{end}}
{{range .Damaged}}<details>
<summary><strong>{{.Case}}</strong>, {{.Path}}: {{pct .Cell}} — {{.Cell.Damage.Summary}}</summary>
{{if .Cell.Incomplete}}<p>Incomplete: {{.Cell.Incomplete}}</p>{{end}}
<table>
<tr><th>Message</th><th>Kind</th><th>Deliveries per recipient</th><th>Identity</th><th>Send error</th></tr>
{{range .Cell.Messages}}{{if not .Survived}}<tr><td>{{.Name}}</td><td>{{.Kind}}{{if .Recall}} (recall {{.Recall}}){{end}}</td><td>{{rcpts .}}</td><td>{{.Identity}}</td><td>{{.SendError}}</td></tr>
{{end}}{{end}}</table>
</details>
{{end}}
<p class="muted">Generated by <code>recallrelay conformance</code>.</p>
</body>
</html>
`
