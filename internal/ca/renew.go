package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/policy"
)

// Audit actions of renewal.
const (
	ActionRenewRefused = "certificate.renew.refused"
	ActionRenewed      = "certificate.renewed"
)

// RenewRequest asks for a new certificate to replace Serial.
type RenewRequest struct {
	Serial pki.Serial
	// CSR, when not empty, rekeys: the new certificate certifies the CSR's
	// key, checked like any CSR, for names that the old certificate held.
	// Without it the old certificate's key is certified again.
	CSR            string
	ValidityDays   int
	RevokePrevious bool // revoke the old certificate as superseded once the new one is issued
	RequestID      string
}

// Renew issues the certificate that replaces req.Serial, for principal p of
// account acct (as read for this request). p is an account acting through a
// token or through the certificate itself (mTLS); the old certificate must
// be p's, unexpired and unrevoked, and the account must still be allowed to
// hold certificates. The new certificate has a new serial and the policy's
// validity (remaining time is not carried over); its names are the old ones,
// checked again. A certificate is renewed once: a second renewal is a
// ConflictError naming the replacement.
func (s *Service) Renew(ctx context.Context, p pki.Principal, acct *pki.Account, req RenewRequest) (*pki.Certificate, error) {
	ev := pki.AuditEvent{Actor: p.Actor(), AccountID: acct.ID, Serial: req.Serial, RequestID: req.RequestID}
	refuse := func(err error) error { return s.auditRefusal(ctx, ev, ActionRenewRefused, err) }

	old, err := s.store.Certificate(ctx, req.Serial)
	if err != nil {
		return nil, err
	}
	if old.State != pki.StateIssued || !mayRead(p, old) {
		return nil, pki.ErrNotFound
	}
	now := s.opts.Now()
	switch {
	case old.RevokedAt != nil:
		return nil, refuse(&pki.ConflictError{Kind: pki.KindCertificateRevoked,
			Detail: "a revoked certificate cannot be renewed; enroll a new key with an account token"})
	case !now.Before(old.NotAfter):
		return nil, refuse(&pki.ConflictError{Kind: pki.KindCertificateExpired,
			Detail: "the certificate expired at " + old.NotAfter.UTC().Format(time.RFC3339) + "; enroll again with an account token"})
	case now.Before(old.NotBefore):
		return nil, refuse(&pki.ConflictError{Kind: pki.KindNotYetValid, Detail: "the certificate is not valid yet"})
	}
	if next, err := s.store.Renewal(ctx, old.Serial); err == nil {
		return nil, refuse(&pki.ConflictError{Kind: pki.KindAlreadyReplaced,
			Detail: fmt.Sprintf("certificate %s was renewed already, by %s", old.Serial, next.Serial)})
	} else if !errors.Is(err, pki.ErrNotFound) {
		return nil, err
	}
	if err := acct.MayHoldCertificates(); err != nil {
		return nil, refuse(err)
	}
	// The account's policy as it is now, not as it was when old was issued
	// (SECURITY.md R-08): old's names, key and URIs must still fit it.
	rules, err := s.accountRules(ctx, acct, old)
	if err != nil {
		return nil, s.refusal(ctx, ev, ActionRenewRefused, err)
	}
	checked, err := s.renewalSubject(old, req.CSR, rules.limits)
	if err != nil {
		return nil, refuse(err)
	}
	if err := rules.check(checked); err != nil {
		return nil, refuse(err)
	}
	validity, err := s.validity(req.ValidityDays)
	if err != nil {
		return nil, refuse(err)
	}
	validity = rules.validity(validity)
	serial := old.Serial
	c, err := s.sign(ctx, signRequest{
		event: ev, account: acct, checked: checked, validity: validity,
		renewedFrom: &serial, requestID: req.RequestID,
	})
	if errors.Is(err, pki.ErrAlreadyExists) {
		// A concurrent renewal won between our check and our write.
		return nil, refuse(&pki.ConflictError{Kind: pki.KindAlreadyReplaced, Detail: "certificate " + string(old.Serial) + " was renewed already"})
	}
	if err != nil {
		return nil, err
	}
	renewed := pki.AuditEvent{Actor: p.Actor(), Action: ActionRenewed, Outcome: pki.OutcomeSuccess, AccountID: acct.ID,
		Serial: c.Serial, RequestID: req.RequestID,
		Detail: map[string]any{"renewed_from": old.Serial, "rekey": req.CSR != "", "revoke_previous": req.RevokePrevious}}
	if err := s.store.RecordAudit(ctx, renewed); err != nil {
		return nil, err
	}
	if req.RevokePrevious {
		if _, err := s.Revoke(ctx, p, old.Serial, pki.ReasonSuperseded.String(), req.RequestID); err != nil {
			// The new certificate exists and is recorded; report the failure
			// to revoke the old one rather than hide it.
			return nil, fmt.Errorf("ca: renewed %s as %s, but revoking the old certificate failed: %w", old.Serial, c.Serial, err)
		}
	}
	return c, nil
}

// renewalSubject returns what the renewal certifies: the old certificate's
// key and names, or, when csrPEM is given, the CSR's key with names that the
// old certificate held (a rekey may narrow the names, never widen them:
// SECURITY.md R-07). Either way the key and names are checked again, as on
// first issuance, with lim (the account's URI namespace included).
func (s *Service) renewalSubject(old *pki.Certificate, csrPEM string, lim policy.Limits) (*policy.Checked, error) {
	oldCert, err := x509.ParseCertificate(old.DER)
	if err != nil {
		return nil, fmt.Errorf("ca: parsing stored certificate %s: %w", old.Serial, err)
	}
	if csrPEM == "" {
		if err := policy.CheckPublicKey(oldCert.PublicKey); err != nil {
			return nil, err
		}
		// The names are held to today's rules, not to those of the day the
		// certificate was issued.
		if cn := oldCert.Subject.CommonName; cn != "" {
			if err := policy.CheckCommonName(cn); err != nil {
				return nil, err
			}
		}
		for _, n := range oldCert.DNSNames {
			if err := policy.CheckDNSName(n, lim); err != nil {
				return nil, err
			}
		}
		sum, err := policy.SPKIHash(oldCert.PublicKey)
		if err != nil {
			return nil, err
		}
		checked := &policy.Checked{
			PublicKey: oldCert.PublicKey, CommonName: oldCert.Subject.CommonName,
			DNSNames: oldCert.DNSNames, SPKISHA256: sum,
		}
		if err := renewalURIs(oldCert, checked, false, lim.URINamespace); err != nil {
			return nil, err
		}
		return checked, nil
	}
	csr, err := policy.ParseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	checked, err := policy.CheckCSR(csr, lim)
	if err != nil {
		return nil, err
	}
	if err := renewalURIs(oldCert, checked, true, lim.URINamespace); err != nil {
		return nil, err
	}
	if checked.CommonName != "" && checked.CommonName != oldCert.Subject.CommonName {
		return nil, &pki.PolicyError{Kind: pki.KindRejectedIdentifier, Title: "Name not allowed",
			Detail: "a renewal may not change the common name; enroll a new certificate with an account token"}
	}
	for _, n := range checked.DNSNames {
		if !slices.Contains(oldCert.DNSNames, n) {
			return nil, &pki.PolicyError{Kind: pki.KindRejectedIdentifier, Title: "Name not allowed",
				Detail: fmt.Sprintf("DNS name %q is not in the certificate being renewed", n)}
		}
	}
	if checked.CommonName == "" && len(checked.DNSNames) == 0 {
		checked.CommonName = oldCert.Subject.CommonName
	}
	return checked, nil
}

// AuthenticateCertificate authenticates a client by the certificate it
// presented over TLS (already verified to chain to pkid's root), for
// renewing serial: the certificate must be exactly the recorded certificate
// serial, unexpired and unrevoked, and its account must exist. A different
// certificate is a PolicyError (403): the client is someone, but not the
// holder of the certificate it asks to renew.
func (s *Service) AuthenticateCertificate(ctx context.Context, der []byte, serial pki.Serial) (pki.Principal, *pki.Account, error) {
	presented, err := x509.ParseCertificate(der)
	if err != nil {
		return pki.Principal{}, nil, pki.ErrUnauthenticated
	}
	notThis := &pki.PolicyError{Kind: pki.KindForbidden, Title: "Client certificate does not match",
		Detail: "the client certificate is not the certificate named in the path; renew it with its own certificate or an account token"}
	if pki.SerialFromBig(presented.SerialNumber) != serial {
		return pki.Principal{}, nil, notThis
	}
	c, err := s.store.Certificate(ctx, serial)
	if errors.Is(err, pki.ErrNotFound) {
		return pki.Principal{}, nil, notThis
	}
	if err != nil {
		return pki.Principal{}, nil, err
	}
	if c.State != pki.StateIssued || !bytesEqual(c.DER, der) {
		return pki.Principal{}, nil, notThis
	}
	acct, err := s.store.Account(ctx, c.AccountID)
	if err != nil {
		if errors.Is(err, pki.ErrNotFound) {
			return pki.Principal{}, nil, pki.ErrUnauthenticated
		}
		return pki.Principal{}, nil, err
	}
	p := pki.Principal{Kind: pki.PrincipalAccount, AccountID: c.AccountID, TokenID: "certificate:" + string(serial)}
	return p, acct, nil
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }
