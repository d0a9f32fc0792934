package sealedkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/scrypt"
)

// Box seals short secrets that pkid must be able to read back, such as the
// HMAC secrets that sign webhook notices (a hash would not do: pkid signs
// with them). Seal's PKCS#8 form fits private keys only, and costs a
// scrypt derivation per key, which is right for keys opened once at start
// but not for a secret read at every delivery. A Box derives one AES-256 key
// from the passphrase and a per-deployment salt, with Seal's scrypt
// parameters, once; each secret is then sealed with AES-256-GCM under a
// fresh random nonce and bound to a context (for example the account it
// belongs to), so that a sealed value copied to another row does not open.
//
// Anyone with the database and the passphrase can open what a Box sealed,
// as they can open the CA keys: the passphrase is the one secret pkid keeps
// outside the database.
type Box struct {
	aead cipher.AEAD
}

// boxVersion is the first byte of every sealed value, so that the format
// can change without guessing.
const boxVersion = 1

// MinSaltLength is the shortest salt NewBox accepts.
const MinSaltLength = 16

// NewBox derives a Box's key from passphrase and salt (at least
// MinSaltLength random bytes, the same on every node that must open what
// another sealed). It costs one scrypt derivation: about 80 ms of one core.
func NewBox(passphrase, salt []byte) (*Box, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	if len(salt) < MinSaltLength {
		return nil, fmt.Errorf("sealedkey: box salt of %d bytes is shorter than %d", len(salt), MinSaltLength)
	}
	key, err := scrypt.Key(passphrase, salt, scryptN, scryptR, scryptP, 32)
	if err != nil {
		return nil, fmt.Errorf("sealedkey: deriving the box key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext, bound to context, and returns version || nonce ||
// ciphertext and tag.
func (b *Box) Seal(plaintext, context []byte) []byte {
	out := make([]byte, 1+b.aead.NonceSize(), 1+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	out[0] = boxVersion
	if _, err := rand.Read(out[1:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return b.aead.Seal(out, out[1:], plaintext, context)
}

// Open decrypts what Seal sealed with the same context. A value sealed
// under another passphrase or salt, for another context, or changed in any
// byte gives ErrWrongPassphrase (GCM cannot tell these apart).
func (b *Box) Open(sealed, context []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < 1+n+b.aead.Overhead() {
		return nil, errors.New("sealedkey: sealed value too short")
	}
	if sealed[0] != boxVersion {
		return nil, fmt.Errorf("sealedkey: sealed value of version %d, want %d", sealed[0], boxVersion)
	}
	plain, err := b.aead.Open(nil, sealed[1:1+n], sealed[1+n:], context)
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	return plain, nil
}
