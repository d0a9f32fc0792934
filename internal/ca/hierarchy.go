package ca

import (
	"context"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/sealedkey"
)

// Audit actions of the hierarchy.
const (
	ActionHierarchyCreated = "ca.hierarchy.created"
	ActionOCSPSignerRenew  = "ca.ocsp_signer.renewed"
)

// ErrNoHierarchy: pkid init has not been run on this database.
var ErrNoHierarchy = errors.New("ca: no CA hierarchy in the database; run `pkid init`")

// Hierarchy is the CA hierarchy loaded for signing: the root certificate
// (its key stays sealed in the database: it is needed only to create or
// rotate intermediates), the issuing intermediate and the delegated OCSP
// signer. The OCSP signer is replaced while serving, so it sits behind an
// atomic pointer.
type Hierarchy struct {
	root         *x509.Certificate
	intermediate *issuance.Issuer
	ocsp         atomic.Pointer[issuance.Issuer]
}

// Root returns the root certificate.
func (h *Hierarchy) Root() *x509.Certificate { return h.root }

// Intermediate returns the issuing intermediate.
func (h *Hierarchy) Intermediate() *issuance.Issuer { return h.intermediate }

// IssuerByID returns the issuing intermediate with this ID (today the one;
// several during an intermediate rollover).
func (h *Hierarchy) IssuerByID(id string) (*issuance.Issuer, error) {
	if h.intermediate.ID == id {
		return h.intermediate, nil
	}
	return nil, fmt.Errorf("ca: issuer %s is not loaded", id)
}

// Issuers returns the certificates of the issuing intermediates whose
// certificates this node answers OCSP requests for.
func (h *Hierarchy) Issuers() []*x509.Certificate {
	return []*x509.Certificate{h.intermediate.Cert}
}

// OCSPSigner returns the current delegated OCSP signer.
func (h *Hierarchy) OCSPSigner() *issuance.Issuer { return h.ocsp.Load() }

// ChainPEM returns the intermediate then the root, PEM encoded: what a client
// presents after its own certificate.
func (h *Hierarchy) ChainPEM() []byte {
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.intermediate.Cert.Raw})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.root.Raw})...)
}

// RootID returns the root's issuer ID (the hex SHA-256 of its certificate).
func (h *Hierarchy) RootID() string { return Fingerprint(h.root.Raw) }

// RootFingerprint returns the SHA-256 fingerprint of the root certificate as
// lowercase hex: what users pin.
func (h *Hierarchy) RootFingerprint() string { return Fingerprint(h.root.Raw) }

// Fingerprint returns the lowercase hex SHA-256 of a DER certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// DefaultRootCRLValidity is the nextUpdate of the root's CRL: the root key
// signs only when an operator runs init or rotates an intermediate, so its
// CRL must last until the next time (CONTRACT.md: default 365 days).
const DefaultRootCRLValidity = 365 * 24 * time.Hour

// InitConfig configures the hierarchy that Init creates.
type InitConfig struct {
	Hierarchy issuance.HierarchyConfig
	// RootCRLValidity is the nextUpdate of the root's CRL; 0 means
	// DefaultRootCRLValidity.
	RootCRLValidity time.Duration
}

// Init creates the CA hierarchy if the database has none: an ECDSA P-384
// root, an ECDSA P-256 issuing intermediate (pathLen 0) and a delegated OCSP
// signer, each linted before it is signed, with keys sealed under passphrase,
// and the root's first CRL. It is idempotent: when a hierarchy exists it
// changes nothing (but signs the root's CRL if an interrupted init left none)
// and returns created=false; it also re-signs the root's CRL once half of
// its validity has passed. It returns the root's SHA-256 fingerprint either
// way.
func Init(ctx context.Context, st HierarchyStore, icfg InitConfig, passphrase []byte, l *lint.Linter, now time.Time) (created bool, rootFingerprint string, err error) {
	cfg := icfg.Hierarchy
	existing, err := st.Issuers(ctx)
	if err != nil {
		return false, "", err
	}
	if len(existing) > 0 {
		rootRec, err := findIssuer(existing, pki.IssuerRoot)
		if err != nil {
			return false, "", err
		}
		validity := icfg.RootCRLValidity
		if validity == 0 {
			validity = DefaultRootCRLValidity
		}
		// The root key signs only here, so the root's CRL is refreshed here:
		// when an interrupted init left none, or once half of its validity
		// has passed (run `pkid init` at least that often; see the README).
		latest, err := st.LatestCRL(ctx, rootRec.ID)
		if errors.Is(err, pki.ErrNotFound) || (err == nil && latest.NextUpdate.Sub(now) < validity/2) {
			root, err := openIssuer(rootRec, passphrase, now)
			if err != nil {
				return false, "", err
			}
			if err := signRootCRL(ctx, st, root, icfg.RootCRLValidity, l, now); err != nil {
				return false, "", err
			}
		} else if err != nil && !errors.Is(err, pki.ErrNotFound) {
			return false, "", err
		}
		if err := renewExpiredOCSPSigner(ctx, st, existing, cfg, passphrase, l, now); err != nil {
			return false, "", err
		}
		return false, Fingerprint(rootRec.Certificate), nil
	}

	rootKey, err := issuance.GenerateKey(elliptic.P384())
	if err != nil {
		return false, "", err
	}
	root, err := issuance.NewRoot(cfg, rootKey, now, l)
	if err != nil {
		return false, "", fmt.Errorf("ca: creating root: %w", err)
	}
	interKey, err := issuance.GenerateKey(elliptic.P256())
	if err != nil {
		return false, "", err
	}
	inter, err := issuance.NewIntermediate(root, cfg, interKey, now, l)
	if err != nil {
		return false, "", fmt.Errorf("ca: creating intermediate: %w", err)
	}
	ocspKey, err := issuance.GenerateKey(elliptic.P256())
	if err != nil {
		return false, "", err
	}
	ocsp, err := issuance.NewOCSPSigner(inter, cfg, ocspKey, now, l)
	if err != nil {
		return false, "", fmt.Errorf("ca: creating OCSP signer: %w", err)
	}

	var recs []*pki.IssuerRecord
	for _, x := range []struct {
		kind   pki.IssuerKind
		is     *issuance.Issuer
		parent *issuance.Issuer
	}{
		{pki.IssuerRoot, root, nil},
		{pki.IssuerIntermediate, inter, root},
		{pki.IssuerOCSP, ocsp, inter},
	} {
		rec, err := sealIssuer(x.kind, x.is, x.parent, passphrase)
		if err != nil {
			return false, "", err
		}
		recs = append(recs, rec)
	}
	ev := pki.AuditEvent{
		Actor: "system", Action: ActionHierarchyCreated, Outcome: pki.OutcomeSuccess,
		Detail: map[string]any{"root": root.ID, "intermediate": inter.ID, "ocsp_signer": ocsp.ID},
	}
	if err := st.InsertIssuers(ctx, recs, ev); err != nil {
		if errors.Is(err, pki.ErrAlreadyExists) {
			// Another `pkid init` won the race; report what it made.
			return Init(ctx, st, icfg, passphrase, l, now)
		}
		return false, "", err
	}
	if err := signRootCRL(ctx, st, root, icfg.RootCRLValidity, l, now); err != nil {
		return false, "", err
	}
	return true, root.ID, nil
}

// signRootCRL signs and stores the root's CRL: the intermediates it has
// revoked (none yet: revoking an intermediate is an offline ceremony), with a
// long nextUpdate because the root key is rarely opened.
func signRootCRL(ctx context.Context, st HierarchyStore, root *issuance.Issuer, validity time.Duration, l *lint.Linter, now time.Time) error {
	if validity == 0 {
		validity = DefaultRootCRLValidity
	}
	number, err := st.NextCRLNumber(ctx)
	if err != nil {
		return err
	}
	this := now.UTC().Truncate(time.Second)
	der, err := root.SignCRL(issuance.CRLTemplate{Number: number, ThisUpdate: this, NextUpdate: this.Add(validity), CA: true}, l)
	if err != nil {
		return fmt.Errorf("ca: signing the root's CRL: %w", err)
	}
	c := &pki.CRL{IssuerID: root.ID, Number: number, DER: der, ThisUpdate: this, NextUpdate: this.Add(validity)}
	ev := pki.AuditEvent{Actor: "system", Action: "crl.signed", Outcome: pki.OutcomeSuccess,
		Detail: map[string]any{"issuer": root.ID, "number": number, "entries": 0, "root": true}}
	if err := st.InsertCRL(ctx, c, ev); err != nil {
		return fmt.Errorf("ca: storing the root's CRL: %w", err)
	}
	return nil
}

func sealIssuer(kind pki.IssuerKind, is, parent *issuance.Issuer, passphrase []byte) (*pki.IssuerRecord, error) {
	sealed, err := sealedkey.Seal(is.Signer, passphrase)
	if err != nil {
		return nil, fmt.Errorf("ca: sealing %s key: %w", kind, err)
	}
	rec := &pki.IssuerRecord{
		ID:           is.ID,
		Kind:         kind,
		Certificate:  is.Cert.Raw,
		EncryptedKey: sealed,
		Subject:      is.Cert.Subject.String(),
		NotBefore:    is.Cert.NotBefore,
		NotAfter:     is.Cert.NotAfter,
	}
	if parent != nil {
		rec.ParentID = parent.ID
	}
	return rec, nil
}

func findIssuer(recs []*pki.IssuerRecord, kind pki.IssuerKind) (*pki.IssuerRecord, error) {
	var found *pki.IssuerRecord
	for _, r := range recs {
		if r.Kind != kind {
			continue
		}
		// Several OCSP signers may be current during a renewal; the newest wins.
		if found == nil || r.NotBefore.After(found.NotBefore) {
			found = r
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w (no current %s)", ErrNoHierarchy, kind)
	}
	return found, nil
}

// LoadHierarchy opens the current intermediate and OCSP signer keys with
// passphrase. It fails with an error wrapping sealedkey.ErrWrongPassphrase on
// a wrong passphrase, ErrNoHierarchy before `pkid init`, and ErrExpired when
// the intermediate or the OCSP signer has expired at now (pkid must not start
// then: it would sign what no one can verify).
func LoadHierarchy(ctx context.Context, st HierarchyStore, passphrase []byte, now time.Time) (*Hierarchy, error) {
	recs, err := st.Issuers(ctx)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, ErrNoHierarchy
	}
	rootRec, err := findIssuer(recs, pki.IssuerRoot)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(rootRec.Certificate)
	if err != nil {
		return nil, fmt.Errorf("ca: parsing root: %w", err)
	}
	interRec, err := findIssuer(recs, pki.IssuerIntermediate)
	if err != nil {
		return nil, err
	}
	inter, err := openIssuer(interRec, passphrase, now)
	if err != nil {
		return nil, err
	}
	ocspRec, err := findIssuer(recs, pki.IssuerOCSP)
	if err != nil {
		return nil, err
	}
	ocsp, err := openIssuer(ocspRec, passphrase, now)
	if err != nil {
		return nil, err
	}
	h := &Hierarchy{root: root, intermediate: inter}
	h.ocsp.Store(ocsp)
	return h, nil
}

// renewExpiredOCSPSigner replaces the delegated OCSP signer when it has
// expired. `pkid serve` renews the signer long before that, but refuses to
// start with an expired one (it would sign responses nobody can verify); if
// every node was down through the signer's last third of life, `pkid init`
// is how the operator recovers, since it may open the intermediate's key.
func renewExpiredOCSPSigner(ctx context.Context, st HierarchyStore, recs []*pki.IssuerRecord, cfg issuance.HierarchyConfig, passphrase []byte, l *lint.Linter, now time.Time) error {
	ocspRec, err := findIssuer(recs, pki.IssuerOCSP)
	if err != nil || now.Before(ocspRec.NotAfter) {
		return err
	}
	interRec, err := findIssuer(recs, pki.IssuerIntermediate)
	if err != nil {
		return err
	}
	inter, err := openIssuer(interRec, passphrase, now)
	if err != nil {
		return err
	}
	key, err := issuance.GenerateKey(elliptic.P256())
	if err != nil {
		return err
	}
	next, err := issuance.NewOCSPSigner(inter, cfg, key, now, l)
	if err != nil {
		return fmt.Errorf("ca: renewing the expired OCSP signer: %w", err)
	}
	rec, err := sealIssuer(pki.IssuerOCSP, next, inter, passphrase)
	if err != nil {
		return err
	}
	ev := pki.AuditEvent{Actor: "system", Action: ActionOCSPSignerRenew, Outcome: pki.OutcomeSuccess,
		Detail: map[string]any{"previous": ocspRec.ID, "next": next.ID, "previous_expired": ocspRec.NotAfter, "by": "init"}}
	return st.ReplaceIssuer(ctx, ocspRec.ID, rec, ev)
}

// ErrExpired: a CA certificate pkid needs has expired.
var ErrExpired = errors.New("ca: CA certificate expired")

func openIssuer(rec *pki.IssuerRecord, passphrase []byte, now time.Time) (*issuance.Issuer, error) {
	if !now.Before(rec.NotAfter) {
		return nil, fmt.Errorf("%w: %s %s expired at %s", ErrExpired, rec.Kind, rec.Subject, rec.NotAfter.UTC().Format(time.RFC3339))
	}
	if rec.KeyURI != "" {
		return nil, fmt.Errorf("ca: %s key is in an HSM (%s), which this build cannot open", rec.Kind, rec.KeyURI)
	}
	signer, err := sealedkey.Open(rec.EncryptedKey, passphrase)
	if err != nil {
		return nil, fmt.Errorf("ca: opening %s key: %w", rec.Kind, err)
	}
	is, err := issuance.NewIssuer(rec.Certificate, signer)
	if err != nil {
		return nil, fmt.Errorf("ca: loading %s: %w", rec.Kind, err)
	}
	return is, nil
}

// RenewOCSPSignerIfDue replaces the delegated OCSP signer once a third of
// its lifetime is left, so that responses are never signed by a certificate
// about to expire. It is called periodically by `pkid serve`; several nodes
// may race, and the store lets each replacement happen once.
func (h *Hierarchy) RenewOCSPSignerIfDue(ctx context.Context, st HierarchyStore, cfg issuance.HierarchyConfig, passphrase []byte, l *lint.Linter, now time.Time) (bool, error) {
	cur := h.OCSPSigner()
	life := cur.Cert.NotAfter.Sub(cur.Cert.NotBefore)
	if cur.Cert.NotAfter.Sub(now) > life/3 {
		return false, nil
	}
	key, err := issuance.GenerateKey(elliptic.P256())
	if err != nil {
		return false, err
	}
	next, err := issuance.NewOCSPSigner(h.intermediate, cfg, key, now, l)
	if err != nil {
		return false, fmt.Errorf("ca: renewing OCSP signer: %w", err)
	}
	rec, err := sealIssuer(pki.IssuerOCSP, next, h.intermediate, passphrase)
	if err != nil {
		return false, err
	}
	ev := pki.AuditEvent{
		Actor: "system", Action: ActionOCSPSignerRenew, Outcome: pki.OutcomeSuccess,
		Detail: map[string]any{"previous": cur.ID, "next": next.ID, "not_after": next.Cert.NotAfter},
	}
	if err := st.ReplaceIssuer(ctx, cur.ID, rec, ev); err != nil {
		if errors.Is(err, pki.ErrNotFound) {
			// Another node replaced it first: load theirs.
			fresh, err := LoadHierarchy(ctx, st, passphrase, now)
			if err != nil {
				return false, err
			}
			h.ocsp.Store(fresh.OCSPSigner())
			return true, nil
		}
		return false, err
	}
	h.ocsp.Store(next)
	return true, nil
}
