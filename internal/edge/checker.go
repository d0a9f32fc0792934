package edge

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// Status is what a revocation source says about a certificate.
type Status int

const (
	StatusGood Status = iota + 1
	StatusRevoked
	// StatusUnknown: the OCSP responder answered "unknown": it does not
	// vouch for the certificate.
	StatusUnknown
)

func (s Status) String() string {
	switch s {
	case StatusGood:
		return "good"
	case StatusRevoked:
		return "revoked"
	case StatusUnknown:
		return "unknown"
	}
	return "invalid"
}

// Source says where an answer came from; it labels metrics.
type Source string

const (
	SourceOCSP  Source = "ocsp"  // a live exchange with the responder
	SourceCRL   Source = "crl"   // the CRL held
	SourceCache Source = "cache" // an earlier answer, still fresh
)

// Answer is a verified revocation answer about one certificate.
type Answer struct {
	Status     Status
	Source     Source
	ThisUpdate time.Time
	NextUpdate time.Time
	RevokedAt  time.Time            // when Status is StatusRevoked
	Reason     pki.RevocationReason // when Status is StatusRevoked
}

// Refusals of a revocation check. Callers test them with errors.Is.
var (
	// ErrRevoked: a source the edge trusts says the certificate is revoked.
	ErrRevoked = errors.New("edge: certificate revoked")
	// ErrUnknownCertificate: the CA's responder does not vouch for the
	// certificate (status unknown, or the unauthorized error).
	ErrUnknownCertificate = errors.New("edge: the CA does not vouch for the certificate")
	// ErrNoFreshAnswer: neither OCSP nor the CRL gives an answer that is
	// fresh within the grace period. The edge fails closed; it wraps
	// pki.ErrUnavailable.
	ErrNoFreshAnswer = fmt.Errorf("edge: no fresh revocation answer from OCSP or the CRL: %w", pki.ErrUnavailable)
)

// checker decides whether a verified certificate is revoked: OCSP first,
// with a cache and one exchange per certificate in flight; the CRL when
// OCSP cannot answer; "revoked" wins over "good"; no fresh answer, no
// entry.
type checker struct {
	ocsp     *ocspClient
	crl      *crlSet
	cache    *cache
	flight   flight
	now      func() time.Time
	grace    time.Duration
	skew     time.Duration
	cacheMax time.Duration
	timeout  time.Duration
	retry    time.Duration
	log      *slog.Logger
	m        *metrics

	// ocspFailing is set by a failed exchange and cleared by a successful
	// one. While it is set, the CRL (or a cached answer within the grace)
	// answers first and the responder is probed in the background, at most
	// once per retry period (nextProbe, Unix nanoseconds on the edge's
	// clock), so that no handshake waits for a dead or black-holed
	// responder while something else can answer.
	ocspFailing atomic.Bool
	nextProbe   atomic.Int64
}

// check returns nil when leaf (issued by issuer, both from a verified
// chain) may be accepted, and otherwise an error wrapping ErrRevoked,
// ErrUnknownCertificate or ErrNoFreshAnswer.
func (c *checker) check(ctx context.Context, leaf, issuer *x509.Certificate) (Answer, error) {
	a, err := c.answer(ctx, keyOf(leaf), leaf, issuer)
	return a, c.decide(a, err)
}

// checkKnown is check for a certificate whose issuer the cache remembers:
// the per-request path, which has the leaf but not the verified chain. ok
// is false when the cache has no entry for k; the caller must then verify
// the chain and call check.
func (c *checker) checkKnown(ctx context.Context, k certKey) (Answer, bool, error) {
	e := c.cache.get(k)
	if e == nil {
		return Answer{}, false, nil
	}
	a, err := c.answer(ctx, k, e.leaf, e.issuer)
	return a, true, c.decide(a, err)
}

// decide turns an answer into the edge's verdict and counts it.
func (c *checker) decide(a Answer, err error) error {
	result := a.Status.String()
	switch {
	case errors.Is(err, ErrNoFreshAnswer):
		result = "unavailable"
	case errors.Is(err, ErrUnknownCertificate):
		result = "unknown"
	case err != nil:
		result = "unavailable"
		err = fmt.Errorf("%w (%v)", ErrNoFreshAnswer, err)
	case a.Status == StatusRevoked:
		err = fmt.Errorf("%w (%s, at %s, according to %s)", ErrRevoked, a.Reason, stamp(a.RevokedAt), a.Source)
	case a.Status == StatusUnknown:
		err = fmt.Errorf("%w (OCSP status unknown)", ErrUnknownCertificate)
	case a.Status != StatusGood:
		err = ErrNoFreshAnswer
	}
	source := string(a.Source)
	if source == "" {
		source = "none"
	}
	c.m.checks.WithLabelValues(source, result).Inc()
	return err
}

// answer finds the freshest trustworthy answer about leaf.
func (c *checker) answer(ctx context.Context, k certKey, leaf, issuer *x509.Certificate) (Answer, error) {
	now := c.now()
	if e := c.cache.get(k); e != nil && e.fresh(now) {
		c.m.cacheHits.Inc()
		if e.ageing(now) && !c.ocspFailing.Load() {
			c.flight.start(k, c.fetch(k, e.leaf, e.issuer))
		}
		a := e.ans
		a.Source = SourceCache
		return a, nil
	}
	c.m.cacheMisses.Inc()
	// A CRL waiting for its issuer is verified as soon as a chain shows it,
	// not at the first outage.
	c.crl.learn(leaf, issuer)
	if c.ocspFailing.Load() {
		if a, ok := c.fallback(k, leaf, issuer, now); ok {
			if p := c.nextProbe.Load(); now.UnixNano() >= p && c.nextProbe.CompareAndSwap(p, now.Add(c.retry).UnixNano()) {
				c.flight.start(k, c.fetch(k, leaf, issuer))
			}
			return a, nil
		}
		// Nothing else answers: the responder may be back.
	}
	if a, done, err := c.live(ctx, k, leaf, issuer); done {
		return a, err
	}
	if a, ok := c.fallback(k, leaf, issuer, c.now()); ok {
		return a, nil
	}
	return Answer{}, ErrNoFreshAnswer
}

// live asks the responder, sharing the exchange with concurrent callers.
// done is false when the responder gave no usable answer and the caller
// should fall back.
func (c *checker) live(ctx context.Context, k certKey, leaf, issuer *x509.Certificate) (a Answer, done bool, err error) {
	a, err = c.flight.start(k, c.fetch(k, leaf, issuer)).wait(ctx)
	switch {
	case err == nil:
		return a, true, nil
	case errors.Is(err, errOCSPUnauthorized):
		return Answer{Source: SourceOCSP}, true, fmt.Errorf("%w (OCSP unauthorized)", ErrUnknownCertificate)
	case ctx.Err() != nil:
		return Answer{}, true, err
	}
	return Answer{}, false, nil
}

// fetch returns the exchange that asks the responder about leaf and caches
// the verified answer until the soonest of its nextUpdate, the HTTP max-age
// and the cache cap; a revocation until the certificate expires.
func (c *checker) fetch(k certKey, leaf, issuer *x509.Certificate) func() (Answer, error) {
	return func() (Answer, error) {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		now := c.now()
		start := time.Now()
		oa, err := c.ocsp.query(ctx, leaf, issuer, now)
		c.m.ocspDuration.Observe(time.Since(start).Seconds())
		switch {
		case errors.Is(err, errOCSPUnauthorized):
			c.m.ocspExchanges.WithLabelValues("unauthorized").Inc()
			return Answer{}, err
		case err != nil:
			c.m.ocspExchanges.WithLabelValues("error").Inc()
			c.nextProbe.Store(now.Add(c.retry).UnixNano())
			c.ocspFailing.Store(true)
			c.log.Warn("edge: OCSP exchange failed; the CRL answers meanwhile", "err", err,
				"serial", pki.SerialFromBig(leaf.SerialNumber).String())
			return Answer{}, err
		}
		c.m.ocspExchanges.WithLabelValues(oa.Status.String()).Inc()
		c.ocspFailing.Store(false)
		refresh := earliest(oa.NextUpdate, now.Add(c.cacheMax))
		if oa.hasMaxAge {
			refresh = earliest(refresh, now.Add(oa.maxAge))
		}
		if oa.Status == StatusRevoked {
			refresh = leaf.NotAfter
		}
		c.cache.put(k, &entry{ans: oa.Answer, fetchedAt: now, refreshAt: refresh, leaf: leaf, issuer: issuer}, now)
		return oa.Answer, nil
	}
}

// fallback answers when the responder cannot: from the CRL if it is usable,
// and from the last OCSP answer if it is within nextUpdate plus the grace.
// A revocation or an "unknown" from either wins over "good". A revocation
// learnt from the CRL is cached like one from OCSP: it is final.
func (c *checker) fallback(k certKey, leaf, issuer *x509.Certificate, now time.Time) (Answer, bool) {
	crlA, crlOK := c.crl.lookup(leaf, issuer, now)
	var cached Answer
	e := c.cache.get(k)
	cachedOK := e != nil && !now.Before(e.ans.ThisUpdate.Add(-c.skew)) &&
		(e.ans.Status == StatusRevoked || now.Before(e.ans.NextUpdate.Add(c.grace)))
	if cachedOK {
		cached = e.ans
		cached.Source = SourceCache
	}
	switch {
	case crlOK && crlA.Status == StatusRevoked:
		c.cache.put(k, &entry{ans: crlA, fetchedAt: now, refreshAt: leaf.NotAfter, leaf: leaf, issuer: issuer}, now)
		return crlA, true
	case cachedOK && cached.Status != StatusGood:
		return cached, true
	case crlOK:
		return crlA, true
	case cachedOK:
		return cached, true
	}
	return Answer{}, false
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
