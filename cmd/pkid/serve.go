package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/pkid/pkid/internal/account"
	"github.com/pkid/pkid/internal/api"
	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/policy"
	"github.com/pkid/pkid/internal/server"
	"github.com/pkid/pkid/internal/store"
)

func cmdServe(ctx context.Context, env config.Getenv, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("pkid serve", flag.ContinueOnError)
	cfgEnv, err := config.FromEnv(env)
	if err != nil {
		return err
	}
	fs.StringVar(&cfgEnv.HTTPAddr, "http-addr", cfgEnv.HTTPAddr, "plain-HTTP listen address (env PKID_HTTP_ADDR)")
	fs.BoolVar(&cfgEnv.AutoMigrate, "migrate", cfgEnv.AutoMigrate, "apply migrations at start (env PKID_AUTO_MIGRATE)")
	cfg, err := loadConfigFrom(&cfgEnv, fs, args, true)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

	if cfg.AutoMigrate {
		if err := store.Migrate(ctx, cfg.DatabaseURL, log); err != nil {
			return fmt.Errorf("migrating: %w", err)
		}
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()

	now := time.Now()
	hierarchy, err := ca.LoadHierarchy(ctx, db, cfg.KeyPassphrase, now)
	if err != nil {
		return fmt.Errorf("loading the CA hierarchy: %w", err)
	}
	keys, err := auth.LoadKeys(ctx, db, cfg.KeyPassphrase)
	if err != nil {
		return fmt.Errorf("loading the token keys: %w", err)
	}
	linter, err := lint.New()
	if err != nil {
		return err
	}
	metrics := server.NewMetrics()
	metrics.RegisterPool(func() server.PoolStats {
		s := db.Pool().Stat()
		return server.PoolStats{
			Total: s.TotalConns(), Idle: s.IdleConns(), InUse: s.AcquiredConns(), Max: s.MaxConns(),
			AcquireCount: s.AcquireCount(), AcquireWait: s.AcquireDuration(),
		}
	})

	certs := ca.New(db, hierarchy, linter, ca.Options{
		PublicURL:       cfg.PublicBase(),
		DefaultValidity: cfg.DefaultValidity,
		MaxValidity:     cfg.MaxValidity,
		Backdate:        cfg.Backdate,
		Limits:          policy.DefaultLimits(),
		Log:             log,
		Observer:        metrics,
	})
	tokens := auth.NewTokens(keys, time.Now)
	accounts := account.New(db, tokens, time.Now)
	authn := auth.NewAuthenticator(tokens, db, time.Now)

	handler := server.Handler(server.Deps{
		API:     api.New(certs, accounts, authn, log),
		Metrics: metrics,
		Log:     log,
		Ready: func(ctx context.Context) error {
			if err := db.Ping(ctx); err != nil {
				return fmt.Errorf("database: %w", err)
			}
			return hierarchyUsable(hierarchy, time.Now())
		},
	})

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	log.Info("pkid serving", "http", ln.Addr().String(), "public_url", cfg.PublicBase(),
		"root_sha256", hierarchy.RootFingerprint(), "intermediate", hierarchy.Intermediate().Cert.Subject.String())

	hc := issuance.HierarchyConfig{PublicURL: cfg.PublicBase()}
	go renewOCSPSigner(ctx, hierarchy, db, hc, cfg.KeyPassphrase, linter, log)

	return server.Serve(ctx, server.NewHTTPServer(cfg.HTTPAddr, handler, log), ln)
}

// loadConfigFrom is loadConfig for a command that added flags bound to an
// already loaded configuration; flags are bound to *cfg.
func loadConfigFrom(cfg *config.Config, fs *flag.FlagSet, args []string, needPassphrase bool) (config.Config, error) {
	fs.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "Postgres URL (env DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return *cfg, errUsage
	}
	if fs.NArg() > 0 {
		return *cfg, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return *cfg, cfg.Validate(needPassphrase)
}

// hierarchyUsable fails readiness when the issuing intermediate or the OCSP
// signer has expired: pkid would then sign what nobody can verify.
func hierarchyUsable(h *ca.Hierarchy, now time.Time) error {
	if end := h.Intermediate().Cert.NotAfter; !now.Before(end) {
		return fmt.Errorf("%w: issuing intermediate expired at %s", ca.ErrExpired, end.UTC().Format(time.RFC3339))
	}
	if end := h.OCSPSigner().Cert.NotAfter; !now.Before(end) {
		return fmt.Errorf("%w: OCSP signer expired at %s", ca.ErrExpired, end.UTC().Format(time.RFC3339))
	}
	return nil
}

// renewOCSPSigner checks hourly whether the delegated OCSP signer is due for
// renewal and renews it; failures are logged and retried at the next tick.
func renewOCSPSigner(ctx context.Context, h *ca.Hierarchy, st ca.HierarchyStore, hc issuance.HierarchyConfig, pass []byte, l *lint.Linter, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		renewed, err := h.RenewOCSPSignerIfDue(ctx, st, hc, pass, l, time.Now())
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			log.Error("renewing the OCSP signer failed; will retry", "error", err)
		case renewed:
			log.Info("renewed the OCSP signer", "not_after", h.OCSPSigner().Cert.NotAfter)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
