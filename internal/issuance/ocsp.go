package issuance

import (
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

// SignOCSP signs, as the delegated OCSP responder r, a response about a
// certificate that issuer issued. hash is the CertID's hash algorithm:
// crypto.SHA1 for the stored form (RFC 5019 clients and nginx), crypto.SHA256
// for RFC 9919 clients. The response carries r's certificate so that clients
// can verify it against issuer (RFC 6960 §4.2.2.2).
func (r *Issuer) SignOCSP(issuer *x509.Certificate, st OCSPStatus, hash crypto.Hash) ([]byte, error) {
	if !hasOCSPSigning(r.Cert) {
		return nil, errors.New("issuance: OCSP responses must be signed by a certificate with id-kp-OCSPSigning")
	}
	if !st.NextUpdate.After(st.ThisUpdate) {
		return nil, errors.New("issuance: OCSP nextUpdate must be after thisUpdate")
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
