//go:build cgo

package keystore

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/pkid/pkid/internal/pki"
)

// Supported reports whether this build can use a PKCS#11 module (it needs
// cgo to load one).
const Supported = true

// poolWait bounds how long a signature waits for a free session on the
// token: a token that stopped answering turns into an error (503) instead
// of requests that hang.
const poolWait = 10 * time.Second

// sealLabel is the CKA_LABEL of the token's sealing key, the generic secret
// whose HMAC of sealInfo is the secret that seals software keys.
const (
	sealLabel = "pkid sealing key"
	sealInfo  = "pkid sealing secret v1"
)

// token is a logged-in PKCS#11 token. crypto11 keeps a pool of sessions and
// is safe for concurrent use.
type token struct {
	ctx   *crypto11.Context
	label string
}

func openToken(module, label string, pin []byte) (*token, error) {
	if label == "" {
		return nil, errors.New("keystore: a PKCS#11 module needs a token label (PKID_PKCS11_TOKEN)")
	}
	if len(pin) == 0 {
		return nil, fmt.Errorf("keystore: token %q needs a PIN (PKID_PKCS11_PIN_FILE)", label)
	}
	c, err := crypto11.Configure(&crypto11.Config{
		Path:            module,
		TokenLabel:      label,
		Pin:             string(pin),
		PoolWaitTimeout: poolWait,
	})
	if err != nil {
		// crypto11's errors name the module, the slot and the PKCS#11 return
		// value (CKR_PIN_INCORRECT, …), never the PIN.
		return nil, fmt.Errorf("keystore: opening PKCS#11 token %q with %s: %w", label, module, err)
	}
	return &token{ctx: c, label: label}, nil
}

func (t *token) name() string { return t.label }

func (t *token) close() error { return t.ctx.Close() }

// generate makes an ECDSA key pair on the token with a random CKA_ID and
// returns the private half's URI.
func (t *token) generate(curve elliptic.Curve, kind string) (crypto.Signer, string, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, "", err
	}
	label := fmt.Sprintf("pkid %s %s", kind, hex.EncodeToString(id[:4]))
	pub, err := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
	if err != nil {
		return nil, "", err
	}
	priv := pub.Copy()
	signingOnly(priv,
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false))
	s, err := t.ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, curve)
	if err != nil {
		return nil, "", fmt.Errorf("keystore: generating a %s key on token %q: %w", kind, t.label, err)
	}
	uri := keyURI{Token: t.label, Object: label, ID: id}.String()
	return tokenSigner{s: s, uri: uri}, uri, nil
}

// signingOnly sets on the template of a secret or private key the attributes
// that are the whole point of an HSM: the key stays on the token, private,
// sensitive and never extractable, and it signs and does nothing else (it
// derives no keys; extra forbids what else its type could do). crypto11 sets
// most of them by default; they are stated here rather than left to a
// library default.
func signingOnly(tmpl crypto11.AttributeSet, extra ...*pkcs11.Attribute) {
	for _, a := range append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	}, extra...) {
		tmpl[crypto11.AttributeType(a.Type)] = a
	}
}

// open finds the private key a URI names on this token.
func (t *token) open(raw string) (crypto.Signer, error) {
	u, err := parseKeyURI(raw)
	if err != nil {
		return nil, err
	}
	if u.Token != t.label {
		return nil, fmt.Errorf("keystore: the key %s is on token %q, but PKID_PKCS11_TOKEN is %q", raw, u.Token, t.label)
	}
	var label []byte
	if u.Object != "" {
		label = []byte(u.Object)
	}
	found, err := t.ctx.FindKeyPairs(u.ID, label)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: keystore: looking up %s: %v", pki.ErrUnavailable, raw, err)
	case len(found) == 0:
		// crypto11 needs the public half too (CKA_EC_POINT) to make a Signer.
		return nil, fmt.Errorf("keystore: no key pair %s on token %q", raw, t.label)
	case len(found) > 1:
		return nil, fmt.Errorf("keystore: %d key pairs on token %q match %s", len(found), t.label, raw)
	}
	return tokenSigner{s: found[0], uri: raw}, nil
}

// sealingSecret derives the secret that seals software keys: the
// HMAC-SHA256, computed on the token, of sealInfo under the token's sealing
// key. create lets it make that key when the token has none.
//
// Two `pkid init` runs racing on a fresh token could each make a sealing
// key. Each lists the keys after making its own and goes on only if its own
// is the only one; otherwise it deletes its own and fails ("run it again").
// A run that went on saw no other key, so any later one sees its key and
// backs off: no two runs ever seal under different keys.
func (t *token) sealingSecret(create bool) ([]byte, error) {
	keys, err := t.ctx.FindKeys(nil, []byte(sealLabel))
	if err != nil {
		return nil, fmt.Errorf("keystore: looking up the sealing key on token %q: %w", t.label, err)
	}
	switch {
	case len(keys) == 0 && !create:
		return nil, fmt.Errorf("keystore: token %q holds no %q: run `pkid init` with this token first, or set PKID_KEY_PASSPHRASE if the keys were sealed with one", t.label, sealLabel)
	case len(keys) == 0:
		own, err := t.generateSealingKey()
		if err != nil {
			return nil, err
		}
		if keys, err = t.ctx.FindKeys(nil, []byte(sealLabel)); err != nil {
			return nil, fmt.Errorf("keystore: looking up the sealing key on token %q: %w", t.label, err)
		}
		if len(keys) != 1 {
			_ = own.Delete()
			return nil, fmt.Errorf("keystore: another process created a sealing key on token %q at the same time; run `pkid init` again", t.label)
		}
	case len(keys) > 1:
		return nil, fmt.Errorf("keystore: token %q holds %d objects labelled %q; pkid makes one: remove the ones not made by `pkid init`", t.label, len(keys), sealLabel)
	}
	mac, err := keys[0].NewHMAC(pkcs11.CKM_SHA256_HMAC, 0)
	if err != nil {
		return nil, fmt.Errorf("keystore: deriving the sealing secret on token %q: %w", t.label, err)
	}
	if _, err := io.WriteString(mac, sealInfo); err != nil {
		return nil, fmt.Errorf("keystore: deriving the sealing secret on token %q: %w", t.label, err)
	}
	sum := mac.Sum(nil)
	if len(sum) != 32 {
		return nil, fmt.Errorf("keystore: the token's HMAC-SHA256 is %d bytes long", len(sum))
	}
	// Hex, so that the secret is text like a passphrase (sealedkey and
	// `openssl pkey -passin` both take it as it is).
	return []byte(hex.EncodeToString(sum)), nil
}

func (t *token) generateSealingKey() (*crypto11.SecretKey, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	tmpl, err := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(sealLabel))
	if err != nil {
		return nil, err
	}
	signingOnly(tmpl, pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false))
	k, err := t.ctx.GenerateSecretKeyWithAttributes(tmpl, 256, crypto11.CipherGeneric)
	if err != nil {
		return nil, fmt.Errorf("keystore: generating the sealing key on token %q: %w", t.label, err)
	}
	return k, nil
}

func (t *token) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := t.ctx.NewRandomReader()
	if err == nil {
		_, err = io.ReadFull(r, make([]byte, 8))
	}
	if err != nil {
		return fmt.Errorf("%w: PKCS#11 token %q: %v", pki.ErrUnavailable, t.label, err)
	}
	return nil
}

// tokenSigner is a key on the token. A failed signature means the token (or
// the way to it) is failing, not the request: the error wraps
// pki.ErrUnavailable, which the API answers with 503.
type tokenSigner struct {
	s   crypto11.Signer
	uri string
}

func (k tokenSigner) Public() crypto.PublicKey { return k.s.Public() }

func (k tokenSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := k.s.Sign(r, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: keystore: signing with %s: %v", pki.ErrUnavailable, k.uri, err)
	}
	return sig, nil
}

// URI returns where the key is, for logs and errors.
func (k tokenSigner) URI() string { return k.uri }

// protection reads the security attributes of the private key a URI names,
// and tries to read its value, which the token must refuse.
func (t *token) protection(raw string) (Protection, error) {
	s, err := t.open(raw)
	if err != nil {
		return Protection{}, err
	}
	key := s.(tokenSigner).s
	attrs, err := t.ctx.GetAttributes(key, []crypto11.AttributeType{
		crypto11.CkaToken, crypto11.CkaPrivate, crypto11.CkaSensitive, crypto11.CkaExtractable,
		crypto11.CkaAlwaysSensitive, crypto11.CkaNeverExtractable,
	})
	if err != nil {
		return Protection{}, fmt.Errorf("keystore: reading the attributes of %s: %w", raw, err)
	}
	flag := func(a crypto11.AttributeType) bool {
		v, ok := attrs[a]
		return ok && len(v.Value) == 1 && v.Value[0] == 1
	}
	p := Protection{
		OnToken: flag(crypto11.CkaToken), Private: flag(crypto11.CkaPrivate),
		Sensitive: flag(crypto11.CkaSensitive), Extractable: flag(crypto11.CkaExtractable),
		AlwaysSensitive: flag(crypto11.CkaAlwaysSensitive), NeverExtractable: flag(crypto11.CkaNeverExtractable),
	}
	if v, err := t.ctx.GetAttribute(key, crypto11.CkaValue); err == nil && v != nil && len(v.Value) > 0 {
		p.ValueReadable = true
	}
	return p, nil
}
