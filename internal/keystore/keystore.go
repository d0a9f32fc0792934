// Package keystore is where pkid's private keys are made and opened: sealed
// in software (encrypted PKCS#8 under a secret, internal/sealedkey, stored in
// the database) or generated on a PKCS#11 token (an HSM) that never lets
// them out. The rest of pkid sees a crypto.Signer and a Ref that says where
// the key is; the choice of place for each kind of key is made here, once.
//
// With a token configured, the root and the issuing intermediates are
// generated on it. The delegated OCSP signer stays in software, sealed
// (docs/DESIGN.md, "Key storage", gives the reasons and the figures): it is
// renewed automatically every few weeks by any node and signs at the
// highest rate, and a stolen OCSP key can only lie about revocation for the
// rest of its short life. Software keys are then sealed under a secret that
// the token derives with a non-extractable HMAC key (or under
// PKID_KEY_PASSPHRASE when the operator sets one), so that a copy of the
// database opens nothing without the token.
package keystore

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"errors"
	"fmt"
	"sync"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/sealedkey"
)

// Ref says where a private key is. Exactly one field is set: Sealed, the
// encrypted PKCS#8 PEM (pki.IssuerRecord.EncryptedKey), or URI, the RFC 7512
// PKCS#11 URI of a key on a token (pki.IssuerRecord.KeyURI). A Ref never
// holds a PIN or a passphrase.
type Ref struct {
	Sealed []byte
	URI    string
}

// RefOf returns where an issuer record's key is.
func RefOf(rec *pki.IssuerRecord) Ref { return Ref{Sealed: rec.EncryptedKey, URI: rec.KeyURI} }

// PKCS11 names a token and how to log in to it. Module == "" means no token.
type PKCS11 struct {
	Module string // path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
	Token  string // the token's label
	PIN    []byte // the user PIN; never logged, never stored
	// RootToken, when set, is a second token of the same module that holds
	// the root key alone, so that the root can stay offline: only `pkid
	// init` and `pkid ca rotate` need it, and the serving nodes, which never
	// open the root, are not given it. Empty: the root shares Token.
	RootToken string
	RootPIN   []byte
}

// Config configures a Store.
type Config struct {
	// Passphrase seals software keys. Required without a token; with one,
	// it is optional and, when set, used instead of the token's secret.
	Passphrase []byte
	PKCS11     PKCS11
	// Init is set by `pkid init` only: it may create the token's sealing
	// key when the token has none. Every other command needs that key to
	// exist already (unless Passphrase is set).
	Init bool
}

// Store makes and opens private keys. It is safe for concurrent use; Close
// it when done (it holds the token's sessions).
type Store struct {
	secret    []byte // seals software keys
	token     *token // nil without an HSM
	root      *token // the root's own token; nil when the root shares token
	closeOnce sync.Once
	closeErr  error
}

// ErrTokenNotConfigured: a key is on a token that this process was not
// given, such as the root's own token on a serving node.
var ErrTokenNotConfigured = errors.New("keystore: the key's token is not configured")

// ErrNoSecret: neither a passphrase nor a token was configured.
var ErrNoSecret = errors.New("keystore: PKID_KEY_PASSPHRASE (or PKID_KEY_PASSPHRASE_FILE) or a PKCS#11 token is required: it protects the CA keys")

// Open opens the token named in cfg, if any, and returns a Store. It fails
// when the module cannot be loaded, the token is not there, the PIN is
// wrong, or (outside init) the token holds no pkid sealing key while no
// passphrase is set.
func Open(cfg Config) (*Store, error) {
	if cfg.PKCS11.Module == "" {
		if len(cfg.Passphrase) == 0 {
			return nil, ErrNoSecret
		}
		return &Store{secret: cfg.Passphrase}, nil
	}
	tok, err := openToken(cfg.PKCS11.Module, cfg.PKCS11.Token, cfg.PKCS11.PIN)
	if err != nil {
		return nil, err
	}
	s := &Store{secret: cfg.Passphrase, token: tok}
	if r := cfg.PKCS11.RootToken; r != "" {
		if r == cfg.PKCS11.Token {
			_ = s.Close()
			return nil, fmt.Errorf("keystore: the root's token %q is the serving token: name another one, or none", r)
		}
		if s.root, err = openToken(cfg.PKCS11.Module, r, cfg.PKCS11.RootPIN); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	if len(s.secret) == 0 {
		// The serving token derives it: every node has that one.
		if s.secret, err = tok.sealingSecret(cfg.Init); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	return s, nil
}

// HasToken reports whether the Store generates CA keys on a token.
func (s *Store) HasToken() bool { return s.token != nil }

// SealingSecret returns the secret that seals software keys: the
// passphrase, or the secret derived on the token. Other key holders (the
// token signing keys of internal/auth) seal with it too. Never log it.
func (s *Store) SealingSecret() []byte { return s.secret }

// OnToken reports whether a key of this kind goes on the token: the root and
// the issuing intermediates do when there is one; the delegated OCSP
// signer never does.
func (s *Store) OnToken(kind pki.IssuerKind) bool {
	return s.token != nil && kind != pki.IssuerOCSP
}

// Generate makes a new ECDSA key on curve for an issuer of this kind, where
// OnToken says, and returns it with its Ref. A key on the token is made
// there (CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE) and
// cannot be read back by anyone, pkid included.
func (s *Store) Generate(curve elliptic.Curve, kind pki.IssuerKind) (crypto.Signer, Ref, error) {
	if s.OnToken(kind) {
		tok := s.token
		if kind == pki.IssuerRoot && s.root != nil {
			tok = s.root
		}
		signer, uri, err := tok.generate(curve, string(kind))
		if err != nil {
			return nil, Ref{}, err
		}
		return signer, Ref{URI: uri}, nil
	}
	key, err := issuance.GenerateKey(curve)
	if err != nil {
		return nil, Ref{}, err
	}
	sealed, err := sealedkey.Seal(key, s.secret)
	if err != nil {
		return nil, Ref{}, fmt.Errorf("keystore: sealing %s key: %w", kind, err)
	}
	return key, Ref{Sealed: sealed}, nil
}

// Open returns the signer a Ref points at. A sealed key with the wrong
// secret fails with an error wrapping sealedkey.ErrWrongPassphrase; a key on
// a token needs that token configured.
func (s *Store) Open(ref Ref) (crypto.Signer, error) {
	switch {
	case ref.URI != "" && ref.Sealed != nil:
		return nil, errors.New("keystore: a key is either sealed or on a token, not both")
	case ref.URI != "":
		tok, err := s.tokenOf(ref.URI)
		if err != nil {
			return nil, err
		}
		return tok.open(ref.URI)
	case ref.Sealed != nil:
		return sealedkey.Open(ref.Sealed, s.secret)
	}
	return nil, errors.New("keystore: empty key reference")
}

// tokenOf returns the configured token that a key URI names.
func (s *Store) tokenOf(uri string) (*token, error) {
	u, err := parseKeyURI(uri)
	if err != nil {
		return nil, err
	}
	switch {
	case s.token == nil:
		return nil, fmt.Errorf("keystore: the key %s is on a PKCS#11 token: configure PKID_PKCS11_MODULE, PKID_PKCS11_TOKEN and PKID_PKCS11_PIN_FILE", uri)
	case u.Token == s.token.name():
		return s.token, nil
	case s.root != nil && u.Token == s.root.name():
		return s.root, nil
	}
	return nil, fmt.Errorf("%w: %s is on token %q, but PKID_PKCS11_TOKEN is %q (a root kept on its own token needs PKID_PKCS11_ROOT_TOKEN, for init and ca rotate only)", ErrTokenNotConfigured, uri, u.Token, s.token.name())
}

// Check reports whether the key store can be used now: without a token,
// always; with one, it asks the token for a few random bytes, which needs a
// working session. Readiness (/readyz) calls it. The error wraps
// pki.ErrUnavailable.
func (s *Store) Check(ctx context.Context) error {
	if s.token == nil {
		return nil
	}
	return s.token.check(ctx)
}

// Close releases the token's sessions (and unloads the module when nothing
// else in the process uses it). It may be called more than once; a closed
// Store must not be used otherwise.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for _, t := range []*token{s.root, s.token} {
			if t != nil {
				errs = append(errs, t.close())
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Protection is what a token says about a private key it holds: the PKCS#11
// attributes that keep it inside (CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE,
// CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE), and whether
// the token handed out its value (CKA_VALUE) when asked.
type Protection struct {
	OnToken, Private, Sensitive, Extractable bool
	AlwaysSensitive, NeverExtractable        bool
	ValueReadable                            bool
}

// Kept reports whether the key can never leave the token: sensitive and not
// extractable since it was made, and its value refused.
func (p Protection) Kept() bool {
	return p.OnToken && p.Private && p.Sensitive && !p.Extractable &&
		p.AlwaysSensitive && p.NeverExtractable && !p.ValueReadable
}

// Protection asks the token how the key at ref is protected. It fails for a
// sealed key, which is protected by the sealing secret instead.
func (s *Store) Protection(ref Ref) (Protection, error) {
	if ref.URI == "" {
		return Protection{}, errors.New("keystore: only a key on a token has PKCS#11 attributes")
	}
	tok, err := s.tokenOf(ref.URI)
	if err != nil {
		return Protection{}, err
	}
	return tok.protection(ref.URI)
}

// Sealed returns a Store without a token that seals every key under
// passphrase: what Open returns for a configuration without PKCS#11, for
// callers (tests, tools) that hold the passphrase already.
func Sealed(passphrase []byte) *Store { return &Store{secret: passphrase} }
