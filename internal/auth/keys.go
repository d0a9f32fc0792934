package auth

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/sealedkey"
)

// Algorithm is the JWS algorithm of every token pkid mints and the only one
// it accepts: ECDSA on P-256 with SHA-256 (RFC 7518 §3.4).
const Algorithm = "ES256"

// ErrNoTokenKey is returned by LoadKeys when the database holds no current
// token key: pkid init has not run.
var ErrNoTokenKey = errors.New("auth: no token signing key; run pkid init")

// Keys is the set of token keys pkid trusts and the one it signs with. A
// token is verified only against these keys, looked up by kid; nothing in a
// token can add a key. Keys is immutable and safe for concurrent use.
type Keys struct {
	signer    crypto.Signer
	signerKID string
	verify    map[string]*ecdsa.PublicKey
}

// NewKeys builds a key set from ECDSA P-256 signers. The first signs new
// tokens; all of them verify. Production code gets its Keys from LoadKeys;
// NewKeys serves tests and tools that hold keys in memory.
func NewKeys(signers ...crypto.Signer) (*Keys, error) {
	if len(signers) == 0 {
		return nil, ErrNoTokenKey
	}
	k := &Keys{verify: make(map[string]*ecdsa.PublicKey, len(signers))}
	for i, s := range signers {
		pub, kid, err := p256Key(s.Public())
		if err != nil {
			return nil, err
		}
		if _, dup := k.verify[kid]; dup {
			return nil, fmt.Errorf("auth: token key %s given twice", kid)
		}
		k.verify[kid] = pub
		if i == 0 {
			k.signer, k.signerKID = s, kid
		}
	}
	return k, nil
}

// KID returns the key ID of the signing key, as new tokens carry it.
func (k *Keys) KID() string { return k.signerKID }

// PublicKeys returns the public half of every trusted key, for example so that
// certificate policy can refuse to certify a token key.
func (k *Keys) PublicKeys() []crypto.PublicKey {
	out := make([]crypto.PublicKey, 0, len(k.verify))
	for _, pub := range k.verify {
		out = append(out, pub)
	}
	return out
}

// KeyID returns a token key's kid: the first 16 bytes of the SHA-256 of its
// DER SubjectPublicKeyInfo, in unpadded base64url. It is derived from the key
// so that the stored kid can be checked against the key it names.
func KeyID(pub crypto.PublicKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("auth: encoding token public key: %w", err)
	}
	sum := sha256.Sum256(spki)
	return base64.RawURLEncoding.EncodeToString(sum[:16]), nil
}

// p256Key checks that pub is an ECDSA P-256 key and returns it with its kid.
func p256Key(pub crypto.PublicKey) (*ecdsa.PublicKey, string, error) {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, "", fmt.Errorf("auth: a token key must be ECDSA P-256, not %T", pub)
	}
	kid, err := KeyID(ec)
	if err != nil {
		return nil, "", err
	}
	return ec, kid, nil
}

// EnsureKey makes sure a current token key exists. If none does, it makes an
// ECDSA P-256 key, seals it with passphrase and stores it with an audit event
// stamped now; created reports whether it did. When another process stores
// one first (ErrAlreadyExists), EnsureKey re-reads and is satisfied with that
// key. It does not open existing keys: LoadKeys does.
func EnsureKey(ctx context.Context, ks KeyStore, passphrase []byte, now time.Time) (created bool, err error) {
	recs, err := ks.TokenKeys(ctx)
	if err != nil {
		return false, fmt.Errorf("auth: reading token keys: %w", err)
	}
	if len(recs) > 0 {
		return false, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, fmt.Errorf("auth: generating a token key: %w", err)
	}
	kid, err := KeyID(key.Public())
	if err != nil {
		return false, err
	}
	sealed, err := sealedkey.Seal(key, passphrase)
	if err != nil {
		return false, fmt.Errorf("auth: sealing token key: %w", err)
	}
	rec := &pki.TokenKeyRecord{KID: kid, Algorithm: Algorithm, EncryptedKey: sealed, CreatedAt: now}
	ev := pki.AuditEvent{
		OccurredAt: now,
		Actor:      pki.Principal{Kind: pki.PrincipalSystem}.Actor(),
		Action:     "token_key.create",
		Outcome:    pki.OutcomeSuccess,
		Detail:     map[string]any{"kid": kid, "algorithm": Algorithm},
	}
	err = ks.InsertTokenKey(ctx, rec, ev)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, pki.ErrAlreadyExists):
		recs, rerr := ks.TokenKeys(ctx)
		if rerr != nil {
			return false, fmt.Errorf("auth: re-reading token keys: %w", rerr)
		}
		if len(recs) == 0 {
			return false, fmt.Errorf("auth: storing token key: %w, yet none is current", err)
		}
		return false, nil
	default:
		return false, fmt.Errorf("auth: storing token key: %w", err)
	}
}

// LoadKeys opens every current token key with passphrase. The newest signs
// new tokens; all verify. A wrong passphrase is an error wrapping
// sealedkey.ErrWrongPassphrase; a stored kid that does not match its key, or
// an algorithm other than ES256, is an error too, since either means the row
// was tampered with.
func LoadKeys(ctx context.Context, ks KeyStore, passphrase []byte) (*Keys, error) {
	recs, err := ks.TokenKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: reading token keys: %w", err)
	}
	if len(recs) == 0 {
		return nil, ErrNoTokenKey
	}
	recs = slices.Clone(recs)
	slices.SortFunc(recs, func(a, b *pki.TokenKeyRecord) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.KID, b.KID)
	})
	signers := make([]crypto.Signer, 0, len(recs))
	for _, rec := range recs {
		if rec.Algorithm != Algorithm {
			return nil, fmt.Errorf("auth: token key %q has algorithm %q, want %s", rec.KID, rec.Algorithm, Algorithm)
		}
		s, err := sealedkey.Open(rec.EncryptedKey, passphrase)
		if err != nil {
			return nil, fmt.Errorf("auth: opening token key %q: %w", rec.KID, err)
		}
		_, kid, err := p256Key(s.Public())
		if err != nil {
			return nil, fmt.Errorf("auth: token key %q: %w", rec.KID, err)
		}
		if kid != rec.KID {
			return nil, fmt.Errorf("auth: token key stored as %q is key %q", rec.KID, kid)
		}
		signers = append(signers, s)
	}
	return NewKeys(signers...)
}
