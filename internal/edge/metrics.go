package edge

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are pkid-edge's Prometheus series. Label values are fixed sets,
// never taken from a client.
type metrics struct {
	// handshakes by result: ok, no_certificate, untrusted, expired,
	// invalid, no_account, revoked, unknown, unavailable.
	handshakes *prometheus.CounterVec
	// checks: revocation decisions by source (ocsp, crl, cache, none) and
	// result (good, revoked, unknown, unavailable), at handshakes and
	// requests.
	checks        *prometheus.CounterVec
	cacheHits     prometheus.Counter
	cacheMisses   prometheus.Counter
	ocspExchanges *prometheus.CounterVec // by result: good, revoked, unknown, unauthorized, error
	ocspDuration  prometheus.Histogram
	crlFetches    *prometheus.CounterVec // by result: ok, not_modified, rejected, error
	crlNumber     prometheus.Gauge
	crlNextUpdate prometheus.Gauge
	requests      *prometheus.CounterVec // by HTTP status code
	upstream      *prometheus.HistogramVec
	reloads       *prometheus.CounterVec // by result: ok, error
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns = "pkid_edge"
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "handshakes_total",
			Help: "TLS client verifications by result (ok, no_certificate, untrusted, expired, invalid, no_account, revoked, unknown, unavailable).",
		}, []string{"result"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "revocation_checks_total",
			Help: "Revocation decisions, at handshakes and requests, by source (ocsp, crl, cache, none) and result (good, revoked, unknown, unavailable).",
		}, []string{"source", "result"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "ocsp_cache_hits_total",
			Help: "Revocation checks answered from the cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "ocsp_cache_misses_total",
			Help: "Revocation checks the cache could not answer.",
		}),
		ocspExchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "ocsp_requests_total",
			Help: "Requests to the OCSP responder by result (good, revoked, unknown, unauthorized, error).",
		}, []string{"result"}),
		ocspDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "ocsp_request_duration_seconds",
			Help: "Time to ask the OCSP responder and verify its answer.", Buckets: latency,
		}),
		crlFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "crl_fetches_total",
			Help: "CRL fetches by result (ok, not_modified, rejected, error).",
		}, []string{"result"}),
		crlNumber: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "crl_number",
			Help: "CRL number of the CRL held.",
		}),
		crlNextUpdate: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "crl_next_update_timestamp_seconds",
			Help: "nextUpdate of the CRL held, Unix seconds: alert well before it passes.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "requests_total",
			Help: "HTTP requests by status code.",
		}, []string{"code"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "upstream_duration_seconds",
			Help: "Time from forwarding a request to the upstream's response headers, by status code (error: no response).", Buckets: latency,
		}, []string{"code"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "reloads_total",
			Help: "Reloads of --ca, --cert and --key (SIGHUP) by result (ok, error).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.handshakes, m.checks, m.cacheHits, m.cacheMisses, m.ocspExchanges, m.ocspDuration,
		m.crlFetches, m.crlNumber, m.crlNextUpdate, m.requests, m.upstream, m.reloads)
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	return m
}

// newRegistry is a registry with the Go runtime and process collectors, for
// an edge whose caller gave none.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
