package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/policy"
	"github.com/pkid/pkid/internal/server"
)

func cmdServe(ctx context.Context, env config.Getenv, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("pkid serve", flag.ContinueOnError)
	cfgEnv, err := config.FromEnv(env)
	if err != nil {
		return err
	}
	fs.StringVar(&cfgEnv.HTTPAddr, "http-addr", cfgEnv.HTTPAddr, "plain-HTTP listen address (env PKID_HTTP_ADDR)")
	fs.IntVar(&cfgEnv.DBMaxConns, "db-max-conns", cfgEnv.DBMaxConns, "cap on the database connection pool, besides the LISTEN connections (env PKID_DB_MAX_CONNS; default max(8, 4*GOMAXPROCS))")
	fs.BoolVar(&cfgEnv.AutoMigrate, "migrate", cfgEnv.AutoMigrate, "apply migrations at start (env PKID_AUTO_MIGRATE)")
	pkcs11Flags(fs, &cfgEnv)
	cfg, err := loadConfigFrom(&cfgEnv, fs, args, true)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	app.TuneRuntime(env)

	a, err := app.New(ctx, cfg, log, app.Options{MaxDBConns: int32(cfg.DBMaxConns)})
	if err != nil {
		return err
	}
	defer a.Close()

	// Every listener runs until ctx ends; the first to fail stops the rest.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	serving := []func() error{func() error {
		return server.Serve(ctx, server.NewHTTPServer(cfg.HTTPAddr, a.Handler, log), ln)
	}}
	if cfg.TLSAddr != "" {
		tl, err := a.NewTLSListener(ctx)
		if err != nil {
			return err
		}
		tln, err := net.Listen("tcp", cfg.TLSAddr)
		if err != nil {
			return err
		}
		go tl.Run(ctx)
		serving = append(serving, func() error {
			srv := server.NewHTTPServer(cfg.TLSAddr, a.Handler, log)
			srv.TLSConfig = tl.Config()
			return server.Serve(ctx, srv, tls.NewListener(tln, srv.TLSConfig))
		})
		log.Info("pkid serving TLS", "https", tln.Addr().String(), "hostnames", cfg.TLSHostnames)
	}
	log.Info("pkid serving", "http", ln.Addr().String(), "public_url", cfg.PublicBase(),
		"root_sha256", a.Hierarchy.RootFingerprint(), "intermediate", a.Hierarchy.Intermediate().Cert.Subject.String(),
		"pkcs11_token", cfg.PKCS11Token)
	go a.RunJobs(ctx)
	go policy.PrepareKeyChecks()

	errc := make(chan error, len(serving))
	for _, run := range serving {
		go func() { errc <- run() }()
	}
	var first error
	for range serving {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
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
