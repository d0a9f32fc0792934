package auth

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// verifiedCacheSize bounds how many verified tokens are remembered. Clients
// reuse one token for many requests, so a few thousand cover every busy
// client of a node.
const verifiedCacheSize = 4096

// verifiedCache remembers tokens whose signature and claims Parse has
// verified, so that a client's next request with the same token costs a
// hash instead of an ECDSA verification (about 100 µs on a small core, the
// largest per-request cost after issuance itself).
//
// It is sound because a token is immutable: the same bytes carry the same
// signature by the same key and the same claims. Of the time-dependent
// checks only exp can turn false later (nbf and iat only become truer), so
// a hit re-checks exp. Revocation is not the cache's business: the
// Authenticator reads the token's record from the database on every request
// either way. Keys are SHA-256 of the token, so the cache holds no bearer
// secrets.
type verifiedCache struct {
	mu      sync.Mutex
	entries map[verifiedKey]*Claims
}

type verifiedKey struct {
	sum  [sha256.Size]byte
	kind pki.TokenKind
}

func (c *verifiedCache) get(raw string, kind pki.TokenKind, now time.Time) (*Claims, bool) {
	k := verifiedKey{sha256.Sum256([]byte(raw)), kind}
	c.mu.Lock()
	claims, ok := c.entries[k]
	c.mu.Unlock()
	if !ok || !now.Before(claims.ExpiresAt.Add(Leeway)) {
		return nil, false
	}
	cp := *claims
	return &cp, true
}

func (c *verifiedCache) put(raw string, kind pki.TokenKind, claims *Claims) {
	k := verifiedKey{sha256.Sum256([]byte(raw)), kind}
	cp := *claims
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= verifiedCacheSize {
		// Starting over is simpler than LRU and costs one verification per
		// active token, once per verifiedCacheSize new tokens.
		c.entries = make(map[verifiedKey]*Claims, verifiedCacheSize)
	}
	c.entries[k] = &cp
}
