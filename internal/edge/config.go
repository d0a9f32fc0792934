package edge

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config's zero fields.
const (
	// DefaultGrace is zero: an answer is usable until its nextUpdate and not
	// a second longer (RFC 5280 §6.3.3, RFC 6960 §3.2). pkid's OCSP
	// responses live for hours and its CRL for days, and the edge refreshes
	// both long before they expire, so a grace only matters when pkid has
	// been unreachable for that long; an operator who prefers availability
	// then may set one, knowingly.
	DefaultGrace = 0
	// DefaultClockSkew is how far in the future a thisUpdate may be
	// (SECURITY.md P6 tests +5 minutes of skew).
	DefaultClockSkew = 5 * time.Minute
	// DefaultOCSPTimeout bounds one OCSP exchange; a handshake waits at most
	// this long for the responder before the CRL answers.
	DefaultOCSPTimeout = 3 * time.Second
	// DefaultOCSPCacheMax caps how long a "good" answer is reused, whatever
	// its nextUpdate and max-age: it is how long a revocation can take to
	// reach the edge while the responder is up. One second keeps pkid's
	// promise that a revocation is enforced within seconds; it costs each
	// certificate in use one OCSP request per second, made in the
	// background, which pkid's pre-signed responder serves from memory
	// (tens of thousands per second per node). Raise it for very large
	// fleets, knowing that it delays revocation by as much.
	DefaultOCSPCacheMax = time.Second
	// DefaultOCSPRetry is how often a failing responder is probed again, in
	// the background, while the CRL answers.
	DefaultOCSPRetry = 5 * time.Second
	// DefaultCRLRefresh is the longest interval between two CRL fetches
	// (conditional GETs, usually answered 304).
	DefaultCRLRefresh = time.Minute
	// DefaultCRLTimeout bounds one CRL fetch.
	DefaultCRLTimeout = 15 * time.Second
	// DefaultCRLMaxBytes caps a CRL's size (a million entries is ~40 MB).
	DefaultCRLMaxBytes = 64 << 20
	// DefaultCacheEntries bounds the revocation cache.
	DefaultCacheEntries = 100_000
	// DefaultShutdownTimeout bounds the wait for requests in flight at
	// shutdown.
	DefaultShutdownTimeout = 30 * time.Second
)

// Config configures an Edge. CAFile, CertFile, KeyFile and Upstream are
// required; OCSPURL and CRLURL are required unless RevocationOff.
type Config struct {
	// Upstream is where verified requests go (http or https).
	Upstream *url.URL
	// CAFile is a PEM bundle: the root(s) client chains must end at, and
	// optionally intermediates (clients may also send theirs).
	CAFile string
	// CertFile and KeyFile are the edge's server certificate (PEM, chain
	// allowed) and its key.
	CertFile, KeyFile string
	// OCSPURL is the responder to POST to; CRLURL the CRL to fetch (DER or
	// PEM). For pkid: {pkid}/ocsp and {pkid}/crl.
	OCSPURL, CRLURL string
	// RevocationOff skips every revocation check. It exists for benchmarks
	// (the "checks off" baseline) and for an emergency in which the operator
	// decides to accept revoked certificates rather than none; it is never a
	// default, and the edge logs a warning at start.
	RevocationOff bool

	Grace           time.Duration // see DefaultGrace
	ClockSkew       time.Duration // see DefaultClockSkew
	OCSPTimeout     time.Duration // see DefaultOCSPTimeout
	OCSPCacheMax    time.Duration // see DefaultOCSPCacheMax
	OCSPRetry       time.Duration // see DefaultOCSPRetry
	CRLRefresh      time.Duration // see DefaultCRLRefresh
	CRLTimeout      time.Duration // see DefaultCRLTimeout
	CRLMaxBytes     int64         // see DefaultCRLMaxBytes
	CacheEntries    int           // see DefaultCacheEntries
	ShutdownTimeout time.Duration // see DefaultShutdownTimeout

	// Now is the clock for certificate validity and revocation freshness;
	// time.Now when nil. Tests pin it.
	Now func() time.Time
	// Logger receives the access log and events; slog.Default() when nil.
	Logger *slog.Logger
	// Registry receives the metrics; a new one (with Go and process
	// collectors) when nil. MetricsHandler serves it.
	Registry *prometheus.Registry
	// Transport carries OCSP and CRL requests; a clone of
	// http.DefaultTransport when nil.
	Transport http.RoundTripper
	// UpstreamTransport carries requests to the upstream; a clone of
	// http.DefaultTransport with room for many idle connections when nil.
	UpstreamTransport http.RoundTripper
}

// Validate reports the first problem of c, before defaults are applied.
func (c *Config) Validate() error {
	switch {
	case c.Upstream == nil || c.Upstream.Host == "" || (c.Upstream.Scheme != "http" && c.Upstream.Scheme != "https"):
		return errors.New("edge: the upstream must be an http or https URL")
	case c.CAFile == "":
		return errors.New("edge: no CA bundle (--ca)")
	case c.CertFile == "" || c.KeyFile == "":
		return errors.New("edge: no server certificate and key (--cert, --key)")
	}
	if !c.RevocationOff {
		for _, x := range []struct{ name, raw string }{{"OCSP responder (--ocsp)", c.OCSPURL}, {"CRL (--crl)", c.CRLURL}} {
			u, err := url.Parse(x.raw)
			if x.raw == "" || err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				return fmt.Errorf("edge: the %s must be an http or https URL", x.name)
			}
		}
	}
	for _, x := range []struct {
		name string
		d    time.Duration
	}{
		{"grace", c.Grace}, {"clock skew", c.ClockSkew}, {"OCSP timeout", c.OCSPTimeout}, {"OCSP cache max", c.OCSPCacheMax},
		{"OCSP retry", c.OCSPRetry}, {"CRL refresh", c.CRLRefresh}, {"CRL timeout", c.CRLTimeout}, {"shutdown timeout", c.ShutdownTimeout},
	} {
		if x.d < 0 {
			return fmt.Errorf("edge: the %s may not be negative", x.name)
		}
	}
	if c.CRLMaxBytes < 0 || c.CacheEntries < 0 {
		return errors.New("edge: sizes may not be negative")
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ClockSkew, DefaultClockSkew)
	def(&c.OCSPTimeout, DefaultOCSPTimeout)
	def(&c.OCSPCacheMax, DefaultOCSPCacheMax)
	def(&c.OCSPRetry, DefaultOCSPRetry)
	def(&c.CRLRefresh, DefaultCRLRefresh)
	def(&c.CRLTimeout, DefaultCRLTimeout)
	def(&c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.CRLMaxBytes == 0 {
		c.CRLMaxBytes = DefaultCRLMaxBytes
	}
	if c.CacheEntries == 0 {
		c.CacheEntries = DefaultCacheEntries
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = newRegistry()
	}
	if c.Transport == nil {
		c.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if c.UpstreamTransport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 512
		c.UpstreamTransport = t
	}
	return c
}
