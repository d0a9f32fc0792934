package ca

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
)

// Audit actions of revocation.
const (
	ActionRevoked        = "certificate.revoked"
	ActionRevokeRefused  = "certificate.revoke.refused"
	ActionKeyBlocked     = "key.blocked"
	ActionAccountRevoked = "account.certificates.revoked"
)

// maxRevokeAttempts bounds how often Revoke re-reads a certificate that
// another request changed between its read and its write.
const maxRevokeAttempts = 3

// Revoke revokes the certificate with serial for reason (an RFC 5280 reason
// name; "" is unspecified; privilegeWithdrawn is for administrators only).
//
// It is idempotent as the contract says: revoking a revoked certificate
// answers with the record unchanged, except that keyCompromise replaces an
// earlier, different reason (the revocation date stays). keyCompromise also
// puts the key on the block list and revokes, with the same reason, every
// other unexpired certificate with that key in any account (SECURITY.md V-07,
// V-11, P11). An expired certificate cannot be revoked (ConflictError). An
// account may revoke only its own certificates (ErrNotFound otherwise).
//
// The changes, their new OCSP responses and audit events are committed in
// one transaction; Revoke returns only after this node's responder serves the
// new responses, and it nudges the CRL job.
func (s *Service) Revoke(ctx context.Context, p pki.Principal, serial pki.Serial, reasonName, requestID string) (*pki.Certificate, error) {
	ev := pki.AuditEvent{Actor: p.Actor(), Serial: serial, RequestID: requestID}
	if p.Kind == pki.PrincipalAccount {
		ev.AccountID = p.AccountID
	}
	reason, err := pki.ParseRevocationReason(reasonName, p.Kind != pki.PrincipalAccount)
	if err != nil {
		return nil, s.auditRefusal(ctx, ev, ActionRevokeRefused, err)
	}
	for attempt := 1; attempt <= maxRevokeAttempts; attempt++ {
		c, changed, err := s.revokeOnce(ctx, p, serial, reason, ev)
		if err != nil || changed {
			return c, err
		}
		// Another request changed the certificate between our read and our
		// write: read it again and decide afresh.
	}
	// Others kept winning the race: whatever they did, the certificate is
	// revoked now, and its record is the answer.
	c, err := s.Certificate(ctx, p, serial)
	if err == nil && c.RevokedAt == nil {
		err = fmt.Errorf("ca: revoking %s: the certificate kept changing under us", serial)
	}
	return c, err
}

// revokeOnce reads the certificate, decides what revocation means for it
// now, and writes that. changed is false when the write found the row
// changed by someone else, or when there was nothing to change.
func (s *Service) revokeOnce(ctx context.Context, p pki.Principal, serial pki.Serial, reason pki.RevocationReason, ev pki.AuditEvent) (*pki.Certificate, bool, error) {
	c, err := s.store.Certificate(ctx, serial)
	if err != nil {
		return nil, false, err
	}
	if !mayRead(p, c) {
		return nil, false, pki.ErrNotFound
	}
	ev.AccountID = c.AccountID
	now := s.opts.Now()
	rev, ok := plan(c, reason, now)
	if !ok {
		if c.RevokedAt == nil {
			return nil, false, s.auditRefusal(ctx, ev, ActionRevokeRefused, &pki.ConflictError{
				Kind: pki.KindCertificateExpired, Detail: "the certificate expired at " + c.NotAfter.UTC().Format(time.RFC3339) + "; it needs no revocation",
			})
		}
		return c, true, nil // revoked already: the record is the answer
	}
	targets := map[pki.Serial]*pki.Certificate{c.Serial: c}
	revs := []*pki.Revocation{rev}
	var block *pki.BlockedKey
	if reason == pki.ReasonKeyCompromise {
		siblings, err := s.store.CertificatesByKey(ctx, c.SPKISHA256, now)
		if err != nil {
			return nil, false, err
		}
		for _, sib := range siblings {
			if sib.Serial == c.Serial {
				continue
			}
			if r, ok := plan(sib, reason, now); ok {
				revs = append(revs, r)
				targets[sib.Serial] = sib
			}
		}
		block = &pki.BlockedKey{SPKISHA256: c.SPKISHA256, Serial: c.Serial, Event: pki.AuditEvent{
			Actor: ev.Actor, Action: ActionKeyBlocked, Outcome: pki.OutcomeSuccess, AccountID: c.AccountID,
			Serial: c.Serial, RequestID: ev.RequestID,
			Detail: map[string]any{"spki_sha256": hex.EncodeToString(c.SPKISHA256)},
		}}
	}

	issuers := map[string]bool{}
	for _, r := range revs {
		target := targets[r.Serial]
		r.Event = pki.AuditEvent{
			Actor: ev.Actor, Action: ActionRevoked, Outcome: pki.OutcomeSuccess, AccountID: target.AccountID,
			Serial: r.Serial, RequestID: ev.RequestID,
			Detail: map[string]any{"reason": r.Reason.String(), "revoked_at": r.RevokedAt},
		}
		if r.PrevReason != nil {
			r.Event.Detail["previous_reason"] = r.PrevReason.String()
		}
		if r.Serial != c.Serial {
			r.Event.Detail["key_compromise_of"] = c.Serial
		}
		issuer, err := s.hierarchy.IssuerByID(target.IssuerID)
		if err != nil {
			return nil, false, err
		}
		revoked := *target
		revoked.RevokedAt, revoked.RevocationReason = &r.RevokedAt, &r.Reason
		if r.Response, err = s.signOCSP(issuer, &revoked, now); err != nil {
			return nil, false, err
		}
		issuers[target.IssuerID] = true
	}

	changed, err := s.store.Revoke(ctx, revs, block)
	if err != nil {
		return nil, false, fmt.Errorf("ca: revoking %s: %w", c.Serial, err)
	}
	applied := map[pki.Serial]bool{}
	for _, sn := range changed {
		applied[sn] = true
	}
	var published []*pki.OCSPResponse
	for _, r := range revs {
		if applied[r.Serial] {
			published = append(published, r.Response)
		}
	}
	s.opts.Publisher.PublishOCSP(published...)
	for id := range issuers {
		s.opts.Publisher.RevocationCommitted(id)
	}
	if !applied[c.Serial] {
		return nil, false, nil
	}
	c.RevokedAt, c.RevocationReason = &rev.RevokedAt, &rev.Reason
	s.opts.Log.InfoContext(ctx, "certificate revoked", "serial", c.Serial, "reason", rev.Reason.String(),
		"swept", len(changed)-1, "actor", ev.Actor)
	return c, true, nil
}

// plan returns the revocation that reason means for c at now, or false when
// there is none to make: c is expired and not revoked, or c is revoked and
// the new reason changes nothing (only keyCompromise may replace another
// reason, and the revocation date never changes).
func plan(c *pki.Certificate, reason pki.RevocationReason, now time.Time) (*pki.Revocation, bool) {
	switch {
	case c.RevokedAt == nil && !now.Before(c.NotAfter):
		return nil, false
	case c.RevokedAt == nil:
		return &pki.Revocation{Serial: c.Serial, RevokedAt: now.UTC().Truncate(time.Second), Reason: reason}, true
	case reason == pki.ReasonKeyCompromise && *c.RevocationReason != pki.ReasonKeyCompromise:
		return &pki.Revocation{
			Serial: c.Serial, PrevRevokedAt: c.RevokedAt, PrevReason: c.RevocationReason,
			RevokedAt: *c.RevokedAt, Reason: reason,
		}, true
	default:
		return nil, false
	}
}

// RevokeAccount revokes every unexpired, unrevoked certificate of an
// account, as an administrator does when an account is suspended or leaves
// the Enterprise plan. It returns how many certificates it revoked.
func (s *Service) RevokeAccount(ctx context.Context, p pki.Principal, accountID, reasonName, requestID string) (int, error) {
	if p.Kind != pki.PrincipalAdmin {
		return 0, pki.ErrNotFound
	}
	reason, err := pki.ParseRevocationReason(reasonName, true)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		// Each round revokes one page of active certificates; revoked ones
		// drop out of the filter, so the first page is always the next.
		page, _, err := s.store.Certificates(ctx, pki.CertificateFilter{
			AccountID: accountID, Status: pki.StatusActive, Now: s.opts.Now(), Limit: 100,
		})
		if err != nil {
			return n, err
		}
		if len(page) == 0 {
			break
		}
		progress := false
		for _, c := range page {
			got, err := s.Revoke(ctx, p, c.Serial, reason.String(), requestID)
			if err != nil {
				var ce *pki.ConflictError
				if errors.As(err, &ce) {
					continue // expired meanwhile
				}
				return n, err
			}
			if got != nil && got.RevokedAt != nil {
				n++
				progress = true
			}
		}
		if !progress {
			break
		}
	}
	ev := pki.AuditEvent{Actor: p.Actor(), Action: ActionAccountRevoked, Outcome: pki.OutcomeSuccess,
		AccountID: accountID, RequestID: requestID, Detail: map[string]any{"reason": reason.String(), "revoked": n}}
	if err := s.store.RecordAudit(ctx, ev); err != nil {
		return n, err
	}
	return n, nil
}

// signOCSP signs c's current status (good, or revoked as recorded in c) with
// issuer's delegated OCSP signer, in the stored (SHA-1 CertID) form.
func (s *Service) signOCSP(issuer *issuance.Issuer, c *pki.Certificate, now time.Time) (*pki.OCSPResponse, error) {
	this, next := issuance.OCSPWindow(now, s.opts.OCSPValidity)
	st := issuance.OCSPStatus{Serial: c.Serial, ThisUpdate: this, NextUpdate: next}
	if c.RevokedAt != nil {
		st.Revoked, st.RevokedAt, st.Reason = true, *c.RevokedAt, *c.RevocationReason
	}
	signer := s.hierarchy.OCSPSignerFor(issuer.ID)
	if signer == nil {
		return nil, fmt.Errorf("ca: issuer %s is not loaded", issuer.ID)
	}
	der, err := signer.SignOCSP(issuer.Cert, st, crypto.SHA1)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return &pki.OCSPResponse{Serial: c.Serial, IssuerID: issuer.ID, DER: der, ThisUpdate: this, NextUpdate: next}, nil
}
