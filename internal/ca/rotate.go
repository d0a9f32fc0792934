package ca

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
)

// Audit actions of intermediate rollover.
const (
	ActionIntermediateRotated = "ca.intermediate.rotated"
	ActionIntermediateRetired = "ca.intermediate.retired"
)

// ErrRotationRaced: another `pkid ca rotate` replaced the current
// intermediate between this one's read and its write; this one stored
// nothing.
var ErrRotationRaced = errors.New("ca: another rotation replaced the current intermediate first; nothing was changed")

// Rotation is what Rotate made.
type Rotation struct {
	Previous   *pki.IssuerRecord // the intermediate it superseded
	Next       *issuance.Issuer  // the new current intermediate
	Generation int               // Next's generation
	OCSPSigner *issuance.Issuer  // Next's delegated OCSP signer
}

// generationSuffix is the " G<n>" that Rotate appends to the intermediate's
// common name, so that each generation has its own subject: relying parties
// (OpenSSL's CRL lookup among them) find a CA's CRL by its issuer name.
var generationSuffix = regexp.MustCompile(` G[0-9]+$`)

// Rotate creates a new issuing intermediate under the root, ECDSA P-256 like
// the one Init makes, with its own delegated OCSP signer, and makes it the
// current one: certificates are issued from it from now on (by every node
// once it reloads its hierarchy, within ReloadInterval). The intermediate it
// supersedes stays live: it keeps signing its CRL and its OCSP signer's
// renewals until its last certificate has expired (RetireIntermediates).
//
// This and Init are the only places the root key is opened, so that the
// root key may be kept offline between them. Rotate signs the root's CRL
// too, since the root key is at hand. The new intermediate's subject CN is
// the previous one's with " G<generation>" (unless icfg names one).
//
// Two rotations at once make one new intermediate: the loser stores nothing
// and returns ErrRotationRaced.
func Rotate(ctx context.Context, st HierarchyStore, icfg InitConfig, keys KeyStore, l *lint.Linter, now time.Time) (*Rotation, error) {
	cfg := icfg.Hierarchy
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
	var prev *pki.IssuerRecord
	for _, r := range recs {
		if r.Kind == pki.IssuerIntermediate && r.SupersededAt == nil {
			prev = r
		}
	}
	if prev == nil {
		return nil, fmt.Errorf("%w (no current intermediate)", ErrNoHierarchy)
	}
	root, err := openRoot(rootRec, icfg.RootKey, keys, now)
	if err != nil {
		return nil, err
	}
	gen := prev.Generation + 1
	if cfg.IntermediateCommonName == "" {
		prevCert, err := x509.ParseCertificate(prev.Certificate)
		if err != nil {
			return nil, fmt.Errorf("ca: reading the current intermediate: %w", err)
		}
		base := generationSuffix.ReplaceAllString(prevCert.Subject.CommonName, "")
		cfg.IntermediateCommonName = fmt.Sprintf("%s G%d", base, gen)
	}

	interKey, interRef, err := keys.Generate(elliptic.P256(), pki.IssuerIntermediate)
	if err != nil {
		return nil, err
	}
	inter, err := issuance.NewIntermediate(root, cfg, interKey, now, l)
	if err != nil {
		return nil, fmt.Errorf("ca: creating intermediate: %w", err)
	}
	ocspKey, ocspRef, err := keys.Generate(elliptic.P256(), pki.IssuerOCSP)
	if err != nil {
		return nil, err
	}
	ocsp, err := issuance.NewOCSPSigner(inter, cfg, ocspKey, now, l)
	if err != nil {
		return nil, fmt.Errorf("ca: creating OCSP signer: %w", err)
	}
	interRec := issuerRecord(pki.IssuerIntermediate, inter, root, interRef)
	interRec.Generation = gen
	ocspRec := issuerRecord(pki.IssuerOCSP, ocsp, inter, ocspRef)
	ev := pki.AuditEvent{
		Actor: "system", Action: ActionIntermediateRotated, Outcome: pki.OutcomeSuccess,
		Detail: map[string]any{
			"root": root.ID, "previous": prev.ID, "previous_generation": prev.Generation,
			"intermediate": inter.ID, "generation": gen, "subject": inter.Cert.Subject.String(),
			"not_after": inter.Cert.NotAfter, "ocsp_signer": ocsp.ID,
			"intermediate_key": keyPlace(interRef), "ocsp_signer_key": keyPlace(ocspRef),
		},
	}
	if err := st.RotateIntermediate(ctx, prev.ID, interRec, ocspRec, ev); err != nil {
		if errors.Is(err, pki.ErrNotFound) || errors.Is(err, pki.ErrAlreadyExists) {
			return nil, fmt.Errorf("%w: %v", ErrRotationRaced, err)
		}
		return nil, err
	}
	if err := signRootCRL(ctx, st, root, icfg.RootCRLValidity, l, now); err != nil {
		return nil, fmt.Errorf("ca: the new intermediate is stored, but %w", err)
	}
	return &Rotation{Previous: prev, Next: inter, Generation: gen, OCSPSigner: ocsp}, nil
}

// SupersededGrace is how long after a rotation the superseded intermediate
// is kept whatever its certificates: a node that missed the rotation's
// notification issues from it until its next reload (within 30 s), so its
// last certificate is not known before.
const SupersededGrace = 5 * time.Minute

// RetireIntermediates retires each superseded intermediate whose last
// certificate has expired and whose CRL has been published once more since
// (the final CRL: a relying party that fetched one before the last expiry
// still sees every revocation through it), or whose own certificate has
// expired (a node that was down meanwhile no longer loads it, so only the
// database says it is still there). lastExpiry answers with the latest
// notAfter of an intermediate's certificates; the caller may remember it,
// since a superseded intermediate issues nothing more once every node has
// reloaded (nothing is retired within SupersededGrace of its rotation). It
// returns the IDs it retired; the caller reloads the hierarchy after.
func RetireIntermediates(ctx context.Context, st HierarchyStore, lastExpiry func(ctx context.Context, issuerID string) (time.Time, error), now time.Time) ([]string, error) {
	recs, err := st.Issuers(ctx)
	if err != nil {
		return nil, err
	}
	var retired []string
	for _, rec := range recs {
		if rec.Kind != pki.IssuerIntermediate || rec.SupersededAt == nil {
			continue
		}
		if now.Sub(*rec.SupersededAt) < SupersededGrace {
			continue
		}
		detail := map[string]any{"intermediate": rec.ID, "generation": rec.Generation}
		if now.Before(rec.NotAfter) {
			last, err := lastExpiry(ctx, rec.ID)
			if err != nil {
				return retired, err
			}
			if now.Before(last) {
				continue
			}
			final, err := st.LatestCRL(ctx, rec.ID)
			if errors.Is(err, pki.ErrNotFound) {
				continue
			}
			if err != nil {
				return retired, err
			}
			if !final.ThisUpdate.After(last) {
				continue
			}
			detail["last_certificate_expiry"] = last
			detail["final_crl_number"] = final.Number
		} else {
			detail["expired"] = rec.NotAfter
		}
		ev := pki.AuditEvent{Actor: "system", Action: ActionIntermediateRetired, Outcome: pki.OutcomeSuccess, Detail: detail}
		switch err := st.RetireIntermediate(ctx, rec.ID, ev); {
		case errors.Is(err, pki.ErrNotFound): // another node retired it
		case err != nil:
			return retired, err
		default:
			retired = append(retired, rec.ID)
		}
	}
	return retired, nil
}
