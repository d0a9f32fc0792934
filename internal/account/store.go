package account

import (
	"context"

	"github.com/pkid/pkid/internal/pki"
)

// Store is what account administration needs from the database. Each write
// is one transaction that also writes the audit event passed in.
type Store interface {
	// CreateAccount inserts a, filling in ID, CreatedAt and UpdatedAt.
	CreateAccount(ctx context.Context, a *pki.Account, ev pki.AuditEvent) error
	// Account returns one account, or ErrNotFound.
	Account(ctx context.Context, id string) (*pki.Account, error)
	// Accounts lists every account, oldest first.
	Accounts(ctx context.Context) ([]*pki.Account, error)
	// UpdateAccount applies change to the account under a row lock and saves
	// it; ev is completed by change (it may add detail) and written with it.
	// If change returns an error nothing is written.
	UpdateAccount(ctx context.Context, id string, change func(*pki.Account, *pki.AuditEvent) error, ev pki.AuditEvent) (*pki.Account, error)

	// CreateToken inserts a token record (ID chosen by the caller).
	CreateToken(ctx context.Context, t *pki.Token, ev pki.AuditEvent) error
	// Tokens lists an account's tokens, newest first.
	Tokens(ctx context.Context, accountID string) ([]*pki.Token, error)
	// RevokeToken marks an account's token revoked at ev.OccurredAt. It returns
	// ErrNotFound when the token does not exist or belongs to another account.
	// Revoking a revoked token succeeds and changes nothing.
	RevokeToken(ctx context.Context, accountID, tokenID string, ev pki.AuditEvent) error

	// CreateAdmin inserts an administrator (ErrAlreadyExists if the username
	// is taken), filling in ID and CreatedAt.
	CreateAdmin(ctx context.Context, a *pki.Admin, ev pki.AuditEvent) error
	// AdminByUsername returns an administrator by canonical username, or
	// ErrNotFound.
	AdminByUsername(ctx context.Context, username string) (*pki.Admin, error)

	// SearchAudit returns the audit events matching every set field of f,
	// newest first (oldest first when f.Ascending), with their hash-chain
	// links once linked.
	SearchAudit(ctx context.Context, f pki.AuditFilter) ([]pki.AuditEvent, error)
	// AuditChainHead returns the head of the audit trail's hash chain and
	// how many events are not linked yet.
	AuditChainHead(ctx context.Context) (pki.AuditChainHead, error)
	// RecordAudit writes an audit event on its own.
	RecordAudit(ctx context.Context, ev pki.AuditEvent) error
}
