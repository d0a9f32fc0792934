package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/store"
)

// cmdRotate is `pkid ca rotate`: a new issuing intermediate under the same
// root, with its own OCSP signer, becomes current. Running nodes take it in
// within seconds (they are notified, and poll every 30 s); no restart.
func cmdRotate(ctx context.Context, env config.Getenv, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pkid ca rotate", flag.ContinueOnError)
	hc := issuance.HierarchyConfig{}
	fs.StringVar(&hc.IntermediateCommonName, "intermediate-cn", "", `common name of the new intermediate (default: the current one's, with " G<generation>")`)
	fs.DurationVar(&hc.IntermediateValidity, "intermediate-validity", 5*365*24*time.Hour, "validity of the new intermediate (cut to the root's)")
	fs.DurationVar(&hc.OCSPValidity, "ocsp-signer-validity", 30*24*time.Hour, "validity of its delegated OCSP signer (renewed by serve)")
	cfgEnv, err := config.FromEnv(env)
	if err != nil {
		return err
	}
	pkcs11Flags(fs, &cfgEnv)
	cfg, err := loadConfigFrom(&cfgEnv, fs, args, true)
	if err != nil {
		return err
	}
	hc.PublicURL = cfg.PublicBase()
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	// With a token, the new intermediate's key is generated on it, and the
	// root's key signs there.
	keys, err := app.OpenKeys(cfg, false)
	if err != nil {
		return err
	}
	defer keys.Close()
	l, err := lint.New()
	if err != nil {
		return err
	}
	r, err := ca.Rotate(ctx, db, ca.InitConfig{Hierarchy: hc, RootCRLValidity: cfg.RootCRLValidity}, keys, l, time.Now())
	if errors.Is(err, ca.ErrRotationRaced) {
		return fmt.Errorf("%w (run `pkid ca rotate` again only if you want yet another intermediate)", err)
	}
	if err != nil {
		return err
	}
	next := r.Next.Cert
	fmt.Fprintf(stdout, "created issuing intermediate generation %d: %s\n", r.Generation, next.Subject)
	fmt.Fprintf(stdout, "  SHA-256 %s, valid until %s\n", r.Next.ID, next.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "  its CRL: %s%s\n", cfg.PublicBase(), issuance.CRLPath(r.Generation))
	fmt.Fprintf(stdout, "superseded generation %d (%s): it no longer issues, and keeps answering OCSP and publishing its CRL until its last certificate expires\n",
		r.Previous.Generation, r.Previous.Subject)
	fmt.Fprintln(stdout, "relying parties that pin intermediates need GET /ca/bundle.pem, and CRL files need the new CRL: see README, \"Rotating the issuing intermediate\"")
	return nil
}
