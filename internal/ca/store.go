package ca

import (
	"context"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// Store is what the certificate use cases need from the database. Each method
// is one transaction; the audit event passed in is written in that same
// transaction, so a change is never recorded without its audit entry or the
// other way round. Errors are pki errors (ErrNotFound, ErrKeyBlocked,
// ErrKeyInUse, ErrSerialCollision, ErrUnavailable) or wrap them.
type Store interface {
	// CreatePending records a certificate that is about to be signed (state
	// pending, LintDER set, DER nil); from then on OCSP answers for it. It
	// fails with ErrKeyBlocked when the SPKI hash is on the block list,
	// ErrKeyInUse when a certificate of another account has the same SPKI
	// hash, and ErrSerialCollision when the serial exists. Concurrent calls
	// for one key are serialised so that two accounts cannot both claim it.
	CreatePending(ctx context.Context, c *pki.Certificate, ev pki.AuditEvent) error
	// MarkIssued stores the signed certificate for a pending row and moves it
	// to issued.
	MarkIssued(ctx context.Context, serial pki.Serial, der, fingerprint []byte, ev pki.AuditEvent) error
	// Certificate returns one certificate by serial, or ErrNotFound.
	Certificate(ctx context.Context, serial pki.Serial) (*pki.Certificate, error)
	// Certificates returns one page of certificates matching f, newest first,
	// and the cursor of the next page ("" on the last page). Pending rows are
	// not listed.
	Certificates(ctx context.Context, f pki.CertificateFilter) ([]*pki.Certificate, string, error)
	// RecordAudit writes an audit event on its own, for refusals that change
	// nothing else.
	RecordAudit(ctx context.Context, ev pki.AuditEvent) error

	RevocationStore
	PolicyStore
}

// HierarchyStore keeps the CA hierarchy: the root, the issuing intermediate
// and the delegated OCSP signer, with their sealed keys.
type HierarchyStore interface {
	// Issuers returns every issuer that is not retired.
	Issuers(ctx context.Context) ([]*pki.IssuerRecord, error)
	// InsertIssuers stores new issuers in one transaction with ev.
	// ErrAlreadyExists when another process created a current issuer of the
	// same kind first (pkid init run twice at once).
	InsertIssuers(ctx context.Context, recs []*pki.IssuerRecord, ev pki.AuditEvent) error
	// ReplaceIssuer retires old and stores its successor in one transaction
	// (OCSP signer renewal, intermediate rotation). It returns ErrNotFound,
	// storing nothing, when old is no longer current (another node replaced
	// it first).
	ReplaceIssuer(ctx context.Context, oldID string, rec *pki.IssuerRecord, ev pki.AuditEvent) error

	// RetiredIntermediates returns the intermediates that have been
	// retired, for the chains of their (expired) certificates.
	RetiredIntermediates(ctx context.Context) ([]*pki.IssuerRecord, error)
	// RotateIntermediate marks the current intermediate oldID superseded and
	// stores its successor inter and the successor's OCSP signer, with ev, in
	// one transaction. It returns ErrNotFound, storing nothing, when oldID is
	// no longer the current intermediate (another rotation won).
	RotateIntermediate(ctx context.Context, oldID string, inter, signer *pki.IssuerRecord, ev pki.AuditEvent) error
	// RetireIntermediate retires the superseded intermediate id and its OCSP
	// signers, with ev, in one transaction; ErrNotFound when it is not a
	// live superseded intermediate (another node retired it first).
	RetireIntermediate(ctx context.Context, id string, ev pki.AuditEvent) error
	// TakeKeyOffline removes the sealed key of the root id from the
	// database, leaving keyURI in its place, with ev, in one transaction;
	// ErrNotFound when the root's key is not in the database.
	TakeKeyOffline(ctx context.Context, id, keyURI string, ev pki.AuditEvent) error
	// LastCertificateExpiry returns the latest notAfter of the certificates
	// issuerID issued (pending ones included), or the zero time.
	LastCertificateExpiry(ctx context.Context, issuerID string) (time.Time, error)

	// LatestCRL returns the newest CRL of an issuer, or ErrNotFound.
	LatestCRL(ctx context.Context, issuerID string) (*pki.CRL, error)
	// NextCRLNumber draws the next CRL number (they grow across issuers and
	// nodes).
	NextCRLNumber(ctx context.Context) (int64, error)
	// InsertCRL stores a CRL signed outside the CRL job (the root's) with ev.
	InsertCRL(ctx context.Context, c *pki.CRL, ev pki.AuditEvent) error
}

// RevocationStore is what revocation needs from the database.
type RevocationStore interface {
	// CertificatesByKey returns every certificate, pending or issued, whose
	// SPKI hash is spki and whose notAfter is after after.
	CertificatesByKey(ctx context.Context, spki []byte, after time.Time) ([]*pki.Certificate, error)
	// Revoke applies revocations and, when block is not nil, blocks a key, in
	// one transaction with their audit events; each revocation also stores
	// its new OCSP response and notifies every node (channel pkid_ocsp). A
	// revocation whose certificate is no longer as its Prev fields say is
	// skipped. It returns the serials it changed, with each response's
	// UpdatedAt set.
	Revoke(ctx context.Context, revs []*pki.Revocation, block *pki.BlockedKey) ([]pki.Serial, error)
	// Account returns one account, or ErrNotFound.
	Account(ctx context.Context, id string) (*pki.Account, error)
	// Renewal returns the certificate that renewed serial, or ErrNotFound.
	Renewal(ctx context.Context, serial pki.Serial) (*pki.Certificate, error)
}
