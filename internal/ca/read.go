package ca

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

var cryptoRand = rand.Reader

// Certificate returns the certificate with this serial if the principal may
// see it: an administrator sees every certificate, an account only its own.
// Anything else, and a pending certificate, is ErrNotFound, so that another
// account's serial cannot be told from one that does not exist.
func (s *Service) Certificate(ctx context.Context, p pki.Principal, serial pki.Serial) (*pki.Certificate, error) {
	c, err := s.store.Certificate(ctx, serial)
	if err != nil {
		return nil, err
	}
	if c.State != pki.StateIssued || !mayRead(p, c) {
		return nil, pki.ErrNotFound
	}
	return c, nil
}

// Certificates lists certificates for the principal: an account sees only its
// own, whatever the filter says; an administrator sees what the filter
// selects.
func (s *Service) Certificates(ctx context.Context, p pki.Principal, f pki.CertificateFilter) ([]*pki.Certificate, string, error) {
	if p.Kind == pki.PrincipalAccount {
		f.AccountID = p.AccountID
	}
	if f.Status != "" && !f.Status.Valid() {
		return nil, "", pki.Malformed("status must be active, revoked or expired")
	}
	f.Now = s.opts.Now()
	return s.store.Certificates(ctx, f)
}

// Now returns the service's clock reading, for rendering statuses.
func (s *Service) Now() time.Time { return s.opts.Now() }

func mayRead(p pki.Principal, c *pki.Certificate) bool {
	switch p.Kind {
	case pki.PrincipalAdmin:
		return true
	case pki.PrincipalAccount:
		return p.AccountID == c.AccountID
	}
	return false
}
