package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/issuance"
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
	rootKeyFile := fs.String("root-key", "", "`file` of the root's sealed key, when `pkid ca export-root-key` took it out of the database")
	cfg, err := loadKeyConfig(env, fs, args, true)
	if err != nil {
		return err
	}
	hc.PublicURL = cfg.PublicBase()
	// With a token, the new intermediate's key is generated on it, and the
	// root's key signs there.
	h, err := openRootCA(ctx, cfg, *rootKeyFile, false)
	if err != nil {
		return err
	}
	defer h.Close()
	r, err := ca.Rotate(ctx, h.db, ca.InitConfig{Hierarchy: hc, RootCRLValidity: cfg.RootCRLValidity, RootKey: h.rootKey}, h.keys, h.lint, time.Now())
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

// maxRootKeyBytes bounds --root-key: a sealed P-384 key is under 1 KiB.
const maxRootKeyBytes = 64 << 10

// readRootKey reads the sealed root key that `pkid ca export-root-key`
// wrote; nil for no file.
func readRootKey(file string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRootKeyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("--root-key: %w", err)
	}
	if len(b) > maxRootKeyBytes {
		return nil, fmt.Errorf("--root-key %s is larger than %d bytes: not a sealed key", file, maxRootKeyBytes)
	}
	return b, nil
}

// cmdExportRootKey is `pkid ca export-root-key --out FILE`: it writes the
// root's sealed key (encrypted PKCS#8, under PKID_KEY_PASSPHRASE) to FILE,
// which must not exist, reads it back, and only then removes the key from
// the database. Keep FILE offline: `pkid serve` never needs it; `pkid init
// --root-key FILE` (to re-sign the root's CRL, twice a year with the default
// validity) and `pkid ca rotate --root-key FILE` do.
func cmdExportRootKey(ctx context.Context, env config.Getenv, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pkid ca export-root-key", flag.ContinueOnError)
	out := fs.String("out", "", "`file` to write the sealed root key to; must not exist")
	cfg, err := loadKeyConfig(env, fs, args, false)
	if err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "pkid ca export-root-key: --out is required")
		return errUsage
	}
	h, err := openCA(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer h.Close()
	sealed, commit, err := ca.ExportRootKey(ctx, h.db, h.keys, time.Now())
	if err != nil {
		return err
	}
	if err := writeNew(*out, sealed); err != nil {
		return fmt.Errorf("writing %s (the root key stays in the database): %w", *out, err)
	}
	if back, err := readRootKey(*out); err != nil || !bytes.Equal(back, sealed) {
		return fmt.Errorf("%s does not read back as written (the root key stays in the database): %v", *out, err)
	}
	if err := commit(ctx); err != nil {
		return fmt.Errorf("%s is written, but removing the root key from the database failed: %w", *out, err)
	}
	fmt.Fprintf(stdout, "the root key is now only in %s (sealed like the other software keys): keep it offline; `pkid ca rotate` and `pkid init` take it with --root-key\n", *out)
	return nil
}

// writeNew creates file with mode 0600, failing if it exists, and syncs it.
func writeNew(file string, data []byte) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
