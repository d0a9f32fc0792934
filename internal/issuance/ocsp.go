package issuance

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/pki"
)

// OCSPStatus is what an OCSP response says about one certificate.
type OCSPStatus struct {
	Serial     pki.Serial
	Revoked    bool
	RevokedAt  time.Time            // when Revoked
	Reason     pki.RevocationReason // when Revoked; unspecified is omitted from the response
	ThisUpdate time.Time
	NextUpdate time.Time
}

// ErrBadOCSP: SignOCSP was asked for a response that must not exist: a
// responder that cannot vouch for issuer, an interval that ends before it
// starts, a revocation without a date or with a reason pkid never uses. It
// is a bug or a misconfiguration of the caller; nothing was signed.
var ErrBadOCSP = errors.New("issuance: OCSP response cannot be signed")

// SignOCSP signs, as the delegated OCSP responder r, a response about a
// certificate that issuer issued. hash is the CertID's hash algorithm:
// crypto.SHA1 for the stored form (RFC 5019 clients and nginx), crypto.SHA256
// for RFC 9919 clients. The response carries r's certificate so that clients
// can verify it against issuer (RFC 6960 §4.2.2.2), names r by its subject
// (responderID byName), and has exactly one SingleResponse without
// singleExtensions: the reason of a revocation is the revocationReason of
// RevokedInfo, omitted when unspecified (RFC 5280 §5.3.1, BR 7.3), never a
// reasonCode extension.
//
// It refuses, with an error wrapping ErrBadOCSP and without signing:
//   - r without id-kp-OCSPSigning, or not certified by issuer itself (RFC
//     6960 §4.2.2.2: a delegated responder is certified directly by the CA
//     whose certificates it answers for, or clients reject its responses);
//   - r whose certificate has expired by thisUpdate (SECURITY.md O-21);
//   - nextUpdate not after thisUpdate;
//   - a revocation without a date, or with a reason pkid never uses
//     (certificateHold, removeFromCRL and unassigned codes);
//   - a serial that is not in canonical form.
func (r *Issuer) SignOCSP(issuer *x509.Certificate, st OCSPStatus, hash crypto.Hash) ([]byte, error) {
	if r == nil || r.Cert == nil || issuer == nil {
		return nil, fmt.Errorf("%w: no responder or no issuer", ErrBadOCSP)
	}
	if err := checkResponder(r.Cert, issuer); err != nil {
		return nil, err
	}
	if canon, err := pki.ParseSerial(string(st.Serial)); err != nil || canon != st.Serial {
		return nil, fmt.Errorf("%w: serial %q is not in canonical form", ErrBadOCSP, st.Serial)
	}
	if !st.NextUpdate.After(st.ThisUpdate) {
		return nil, fmt.Errorf("%w: nextUpdate must be after thisUpdate", ErrBadOCSP)
	}
	if !st.ThisUpdate.Before(r.Cert.NotAfter) {
		return nil, fmt.Errorf("%w: the responder certificate expired at %s", ErrBadOCSP, stamp(r.Cert.NotAfter))
	}
	if st.Revoked {
		if st.RevokedAt.IsZero() {
			return nil, fmt.Errorf("%w: revoked without a revocation time", ErrBadOCSP)
		}
		if !ocspReason(st.Reason) {
			return nil, fmt.Errorf("%w: revocation reason %d is not one pkid uses", ErrBadOCSP, int(st.Reason))
		}
	}
	tmpl := ocsp.Response{
		Status:       ocsp.Good,
		SerialNumber: st.Serial.Big(),
		ThisUpdate:   st.ThisUpdate.UTC(),
		NextUpdate:   st.NextUpdate.UTC(),
		Certificate:  r.Cert,
		IssuerHash:   hash,
	}
	if st.Revoked {
		tmpl.Status = ocsp.Revoked
		tmpl.RevokedAt = st.RevokedAt.UTC()
		tmpl.RevocationReason = int(st.Reason)
	}
	der, err := ocsp.CreateResponse(issuer, r.Cert, tmpl, countingSigner{r})
	if err != nil {
		return nil, fmt.Errorf("issuance: signing OCSP response for %s: %w", st.Serial, err)
	}
	return der, nil
}

// checkResponder reports whether responder may sign OCSP responses for the
// certificates of issuer: it has id-kp-OCSPSigning and issuer certified it
// (same name, and the same key identifier when both certificates carry one).
// Names and key identifiers are compared rather than the signature verified:
// this runs for every response signed, and the hierarchy verified the
// signature when it loaded.
func checkResponder(responder, issuer *x509.Certificate) error {
	if !hasOCSPSigning(responder) {
		return fmt.Errorf("%w: OCSP responses must be signed by a certificate with id-kp-OCSPSigning", ErrBadOCSP)
	}
	if !bytes.Equal(responder.RawIssuer, issuer.RawSubject) ||
		(len(responder.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 &&
			!bytes.Equal(responder.AuthorityKeyId, issuer.SubjectKeyId)) {
		return fmt.Errorf("%w: responder %q is not certified by %q", ErrBadOCSP, responder.Subject, issuer.Subject)
	}
	return nil
}

// CanSignOCSPFor reports whether r, a delegated OCSP responder, may sign
// responses about the certificates issuer issued (see SignOCSP).
func (r *Issuer) CanSignOCSPFor(issuer *x509.Certificate) bool {
	return r != nil && r.Cert != nil && issuer != nil && checkResponder(r.Cert, issuer) == nil
}

// ocspReason reports whether a revocation reason may appear in an OCSP
// response: the RFC 5280 codes pkid uses, never certificateHold (6, pkid
// never suspends: BR 4.9.13), removeFromCRL (8) or unassigned codes.
func ocspReason(r pki.RevocationReason) bool {
	switch r {
	case pki.ReasonUnspecified, pki.ReasonKeyCompromise, pki.ReasonCACompromise,
		pki.ReasonAffiliationChanged, pki.ReasonSuperseded, pki.ReasonCessationOfOperation,
		pki.ReasonPrivilegeWithdrawn:
		return true
	}
	return false
}

func hasOCSPSigning(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageOCSPSigning {
			return true
		}
	}
	return false
}

// OCSPWindow returns the thisUpdate and nextUpdate of a response signed at
// now with the given validity. thisUpdate is truncated to the minute and
// backdated by one minute, so that relying parties whose clocks run a little
// behind never see a response from the future (RFC 6960 §3.2); nextUpdate is
// a second short of the validity so that the interval is exactly as long as
// configured, inclusive of both ends (Boulder's convention).
func OCSPWindow(now time.Time, validity time.Duration) (thisUpdate, nextUpdate time.Time) {
	thisUpdate = now.UTC().Truncate(time.Minute).Add(-time.Minute)
	return thisUpdate, thisUpdate.Add(validity - time.Second)
}
