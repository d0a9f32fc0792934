package web

import (
	"context"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// Store is what the admin page needs from the database beyond the use
// cases: sessions, login throttling and the reads that only a console needs.
// Every change of state other than signing in and out goes through
// account.Service and ca.Service.
type Store interface {
	SessionStore
	Reads
}

// SessionStore keeps signed-in sessions and counts login attempts, in the
// database so that every node shares them.
type SessionStore interface {
	// AdminByUsername returns an administrator by canonical username, or
	// ErrNotFound.
	AdminByUsername(ctx context.Context, username string) (*pki.Admin, error)
	// CreateAdminSession stores s, deletes the session whose id hash is
	// replaced (nil: none) and writes ev, in one transaction; it fills in
	// s.Username.
	CreateAdminSession(ctx context.Context, s *pki.Session, replaced []byte, ev pki.AuditEvent) error
	// AdminSession returns the live session with this id hash and marks it
	// seen at now; a session past its ExpiresAt or not seen since idleSince
	// is ErrNotFound.
	AdminSession(ctx context.Context, idHash []byte, now, idleSince time.Time) (*pki.Session, error)
	// DeleteAdminSession ends a session, writing ev if there was one.
	DeleteAdminSession(ctx context.Context, idHash []byte, ev pki.AuditEvent) (bool, error)
	// PurgeAdminSessions deletes the sessions that are no longer live.
	PurgeAdminSessions(ctx context.Context, now, idleSince time.Time) (int64, error)
	// CountLoginAttempt counts an attempt against key in a fixed window
	// (a window that started at or before windowSince restarts at now) and
	// returns the attempts in the current window and when it started.
	CountLoginAttempt(ctx context.Context, key string, now, windowSince time.Time) (int, time.Time, error)
	// ClearLoginAttempts forgets the attempts counted against key.
	ClearLoginAttempts(ctx context.Context, key string) error
	// RecordAudit writes an audit event on its own.
	RecordAudit(ctx context.Context, ev pki.AuditEvent) error
}

// Reads are the searches and counts of the admin page.
type Reads interface {
	// SearchAccounts returns a page of accounts matching f, newest first,
	// and the number that match in all.
	SearchAccounts(ctx context.Context, f pki.AccountFilter) ([]*pki.Account, int, error)
	// AccountCounts counts accounts by plan and status.
	AccountCounts(ctx context.Context) (map[pki.Plan]map[pki.AccountStatus]int, error)
	// CertificateCounts counts issued certificates active at now, those of
	// them expiring by soon, and revoked ones.
	CertificateCounts(ctx context.Context, now, soon time.Time) (active, expiring, revoked int, err error)
	// ExpiringCertificates lists active certificates expiring by before,
	// soonest first, with the cursor of the next page.
	ExpiringCertificates(ctx context.Context, f pki.CertificateFilter, before time.Time) ([]*pki.Certificate, string, error)
	// SearchAudit returns audit events matching every set field of f,
	// newest first.
	SearchAudit(ctx context.Context, f pki.AuditFilter) ([]pki.AuditEvent, error)
	// LatestCRLInfo returns the newest CRL of an issuer without its DER,
	// or ErrNotFound before the first.
	LatestCRLInfo(ctx context.Context, issuerID string) (*pki.CRL, error)
}
