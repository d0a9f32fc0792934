package ca

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/pki"
)

// OfflineKeyURI is the key_uri of an issuer whose key ExportRootKey took out
// of the database: the key is wherever the operator keeps it, and only
// `pkid init` and `pkid ca rotate` need it back (--root-key).
const OfflineKeyURI = "urn:pkid:key:offline"

// ActionRootKeyExported is the audit action of ExportRootKey.
const ActionRootKeyExported = "ca.root_key.exported"

// ErrRootKeyOffline: the root key is not in the database, and the caller
// did not give it.
var ErrRootKeyOffline = errors.New("ca: the root key is offline (not in the database); give it with --root-key FILE")

// openRoot opens the root's key: the one in the database (or on the
// token), or, when it has been taken offline, sealed (the file
// ExportRootKey's caller wrote, sealed under keys' secret), which must be
// the key of the root certificate.
func openRoot(rec *pki.IssuerRecord, sealed []byte, keys KeyStore, now time.Time) (*issuance.Issuer, error) {
	if rec.KeyURI != OfflineKeyURI {
		root, err := openIssuer(rec, keys, now)
		if errors.Is(err, keystore.ErrTokenNotConfigured) {
			// A root on a token of its own that this process was not given:
			// offline too, as far as init and rotate are concerned.
			return nil, fmt.Errorf("%w: %v", ErrRootKeyOffline, err)
		}
		return root, err
	}
	if len(sealed) == 0 {
		return nil, ErrRootKeyOffline
	}
	given := *rec
	given.EncryptedKey, given.KeyURI = sealed, ""
	root, err := openIssuer(&given, keys, now)
	if err != nil {
		return nil, fmt.Errorf("ca: the root key given: %w", err)
	}
	return root, nil
}

// ExportRootKey returns the root's sealed key (encrypted PKCS#8 PEM, under
// the secret that seals software keys: PKID_KEY_PASSPHRASE, or the token's)
// after checking that keys opens it, so that the caller can write it where
// the root key is to be kept. commit then removes
// it from the database, with an audit event: call it once the copy is safe.
// From then on no pkid process can use the root key unless given the copy:
// `pkid serve` never needs it, `pkid init` needs it only to re-sign the
// root's CRL (once half of its validity has passed) and `pkid ca rotate` to
// certify a new intermediate.
func ExportRootKey(ctx context.Context, st HierarchyStore, keys KeyStore, now time.Time) (sealed []byte, commit func(ctx context.Context) error, err error) {
	recs, err := st.Issuers(ctx)
	if err != nil {
		return nil, nil, err
	}
	rootRec, err := findIssuer(recs, pki.IssuerRoot)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case rootRec.KeyURI == OfflineKeyURI:
		return nil, nil, fmt.Errorf("%w: it was exported already", ErrRootKeyOffline)
	case rootRec.KeyURI != "":
		return nil, nil, fmt.Errorf("ca: the root key is on the PKCS#11 token (%s), which it never leaves; there is nothing to export", rootRec.KeyURI)
	}
	if _, err := openIssuer(rootRec, keys, now); err != nil {
		return nil, nil, err
	}
	sealed = bytes.Clone(rootRec.EncryptedKey)
	commit = func(ctx context.Context) error {
		ev := pki.AuditEvent{Actor: "system", Action: ActionRootKeyExported, Outcome: pki.OutcomeSuccess,
			Detail: map[string]any{"root": rootRec.ID}}
		return st.TakeKeyOffline(ctx, rootRec.ID, OfflineKeyURI, ev)
	}
	return sealed, commit, nil
}
