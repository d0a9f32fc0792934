package server

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pkid/pkid/internal/pki"
)

// Metrics is pkid's Prometheus registry and the instruments the server and
// the use cases report to. It implements ca.Observer.
type Metrics struct {
	Registry *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	issuance     *prometheus.HistogramVec
	issueStage   *prometheus.HistogramVec
	ocsp         *prometheus.CounterVec
	rateLimited  *prometheus.CounterVec
}

// NewMetrics registers pkid's instruments, plus the Go runtime and process
// collectors, on a fresh registry.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pkid_http_requests_total", Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pkid_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		issuance: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pkid_issuance_duration_seconds", Help: "Certificate issuance latency by outcome (issued, refused, error); its count is the number of issuances.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"outcome"}),
		issueStage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pkid_issuance_stage_seconds", Help: "Time spent in each issuance stage (policy, parse, check, lint, record, sign, commit).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}, []string{"stage"}),
	}
	m.ocsp = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pkid_ocsp_responses_total", Help: "OCSP answers by status (good, revoked, unauthorized, malformed, tryLater) and source (memory; db; first: a certificate's first response, signed from its row; signed: the SHA-256 CertID form, signed on demand; none).",
	}, []string{"status", "source"})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pkid_rate_limited_total", Help: "Requests refused with 429 by limiter: unauthenticated (failed authentication per client address, this node), account_issuance (an account's issuances and renewals per hour), login (admin sign-in per username or address).",
	}, []string{"limiter"})
	for _, l := range []string{LimiterUnauthenticated, LimiterAccountIssuance, LimiterLogin} {
		m.rateLimited.WithLabelValues(l)
	}
	reg.MustRegister(m.httpRequests, m.httpDuration, m.issuance, m.issueStage, m.ocsp, m.rateLimited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// IssueStage implements ca.Observer.
func (m *Metrics) IssueStage(stage string, d time.Duration) {
	m.issueStage.WithLabelValues(stage).Observe(d.Seconds())
}

// IssueOutcome implements ca.Observer.
func (m *Metrics) IssueOutcome(outcome string, d time.Duration) {
	m.issuance.WithLabelValues(outcome).Observe(d.Seconds())
}

// OCSPAnswered implements ocsp.Metrics.
func (m *Metrics) OCSPAnswered(status, source string) {
	m.ocsp.WithLabelValues(status, source).Inc()
}

// RateLimited counts a request refused by the named limiter.
func (m *Metrics) RateLimited(limiter string) {
	m.rateLimited.WithLabelValues(limiter).Inc()
}

// RegisterRateLimitClients exports pkid_rate_limit_clients, how many client
// addresses the failed-authentication limiter remembers, read at scrape
// time: a rise shows many addresses failing at once.
func (m *Metrics) RegisterRateLimitClients(n func() int) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pkid_rate_limit_clients",
		Help: "Client addresses the failed-authentication limiter of this node remembers (bounded by PKID_UNAUTHENTICATED_LIMIT_CLIENTS).",
	}, func() float64 { return float64(n()) }))
}

// PoolStats is a snapshot of the database pool, in plain numbers so that the
// server needs no database driver.
type PoolStats struct {
	Total, Idle, InUse, Max int32
	AcquireCount            int64
	AcquireWait             time.Duration
}

// RegisterPool exports the database pool's statistics, read at scrape time.
func (m *Metrics) RegisterPool(stats func() PoolStats) {
	gauge := func(name, help string, f func(PoolStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(stats()) })
	}
	m.Registry.MustRegister(
		gauge("pkid_db_pool_connections", "Open database connections.", func(s PoolStats) float64 { return float64(s.Total) }),
		gauge("pkid_db_pool_idle_connections", "Idle database connections.", func(s PoolStats) float64 { return float64(s.Idle) }),
		gauge("pkid_db_pool_in_use_connections", "Database connections in use.", func(s PoolStats) float64 { return float64(s.InUse) }),
		gauge("pkid_db_pool_max_connections", "Maximum database connections.", func(s PoolStats) float64 { return float64(s.Max) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pkid_db_pool_acquires_total", Help: "Connections acquired from the pool."},
			func() float64 { return float64(stats().AcquireCount) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pkid_db_pool_acquire_wait_seconds_total", Help: "Time spent waiting for a pool connection."},
			func() float64 { return stats().AcquireWait.Seconds() }),
	)
}

// RegisterCAExpiry exports pkid_ca_certificate_expiry_seconds{kind}: for
// each CA certificate the node depends on ("root", "intermediate", "ocsp"),
// the seconds left until its notAfter, negative once it has passed. notAfter
// is called at scrape time, so a renewed OCSP signer shows at once. Seconds
// left rather than a timestamp, so that an alert needs no time():
// `pkid_ca_certificate_expiry_seconds{kind="intermediate"} < 30*86400`.
func (m *Metrics) RegisterCAExpiry(notAfter func() map[string]time.Time) {
	m.registerSecondsUntil("pkid_ca_certificate_expiry_seconds",
		"Seconds until the CA certificate of this kind (root, intermediate, ocsp) expires; negative once expired.",
		"kind", notAfter)
}

// RegisterCRLExpiry exports pkid_crl_next_update_seconds{issuer}: for each
// CA whose CRL this node serves ("root", "intermediate-<generation>"), the
// seconds left until that CRL's nextUpdate, negative once it has passed.
// A relying party that checks CRLs (nginx ssl_crl) refuses every client
// once the CRL it holds is past its nextUpdate, so this is the alert that
// the CRL job is failing: `pkid_crl_next_update_seconds < 3600`. An issuer
// whose CRL the node does not hold yet has no series.
func (m *Metrics) RegisterCRLExpiry(nextUpdate func() map[string]time.Time) {
	m.registerSecondsUntil("pkid_crl_next_update_seconds",
		"Seconds until the nextUpdate of the CRL this node serves for this issuer (root, intermediate-<generation>); negative once passed.",
		"issuer", nextUpdate)
}

// registerSecondsUntil exports name{label} as the seconds left until each
// time ends returns, at every scrape.
func (m *Metrics) registerSecondsUntil(name, help, label string, ends func() map[string]time.Time) {
	m.Registry.MustRegister(&secondsUntil{desc: prometheus.NewDesc(name, help, []string{label}, nil), ends: ends})
}

// secondsUntil is the collector behind RegisterCAExpiry and
// RegisterCRLExpiry: a gauge per label value of the seconds left until its
// time, read at each scrape (label values come from the hierarchy then, not
// from a fixed list). Seconds left rather than a timestamp, so that an
// alert needs no time().
type secondsUntil struct {
	desc *prometheus.Desc
	ends func() map[string]time.Time
}

func (c *secondsUntil) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *secondsUntil) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for label, end := range c.ends() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, end.Sub(now).Seconds(), label)
	}
}

// auditAnchorEvery is how often pkid_audit_chain_anchor_info moves to the
// current head.
const auditAnchorEvery = 10 * time.Minute

// RegisterAuditChain exports the audit chain's head, read at scrape time
// from head (ok false: not known yet, nothing is exported):
//
//	pkid_audit_chain_head_id                           the last event id the chain covers
//	pkid_audit_chain_unlinked_events                   committed events not linked yet (the lag)
//	pkid_audit_chain_anchor_info{id="…",hash="…"}      1: a recent head and its chain hash
//
// The anchor puts chain hashes into the monitoring system's history, outside
// the database, where whoever can rewrite the database cannot reach them:
// any of them is an anchor for `pkid audit verify --anchor ID:HASH`, which
// is what shows a rewrite of the whole chain. It moves to the current head
// at most every ten minutes, so that its labels make a few series a day
// rather than one per scrape.
func (m *Metrics) RegisterAuditChain(head func() (h pki.AuditChainHead, ok bool)) {
	m.Registry.MustRegister(&auditChain{
		headID: prometheus.NewDesc("pkid_audit_chain_head_id",
			"The last audit event id covered by the audit trail's hash chain.", nil, nil),
		unlinked: prometheus.NewDesc("pkid_audit_chain_unlinked_events",
			"Committed audit events that the hash chain does not cover yet.", nil, nil),
		anchor: prometheus.NewDesc("pkid_audit_chain_anchor_info",
			"Always 1: a recent head of the audit hash chain (id) and the chain hash there (hash), refreshed every 10 minutes; pass ID:HASH to pkid audit verify --anchor.",
			[]string{"id", "hash"}, nil),
		head: head,
	})
}

// auditChain is the collector behind RegisterAuditChain.
type auditChain struct {
	headID, unlinked, anchor *prometheus.Desc
	head                     func() (pki.AuditChainHead, bool)

	mu         sync.Mutex
	anchorID   string
	anchorHash string
	anchoredAt time.Time
}

func (c *auditChain) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.headID
	ch <- c.unlinked
	ch <- c.anchor
}

func (c *auditChain) Collect(ch chan<- prometheus.Metric) {
	h, ok := c.head()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.headID, prometheus.GaugeValue, float64(h.ID))
	ch <- prometheus.MustNewConstMetric(c.unlinked, prometheus.GaugeValue, float64(h.Unlinked))
	if h.ID == 0 {
		return // no link yet: nothing to anchor
	}
	c.mu.Lock()
	if c.anchorID == "" || time.Since(c.anchoredAt) >= auditAnchorEvery {
		c.anchorID, c.anchorHash, c.anchoredAt = strconv.FormatInt(h.ID, 10), hex.EncodeToString(h.Hash), time.Now()
	}
	id, hash := c.anchorID, c.anchorHash
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.anchor, prometheus.GaugeValue, 1, id, hash)
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// instrument counts and times every request by its chi route pattern (never
// the raw path, which would let clients create unbounded label values).
func (m *Metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		m.httpRequests.WithLabelValues(route, methodLabel(r.Method), strconv.Itoa(ww.Status())).Inc()
		m.httpDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// methodLabel is the method as a label value: the client chooses it, so
// anything but the methods of RFC 9110 is "other", or a client could create
// label values (and time series) without bound.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "other"
}

// instrumentRoute counts and times the requests of next, a handler with one
// route pattern, as instrument does, with the least work per request: the
// duration histogram is resolved once, counters are cached per method and
// status, and the writer that records the status is reused.
func (m *Metrics) instrumentRoute(route string, next http.Handler) http.Handler {
	duration := m.httpDuration.WithLabelValues(route)
	var counters sync.Map // routeKey -> prometheus.Counter
	writers := sync.Pool{New: func() any { return new(statusWriter) }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := writers.Get().(*statusWriter)
		sw.ResponseWriter, sw.status = w, 0
		next.ServeHTTP(sw, r)
		status := sw.status
		if status == 0 {
			status = http.StatusOK // nothing written: net/http sends 200
		}
		sw.ResponseWriter = nil
		writers.Put(sw)
		k := routeKey{methodLabel(r.Method), status}
		c, ok := counters.Load(k)
		if !ok {
			// Bounded: nine methods and "other" times the statuses the
			// handler writes.
			c, _ = counters.LoadOrStore(k, m.httpRequests.WithLabelValues(route, k.method, strconv.Itoa(status)))
		}
		c.(prometheus.Counter).Inc()
		duration.Observe(time.Since(start).Seconds())
	})
}

type routeKey struct {
	method string
	status int
}

// statusWriter records the status a handler writes. It exposes the
// underlying writer through Unwrap, for http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
