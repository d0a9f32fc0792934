package ocsp

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
)

// ResignerOptions tunes a Resigner. Zero fields take the defaults given.
type ResignerOptions struct {
	// Validity is nextUpdate - thisUpdate of the responses it signs (plus
	// the one second of Boulder's convention, see issuance.OCSPWindow).
	// The CA/B Forum BRs (4.9.9) want 8 hours to 10 days; more than 10
	// days is refused. Default 24h.
	Validity time.Duration
	// Interval is how often it looks for responses to re-sign. Default 1m.
	Interval time.Duration
	// BatchSize is how many responses one transaction re-signs. Default 500.
	BatchSize int
	Now       func() time.Time // the clock; time.Now when nil
	Log       *slog.Logger     // discarded when nil
}

// MaxResponseValidity is the longest validity a Resigner signs with: BR
// 4.9.9's ten days.
const MaxResponseValidity = 10 * 24 * time.Hour

// Resigner re-signs stored responses before they expire: every Interval it
// picks the responses whose nextUpdate is less than half the validity away,
// re-signs them from the certificate's current status (good, or revoked
// with the date and reason of the certificates table) and writes them back
// unless someone replaced them meanwhile. Several nodes may run one on the
// same database: each batch locks its rows and skips those another node
// holds (SELECT ... FOR UPDATE SKIP LOCKED).
//
// Responses of expired certificates are left alone (RFC 5019 §2.2.3 lets a
// responder stop answering for them): their last response expires on its
// own, and the responder answers unauthorized from then on. Once both have
// expired the row is deleted, so that the queries stay proportional to the
// certificates still answered for, not to history.
//
// Re-signed responses are installed in this node's cache at once; other
// nodes pick them up at their next catch-up, a few seconds later, while the
// response they hold is still valid for half its lifetime. Re-signing sends
// no notification: at a million certificates it would be a steady stream
// of reloads for nothing.
type Resigner struct {
	st      ResignStore
	cache   *Cache
	issuers func() []*x509.Certificate
	signer  func(issuerID string) *issuance.Issuer
	opts    ResignerOptions
}

// NewResigner returns a Resigner that reads and writes st, installs what it
// writes in cache (which may be nil), and signs the responses of each of
// issuers() with signer(its ID), the delegated responder that issuer
// certified (an issuer whose signer it did not certify is skipped). It fails when opts.Validity is over
// MaxResponseValidity or BatchSize over 10,000.
func NewResigner(st ResignStore, cache *Cache, issuers func() []*x509.Certificate, signer func(issuerID string) *issuance.Issuer, opts ResignerOptions) (*Resigner, error) {
	if opts.Validity == 0 {
		opts.Validity = 24 * time.Hour
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 500
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case opts.Validity <= time.Minute || opts.Validity > MaxResponseValidity:
		return nil, fmt.Errorf("ocsp: response validity %s is outside (1m, %s]", opts.Validity, MaxResponseValidity)
	case opts.BatchSize < 0 || opts.BatchSize > 10000:
		return nil, fmt.Errorf("ocsp: re-signing batch size %d is outside [1, 10000]", opts.BatchSize)
	}
	if opts.Validity < 8*time.Hour {
		opts.Log.Warn("OCSP responses valid for less than the 8 hours that CA/B Forum BR 4.9.9 requires", "validity", opts.Validity)
	}
	return &Resigner{st: st, cache: cache, issuers: issuers, signer: signer, opts: opts}, nil
}

// Run re-signs what is due every Interval until ctx ends, starting at once.
// Failures are logged and retried at the next interval.
func (r *Resigner) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		start := time.Now()
		n, err := r.ResignDue(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.opts.Log.Error("re-signing OCSP responses failed; will retry", "error", err, "resigned", n)
		case n > 0:
			r.opts.Log.Info("re-signed OCSP responses", "count", n, "duration", time.Since(start))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// purgeBatch is how many expired responses one statement deletes.
const purgeBatch = 5000

// ErrNoResponder: no issuer has certified the current delegated responder,
// so nothing can be re-signed.
var ErrNoResponder = errors.New("ocsp: the delegated OCSP responder is certified by none of the issuers")

// ResignDue re-signs, batch after batch, every response that is due now,
// and returns how many it wrote.
func (r *Resigner) ResignDue(ctx context.Context) (int, error) {
	now := r.opts.Now()
	rs, ids, err := currentResponders(r.issuers, r.signer)
	if err != nil {
		return 0, err
	}
	due := now.Add(r.opts.Validity / 2)
	this, next := issuance.OCSPWindow(now, r.opts.Validity)
	sign := func(c *pki.Certificate, old *pki.OCSPResponse) (*pki.OCSPResponse, error) {
		return rs.sign(c, old.IssuerID, this, next)
	}

	for {
		n, err := r.st.PurgeOCSP(ctx, now, purgeBatch)
		if err != nil {
			return 0, fmt.Errorf("ocsp: purging expired responses: %w", err)
		}
		if n < purgeBatch {
			break
		}
	}

	total := 0
	for {
		written, selected, err := r.st.ResignOCSP(ctx, due, now, ids, r.opts.BatchSize, sign)
		if err != nil {
			return total, fmt.Errorf("ocsp: re-signing: %w", err)
		}
		if r.cache != nil {
			r.cache.Install(written...)
		}
		total += len(written)
		// A short batch was the last; a batch that wrote nothing made no
		// progress, and asking again would select the same rows.
		if selected < r.opts.BatchSize || len(written) == 0 {
			return total, nil
		}
	}
}
