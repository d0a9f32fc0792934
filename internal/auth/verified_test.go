package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// TestVerifiedCache: a remembered token is still refused once expired, and
// never accepted for the other kind.
func TestVerifiedCache(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tokens := NewTokens(keys, func() time.Time { return now })
	raw, err := tokens.Mint(Claims{TokenID: "6b1c1d5e-0000-4000-8000-000000000000", Kind: pki.TokenAccount,
		Subject: "6b1c1d5e-0000-4000-8000-000000000001", ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the second parse is served from the cache
		if _, err := tokens.Parse(raw, pki.TokenAccount); err != nil {
			t.Fatalf("parse %d: %v", i, err)
		}
	}
	if _, err := tokens.Parse(raw, pki.TokenAdmin); !errors.Is(err, pki.ErrUnauthenticated) {
		t.Errorf("account token accepted as admin token after caching: %v", err)
	}
	now = now.Add(time.Hour + Leeway + time.Second)
	if _, err := tokens.Parse(raw, pki.TokenAccount); !errors.Is(err, pki.ErrUnauthenticated) {
		t.Errorf("expired token accepted from the cache: %v", err)
	}
	// A token with one byte changed is verified afresh, and fails.
	tampered := raw[:len(raw)-2] + "A" + raw[len(raw)-1:]
	if tampered != raw {
		now = now.Add(-2 * time.Hour)
		if _, err := tokens.Parse(tampered, pki.TokenAccount); !errors.Is(err, pki.ErrUnauthenticated) {
			t.Errorf("tampered token accepted: %v", err)
		}
	}
}
