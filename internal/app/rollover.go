package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/crl"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/store"
)

// ReloadInterval is how often a node reads the CA hierarchy again even
// without a notification: `pkid ca rotate` notifies every node (channel
// pkid_issuers), and the poll bounds how late a node that missed the
// notification (its LISTEN connection was down) takes in a rotation.
const ReloadInterval = 30 * time.Second

// crlJobs runs one CRL job per live intermediate: each intermediate signs
// its own CRL, with its own distribution point as the IDP, until it is
// retired. sync makes the set follow the hierarchy; run starts and stops
// the jobs to match.
type crlJobs struct {
	db     *store.DB
	cache  *crl.Cache
	linter *lint.Linter
	base   crl.JobConfig // IDPURL is set per intermediate
	public string        // the public URL the IDPs are made from

	mu      sync.Mutex
	jobs    map[string]*crlRun // by intermediate ID
	removed []*crlRun          // left the set; run stops them
	wake    chan struct{}      // sync changed the set
}

// crlRun is one intermediate's job, and how to stop it.
type crlRun struct {
	job  *crl.Job
	stop context.CancelFunc // nil until run starts it
}

func newCRLJobs(db *store.DB, cache *crl.Cache, l *lint.Linter, public string, base crl.JobConfig) *crlJobs {
	return &crlJobs{db: db, cache: cache, linter: l, public: public, base: base,
		jobs: map[string]*crlRun{}, wake: make(chan struct{}, 1)}
}

// sync makes a job for every live intermediate of h that has none and
// drops the jobs of intermediates no longer live; run carries it out.
func (c *crlJobs) sync(h *ca.Hierarchy) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	live := map[string]bool{}
	for _, in := range h.Intermediates() {
		live[in.Issuer.ID] = true
		if c.jobs[in.Issuer.ID] != nil {
			continue
		}
		cfg := c.base
		idp, err := issuance.CRLURLOf(c.public, in.Generation)
		if err != nil {
			return err
		}
		cfg.IDPURL = idp
		issuer := in.Issuer
		job, err := crl.NewJob(c.db, func() *issuance.Issuer { return issuer }, c.cache, c.linter, cfg)
		if err != nil {
			return err
		}
		c.jobs[issuer.ID] = &crlRun{job: job}
	}
	for id, run := range c.jobs {
		if !live[id] {
			c.removed = append(c.removed, run)
			delete(c.jobs, id)
		}
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// run runs the jobs until ctx ends, starting the ones sync adds and
// stopping the ones it drops.
func (c *crlJobs) run(ctx context.Context) {
	var wg sync.WaitGroup
	for {
		c.mu.Lock()
		for _, run := range c.jobs {
			if run.stop == nil {
				jctx, stop := context.WithCancel(ctx)
				run.stop = stop
				wg.Go(func() { run.job.Run(jctx) })
			}
		}
		for _, run := range c.removed {
			if run.stop != nil {
				run.stop()
			}
		}
		c.removed = nil
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-c.wake:
		}
	}
}

// nudge asks the job of issuerID for a CRL now (a revocation committed).
func (c *crlJobs) nudge(issuerID string) {
	if j := c.job(issuerID); j != nil {
		j.Nudge()
	}
}

// job returns the CRL job of the live intermediate issuerID, or nil.
func (c *crlJobs) job(issuerID string) *crl.Job {
	c.mu.Lock()
	defer c.mu.Unlock()
	if run := c.jobs[issuerID]; run != nil {
		return run.job
	}
	return nil
}

// CRLJob returns the CRL job of the live intermediate issuerID, or nil.
func (a *App) CRLJob(issuerID string) *crl.Job { return a.crlJobs.job(issuerID) }

// ReloadHierarchy reads the CA hierarchy again and, when it changed (a
// rotation, a retirement, an OCSP signer renewed elsewhere), starts and
// stops CRL jobs to match and loads the new intermediates' CRLs. RunJobs
// calls it on every notification and every ReloadInterval.
func (a *App) ReloadHierarchy(ctx context.Context) error {
	changed, err := a.Hierarchy.Reload(ctx, a.DB, a.Keys, a.now())
	if err != nil || !changed {
		return err
	}
	cur := a.Hierarchy.Current()
	a.Log.Info("CA hierarchy changed", "current_generation", cur.Generation,
		"current", cur.Issuer.Cert.Subject.String(), "live_intermediates", len(a.Hierarchy.Intermediates()))
	if err := a.crlJobs.sync(a.Hierarchy); err != nil {
		return err
	}
	return a.CRLs.Load(ctx)
}

// watchHierarchy reloads the hierarchy whenever pkid_issuers announces a
// change and every ReloadInterval, until ctx ends.
func (a *App) watchHierarchy(ctx context.Context) {
	notes := make(chan struct{}, 1)
	poke := func() {
		select {
		case notes <- struct{}{}:
		default:
		}
	}
	go func() {
		backoff := time.Second
		for ctx.Err() == nil {
			err := a.DB.ListenIssuers(ctx, poke, func(string) { poke() })
			if ctx.Err() != nil {
				return
			}
			a.Log.Warn("listening for CA hierarchy changes failed; polling meanwhile", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, ReloadInterval)
		}
	}()
	t := time.NewTicker(ReloadInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-notes:
		case <-t.C:
		}
		switch err := a.ReloadHierarchy(ctx); {
		case err != nil && ctx.Err() == nil && !failing:
			a.Log.Error("reloading the CA hierarchy failed; keeping the one loaded", "error", err)
			failing = true
		case err == nil && failing:
			a.Log.Info("reloading the CA hierarchy again")
			failing = false
		}
	}
}

// retireIntermediates retires the superseded intermediates whose
// certificates have all expired and whose final CRL is out (see
// ca.RetireIntermediates), remembering each one's last expiry once it can
// no longer change.
func (a *App) retireIntermediates(ctx context.Context, lastExpiry map[string]time.Time) error {
	now := a.now()
	last := func(ctx context.Context, id string) (time.Time, error) {
		if t, ok := lastExpiry[id]; ok {
			return t, nil
		}
		t, err := a.DB.LastCertificateExpiry(ctx, id)
		if err != nil {
			return t, err
		}
		// A node that has not reloaded since the rotation may still issue
		// from the superseded intermediate, for up to ReloadInterval.
		if in := a.Hierarchy.IntermediateByID(id); in != nil && now.Sub(in.Superseded) > 2*ReloadInterval {
			lastExpiry[id] = t
		}
		return t, nil
	}
	retired, err := ca.RetireIntermediates(ctx, a.DB, last, now)
	for _, id := range retired {
		a.Log.Info("retired a superseded intermediate: its certificates have all expired", "intermediate", id)
		delete(lastExpiry, id)
	}
	if len(retired) > 0 {
		err = errors.Join(err, a.ReloadHierarchy(ctx))
	}
	if err != nil {
		return fmt.Errorf("retiring intermediates: %w", err)
	}
	return nil
}
