package ocsp

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
)

// CertID hash algorithms the responder answers for, as indexes.
const (
	hashSHA1 = iota
	hashSHA256
	hashCount
)

// authority is an issuing CA as CertIDs name it: the hashes of its subject
// name and of its public key (the BIT STRING's contents, RFC 6960 §4.1.1),
// per hash algorithm, and its ID in the database.
type authority struct {
	cert     *x509.Certificate
	id       string // lowercase hex SHA-256 of the certificate, as issuance.Issuer.ID
	nameHash [hashCount][]byte
	keyHash  [hashCount][]byte
}

func newAuthority(cert *x509.Certificate) (*authority, error) {
	spki := cryptobyte.String(cert.RawSubjectPublicKeyInfo)
	var inner cryptobyte.String
	var key []byte
	if !spki.ReadASN1(&inner, casn1.SEQUENCE) || !inner.SkipASN1(casn1.SEQUENCE) ||
		!inner.ReadASN1BitStringAsBytes(&key) {
		return nil, fmt.Errorf("ocsp: cannot read the public key of %q", cert.Subject)
	}
	id := sha256.Sum256(cert.Raw)
	a := &authority{cert: cert, id: hex.EncodeToString(id[:])}
	n1, k1 := sha1.Sum(cert.RawSubject), sha1.Sum(key)
	n256, k256 := sha256.Sum256(cert.RawSubject), sha256.Sum256(key)
	a.nameHash[hashSHA1], a.keyHash[hashSHA1] = n1[:], k1[:]
	a.nameHash[hashSHA256], a.keyHash[hashSHA256] = n256[:], k256[:]
	return a, nil
}

// issuerTable is the authorities made from one set of issuer certificates.
type issuerTable struct {
	certs []*x509.Certificate // as the issuers function returned them
	auths []*authority
}

// match returns the authority whose name hash and key hash are both those
// of the request (SECURITY.md O-11: a CA with the same name and another key
// is another CA), or nil.
func (t *issuerTable) match(alg int, nameHash, keyHash []byte) *authority {
	for _, a := range t.auths {
		if bytes.Equal(a.nameHash[alg], nameHash) && bytes.Equal(a.keyHash[alg], keyHash) {
			return a
		}
	}
	return nil
}

// issuerTables keeps the table for the issuers that the current function
// returns, rebuilding it when the certificates change.
type issuerTables struct {
	current func() []*x509.Certificate
	table   atomic.Pointer[issuerTable]
}

func (t *issuerTables) load() *issuerTable {
	certs := t.current()
	if cur := t.table.Load(); cur != nil && sameCerts(cur.certs, certs) {
		return cur
	}
	next := &issuerTable{certs: certs}
	for _, c := range certs {
		if c == nil {
			continue
		}
		// A certificate whose key cannot be read cannot be named by any
		// CertID we could match; it is left out.
		if a, err := newAuthority(c); err == nil {
			next.auths = append(next.auths, a)
		}
	}
	t.table.Store(next)
	return next
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// statusOf parses e's stored response, verifying its signature against
// issuer (through the responder certificate it carries), and returns the
// status it states.
func statusOf(e *entry, issuer *x509.Certificate) (issuance.OCSPStatus, error) {
	resp, err := xocsp.ParseResponse(e.der, issuer)
	if err != nil {
		return issuance.OCSPStatus{}, fmt.Errorf("ocsp: stored response for %s does not verify: %w", e.key.serial(), err)
	}
	k, ok := keyFromBig(resp.SerialNumber)
	if !ok || k != e.key {
		return issuance.OCSPStatus{}, fmt.Errorf("ocsp: stored response for %s is about another serial", e.key.serial())
	}
	st := issuance.OCSPStatus{Serial: e.key.serial(), ThisUpdate: resp.ThisUpdate, NextUpdate: resp.NextUpdate}
	switch resp.Status {
	case xocsp.Good:
	case xocsp.Revoked:
		st.Revoked, st.RevokedAt, st.Reason = true, resp.RevokedAt, pki.RevocationReason(resp.RevocationReason)
	default:
		return issuance.OCSPStatus{}, errors.New("ocsp: stored response states neither good nor revoked")
	}
	return st, nil
}
