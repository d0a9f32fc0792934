// Package sealedkey keeps private keys at rest as encrypted PKCS#8 (RFC 5958
// EncryptedPrivateKeyInfo): PBES2 (RFC 8018) with the memory-hard scrypt KDF
// (RFC 7914) and AES-256-CBC, in a PEM block "ENCRYPTED PRIVATE KEY" (RFC 7468).
// OpenSSL opens the result with `openssl pkey -in key.pem -passin pass:...`,
// so an operator can always get a key out without pkid.
package sealedkey

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/youmark/pkcs8"
)

// PEMType is the PEM block type of a sealed key (RFC 7468 §11).
const PEMType = "ENCRYPTED PRIVATE KEY"

// The scrypt parameters Seal uses: RFC 7914's N=2^14, r=8, p=1. They need
// 16 MiB per guess and about 80 ms of one core here (0.6 s under the race
// detector: callers' tests should seal once and share the result). N=2^15
// would need just over OpenSSL 3's default 32 MiB cap on scrypt memory, and
// `openssl pkey` would refuse the file; p>1 multiplies the time but not the
// memory an attacker with GPUs must spend. Keys are opened once, when pkid
// starts, so the cost is paid rarely by pkid and on every guess by an attacker
// who has the database.
const (
	scryptN    = 1 << 14
	scryptR    = 8
	scryptP    = 1
	saltLength = 16
)

// Limits on the scrypt parameters Open accepts, so that a tampered or foreign
// blob cannot make pkid allocate gigabytes or spin for minutes before it finds
// out that the passphrase is wrong.
const (
	maxScryptMemory = 64 << 20 // bytes: 128 * r * N
	maxScryptP      = 16
)

// ErrWrongPassphrase is returned by Open when the passphrase does not decrypt
// the key. Open cannot tell a wrong passphrase from a ciphertext corrupted
// after encryption (CBC has no integrity check); both end here.
var ErrWrongPassphrase = errors.New("sealedkey: wrong passphrase")

// ErrEmptyPassphrase is returned by Seal and Open for an empty passphrase:
// the underlying library would silently write or expect an unencrypted key.
var ErrEmptyPassphrase = errors.New("sealedkey: empty passphrase")

var (
	oidPBES2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidScrypt    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// Seal encrypts key under passphrase and returns it as PEM. key must be an
// exportable software key (*ecdsa.PrivateKey, *rsa.PrivateKey or
// ed25519.PrivateKey); a key held by an HSM cannot be sealed and is refused.
func Seal(key crypto.Signer, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	switch key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
	default:
		return nil, fmt.Errorf("sealedkey: cannot seal a key of type %T: not an exportable software key", key)
	}
	der, err := pkcs8.MarshalPrivateKey(key, passphrase, &pkcs8.Opts{
		Cipher: pkcs8.AES256CBC,
		KDFOpts: pkcs8.ScryptOpts{
			SaltSize:                 saltLength,
			CostParameter:            scryptN,
			BlockSize:                scryptR,
			ParallelizationParameter: scryptP,
		},
	})
	if err != nil {
		// The library's errors name types and parameters, never key bytes.
		return nil, fmt.Errorf("sealedkey: encrypting key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMType, Bytes: der}), nil
}

// Open decrypts a key sealed by Seal (or by `openssl pkcs8 -topk8 -scrypt`
// with parameters within Open's limits). It accepts exactly one PEM block of
// type "ENCRYPTED PRIVATE KEY", PBES2 with scrypt and AES-256-CBC, and nothing
// else: in particular never an unencrypted key. A wrong passphrase yields
// ErrWrongPassphrase. Errors never contain key material.
func Open(pemBytes, passphrase []byte) (crypto.Signer, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("sealedkey: no PEM block found")
	}
	if block.Type != PEMType {
		// The type is the only thing said about the block: if it is an
		// unencrypted key, its bytes must not travel in an error.
		return nil, fmt.Errorf("sealedkey: PEM block is %q, want %q", block.Type, PEMType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("sealedkey: trailing data after the PEM block")
	}
	if err := checkParameters(block.Bytes); err != nil {
		return nil, err
	}
	key, _, err := pkcs8.ParsePrivateKey(block.Bytes, passphrase)
	if err != nil {
		// The structure and parameters were checked above, so what fails
		// here is the decryption: bad padding, or plaintext that is not a
		// PKCS#8 key, both the mark of a wrong key.
		return nil, ErrWrongPassphrase
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("sealedkey: sealed key of type %T cannot sign", key)
	}
	return signer, nil
}

// The ASN.1 of an EncryptedPrivateKeyInfo with PBES2 (RFC 5958, RFC 8018
// appendix A.4) and scrypt-params (RFC 7914 §7.1).
type encryptedPrivateKeyInfo struct {
	Algorithm     pkix.AlgorithmIdentifier
	EncryptedData []byte
}

type pbes2Params struct {
	KeyDerivationFunc pkix.AlgorithmIdentifier
	EncryptionScheme  pkix.AlgorithmIdentifier
}

type scryptParams struct {
	Salt                     []byte
	CostParameter            int
	BlockSize                int
	ParallelizationParameter int
	KeyLength                int `asn1:"optional"`
}

// checkParameters parses der far enough to check that it is what Seal writes
// and that the scrypt parameters are within limits, before any key
// derivation runs.
func checkParameters(der []byte) error {
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) != 0 {
		return errors.New("sealedkey: not an EncryptedPrivateKeyInfo")
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return fmt.Errorf("sealedkey: encryption scheme %s is not PBES2", info.Algorithm.Algorithm)
	}
	var params pbes2Params
	if rest, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params); err != nil || len(rest) != 0 {
		return errors.New("sealedkey: malformed PBES2 parameters")
	}
	if !params.EncryptionScheme.Algorithm.Equal(oidAES256CBC) {
		return fmt.Errorf("sealedkey: cipher %s is not AES-256-CBC", params.EncryptionScheme.Algorithm)
	}
	if !params.KeyDerivationFunc.Algorithm.Equal(oidScrypt) {
		return fmt.Errorf("sealedkey: key derivation %s is not scrypt", params.KeyDerivationFunc.Algorithm)
	}
	var sp scryptParams
	if rest, err := asn1.Unmarshal(params.KeyDerivationFunc.Parameters.FullBytes, &sp); err != nil || len(rest) != 0 {
		return errors.New("sealedkey: malformed scrypt parameters")
	}
	n, r, p := sp.CostParameter, sp.BlockSize, sp.ParallelizationParameter
	switch {
	case n < 2 || n&(n-1) != 0:
		return fmt.Errorf("sealedkey: scrypt N=%d is not a power of two above 1", n)
	case r < 1 || p < 1 || p > maxScryptP:
		return fmt.Errorf("sealedkey: scrypt r=%d, p=%d out of range", r, p)
	case n > maxScryptMemory/128/r:
		return fmt.Errorf("sealedkey: scrypt N=%d, r=%d needs more than %d MiB", n, r, maxScryptMemory>>20)
	case sp.KeyLength != 0 && sp.KeyLength != 32:
		return fmt.Errorf("sealedkey: scrypt key length %d does not fit AES-256", sp.KeyLength)
	case len(sp.Salt) < 8:
		return errors.New("sealedkey: scrypt salt shorter than 8 bytes")
	}
	return nil
}
