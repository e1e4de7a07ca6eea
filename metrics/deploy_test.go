package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/recallrelay/recallrelay/relay"
	"go.yaml.in/yaml/v3"
)

// The alert rules and the Grafana dashboard in deploy/monitoring name only
// metrics this package registers, so that a renamed metric cannot leave
// an alert silently empty.
func TestDeployedRulesAndDashboardNameRealMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Options{Sessions: func() map[string]int { return map[string]int{"tenant": 1} },
		Certificates: func() []CertExpiry { return []CertExpiry{{Name: "relay.pem", NotAfter: time.Now().Add(time.Hour)}} }})
	if err != nil {
		t.Fatal(err)
	}
	// One of every event, so that every family has a series to gather.
	m.MessageDone(&relay.Outcome{Leg: "return", Result: "delivered", Code: 250, MatchedBy: "reference", Size: 10,
		Duration: time.Millisecond, Stages: relay.Stages{Header: time.Microsecond, Store: time.Microsecond}})
	m.ConnectionRefused(relay.ConnectionRefused{Leg: "tenant", Reply: "554 5.7.1 not allowed"})
	m.LimitHit(relay.LimitHit{Leg: "tenant", Limit: "too many recipients"})
	m.NextHopFailed(relay.NextHopFailed{Leg: "tenant", Hop: "vendor", Stage: "connect"})
	m.StoreFailed(relay.StoreFailed{Leg: "tenant", Op: "get"})
	m.Reloaded(nil)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range families {
		known[f.GetName()] = true
	}

	var exprs []string
	rules, err := os.ReadFile("../deploy/monitoring/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(rules, &file); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("a rule without alert or expr: %+v", r)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	dash, err := os.ReadFile("../deploy/monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d expressions found", len(exprs))
	}
	name := regexp.MustCompile(`recallrelay_[a-z_]+`)
	for _, e := range exprs {
		for _, n := range name.FindAllString(e, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
			if !known[base] {
				t.Errorf("%q names %s, which the relay does not export", e, n)
			}
		}
	}
}
