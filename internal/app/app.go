// Package app is pkid's composition root: it builds every part of a running
// CA (store, hierarchy, use cases, API, metrics, background jobs) from a
// configuration. `pkid serve` runs it; integration tests and the load
// benchmark build the very same thing, so what they measure is what ships.
package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/pkid/pkid/internal/account"
	"github.com/pkid/pkid/internal/api"
	"github.com/pkid/pkid/internal/audit"
	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/clientip"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/crl"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/ocsp"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/policy"
	"github.com/pkid/pkid/internal/ratelimit"
	"github.com/pkid/pkid/internal/server"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/web"
	"github.com/pkid/pkid/internal/webhook"
)

// App is a running pkid node, minus its listeners.
type App struct {
	Config    config.Config
	DB        *store.DB
	Keys      *keystore.Store // where the CA keys are: sealed, or on a PKCS#11 token
	Hierarchy *ca.Hierarchy
	Certs     *ca.Service
	Accounts  *account.Service
	Tokens    *auth.Tokens
	Linter    *lint.Linter
	Metrics   *server.Metrics
	Handler   http.Handler
	Log       *slog.Logger
	OCSP      *ocsp.Cache // this node's pre-signed OCSP responses
	CRLs      *crl.Cache  // this node's copy of the current CRLs
	crlJobs   *crlJobs    // sign the live intermediates' CRLs
	resigner  *ocsp.Resigner
	now       func() time.Time
	// AuditLinker links the audit trail's hash chain (one node at a time).
	AuditLinker *audit.Linker
	// Webhooks configures expiry notifications; WebhookJob sends them.
	Webhooks   *webhook.Service
	WebhookJob *webhook.Job
}

// publisher passes the CA's committed status changes to this node's OCSP
// cache and to the CRL job of the issuer concerned.
type publisher struct {
	ocsp *ocsp.Cache
	crl  *crlJobs
}

func (p publisher) PublishOCSP(resps ...*pki.OCSPResponse) { p.ocsp.Install(resps...) }
func (p publisher) RevocationCommitted(issuerID string)    { p.crl.nudge(issuerID) }

// Options adjust an App for tests and benchmarks.
type Options struct {
	Now         func() time.Time // the clock; time.Now when nil
	DisableLint bool             // benchmarks only: measures what linting costs
	SkipMigrate bool
	CAObserver  ca.Observer // in addition to the Prometheus metrics
	MaxDBConns  int32
	// WebhookRootCAs verifies webhook receivers' certificates instead of
	// the system's roots (tests serve receivers with their own CA).
	WebhookRootCAs *x509.CertPool
}

// OpenKeys opens the key store that cfg describes: the PKCS#11 token named
// by cfg.PKCS11* (logging in with the PIN read from cfg.PKCS11PINFile) when
// one is configured, the root's own token when cfg.PKCS11RootToken names
// one, and cfg.KeyPassphrase. init is set by `pkid init`
// only, which may create the token's sealing key. Close the result.
func OpenKeys(cfg config.Config, init bool) (*keystore.Store, error) {
	kc := keystore.Config{Passphrase: cfg.KeyPassphrase, Init: init}
	if cfg.HSM() {
		pin, err := keystore.ReadPIN(cfg.PKCS11PINFile)
		if err != nil {
			return nil, err
		}
		kc.PKCS11 = keystore.PKCS11{Module: cfg.PKCS11Module, Token: cfg.PKCS11Token, PIN: pin}
		if cfg.PKCS11RootToken != "" {
			rootPIN, err := keystore.ReadPIN(cfg.PKCS11RootPINFile)
			if err != nil {
				return nil, err
			}
			kc.PKCS11.RootToken, kc.PKCS11.RootPIN = cfg.PKCS11RootToken, rootPIN
		}
	}
	return keystore.Open(kc)
}

// New opens the database (migrating first when cfg.AutoMigrate is set) and
// the key store (OpenKeys), loads the CA hierarchy and the token keys, and
// assembles the HTTP handler. It fails when `pkid init` has not run, the
// passphrase is wrong, the PKCS#11 token cannot be opened, or a CA
// certificate pkid needs has expired.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts Options) (*App, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if cfg.AutoMigrate && !opts.SkipMigrate {
		if err := store.Migrate(ctx, cfg.DatabaseURL, log); err != nil {
			return nil, fmt.Errorf("migrating: %w", err)
		}
	}
	var storeOpts []store.Option
	if opts.MaxDBConns > 0 {
		storeOpts = append(storeOpts, store.WithMaxConns(opts.MaxDBConns))
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, storeOpts...)
	if err != nil {
		return nil, err
	}
	keyStore, err := OpenKeys(cfg, false)
	if err != nil {
		db.Close()
		return nil, err
	}
	a, err := assemble(ctx, cfg, db, keyStore, log, now, opts)
	if err != nil {
		_ = keyStore.Close()
		db.Close()
		return nil, err
	}
	return a, nil
}

func assemble(ctx context.Context, cfg config.Config, db *store.DB, keyStore *keystore.Store, log *slog.Logger, now func() time.Time, opts Options) (*App, error) {
	hierarchy, err := ca.LoadHierarchy(ctx, db, keyStore, now())
	if err != nil {
		return nil, fmt.Errorf("loading the CA hierarchy: %w", err)
	}
	keys, err := auth.LoadKeys(ctx, db, keyStore.SealingSecret())
	if err != nil {
		return nil, fmt.Errorf("loading the token keys: %w", err)
	}
	linter := lint.Disabled()
	if !opts.DisableLint {
		if linter, err = lint.New(); err != nil {
			return nil, err
		}
	}
	metrics := server.NewMetrics()
	metrics.RegisterPool(func() server.PoolStats {
		s := db.Pool().Stat()
		return server.PoolStats{
			Total: s.TotalConns(), Idle: s.IdleConns(), InUse: s.AcquiredConns(), Max: s.MaxConns(),
			AcquireCount: s.AcquireCount(), AcquireWait: s.AcquireDuration(),
		}
	})
	metrics.RegisterCAExpiry(func() map[string]time.Time { return caNotAfter(hierarchy) })
	auditLinker := audit.NewLinker(db, audit.LinkerOptions{Log: log})
	metrics.RegisterAuditChain(auditLinker.Status)
	var observer ca.Observer = metrics
	if opts.CAObserver != nil {
		observer = observers{metrics, opts.CAObserver}
	}

	// Revocation status: the OCSP responder and its cache, the CRL job and
	// its cache. The CA tells both about every committed change.
	ocspCache := ocsp.NewCache(db, ocsp.CacheOptions{Now: now, Log: log,
		Issuers: hierarchy.Issuers, Signer: hierarchy.OCSPSignerFor, Validity: cfg.OCSPValidity})
	resigner, err := ocsp.NewResigner(db, ocspCache, hierarchy.Issuers, hierarchy.OCSPSignerFor,
		ocsp.ResignerOptions{Validity: cfg.OCSPValidity, Now: now, Log: log})
	if err != nil {
		return nil, err
	}
	crlCache := crl.NewCache(db, func() []string {
		ids := []string{hierarchy.RootID()}
		for _, in := range hierarchy.Intermediates() {
			ids = append(ids, in.Issuer.ID)
		}
		return ids
	}, crl.CacheOptions{Log: log})
	metrics.RegisterCRLExpiry(func() map[string]time.Time { return crlNextUpdate(hierarchy, crlCache) })
	jobs := newCRLJobs(db, crlCache, linter, cfg.PublicBase(),
		crl.JobConfig{Interval: cfg.CRLInterval, Validity: cfg.CRLValidity, Now: now, Log: log})
	if err := jobs.sync(hierarchy); err != nil {
		return nil, err
	}

	certs := ca.New(db, hierarchy, linter, ca.Options{
		PublicURL:       cfg.PublicBase(),
		DefaultValidity: cfg.DefaultValidity,
		MaxValidity:     cfg.MaxValidity,
		Backdate:        cfg.Backdate,
		Limits:          policy.DefaultLimits(),
		Now:             now,
		OCSPValidity:    cfg.OCSPValidity,
		Log:             log,
		Observer:        observer,
		Publisher:       publisher{ocsp: ocspCache, crl: jobs},
	})
	tokens := auth.NewTokens(keys, now)
	accounts := account.New(db, tokens, now)
	authn := auth.NewAuthenticator(tokens, db, now)

	webhooks, webhookJob, err := expiryNotices(cfg, db, keyStore.SealingSecret(), metrics, log, now, opts)
	if err != nil {
		return nil, err
	}

	a := &App{
		Config: cfg, DB: db, Keys: keyStore, Hierarchy: hierarchy, Certs: certs, Accounts: accounts,
		Tokens: tokens, Linter: linter, Metrics: metrics, Log: log,
		OCSP: ocspCache, CRLs: crlCache, crlJobs: jobs, resigner: resigner, AuditLinker: auditLinker, now: now,
		Webhooks: webhooks, WebhookJob: webhookJob,
	}
	// Who a client is, for the limits per client address: the peer, or
	// what a trusted proxy forwarded.
	clients := clientip.New(cfg.TrustedProxies)
	authFailures, err := ratelimit.New[netip.Prefix](cfg.UnauthenticatedLimit, cfg.UnauthenticatedClients, now)
	if err != nil {
		return nil, fmt.Errorf("the failed-authentication limit: %w", err)
	}
	metrics.RegisterRateLimitClients(authFailures.Len)

	jsonAPI := api.New(certs, accounts, authn, log)
	jsonAPI.ServeWebhooks(webhooks)
	jsonAPI.ObserveRateLimits(func() { metrics.RateLimited(server.LimiterAccountIssuance) })
	admin := web.New(certs, accounts, db, web.Options{Now: now, Log: log, ClientAddr: clients.Addr, Webhooks: webhooks,
		UserAttempts: cfg.LoginUserAttempts, AddressAttempts: cfg.LoginAddressAttempts, AttemptWindow: cfg.LoginWindow,
		Throttled: func() { metrics.RateLimited(server.LimiterLogin) }})
	jsonAPI.AcceptSessions(admin)
	deps := server.Deps{
		API:          jsonAPI,
		Metrics:      metrics,
		Log:          log,
		Ready:        a.Ready,
		Client:       clients.Addr,
		AuthFailures: server.AuthFailures{Limiter: authFailures, Client: clients.Addr},
	}
	responder := ocsp.NewResponder(ocspCache, hierarchy.Issuers, hierarchy.OCSPSignerFor, log, metrics)
	crlHandler := crl.NewHandler(crlCache, hierarchy.RootID, hierarchy.PlainCRLIssuer, now).
		ByGeneration(func(gen int) (string, bool) {
			if in := hierarchy.IntermediateByGeneration(gen); in != nil {
				return in.Issuer.ID, true
			}
			return "", false
		})
	deps.Quiet = append(deps.Quiet, server.QuietRoutes{Prefix: ocsp.Path, Handler: responder})
	deps.Mount = append(deps.Mount, crlHandler.Routes, admin.Mount)
	a.Handler = server.Handler(deps)
	return a, nil
}

// expiryNotices builds the webhook use cases and the job that sends expiry
// notices, sharing one keyring that seals webhook secrets under a key
// derived (once, on first use) from sealing, the key store's sealing secret:
// the passphrase, or the secret derived on the PKCS#11 token.
func expiryNotices(cfg config.Config, db *store.DB, sealing []byte, metrics *server.Metrics, log *slog.Logger, now func() time.Time, opts Options) (*webhook.Service, *webhook.Job, error) {
	keys := webhook.NewKeyring(db, sealing)
	policy := webhook.TargetPolicy{
		AllowPrivateNetworks: cfg.Webhook.AllowPrivateNetworks,
		AllowHTTPLocalhost:   cfg.Webhook.AllowHTTPLocalhost,
	}
	job, err := webhook.NewJob(db, keys, webhook.JobConfig{
		NotifyDays: cfg.Webhook.NotifyDays, MaxAttempts: cfg.Webhook.MaxAttempts, Timeout: cfg.Webhook.Timeout,
		Policy: policy, RootCAs: opts.WebhookRootCAs, Now: now, Log: log, Observer: metrics.RegisterWebhooks(),
	})
	if err != nil {
		return nil, nil, err
	}
	return webhook.NewService(db, keys, policy, cfg.Webhook.NotifyDays, now), job, nil
}

// Ready reports whether the node can serve: the database and the key store
// (the PKCS#11 token, when there is one) answer, the current issuing
// intermediate is within its validity, and so is the OCSP signer of every
// live intermediate.
func (a *App) Ready(ctx context.Context) error {
	if err := a.DB.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if err := a.Keys.Check(ctx); err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	now := time.Now()
	if end := a.Hierarchy.Intermediate().Cert.NotAfter; !now.Before(end) {
		return fmt.Errorf("%w: issuing intermediate expired at %s", ca.ErrExpired, end.UTC().Format(time.RFC3339))
	}
	for _, in := range a.Hierarchy.Intermediates() {
		if end := in.OCSPSigner().Cert.NotAfter; !now.Before(end) {
			return fmt.Errorf("%w: OCSP signer of intermediate generation %d expired at %s", ca.ErrExpired, in.Generation, end.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// RunJobs runs the node's background jobs until ctx ends: keeping the OCSP
// cache in step with the database (load, LISTEN, catch-up), re-signing OCSP
// responses ahead of expiry, one CRL job per live intermediate and the CRL
// cache, following the CA hierarchy (rotations made elsewhere), the hourly
// check that renews the delegated OCSP signers and retires superseded
// intermediates, the audit chain's linker, and the expiry notices.
func (a *App) RunJobs(ctx context.Context) {
	var wg sync.WaitGroup
	for _, run := range []func(context.Context){a.OCSP.Run, a.resigner.Run, a.CRLs.Run, a.crlJobs.run, a.watchHierarchy, a.renewOCSPSigner, a.AuditLinker.Run, a.WebhookJob.Run} {
		wg.Go(func() { run(ctx) })
	}
	wg.Wait()
}

// renewOCSPSigner checks hourly whether a delegated OCSP signer is due for
// renewal and renews it, and retires the superseded intermediates that are
// done.
func (a *App) renewOCSPSigner(ctx context.Context) {
	hc := issuance.HierarchyConfig{PublicURL: a.Config.PublicBase()}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	warned := map[string]time.Time{}
	lastExpiry := map[string]time.Time{}
	for {
		if err := a.retireIntermediates(ctx, lastExpiry); err != nil && ctx.Err() == nil {
			a.Log.Error("retiring superseded intermediates failed; will retry", "error", err)
		}
		renewed, err := a.Hierarchy.RenewOCSPSignerIfDue(ctx, a.DB, hc, a.Keys, a.Linter, time.Now())
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			a.Log.Error("renewing the OCSP signer failed; will retry", "error", err)
		case renewed:
			a.Log.Info("renewed the OCSP signer", "not_after", a.Hierarchy.OCSPSigner().Cert.NotAfter)
		}
		// After the renewal attempt, so that a signer renewed just now
		// raises no warning.
		a.warnCAExpiry(time.Now(), warned)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expiryWarning is how long before a CA certificate's notAfter pkid starts
// warning, in its log and through pkid_ca_certificate_expiry_seconds.
const expiryWarning = 30 * 24 * time.Hour

// caNotAfter returns the notAfter of each CA certificate the node depends
// on, by kind, as pkid_ca_certificate_expiry_seconds labels them: the
// current intermediate, and the OCSP signer that expires first (after a
// rotation every live intermediate has one, and each must stay valid).
func caNotAfter(h *ca.Hierarchy) map[string]time.Time {
	signer := h.OCSPSigner()
	for _, in := range h.Intermediates() {
		if s := in.OCSPSigner(); s.Cert.NotAfter.Before(signer.Cert.NotAfter) {
			signer = s
		}
	}
	return map[string]time.Time{
		"root":         h.Root().NotAfter,
		"intermediate": h.Intermediate().Cert.NotAfter,
		"ocsp":         signer.Cert.NotAfter,
	}
}

// crlNextUpdate returns the nextUpdate of each CRL that crls holds for h's
// root and live intermediates, by the label of pkid_crl_next_update_seconds.
func crlNextUpdate(h *ca.Hierarchy, crls *crl.Cache) map[string]time.Time {
	out := map[string]time.Time{}
	if c := crls.CRL(h.RootID()); c != nil {
		out["root"] = c.NextUpdate
	}
	for _, in := range h.Intermediates() {
		if c := crls.CRL(in.Issuer.ID); c != nil {
			out[fmt.Sprintf("intermediate-%d", in.Generation)] = c.NextUpdate
		}
	}
	return out
}

// warnCAExpiry logs a warning, at most once a day per kind (warned holds
// when each was last logged), for every CA certificate that expires within
// expiryWarning. The delegated OCSP signer is the exception: it lives 30
// days by default and serve renews it with a third of its life left, so it
// is always within 30 days; it is warned about only once that renewal is
// overdue, which means renewing is failing and responses will soon stop.
func (a *App) warnCAExpiry(now time.Time, warned map[string]time.Time) {
	ends := caNotAfter(a.Hierarchy)
	ocsp := a.Hierarchy.OCSPSigner().Cert
	for _, in := range a.Hierarchy.Intermediates() {
		if c := in.OCSPSigner().Cert; c.NotAfter.Equal(ends["ocsp"]) {
			ocsp = c
		}
	}
	for kind, end := range ends {
		left := end.Sub(now)
		due := left < expiryWarning
		if kind == "ocsp" {
			due = due && left <= ocsp.NotAfter.Sub(ocsp.NotBefore)/3
		}
		if !due || now.Sub(warned[kind]) < 24*time.Hour {
			continue
		}
		warned[kind] = now
		msg := "CA certificate expires soon"
		if left <= 0 {
			msg = "CA certificate has expired"
		}
		a.Log.Warn(msg, "kind", kind, "not_after", end.UTC().Format(time.RFC3339),
			"days_left", int(left.Hours()/24))
	}
}

// Close releases the database pool and the key store's sessions. Call it
// once the listeners and jobs have stopped: nothing may sign afterwards.
func (a *App) Close() {
	a.DB.Close()
	_ = a.Keys.Close()
}

type observers []ca.Observer

func (o observers) IssueStage(stage string, d time.Duration) {
	for _, x := range o {
		x.IssueStage(stage, d)
	}
}

func (o observers) IssueOutcome(outcome string, d time.Duration) {
	for _, x := range o {
		x.IssueOutcome(outcome, d)
	}
}
