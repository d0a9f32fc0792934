package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/pkid/pkid/internal/account"
	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
)

// loadConfig reads the environment, applies the command's flags and
// validates the result.
func loadConfig(env config.Getenv, fs *flag.FlagSet, args []string, needPassphrase bool) (config.Config, error) {
	cfg, err := config.FromEnv(env)
	if err != nil {
		return cfg, err
	}
	return loadConfigFrom(&cfg, fs, args, needPassphrase)
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func cmdMigrate(ctx context.Context, env config.Getenv, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("pkid migrate", flag.ContinueOnError)
	cfg, err := loadConfig(env, fs, args, false)
	if err != nil {
		return err
	}
	return store.Migrate(ctx, cfg.DatabaseURL, newLogger(cfg, stderr))
}

func cmdInit(ctx context.Context, env config.Getenv, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pkid init", flag.ContinueOnError)
	hc := issuance.HierarchyConfig{}
	fs.StringVar(&hc.Organization, "org", "pkid", "organization (O) of the CA certificates")
	fs.StringVar(&hc.RootCommonName, "root-cn", "pkid Root CA", "common name of the root")
	fs.StringVar(&hc.IntermediateCommonName, "intermediate-cn", "pkid Issuing CA", "common name of the issuing intermediate")
	fs.DurationVar(&hc.RootValidity, "root-validity", 20*365*24*time.Hour, "validity of the root")
	fs.DurationVar(&hc.IntermediateValidity, "intermediate-validity", 5*365*24*time.Hour, "validity of the intermediate")
	fs.DurationVar(&hc.OCSPValidity, "ocsp-signer-validity", 30*24*time.Hour, "validity of the delegated OCSP signer (renewed by serve)")
	rootKeyFile := fs.String("root-key", "", "`file` of the root's sealed key, when `pkid ca export-root-key` took it out of the database (to re-sign the root's CRL)")
	cfg, err := loadKeyConfig(env, fs, args, true)
	if err != nil {
		return err
	}
	hc.PublicURL = cfg.PublicBase()
	h, err := openRootCA(ctx, cfg, *rootKeyFile, true)
	if err != nil {
		return err
	}
	defer h.Close()
	now := time.Now()
	icfg := ca.InitConfig{Hierarchy: hc, RootCRLValidity: cfg.RootCRLValidity, RootKey: h.rootKey,
		Warn: func(msg string) { fmt.Fprintln(stderr, "pkid init: warning:", msg) }}
	created, fp, err := ca.Init(ctx, h.db, icfg, h.keys, h.lint, now)
	if err != nil {
		return err
	}
	keyCreated, err := auth.EnsureKey(ctx, h.db, h.keys.SealingSecret(), now)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintln(stdout, "created the CA hierarchy: root, issuing intermediate and OCSP signer")
		switch {
		case h.keys.HasToken() && cfg.PKCS11RootToken != "":
			fmt.Fprintf(stdout, "the root key was generated on PKCS#11 token %q and the intermediate key on %q; neither can leave its token; the OCSP signer's key is sealed under a secret derived on %q\n", cfg.PKCS11RootToken, cfg.PKCS11Token, cfg.PKCS11Token)
		case h.keys.HasToken():
			fmt.Fprintf(stdout, "the root and intermediate keys were generated on PKCS#11 token %q and cannot leave it; the OCSP signer's key is sealed under a secret derived on the token\n", cfg.PKCS11Token)
		}
	} else {
		fmt.Fprintln(stdout, "the CA hierarchy exists already; nothing changed")
	}
	if keyCreated {
		fmt.Fprintln(stdout, "created the token signing key")
	}
	fmt.Fprintf(stdout, "root SHA-256 fingerprint: %s\n", fp)
	return nil
}

func cmdCreateUser(ctx context.Context, env config.Getenv, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pkid admin create-user", flag.ContinueOnError)
	username := fs.String("username", "", "the administrator's user name")
	cfg, err := loadConfig(env, fs, args, false)
	if err != nil {
		return err
	}
	if *username == "" {
		return fmt.Errorf("%w: --username is required", errUsage)
	}
	password, err := readPassword(stdin)
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	svc := account.New(db, nil, time.Now)
	a, err := svc.CreateAdmin(ctx, operator(), *username, password)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created administrator %q\n", a.Username)
	return nil
}

// readPassword reads one line from r: the password, without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on standard input (write it as one line)")
	}
	return line, nil
}

func cmdAdminToken(ctx context.Context, env config.Getenv, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pkid admin token", flag.ContinueOnError)
	username := fs.String("username", "", "the administrator's user name")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token (at most 24h)")
	cfg, err := loadConfig(env, fs, args, true)
	if err != nil {
		return err
	}
	if *username == "" {
		return fmt.Errorf("%w: --username is required", errUsage)
	}
	h, err := openCA(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer h.Close()
	keys, err := auth.LoadKeys(ctx, h.db, h.keys.SealingSecret())
	if err != nil {
		return err
	}
	svc := account.New(h.db, auth.NewTokens(keys, time.Now), time.Now)
	jwt, err := svc.MintAdminToken(ctx, operator(), *username, *ttl)
	if err != nil {
		if errors.Is(err, pki.ErrNotFound) {
			return fmt.Errorf("no administrator %q", auth.CanonicalUsername(*username))
		}
		return err
	}
	fmt.Fprintln(stdout, jwt)
	return nil
}

// pkcs11Flags binds the PKCS#11 flags of init and serve to cfg (their
// environment variables are read already). The PIN itself is only ever in a
// file.
func pkcs11Flags(fs *flag.FlagSet, cfg *config.Config) {
	fs.StringVar(&cfg.PKCS11Module, "pkcs11-module", cfg.PKCS11Module, "PKCS#11 library of the HSM that holds the CA keys (env PKID_PKCS11_MODULE)")
	fs.StringVar(&cfg.PKCS11Token, "pkcs11-token", cfg.PKCS11Token, "label of the token on it (env PKID_PKCS11_TOKEN)")
	fs.StringVar(&cfg.PKCS11PINFile, "pkcs11-pin-file", cfg.PKCS11PINFile, "file holding the token's user PIN (env PKID_PKCS11_PIN_FILE)")
}

// pkcs11RootFlags binds the flags of the root's own token, for the two
// commands that use the root key (init and ca rotate).
func pkcs11RootFlags(fs *flag.FlagSet, cfg *config.Config) {
	fs.StringVar(&cfg.PKCS11RootToken, "pkcs11-root-token", cfg.PKCS11RootToken, "label of a second token, of the same module, for the root key alone, kept offline (env PKID_PKCS11_ROOT_TOKEN)")
	fs.StringVar(&cfg.PKCS11RootPINFile, "pkcs11-root-pin-file", cfg.PKCS11RootPINFile, "file holding that token's user PIN (env PKID_PKCS11_ROOT_PIN_FILE)")
}

// operator is the principal of commands run on the CA host itself.
func operator() pki.Principal {
	return pki.Principal{Kind: pki.PrincipalSystem}
}
