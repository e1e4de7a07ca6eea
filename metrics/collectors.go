package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sessionsCollector reports open SMTP sessions per leg, read at each
// scrape.
type sessionsCollector struct {
	sessions func() map[string]int
	desc     *prometheus.Desc
}

func newSessionsCollector(sessions func() map[string]int) *sessionsCollector {
	return &sessionsCollector{
		sessions: sessions,
		desc: prometheus.NewDesc(namespace+"_sessions_open",
			"Open SMTP sessions per leg.", []string{"leg"}, nil),
	}
}

func (c *sessionsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect reports each leg's sessions; both legs always appear, and a leg
// name the relay does not have is added to "other".
func (c *sessionsCollector) Collect(ch chan<- prometheus.Metric) {
	var n [numLegs]int
	for leg, count := range c.sessions() {
		n[legIndex(leg)] += count
	}
	for l, leg := range legNames {
		if l == legOther && n[l] == 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n[l]), leg)
	}
}

// certCollector reports the seconds until each certificate expires, read
// at each scrape.
type certCollector struct {
	certs func() []CertExpiry
	now   func() time.Time
	desc  *prometheus.Desc
}

func newCertCollector(certs func() []CertExpiry, now func() time.Time) *certCollector {
	return &certCollector{
		certs: certs,
		now:   now,
		desc: prometheus.NewDesc(namespace+"_certificate_expires_in_seconds",
			"Seconds until the certificate in the file expires; negative once it has.", []string{"file"}, nil),
	}
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect reports each certificate once: of two under one name, the one
// that expires first.
func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	first := map[string]time.Time{}
	var order []string
	for _, ce := range c.certs() {
		t, seen := first[ce.Name]
		if !seen {
			order = append(order, ce.Name)
		}
		if !seen || ce.NotAfter.Before(t) {
			first[ce.Name] = ce.NotAfter
		}
	}
	for _, name := range order {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, first[name].Sub(now).Seconds(), name)
	}
}
