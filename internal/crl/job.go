package crl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
)

// Audit actions of the CRL job.
const (
	// ActionSigned: a CRL was signed and published (detail: issuer, number,
	// entries, this_update, next_update).
	ActionSigned = "crl.signed"
	// ActionRefused: lint or the signer refused a CRL; nothing was
	// published (detail: issuer, number, error).
	ActionRefused = "crl.refused"
)

// Defaults of JobConfig.
const (
	DefaultInterval = time.Hour
	DefaultValidity = 24 * time.Hour
	DefaultDebounce = time.Second
	DefaultKeep     = 48
	DefaultPoll     = time.Minute
)

// Bounds on retrying a generation that failed.
const (
	minRetry = time.Second
	maxRetry = time.Minute
)

// JobConfig configures a Job. Zero fields take the defaults.
type JobConfig struct {
	// IDPURL is the CRL distribution point of the certificates the CRL
	// covers (issuance.CRLURL of the public URL), written as the CRL's
	// issuingDistributionPoint; "" for the root's CRL, which has none.
	IDPURL string
	// CA says the CRL covers CA certificates: the root's CRL.
	CA bool
	// Interval is the longest a CRL goes unsigned: the job signs one when
	// the newest is this old, revocation or not. Default 1 hour. It must
	// be at most half of Validity, so that a CRL is replaced well before
	// its nextUpdate even when one attempt fails.
	Interval time.Duration
	// Validity is nextUpdate - thisUpdate. Default 24 hours; lint allows
	// at most 10 days (12 months with CA).
	Validity time.Duration
	// Debounce is how long the job waits after a nudge for further nudges
	// to make the same CRL. Default 1 second.
	Debounce time.Duration
	// Keep is how many CRLs of the issuer the database keeps, the newest.
	// Default 48 (two days at the default interval, more with revocations);
	// each revocation nudge may sign one, and with a million entries one
	// weighs 45 MB. Negative: keep all.
	Keep int
	// Poll is how often the job checks whether a CRL is due (the interval
	// has passed, or a revocation is newer than the CRL because the node
	// that made it failed before its own job ran). Default 1 minute.
	Poll time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Log is where the job logs; discarded when nil.
	Log *slog.Logger
}

func (c JobConfig) withDefaults() JobConfig {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Validity <= 0 {
		c.Validity = DefaultValidity
	}
	if c.Debounce <= 0 {
		c.Debounce = DefaultDebounce
	}
	if c.Keep == 0 {
		c.Keep = DefaultKeep
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Job signs the CRLs of one issuer. Generate and Nudge are safe for
// concurrent use; Run drives it.
type Job struct {
	st     Store
	issuer func() *issuance.Issuer
	cache  *Cache
	linter *lint.Linter
	cfg    JobConfig
	nudge  chan struct{}
}

// NewJob returns the job for the issuer that issuer returns (asked afresh
// for every CRL, so that a rotated intermediate takes over), storing CRLs in
// st, installing each in cache (may be nil) and linting each with l. It
// fails when cfg is inconsistent.
func NewJob(st Store, issuer func() *issuance.Issuer, cache *Cache, l *lint.Linter, cfg JobConfig) (*Job, error) {
	cfg = cfg.withDefaults()
	switch {
	case st == nil || issuer == nil || l == nil:
		return nil, errors.New("crl: a job needs a store, an issuer and a linter")
	case cfg.Interval > cfg.Validity/2:
		return nil, fmt.Errorf("crl: interval %s is more than half the validity %s: a CRL could expire before the next one", cfg.Interval, cfg.Validity)
	case cfg.CA && cfg.IDPURL != "":
		return nil, errors.New("crl: the CRL of CA certificates carries no issuing distribution point")
	case !cfg.CA && cfg.IDPURL == "":
		return nil, errors.New("crl: the intermediate's CRL needs the certificates' distribution point as its IDP")
	}
	return &Job{st: st, issuer: issuer, cache: cache, linter: l, cfg: cfg, nudge: make(chan struct{}, 1)}, nil
}

// Nudge asks for a new CRL: the CA calls it once a revocation has
// committed. It never blocks; nudges that arrive while one is pending make
// one CRL.
func (j *Job) Nudge() {
	select {
	case j.nudge <- struct{}{}:
	default:
	}
}

// Run signs CRLs until ctx ends: at start and every Poll when one is due
// (see JobConfig.Poll), and after every nudge, once Debounce has passed. A
// generation that fails is retried with backoff (1 s doubling to a minute)
// until one succeeds; the CRL already published stays valid meanwhile,
// since Interval is at most half of Validity.
func (j *Job) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	forced := false // a nudge awaits its CRL
	retry := minRetry
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.nudge:
			forced = true
			// The coalescing window opens with the first nudge and is not
			// extended by later ones, so that a stream of revocations
			// cannot postpone the CRL.
			if !sleep(ctx, j.cfg.Debounce) {
				return
			}
			select {
			case <-j.nudge:
			default:
			}
		case <-timer.C:
		}
		var err error
		if forced {
			_, err = j.Generate(ctx)
		} else {
			_, err = j.GenerateIfDue(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		wait := j.cfg.Poll
		if err != nil {
			j.cfg.Log.Error("signing the CRL failed; will retry", "error", err, "retry_in", retry)
			wait, retry = retry, min(2*retry, maxRetry)
		} else {
			forced, retry = false, minRetry
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// GenerateIfDue signs a CRL when the issuer has none, when the newest is
// Interval old, or when a certificate was revoked after the newest CRL's
// thisUpdate; it returns the new CRL, or nil when none was due.
//
// The last condition catches a revocation whose node failed before its job
// ran. It does not catch a revocation stamped before a CRL's thisUpdate but
// committed after that CRL read the database: the nudge after that commit
// does, and if its node fails before acting on it, the next regular CRL
// (within Interval) lists it.
func (j *Job) GenerateIfDue(ctx context.Context) (*pki.CRL, error) {
	id := j.issuer().ID
	latest, err := j.st.LatestCRLInfo(ctx, id)
	switch {
	case errors.Is(err, pki.ErrNotFound):
		return j.Generate(ctx)
	case err != nil:
		return nil, err
	}
	if j.cfg.Now().Sub(latest.ThisUpdate) >= j.cfg.Interval {
		return j.Generate(ctx)
	}
	revoked, err := j.st.LatestRevocation(ctx, id)
	if err != nil {
		return nil, err
	}
	if revoked.After(latest.ThisUpdate) {
		return j.Generate(ctx)
	}
	return nil, nil
}

// Generate signs, stores and publishes the issuer's next CRL now, and
// installs it in the cache.
//
// thisUpdate is now, to the second, but never before the previous CRL's
// (L-08: a node whose clock is behind must not make a CRL that looks older
// than the one it replaces); nextUpdate is thisUpdate + Validity.
//
// The CRL lists every revoked certificate of the issuer, pending or issued,
// whose notAfter is at or after the previous CRL's thisUpdate (every one
// when there is no previous CRL). That is RFC 5280 §3.3's rule, "an entry
// MUST NOT be removed from the CRL until it appears on one regularly
// scheduled CRL issued beyond the revoked certificate's validity period",
// by induction: a certificate that expired before the previous CRL's
// thisUpdate was listed on the previous CRL (which listed every revoked
// certificate expiring at or after the one before it, and so on back to the
// first CRL, which listed all), and that CRL was issued after its expiry;
// so it may go. One whose notAfter is at or after that thisUpdate has not
// yet been listed on a CRL issued after its expiry (notAfter is part of
// the validity period: RFC 5280 §4.1.2.5), so it stays. The one
// certificate this does not list is one whose revocation committed after
// the previous CRL read the database although the certificate had expired
// before that CRL's thisUpdate: revocation refuses expired certificates, so
// it would take a revocation in flight across both the expiry and a CRL,
// and a relying party refuses that certificate for its expiry anyway.
//
// A revocation time after thisUpdate (a node whose clock is ahead) is
// written as thisUpdate: a CRL cannot speak of what happened after it was
// issued (RFC 5280 §5.1.2.6), and the earlier date is the cautious one. A
// leaf revoked for cACompromise, which no revocation path writes and the
// CA/B Forum BRs do not allow on a leaf CRL, is listed as keyCompromise
// rather than stopping every CRL. Lint or signing refusals are audited
// (ActionRefused) and publish nothing.
func (j *Job) Generate(ctx context.Context) (*pki.CRL, error) {
	is := j.issuer()
	start := time.Now()
	var made *pki.CRL
	var refused error
	var refusedNumber int64
	var reading, signing time.Duration
	err := j.st.GenerateCRL(ctx, is.ID, j.cfg.Keep, func(prev *pki.CRL, number int64, revoked func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
		thisUpdate := j.cfg.Now().UTC().Truncate(time.Second)
		var from time.Time
		if prev != nil {
			from = prev.ThisUpdate
			if p := prev.ThisUpdate.UTC().Truncate(time.Second); p.After(thisUpdate) {
				thisUpdate = p
			}
		}
		t0 := time.Now()
		entries, err := revoked(from)
		if err != nil {
			return nil, pki.AuditEvent{}, err
		}
		reading = time.Since(t0)
		for k := range entries {
			e := &entries[k]
			if e.RevokedAt.Truncate(time.Second).After(thisUpdate) {
				e.RevokedAt = thisUpdate
			}
			if e.Reason == pki.ReasonCACompromise && !j.cfg.CA {
				e.Reason = pki.ReasonKeyCompromise
			}
		}
		nextUpdate := thisUpdate.Add(j.cfg.Validity)
		t0 = time.Now()
		der, err := is.SignCRL(issuance.CRLTemplate{
			Number:     number,
			ThisUpdate: thisUpdate,
			NextUpdate: nextUpdate,
			Entries:    entries,
			IDPURL:     j.cfg.IDPURL,
			CA:         j.cfg.CA,
		}, j.linter)
		if err != nil {
			refused, refusedNumber = err, number
			return nil, pki.AuditEvent{}, err
		}
		signing = time.Since(t0)
		made = &pki.CRL{IssuerID: is.ID, Number: number, DER: der, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Entries: len(entries)}
		return made, pki.AuditEvent{
			Actor: "system", Action: ActionSigned, Outcome: pki.OutcomeSuccess,
			Detail: map[string]any{
				"issuer": is.ID, "number": number, "entries": len(entries),
				"this_update": thisUpdate, "next_update": nextUpdate,
			},
		}, nil
	})
	if err != nil {
		if refused != nil {
			j.auditRefusal(ctx, is.ID, refusedNumber, refused)
		}
		return nil, fmt.Errorf("crl: generating the CRL of %s: %w", is.ID, err)
	}
	if j.cache != nil {
		j.cache.Install(made)
	}
	took := time.Since(start)
	j.cfg.Log.Info("CRL signed", "issuer", is.ID, "number", made.Number, "entries", made.Entries,
		"bytes", len(made.DER), "took", took, "reading", reading, "signing", signing, "storing", took-reading-signing)
	return made, nil
}

// auditRefusal records a CRL that lint or the signer refused. A failure to
// record it is logged: the generation has failed already, and says so.
func (j *Job) auditRefusal(ctx context.Context, issuerID string, number int64, refusal error) {
	ev := pki.AuditEvent{
		Actor: "system", Action: ActionRefused, Outcome: pki.OutcomeFailure,
		Detail: map[string]any{"issuer": issuerID, "number": number, "error": refusal.Error()},
	}
	if err := j.st.RecordAudit(ctx, ev); err != nil {
		j.cfg.Log.Error("auditing a refused CRL failed", "error", err, "refusal", refusal)
	}
}

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
