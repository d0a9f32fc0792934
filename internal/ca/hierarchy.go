package ca

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
)

// Audit actions of the hierarchy.
const (
	ActionHierarchyCreated = "ca.hierarchy.created"
	ActionOCSPSignerRenew  = "ca.ocsp_signer.renewed"
)

// ErrNoHierarchy: pkid init has not been run on this database.
var ErrNoHierarchy = errors.New("ca: no CA hierarchy in the database; run `pkid init`")

// KeyStore makes and opens the hierarchy's private keys; internal/keystore
// implements it, and decides where each kind of key lives (on a PKCS#11
// token, or sealed in the database). Generate returns the new key and the
// Ref that the issuer's record stores; Open returns the key a Ref names.
type KeyStore interface {
	Generate(curve elliptic.Curve, kind pki.IssuerKind) (crypto.Signer, keystore.Ref, error)
	Open(ref keystore.Ref) (crypto.Signer, error)
}

// Hierarchy is the CA hierarchy loaded for signing: the root certificate
// (its key is not opened: it is needed only to create or rotate
// intermediates) and the live issuing intermediates, each with its
// delegated OCSP signer. One intermediate is current and issues; after `pkid
// ca rotate` the ones it superseded stay loaded, signing their CRLs and
// their OCSP signers' renewals, until their last certificate has expired.
// The set changes while serving (rotation, retirement, signer renewal), so
// it sits behind an atomic pointer.
type Hierarchy struct {
	root   *x509.Certificate
	set    atomic.Pointer[intermediateSet]
	reload sync.Mutex // one Reload or renewal at a time
}

// Root returns the root certificate.
func (h *Hierarchy) Root() *x509.Certificate { return h.root }

// Intermediate returns the current issuing intermediate: the one that
// issues.
func (h *Hierarchy) Intermediate() *issuance.Issuer { return h.Current().Issuer }

// IssuerByID returns the live intermediate with this ID, current or
// superseded.
func (h *Hierarchy) IssuerByID(id string) (*issuance.Issuer, error) {
	if in := h.set.Load().byID(id); in != nil {
		return in.Issuer, nil
	}
	return nil, fmt.Errorf("ca: issuer %s is not loaded", id)
}

// Issuers returns the certificates of the live intermediates, newest first:
// the issuers this node answers OCSP requests for. The slice is the same
// from call to call until the set changes.
func (h *Hierarchy) Issuers() []*x509.Certificate { return h.set.Load().certs }

// OCSPSigner returns the current intermediate's delegated OCSP signer.
func (h *Hierarchy) OCSPSigner() *issuance.Issuer { return h.Current().OCSPSigner() }

// OCSPSignerFor returns the delegated OCSP signer of the live intermediate
// issuerID, or nil: RFC 6960 §4.2.2.2 wants the responder certificate issued
// by the CA that issued the certificate in question.
func (h *Hierarchy) OCSPSignerFor(issuerID string) *issuance.Issuer {
	if in := h.set.Load().byID(issuerID); in != nil {
		return in.OCSPSigner()
	}
	return nil
}

// ChainPEM returns the current intermediate then the root, PEM encoded: what
// a client of the current intermediate presents after its own certificate
// (GET /ca/chain.pem).
func (h *Hierarchy) ChainPEM() []byte { return []byte(h.ChainPEMFor(h.Intermediate().ID)) }

// ChainPEMFor returns the chain of the certificates issued by issuerID: that
// intermediate (live or retired) then the root, PEM encoded. It falls back
// to the current intermediate's chain for an issuer this node has never
// seen, which cannot be in its database.
func (h *Hierarchy) ChainPEMFor(issuerID string) string {
	set := h.set.Load()
	if c, ok := set.chains[issuerID]; ok {
		return c
	}
	return set.chains[set.live[0].Issuer.ID]
}

// BundlePEM returns every live intermediate, newest first, then the root:
// what a relying party that pins the intermediates (nginx's
// ssl_client_certificate, pkid-edge --ca) needs while certificates of
// several intermediates are in use (GET /ca/bundle.pem).
func (h *Hierarchy) BundlePEM() []byte {
	var out []byte
	for _, c := range h.Issuers() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.root.Raw})...)
}

// chainPEM returns inter then root, PEM encoded.
func chainPEM(inter, root *x509.Certificate) string {
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Raw})
	return string(append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})...))
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
	// RootKey is the root's sealed key (what ExportRootKey returned), for
	// when it has been taken out of the database; nil otherwise.
	RootKey []byte
	// Warn, when not nil, receives what Init lets pass but the operator
	// must act on (a root CRL due while the root key is offline); without
	// it, Init fails instead.
	Warn func(msg string)
}

// Init creates the CA hierarchy if the database has none: an ECDSA P-384
// root, an ECDSA P-256 issuing intermediate (pathLen 0) and a delegated OCSP
// signer, each linted before it is signed, with keys made by keys (on the
// HSM or sealed, as keys decides),
// and the root's first CRL. It is idempotent: when a hierarchy exists it
// changes nothing (but signs the root's CRL if an interrupted init left none)
// and returns created=false; it also re-signs the root's CRL once half of
// its validity has passed. It returns the root's SHA-256 fingerprint either
// way.
func Init(ctx context.Context, st HierarchyStore, icfg InitConfig, keys KeyStore, l *lint.Linter, now time.Time) (created bool, rootFingerprint string, err error) {
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
			root, err := openRoot(rootRec, icfg.RootKey, keys, now)
			switch {
			case errors.Is(err, ErrRootKeyOffline) && latest != nil && now.Before(latest.NextUpdate) && icfg.Warn != nil:
				// The root key is kept offline and the CRL it signed is
				// still current: the rest of init goes on (a container
				// runs init at every start), and the operator is told.
				icfg.Warn(fmt.Sprintf("the root's CRL is due for re-signing (its nextUpdate is %s) and the root key is offline: run `pkid init --root-key FILE` (or, for a root on its own PKCS#11 token, with --pkcs11-root-token) before then",
					latest.NextUpdate.UTC().Format(time.RFC3339)))
			case err != nil:
				return false, "", err
			default:
				if err := signRootCRL(ctx, st, root, icfg.RootCRLValidity, l, now); err != nil {
					return false, "", err
				}
			}
		} else if err != nil && !errors.Is(err, pki.ErrNotFound) {
			return false, "", err
		}
		if err := renewExpiredOCSPSigner(ctx, st, existing, cfg, keys, l, now); err != nil {
			return false, "", err
		}
		return false, Fingerprint(rootRec.Certificate), nil
	}

	rootKey, rootRef, err := keys.Generate(elliptic.P384(), pki.IssuerRoot)
	if err != nil {
		return false, "", err
	}
	root, err := issuance.NewRoot(cfg, rootKey, now, l)
	if err != nil {
		return false, "", fmt.Errorf("ca: creating root: %w", err)
	}
	interKey, interRef, err := keys.Generate(elliptic.P256(), pki.IssuerIntermediate)
	if err != nil {
		return false, "", err
	}
	inter, err := issuance.NewIntermediate(root, cfg, interKey, now, l)
	if err != nil {
		return false, "", fmt.Errorf("ca: creating intermediate: %w", err)
	}
	ocspKey, ocspRef, err := keys.Generate(elliptic.P256(), pki.IssuerOCSP)
	if err != nil {
		return false, "", err
	}
	ocsp, err := issuance.NewOCSPSigner(inter, cfg, ocspKey, now, l)
	if err != nil {
		return false, "", fmt.Errorf("ca: creating OCSP signer: %w", err)
	}

	recs := []*pki.IssuerRecord{
		issuerRecord(pki.IssuerRoot, root, nil, rootRef),
		issuerRecord(pki.IssuerIntermediate, inter, root, interRef),
		issuerRecord(pki.IssuerOCSP, ocsp, inter, ocspRef),
	}
	ev := pki.AuditEvent{
		Actor: "system", Action: ActionHierarchyCreated, Outcome: pki.OutcomeSuccess,
		Detail: map[string]any{"root": root.ID, "intermediate": inter.ID, "ocsp_signer": ocsp.ID,
			"root_key": keyPlace(rootRef), "intermediate_key": keyPlace(interRef), "ocsp_signer_key": keyPlace(ocspRef)},
	}
	if err := st.InsertIssuers(ctx, recs, ev); err != nil {
		if errors.Is(err, pki.ErrAlreadyExists) {
			// Another `pkid init` won the race; report what it made.
			return Init(ctx, st, icfg, keys, l, now)
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

// keyPlace says where a key is, for audit events: its PKCS#11 URI, or
// "sealed" for a key sealed in the database.
func keyPlace(ref keystore.Ref) string {
	if ref.URI != "" {
		return ref.URI
	}
	return "sealed"
}

// issuerRecord is the stored form of an issuer whose key is at ref.
func issuerRecord(kind pki.IssuerKind, is, parent *issuance.Issuer, ref keystore.Ref) *pki.IssuerRecord {
	rec := &pki.IssuerRecord{
		ID:           is.ID,
		Kind:         kind,
		Certificate:  is.Cert.Raw,
		EncryptedKey: ref.Sealed,
		KeyURI:       ref.URI,
		Subject:      is.Cert.Subject.String(),
		NotBefore:    is.Cert.NotBefore,
		NotAfter:     is.Cert.NotAfter,
	}
	if parent != nil {
		rec.ParentID = parent.ID
	}
	return rec
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

// LoadHierarchy opens the keys of the live intermediates and of their OCSP
// signers from keys. It fails with an error wrapping
// sealedkey.ErrWrongPassphrase on a wrong passphrase, with the key store's
// error when a key on a token cannot be opened, ErrNoHierarchy before
// `pkid init`, and ErrExpired when the current intermediate or an OCSP
// signer it needs has expired at now (pkid must not start then: it would
// sign what no one can verify). A superseded intermediate that has expired
// is left out: all its certificates have expired with it.
func LoadHierarchy(ctx context.Context, st HierarchyStore, keys KeyStore, now time.Time) (*Hierarchy, error) {
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
	set, err := loadIntermediates(ctx, st, root, recs, nil, keys, now)
	if err != nil {
		return nil, err
	}
	h := &Hierarchy{root: root}
	h.set.Store(set)
	return h, nil
}

// renewExpiredOCSPSigner replaces the delegated OCSP signers that have
// expired. `pkid serve` renews each signer long before that, but refuses to
// start with an expired one (it would sign responses nobody can verify); if
// every node was down through a signer's last third of life, `pkid init`
// is how the operator recovers, since it may open the intermediates' keys.
func renewExpiredOCSPSigner(ctx context.Context, st HierarchyStore, recs []*pki.IssuerRecord, cfg issuance.HierarchyConfig, keys KeyStore, l *lint.Linter, now time.Time) error {
	for _, interRec := range recs {
		if interRec.Kind != pki.IssuerIntermediate || !now.Before(interRec.NotAfter) {
			continue
		}
		ocspRec := signerOf(recs, interRec.ID)
		if ocspRec != nil && now.Before(ocspRec.NotAfter) {
			continue
		}
		inter, err := openIssuer(interRec, keys, now)
		if err != nil {
			return err
		}
		key, ref, err := keys.Generate(elliptic.P256(), pki.IssuerOCSP)
		if err != nil {
			return err
		}
		next, err := issuance.NewOCSPSigner(inter, cfg, key, now, l)
		if err != nil {
			return fmt.Errorf("ca: renewing the expired OCSP signer: %w", err)
		}
		rec := issuerRecord(pki.IssuerOCSP, next, inter, ref)
		if ocspRec == nil {
			ev := pki.AuditEvent{Actor: "system", Action: ActionOCSPSignerRenew, Outcome: pki.OutcomeSuccess,
				Detail: map[string]any{"intermediate": inter.ID, "next": next.ID, "by": "init"}}
			if err := st.InsertIssuers(ctx, []*pki.IssuerRecord{rec}, ev); err != nil {
				return err
			}
			continue
		}
		ev := pki.AuditEvent{Actor: "system", Action: ActionOCSPSignerRenew, Outcome: pki.OutcomeSuccess,
			Detail: map[string]any{"intermediate": inter.ID, "previous": ocspRec.ID, "next": next.ID, "previous_expired": ocspRec.NotAfter, "by": "init"}}
		if err := st.ReplaceIssuer(ctx, ocspRec.ID, rec, ev); err != nil {
			return err
		}
	}
	return nil
}

// ErrExpired: a CA certificate pkid needs has expired.
var ErrExpired = errors.New("ca: CA certificate expired")

func openIssuer(rec *pki.IssuerRecord, keys KeyStore, now time.Time) (*issuance.Issuer, error) {
	if !now.Before(rec.NotAfter) {
		return nil, fmt.Errorf("%w: %s %s expired at %s", ErrExpired, rec.Kind, rec.Subject, rec.NotAfter.UTC().Format(time.RFC3339))
	}
	signer, err := keys.Open(keystore.RefOf(rec))
	if err != nil {
		return nil, fmt.Errorf("ca: opening %s key: %w", rec.Kind, err)
	}
	is, err := issuance.NewIssuer(rec.Certificate, signer)
	if err != nil {
		return nil, fmt.Errorf("ca: loading %s: %w", rec.Kind, err)
	}
	return is, nil
}

// RenewOCSPSignerIfDue replaces each live intermediate's delegated OCSP
// signer once a third of its lifetime is left, so that responses are never
// signed by a certificate about to expire. It is called periodically by
// `pkid serve`; several nodes may race, and the store lets each replacement
// happen once (the losers load the winner's signer). It reports whether any
// signer changed.
func (h *Hierarchy) RenewOCSPSignerIfDue(ctx context.Context, st HierarchyStore, cfg issuance.HierarchyConfig, keys KeyStore, l *lint.Linter, now time.Time) (bool, error) {
	h.reload.Lock()
	defer h.reload.Unlock()
	renewed, raced := false, false
	for _, in := range h.Intermediates() {
		cur := in.OCSPSigner()
		life := cur.Cert.NotAfter.Sub(cur.Cert.NotBefore)
		if cur.Cert.NotAfter.Sub(now) > life/3 {
			continue
		}
		key, ref, err := keys.Generate(elliptic.P256(), pki.IssuerOCSP)
		if err != nil {
			return renewed, err
		}
		next, err := issuance.NewOCSPSigner(in.Issuer, cfg, key, now, l)
		if err != nil {
			return renewed, fmt.Errorf("ca: renewing the OCSP signer of %s: %w", in.Issuer.Cert.Subject, err)
		}
		rec := issuerRecord(pki.IssuerOCSP, next, in.Issuer, ref)
		ev := pki.AuditEvent{
			Actor: "system", Action: ActionOCSPSignerRenew, Outcome: pki.OutcomeSuccess,
			Detail: map[string]any{"intermediate": in.Issuer.ID, "previous": cur.ID, "next": next.ID, "not_after": next.Cert.NotAfter},
		}
		switch err := st.ReplaceIssuer(ctx, cur.ID, rec, ev); {
		case errors.Is(err, pki.ErrNotFound):
			// Another node replaced it first: Reload below loads theirs.
			raced = true
		case err != nil:
			return renewed, err
		default:
			in.ocsp.Store(next)
			renewed = true
		}
	}
	if raced {
		if _, err := h.reloadLocked(ctx, st, keys, now); err != nil {
			return renewed, err
		}
		renewed = true
	}
	return renewed, nil
}
