package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Edge is the mTLS reverse proxy. Make one with New, serve with Run, and
// call Reload on SIGHUP.
type Edge struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	trust   atomic.Pointer[trust]
	checker *checker   // nil when revocation checking is off
	crl     *crlSource // --crl's; nil when revocation checking is off
	crls    *crlSet    // crl and the CA's other CRLs; nil when off
	handler http.Handler
	reload  sync.Mutex
}

// New checks cfg, loads the CA bundle and the server's certificate and key,
// and builds the edge. It does not listen or fetch anything yet: Run does.
func New(cfg Config) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	t, err := loadTrust(cfg.CAFile, cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	e := &Edge{cfg: cfg, log: cfg.Logger, m: newMetrics(cfg.Registry)}
	e.trust.Store(t)
	if !cfg.RevocationOff {
		crlClient := &http.Client{Transport: cfg.Transport, Timeout: cfg.CRLTimeout}
		source := func(u string) *crlSource {
			return &crlSource{
				url:      u,
				client:   crlClient,
				maxBytes: cfg.CRLMaxBytes,
				skew:     cfg.ClockSkew,
				grace:    cfg.Grace,
				now:      cfg.Now,
				log:      cfg.Logger,
				m:        e.m,
			}
		}
		e.crl = source(cfg.CRLURL)
		e.crls = newCRLSet(e.crl, source, cfg.CRLRefresh, cfg.CRLTimeout)
		e.crls.setBundle(t.bundle)
		e.checker = &checker{
			ocsp: &ocspClient{
				url:    cfg.OCSPURL,
				client: &http.Client{Transport: cfg.Transport, CheckRedirect: noRedirects},
				skew:   cfg.ClockSkew,
			},
			crl:      e.crls,
			cache:    newCache(cfg.CacheEntries),
			now:      cfg.Now,
			grace:    cfg.Grace,
			skew:     cfg.ClockSkew,
			cacheMax: cfg.OCSPCacheMax,
			timeout:  cfg.OCSPTimeout,
			retry:    cfg.OCSPRetry,
			log:      cfg.Logger,
			m:        e.m,
		}
	}
	e.handler = e.newHandler()
	return e, nil
}

// noRedirects keeps OCSP requests on the configured responder: a POST that
// follows a redirect would become a GET elsewhere.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Reload reads --ca, --cert and --key again and, if all three load, swaps
// them in at once for new handshakes. On error the edge keeps what it had
// and says why.
func (e *Edge) Reload() error {
	e.reload.Lock()
	defer e.reload.Unlock()
	t, err := loadTrust(e.cfg.CAFile, e.cfg.CertFile, e.cfg.KeyFile)
	if err != nil {
		e.m.reloads.WithLabelValues("error").Inc()
		e.log.Error("edge: reload failed; keeping the previous CA bundle, certificate and key", "err", err)
		return err
	}
	e.trust.Store(t)
	if e.crls != nil {
		e.crls.setBundle(t.bundle)
	}
	e.m.reloads.WithLabelValues("ok").Inc()
	e.log.Info("edge: reloaded the CA bundle, certificate and key",
		"roots", len(t.bundle)-len(t.intermediates), "intermediates", len(t.intermediates),
		"cert_not_after", stamp(t.cert.Leaf.NotAfter))
	return nil
}

// TLSConfig is the listener's configuration: TLS 1.2 and up (Go prefers
// 1.3), a client certificate requested, and every handshake, resumed ones
// included, verified by VerifyConnection against the trust current when it
// starts.
func (e *Edge) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return e.configFor(e.trust.Load()), nil
		},
	}
}

// configFor is the per-handshake configuration for trust t. The client
// certificate is requested but verified by VerifyConnection rather than by
// crypto/tls, which would take intermediates in --ca for roots and cannot
// check revocation; a handshake without one is refused there too, so that
// every refusal is counted and logged the same way.
func (e *Edge) configFor(t *trust) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		NextProtos:       []string{"h2", "http/1.1"},
		Certificates:     []tls.Certificate{t.cert},
		ClientAuth:       tls.RequestClientCert,
		ClientCAs:        t.roots, // the hint in the CertificateRequest
		Time:             e.cfg.Now,
		VerifyConnection: func(cs tls.ConnectionState) error { return e.verifyConnection(t, cs) },
	}
}

func (e *Edge) verifyConnection(t *trust, cs tls.ConnectionState) error {
	id, err := e.verifyPeer(context.Background(), t, cs.PeerCertificates)
	if err != nil {
		reason := ReasonInvalid
		var re *RefusalError
		if errors.As(err, &re) {
			reason = re.Reason
		}
		e.m.handshakes.WithLabelValues(reason).Inc()
		e.log.Info("edge: handshake refused", "reason", reason, "err", err.Error(),
			"account", id.Account, "serial", id.Serial.String(), "resumed", cs.DidResume)
		return err
	}
	e.m.handshakes.WithLabelValues("ok").Inc()
	return nil
}

// verifyPeer verifies a presented chain, reads the identity and checks
// revocation. The identity is returned with an error when the chain
// verified, for the log.
func (e *Edge) verifyPeer(ctx context.Context, t *trust, presented []*x509.Certificate) (Identity, error) {
	leaf, issuer, err := t.verify(presented, e.cfg.Now())
	if err != nil {
		return Identity{}, err
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return Identity{}, &RefusalError{ReasonNoAccount, err}
	}
	if e.checker != nil {
		if _, err := e.checker.check(ctx, leaf, issuer); err != nil {
			return id, revocationRefusal(err)
		}
	}
	return id, nil
}

// revocationRefusal labels a revocation error.
func revocationRefusal(err error) error {
	switch {
	case errors.Is(err, ErrRevoked):
		return &RefusalError{ReasonRevoked, err}
	case errors.Is(err, ErrUnknownCertificate):
		return &RefusalError{ReasonUnknown, err}
	}
	return &RefusalError{ReasonUnavailable, err}
}

// MetricsHandler serves the edge's metrics in the Prometheus text format.
func (e *Edge) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(e.cfg.Registry, promhttp.HandlerOpts{Registry: e.cfg.Registry})
}

// Run serves TLS on ln until ctx ends, then shuts down gracefully: it stops
// accepting, lets requests in flight finish (up to the shutdown timeout),
// and stops the CRL refresher. Before serving it fetches the CRL once
// (SECURITY.md L-12: load it at start-up); if that fails it says so and
// serves anyway, since OCSP may answer, and every certificate is refused
// while neither does.
func (e *Edge) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           e.handler,
		TLSConfig:         e.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(serverLog{e.log}, "", 0),
		ConnContext:       connContext,
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	if e.crl != nil {
		first, cancel := context.WithTimeout(bg, e.cfg.CRLTimeout)
		err := e.crl.refresh(first)
		cancel()
		if err != nil {
			e.log.Warn("edge: no CRL at start-up; OCSP alone answers until the CRL loads", "err", err)
		}
		wg.Go(func() { e.crl.run(bg, e.cfg.CRLRefresh, err) })
		e.crls.begin(func(f func(context.Context)) { wg.Go(func() { f(bg) }) })
	} else {
		e.log.Warn("edge: revocation checking is OFF: revoked certificates are accepted (for benchmarks and emergencies only)")
	}
	e.log.Info("edge: serving", "listen", ln.Addr().String(), "upstream", e.cfg.Upstream.Redacted(),
		"revocation", e.checker != nil, "grace", e.cfg.Grace.String(), "ocsp_cache_max", e.cfg.OCSPCacheMax.String())

	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
		e.log.Info("edge: shutting down", "timeout", e.cfg.ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), e.cfg.ShutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}
	stop()
	wg.Wait()
	if e.checker != nil {
		e.checker.flight.wg.Wait()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("edge: serving: %w", err)
	}
	return nil
}

// serverLog routes net/http's own messages into the structured log: failed
// handshakes (each refusal is also logged with its reason) at debug, the
// rest as warnings.
type serverLog struct{ log *slog.Logger }

func (s serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "edge: http server", "detail", msg)
	return len(p), nil
}
