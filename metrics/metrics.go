// Package metrics exports what the relay does as Prometheus metrics.
//
// Metrics is a relay.Observer: add it to relay.Static.Observers and
// register it on a prometheus.Registry of its own (never the default
// registerer), which the admin server's /metrics serves. It records:
//
//	recallrelay_messages_total{leg,result,code_class,matched_by}    counter
//	recallrelay_message_duration_seconds{leg}                       histogram
//	recallrelay_message_stage_duration_seconds{leg,stage}           histogram
//	recallrelay_message_size_bytes{leg}                             histogram
//	recallrelay_store_errors_total{leg,op}                          counter
//	recallrelay_limits_hit_total{leg,limit}                         counter
//	recallrelay_connections_refused_total{leg,reason}               counter
//	recallrelay_next_hop_failures_total{leg,hop,stage}              counter
//	recallrelay_config_reloads_total{outcome}                       counter
//	recallrelay_config_generation                                   gauge
//	recallrelay_sessions_open{leg}                                  gauge (Options.Sessions)
//	recallrelay_certificate_expires_in_seconds{file}                gauge (Options.Certificates)
//	recallrelay_build_info{version,revision,go_version}             gauge, always 1
//
// A message is counted once per leg when the relay answers its end of
// data. A transaction refused before that — a next hop unreachable at
// MAIL FROM, every recipient refused — is no message: it shows in
// recallrelay_next_hop_failures_total{stage="connect"} (or "MAIL FROM")
// and in the limits and refusals, and the client, told 4xx, tries again.
//
// Every label takes its values from a small fixed set (see labels.go), with
// "other" for a value outside it, except hop, which is a configured next
// hop's name, and file, a configured certificate's path. No address,
// message id, reference, client address or free text is ever a label.
//
// The relay calls observers synchronously on its connections' goroutines;
// each event costs a few hash lookups and atomic adds (BenchmarkMessageDone).
package metrics

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/recallrelay/recallrelay/relay"
)

const namespace = "recallrelay"

// durationBuckets are the histogram buckets of message and stage
// durations, in seconds: from 1 ms (a store lookup, a header block) to
// 2 minutes (a large message to a slow vendor).
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// sizeBuckets are the histogram buckets of message sizes, in bytes: 1 KiB
// to 256 MiB in powers of 4 (Exchange Online's limit is 150 MB).
var sizeBuckets = prometheus.ExponentialBuckets(1024, 4, 10)

// Options configures what Metrics reads besides the relay's events.
type Options struct {
	// Sessions returns the open SMTP sessions per leg, read at each
	// scrape: relay.Relay.Sessions. Nil leaves out
	// recallrelay_sessions_open.
	Sessions func() map[string]int
	// Certificates returns the certificates in use, read at each scrape.
	// Nil leaves out recallrelay_certificate_expires_in_seconds.
	Certificates func() []CertExpiry
	// Runtime registers the Go runtime and process collectors (go_*,
	// process_*) on the same registerer too.
	Runtime bool
	// Now is the clock certificate expiry is measured against; default
	// time.Now.
	Now func() time.Time
}

// CertExpiry is one certificate the relay uses.
type CertExpiry struct {
	// Name identifies the certificate: its configured file path.
	Name string
	// NotAfter is the end of its validity.
	NotAfter time.Time
}

// Metrics records the relay's events (a relay.Observer). It is safe for
// concurrent use.
type Metrics struct {
	messages *prometheus.CounterVec
	// Histograms resolved per leg and stage once, in New: the per-message
	// path does no label lookups for them.
	duration [numLegs]prometheus.Observer
	stages   [numLegs][numStages]prometheus.Observer
	size     [numLegs]prometheus.Observer

	storeErrors *prometheus.CounterVec
	limits      *prometheus.CounterVec
	refused     *prometheus.CounterVec
	hopFailures *prometheus.CounterVec
	reloadsOK   prometheus.Counter
	reloadsFail prometheus.Counter
	generation  prometheus.Gauge
}

var _ relay.Observer = (*Metrics)(nil)

// New creates the relay's metrics and registers them, and the collectors
// opts asks for, on reg. Registration is all or nothing: on an error, what
// New registered is unregistered again.
func New(reg prometheus.Registerer, opts Options) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: no registerer")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "messages_total",
			Help: "Messages that ended on a leg, by result, reply code class and (return leg) how the origin record was found.",
		}, []string{"leg", "result", "code_class", "matched_by"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "store_errors_total",
			Help: "Failed origin-record store operations, by operation.",
		}, []string{"leg", "op"}),
		limits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "limits_hit_total",
			Help: "Connections or transactions that reached a limit, by limit.",
		}, []string{"leg", "limit"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "connections_refused_total",
			Help: "Connections turned away at connect time, by reason (allow_nets, per_client, total).",
		}, []string{"leg", "reason"}),
		hopFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "next_hop_failures_total",
			Help: "Next hops that failed before they gave a verdict, by next hop and stage.",
		}, []string{"leg", "hop", "stage"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_generation",
			Help: "Configurations put in force by reload since the process started (0: the one it started with).",
		}),
	}
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_reloads_total",
		Help: "Configuration reloads, by outcome (ok, failed).",
	}, []string{"outcome"})
	m.reloadsOK, m.reloadsFail = reloads.WithLabelValues("ok"), reloads.WithLabelValues("failed")

	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "message_duration_seconds",
		Help:    "Time from the start of message data to the client's reply.",
		Buckets: durationBuckets,
	}, []string{"leg"})
	stages := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "message_stage_duration_seconds",
		Help:    "Time a message spent in each stage (header, route, store, transfer, hop_reply); a stage that did not run is not observed.",
		Buckets: durationBuckets,
	}, []string{"leg", "stage"})
	size := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "message_size_bytes",
		Help:    "Bytes of message data received.",
		Buckets: sizeBuckets,
	}, []string{"leg"})
	for l, leg := range legNames {
		m.duration[l] = duration.WithLabelValues(leg)
		m.size[l] = size.WithLabelValues(leg)
		for s, stage := range stageNames {
			m.stages[l][s] = stages.WithLabelValues(leg, stage)
		}
	}

	// Series whose label values are all known start at zero, so that the
	// first event shows as an increase.
	for _, leg := range legNames[:legOther] {
		for _, op := range storeOps.labels() {
			m.storeErrors.WithLabelValues(leg, op)
		}
		for _, l := range limits.labels() {
			m.limits.WithLabelValues(leg, l)
		}
		for _, r := range refusedReasons {
			m.refused.WithLabelValues(leg, r)
		}
	}

	version, revision := BuildVersion()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "The relay's build: always 1, with its version, VCS revision and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "go_version": runtime.Version()},
	})
	build.Set(1)

	cs := []prometheus.Collector{m.messages, duration, stages, size, m.storeErrors, m.limits, m.refused,
		m.hopFailures, reloads, m.generation, build}
	if opts.Sessions != nil {
		cs = append(cs, newSessionsCollector(opts.Sessions))
	}
	if opts.Certificates != nil {
		cs = append(cs, newCertCollector(opts.Certificates, opts.Now))
	}
	if opts.Runtime {
		cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// MessageDone counts a message, and observes its duration, stages and
// size.
func (m *Metrics) MessageDone(o *relay.Outcome) {
	l := legIndex(o.Leg)
	m.messages.WithLabelValues(legNames[l], results.value(o.Result), codeClass(o.Code), matchedByValue(o)).Inc()
	m.duration[l].Observe(o.Duration.Seconds())
	m.size[l].Observe(float64(o.Size))
	for s, d := range [numStages]time.Duration{
		stageHeader:   o.Stages.Header,
		stageRoute:    o.Stages.Route,
		stageStore:    o.Stages.Store,
		stageTransfer: o.Stages.Transfer,
		stageHopReply: o.Stages.HopReply,
	} {
		if d > 0 {
			m.stages[l][s].Observe(d.Seconds())
		}
	}
}

// ConnectionRefused counts a refused connection by the reason its reply
// gives.
func (m *Metrics) ConnectionRefused(e relay.ConnectionRefused) {
	m.refused.WithLabelValues(legNames[legIndex(e.Leg)], refusedReason(e.Reply)).Inc()
}

// LimitHit counts a limit reached.
func (m *Metrics) LimitHit(e relay.LimitHit) {
	m.limits.WithLabelValues(legNames[legIndex(e.Leg)], limits.value(e.Limit)).Inc()
}

// NextHopFailed counts a next-hop failure by hop name and stage.
func (m *Metrics) NextHopFailed(e relay.NextHopFailed) {
	m.hopFailures.WithLabelValues(legNames[legIndex(e.Leg)], hopName(e.Hop), hopStages.value(e.Stage)).Inc()
}

// StoreFailed counts a failed store operation.
func (m *Metrics) StoreFailed(e relay.StoreFailed) {
	m.storeErrors.WithLabelValues(legNames[legIndex(e.Leg)], storeOps.value(e.Op)).Inc()
}

// Reloaded counts a reload; one that took effect (err == nil) also
// advances recallrelay_config_generation. A caller whose reload fails
// before it reaches relay.Relay.Reload (an unreadable file) may call it
// with that error, so that every refused reload is counted.
func (m *Metrics) Reloaded(err error) {
	if err != nil {
		m.reloadsFail.Inc()
		return
	}
	m.reloadsOK.Inc()
	m.generation.Inc()
}
