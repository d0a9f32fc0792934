package auth

import (
	"context"

	"github.com/pkid/pkid/internal/pki"
)

// Store is what token checking needs from the database: the token's record
// (revocation) and, for account tokens, the account's current state. Both are
// read on every request, so a revoked token or a suspended account takes
// effect at once.
type Store interface {
	// Token returns the record of the token with this jti, or ErrNotFound.
	Token(ctx context.Context, id string) (*pki.Token, error)
	// TokenAndAccount returns the record of the token with jti tokenID (or
	// ErrNotFound) and the account accountID (nil when there is none), in
	// one round trip: what every request with an account token reads. The
	// account may carry its issuance policy (pki.Account.Policy), which auth
	// passes on to the use cases without looking at it.
	TokenAndAccount(ctx context.Context, tokenID, accountID string) (*pki.Token, *pki.Account, error)
}

// KeyStore keeps the keys that sign pkid's JWTs.
type KeyStore interface {
	// TokenKeys returns every token key that is not retired.
	TokenKeys(ctx context.Context) ([]*pki.TokenKeyRecord, error)
	// InsertTokenKey stores a new token key. ErrAlreadyExists when a current
	// key exists already (two inits at once).
	InsertTokenKey(ctx context.Context, k *pki.TokenKeyRecord, ev pki.AuditEvent) error
}
