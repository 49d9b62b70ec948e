// Package metrics defines Parley's Prometheus metrics on a registry of its
// own, so that several servers in one test process do not collide.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector the server updates.
type Metrics struct {
	Registry       *prometheus.Registry
	StreamsOpen    prometheus.GaugeFunc
	EventsWritten  prometheus.Counter
	EventsReplayed prometheus.Counter
	StreamCloses   *prometheus.CounterVec
	DeliveryDelay  prometheus.Histogram
	Requests       *prometheus.CounterVec
	RequestTime    *prometheus.HistogramVec
	// CorruptRuns counts log reads that failed on a stored run of events
	// that does not decode (`parley check --repair` drops it).
	CorruptRuns prometheus.Counter
	// WebhooksDelivered counts webhooks a receiver accepted (a 2xx), by
	// this node; WebhookAttemptsFailed the attempts that were not; and
	// WebhookLatency the time from a webhook's commit to its acceptance.
	WebhooksDelivered     prometheus.Counter
	WebhookAttemptsFailed prometheus.Counter
	WebhookLatency        prometheus.Histogram
	// ConnsRefused counts connections refused because their address held
	// --max-conns-per-ip already.
	ConnsRefused prometheus.Counter
}

// New registers the collectors. openStreams reports the open stream count.
func New(openStreams func() float64) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		StreamsOpen: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_streams_open", Help: "Open SSE streams on this node.",
		}, openStreams),
		EventsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_events_written_total", Help: "Durable events appended to user logs by this node.",
		}),
		EventsReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_events_replayed_total", Help: "Durable events sent to streams from the log rather than live.",
		}),
		StreamCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_stream_closes_total", Help: "Streams closed, by reason.",
		}, []string{"reason"}),
		DeliveryDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_delivery_latency_seconds",
			Help:    "Time from an event's append to its write on a live stream.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_http_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"method", "route", "code"}),
		RequestTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parley_http_request_duration_seconds", Help: "HTTP request latency by route pattern (streams excluded).",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		CorruptRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_store_corrupt_runs_total", Help: "Log reads that failed on a stored run of events that does not decode.",
		}),
		WebhooksDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_webhooks_delivered_total", Help: "Webhooks accepted by the receiver (a 2xx), sent by this node.",
		}),
		WebhookAttemptsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_webhook_attempts_failed_total", Help: "Webhook attempts that got no 2xx within the timeout, by this node.",
		}),
		WebhookLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_webhook_delivery_latency_seconds",
			Help:    "Time from a webhook's commit to its acceptance by the receiver, retries included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 300, 1800, 7200, 86400},
		}),
		ConnsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_http_conns_refused_total", Help: "Connections refused because their client address held --max-conns-per-ip already.",
		}),
	}
	m.Registry.MustRegister(m.StreamsOpen, m.EventsWritten, m.EventsReplayed, m.StreamCloses, m.DeliveryDelay,
		m.Requests, m.RequestTime, m.CorruptRuns, m.ConnsRefused, m.WebhooksDelivered, m.WebhookAttemptsFailed, m.WebhookLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// WatchTail adds the gauge of events the embedded store holds in its tail,
// not yet merged into its tables (store.Tail): it should stay under
// a few hundred thousand and fall to 0 when the node is quiet.
func (m *Metrics) WatchTail(unmerged func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_store_tail_events", Help: "Events appended on the embedded database and not yet merged into its tables.",
	}, unmerged))
}

// WatchBus adds the gauge parley_bus_up: 1 while the bus to the other
// nodes answers, 0 during an outage (which /readyz does not show).
func (m *Metrics) WatchBus(up func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_bus_up", Help: "Whether the bus to the other nodes answers (1) or not (0), as last checked.",
	}, up))
}

// WatchStore adds the embedded store's health: the gauge
// parley_store_tail_full (1 while new events are refused because merges of
// the tail keep failing) and the counter parley_store_merge_failures_total.
func (m *Metrics) WatchStore(full func() bool, mergeFailures func() uint64) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_store_tail_full", Help: "1 while the embedded database refuses new events (503) because merging its tail keeps failing.",
		}, func() float64 {
			if full() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "parley_store_merge_failures_total", Help: "Merges of the embedded database's event tail that failed.",
		}, func() float64 { return float64(mergeFailures()) }),
	)
}

// WatchCommits adds the embedded store's group commits: the counters
// parley_store_commits_total (each one fsync) and
// parley_store_transactions_total (the requests they held), whose ratio
// says how well commits are shared.
func (m *Metrics) WatchCommits(counts func() (commits, transactions uint64)) {
	m.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "parley_store_commits_total", Help: "Group commits of the embedded database's writer (each one fsync).",
		}, func() float64 { c, _ := counts(); return float64(c) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "parley_store_transactions_total", Help: "Write transactions committed by the embedded database's group commits.",
		}, func() float64 { _, t := counts(); return float64(t) }),
	)
}

// WriteTimes is the embedded store's writer timings as two histograms:
// parley_store_write_wait_seconds, each write transaction's wait for its
// commit to start, and parley_store_commit_seconds, each group commit's
// time until its callers are answered (sqlite.DB.TimeWrites).
type WriteTimes struct{ wait, commit prometheus.Histogram }

// Waited observes a transaction's wait for the writer.
func (w WriteTimes) Waited(d time.Duration) { w.wait.Observe(d.Seconds()) }

// Committed observes a group commit's time.
func (w WriteTimes) Committed(d time.Duration) { w.commit.Observe(d.Seconds()) }

// TimeWrites registers the writer's histograms (WriteTimes).
func (m *Metrics) TimeWrites() WriteTimes {
	// 0.25 ms to 1 s: a commit's fsync is a fraction of a millisecond on
	// a quick disk, and the pace adds up to 8 ms of waiting.
	buckets := prometheus.ExponentialBuckets(.00025, 2, 13)
	w := WriteTimes{
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_store_write_wait_seconds", Buckets: buckets,
			Help: "Time a write transaction of the embedded database waited for its group commit to start.",
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_store_commit_seconds", Buckets: buckets,
			Help: "Time a group commit of the embedded database took, from its start to its callers' answers (fsync included).",
		}),
	}
	m.Registry.MustRegister(w.wait, w.commit)
	return w
}

// Replayed counts events sent from the log.
func (m *Metrics) Replayed(n int) { m.EventsReplayed.Add(float64(n)) }

// Closed counts a stream close.
func (m *Metrics) Closed(reason string) { m.StreamCloses.WithLabelValues(reason).Inc() }

// Delivered observes the append-to-write latency of a live event.
func (m *Metrics) Delivered(d time.Duration) { m.DeliveryDelay.Observe(d.Seconds()) }

// WatchWebhooks adds the gauges of the outbox: webhooks waiting for
// delivery (or retry) and webhooks that ran out of retries, across nodes.
// counts reads them from the database at each scrape.
func (m *Metrics) WatchWebhooks(counts func() (pending, failed float64)) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_webhooks_pending", Help: "Webhooks in the outbox waiting for delivery or a retry.",
	}, func() float64 { p, _ := counts(); return p }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_webhooks_failed", Help: "Webhooks that ran out of retries (GET /api/server/webhooks/failed).",
	}, func() float64 { _, f := counts(); return f }))
}
