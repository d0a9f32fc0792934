package ocsp

import (
	"context"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// Store is what the Cache reads from the database. Errors are pki errors:
// pki.ErrNotFound, or an error wrapping pki.ErrUnavailable when the database
// cannot be reached.
type Store interface {
	// OCSPResponse returns the stored response for serial, unless both it
	// and its certificate have expired at now (then, and for a serial
	// without a response, pki.ErrNotFound): RFC 5019 §2.2.3 lets a
	// responder forget expired certificates, and pkid stops re-signing
	// them. A response past its nextUpdate for an unexpired certificate is
	// returned: the caller must not serve it, and must say why.
	OCSPResponse(ctx context.Context, serial pki.Serial, now time.Time) (*pki.OCSPResponse, error)
	// FirstOCSPResponse signs with sign, from the certificate's row, and
	// stores the first response of serial, which has none; when another
	// response was stored meanwhile (another node's first, a revocation's)
	// it returns that one instead. It fails with pki.ErrNotFound when serial
	// is not a certificate or has expired at now.
	FirstOCSPResponse(ctx context.Context, serial pki.Serial, now time.Time,
		sign func(c *pki.Certificate) (*pki.OCSPResponse, error)) (*pki.OCSPResponse, error)
	// EachOCSPResponse calls fn for every response whose nextUpdate is
	// after now, as the rows arrive (memory stays flat), and stops at fn's
	// first error.
	EachOCSPResponse(ctx context.Context, now time.Time, fn func(*pki.OCSPResponse) error) error
	// OCSPResponsesSince returns up to limit responses written at or
	// after since, ordered by (UpdatedAt, Serial) and starting after
	// (since, after) in that order: one page of what changed.
	OCSPResponsesSince(ctx context.Context, since time.Time, after pki.Serial, limit int) ([]*pki.OCSPResponse, error)
	// ListenOCSP listens on a connection of its own for the notifications
	// that announce a changed response (payload: the serial), calls
	// listening once the LISTEN is in place and notify for each one, in
	// order, from the calling goroutine. It returns when ctx ends or the
	// connection fails; the caller reconnects.
	ListenOCSP(ctx context.Context, listening func(), notify func(pki.Serial)) error
}

// ResignStore is what the Resigner needs from the database.
type ResignStore interface {
	// ResignOCSP, in one transaction, locks up to limit stored responses
	// of the issuers issuerIDs whose nextUpdate is before due and whose
	// certificate has not expired at now, skipping rows that another
	// transaction holds; it calls sign for each, in nextUpdate order, with
	// the certificate as it stands (Serial, IssuerID, NotAfter, RevokedAt,
	// RevocationReason are set) and the stored response, and writes back
	// every response sign returns where the row's UpdatedAt is still the
	// stored one. A nil response from sign skips the row; an error from sign
	// rolls everything back. It returns what it wrote, with UpdatedAt set,
	// and how many rows it locked.
	ResignOCSP(ctx context.Context, due, now time.Time, issuerIDs []string, limit int,
		sign func(c *pki.Certificate, old *pki.OCSPResponse) (*pki.OCSPResponse, error)) (written []*pki.OCSPResponse, selected int, err error)
	// PurgeOCSP deletes up to limit responses that are past their
	// nextUpdate and whose certificate has expired, at now, and returns how
	// many it deleted. No one may be told anything about them any more
	// (OCSPResponse treats them as absent already); deleting them keeps the
	// re-signing queries from walking an ever longer history.
	PurgeOCSP(ctx context.Context, now time.Time, limit int) (int, error)
}
