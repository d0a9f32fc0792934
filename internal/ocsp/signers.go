package ocsp

import (
	"crypto"
	"crypto/x509"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
)

// responder is an issuer and the delegated OCSP responder it certified.
type responder struct {
	issuer *x509.Certificate
	signer *issuance.Issuer
}

// responders are the delegated responders of the current issuers, by issuer
// ID, as they stood when currentResponders read them.
type responders map[string]responder

// currentResponders pairs each of issuers() with signer(its ID), leaving out
// an issuer that did not certify its signer; ids lists the issuers kept.
func currentResponders(issuers func() []*x509.Certificate, signer func(issuerID string) *issuance.Issuer) (responders, []string, error) {
	rs := responders{}
	var ids []string
	for _, c := range issuers() {
		if c == nil {
			continue
		}
		a, err := newAuthority(c)
		if err != nil {
			return nil, nil, err
		}
		s := signer(a.id)
		if !s.CanSignOCSPFor(c) {
			continue
		}
		rs[a.id] = responder{c, s}
		ids = append(ids, a.id)
	}
	if len(ids) == 0 {
		return nil, nil, ErrNoResponder
	}
	return rs, ids, nil
}

// sign signs c's status as c records it (good, or revoked with its date and
// reason) for [this, next], in the stored (SHA-1 CertID) form, with the
// responder of issuerID; nil when that issuer has none.
func (rs responders) sign(c *pki.Certificate, issuerID string, this, next time.Time) (*pki.OCSPResponse, error) {
	by, ok := rs[issuerID]
	if !ok {
		return nil, nil
	}
	st := issuance.OCSPStatus{Serial: c.Serial, ThisUpdate: this, NextUpdate: next}
	if c.RevokedAt != nil {
		st.Revoked, st.RevokedAt = true, *c.RevokedAt
		if c.RevocationReason != nil {
			st.Reason = *c.RevocationReason
		}
	}
	der, err := by.signer.SignOCSP(by.issuer, st, crypto.SHA1)
	if err != nil {
		return nil, err
	}
	return &pki.OCSPResponse{Serial: c.Serial, IssuerID: issuerID, DER: der, ThisUpdate: this, NextUpdate: next}, nil
}
