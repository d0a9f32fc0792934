package crl

import (
	"context"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// Store is what a Job needs of the database. Errors are pki errors:
// pki.ErrNotFound, or an error wrapping pki.ErrUnavailable when the database
// cannot be reached.
type Store interface {
	// GenerateCRL runs build in one transaction that holds the issuer's CRL
	// lock, with the issuer's newest CRL (prev, without DER; nil when there
	// is none), the next CRL number, and revoked, which returns the
	// issuer's revoked certificates, pending or issued, whose notAfter is
	// at or after from. It stores the CRL and audit event build returns,
	// keeps the newest keep CRLs of the issuer (keep <= 0: all), announces
	// the CRL and commits; when build fails it writes nothing.
	GenerateCRL(ctx context.Context, issuerID string, keep int,
		build func(prev *pki.CRL, number int64, revoked func(from time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error)) error
	// LatestCRLInfo returns the issuer's newest CRL without its DER, or
	// pki.ErrNotFound.
	LatestCRLInfo(ctx context.Context, issuerID string) (*pki.CRL, error)
	// LatestRevocation returns the latest revocation time among the
	// issuer's certificates; zero when none is revoked.
	LatestRevocation(ctx context.Context, issuerID string) (time.Time, error)
	// RecordAudit writes an audit event on its own.
	RecordAudit(ctx context.Context, ev pki.AuditEvent) error
}

// CacheStore is what a Cache reads from the database.
type CacheStore interface {
	// LatestCRL returns the issuer's newest CRL, DER included, or
	// pki.ErrNotFound.
	LatestCRL(ctx context.Context, issuerID string) (*pki.CRL, error)
	// LatestCRLInfo is LatestCRL without the DER.
	LatestCRLInfo(ctx context.Context, issuerID string) (*pki.CRL, error)
	// ListenCRL listens on a connection of its own for the notifications
	// that announce a new CRL (payload: the issuer id), calls listening
	// once the LISTEN is in place and notify for each one, in order, from
	// the calling goroutine. It returns when ctx ends or the connection
	// fails; the caller reconnects.
	ListenCRL(ctx context.Context, listening func(), notify func(issuerID string)) error
}
