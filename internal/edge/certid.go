package edge

import (
	"bytes"
	"crypto"
	"crypto/x509"
	encasn1 "encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	// The CertID hash algorithms must be linked in for crypto.Hash.New.
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// certID is an OCSP CertID (RFC 6960 §4.1.1): which certificate, of which
// issuer, a SingleResponse is about.
type certID struct {
	hash     crypto.Hash
	nameHash []byte // hash of the issuer's DER subject
	keyHash  []byte // hash of the issuer's subjectPublicKey BIT STRING value
	serial   *big.Int
}

// hashOIDs are the CertID hash algorithms the edge accepts: SHA-1 (RFC 5019)
// and the SHA-2 family (RFC 9919).
var hashOIDs = []struct {
	oid  encasn1.ObjectIdentifier
	hash crypto.Hash
}{
	{encasn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, crypto.SHA1},
	{encasn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, crypto.SHA256},
	{encasn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, crypto.SHA384},
	{encasn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, crypto.SHA512},
}

var errBadCertID = errors.New("edge: malformed OCSP response")

// responseCertIDs returns the CertID of every SingleResponse in a DER
// OCSPResponse. x/crypto's parser keeps only the serial and the hash
// algorithm of the CertID (SECURITY.md O-22), so the edge reads the rest
// itself: the issuer binding is what stops a response about another CA's
// certificate with the same serial from being taken for an answer about
// this one. It parses strictly (DER, no trailing data) and never panics.
func responseCertIDs(der []byte) ([]certID, error) {
	in := cryptobyte.String(der)
	var resp, respBytesTagged, respBytes, basic, tbs, responses cryptobyte.String
	var status int
	var respType encasn1.ObjectIdentifier
	var basicDER []byte
	if !in.ReadASN1(&resp, asn1.SEQUENCE) || !in.Empty() ||
		!resp.ReadASN1Enum(&status) ||
		!resp.ReadASN1(&respBytesTagged, asn1.Tag(0).Constructed().ContextSpecific()) || !resp.Empty() ||
		!respBytesTagged.ReadASN1(&respBytes, asn1.SEQUENCE) || !respBytesTagged.Empty() ||
		!respBytes.ReadASN1ObjectIdentifier(&respType) ||
		!respBytes.ReadASN1Bytes(&basicDER, asn1.OCTET_STRING) || !respBytes.Empty() {
		return nil, errBadCertID
	}
	basicIn := cryptobyte.String(basicDER)
	if !basicIn.ReadASN1(&basic, asn1.SEQUENCE) || !basicIn.Empty() ||
		!basic.ReadASN1(&tbs, asn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(asn1.Tag(0).Constructed().ContextSpecific()) { // version
		return nil, errBadCertID
	}
	var responderID cryptobyte.String
	var responderTag asn1.Tag
	if !tbs.ReadAnyASN1(&responderID, &responderTag) ||
		(responderTag != asn1.Tag(1).Constructed().ContextSpecific() && responderTag != asn1.Tag(2).Constructed().ContextSpecific()) ||
		!tbs.SkipASN1(asn1.GeneralizedTime) || // producedAt
		!tbs.ReadASN1(&responses, asn1.SEQUENCE) {
		return nil, errBadCertID
	}
	var ids []certID
	for !responses.Empty() {
		var single, id, alg cryptobyte.String
		var oid encasn1.ObjectIdentifier
		c := certID{serial: new(big.Int)}
		if !responses.ReadASN1(&single, asn1.SEQUENCE) ||
			!single.ReadASN1(&id, asn1.SEQUENCE) ||
			!id.ReadASN1(&alg, asn1.SEQUENCE) ||
			!alg.ReadASN1ObjectIdentifier(&oid) ||
			!id.ReadASN1Bytes(&c.nameHash, asn1.OCTET_STRING) ||
			!id.ReadASN1Bytes(&c.keyHash, asn1.OCTET_STRING) ||
			!id.ReadASN1Integer(c.serial) || !id.Empty() {
			return nil, errBadCertID
		}
		// The parameters, when present, must be NULL (RFC 5754 §2 allows
		// both forms for SHA-2; SHA-1 is usually sent with NULL).
		if !alg.Empty() && (!alg.SkipASN1(asn1.NULL) || !alg.Empty()) {
			return nil, errBadCertID
		}
		for _, h := range hashOIDs {
			if oid.Equal(h.oid) {
				c.hash = h.hash
			}
		}
		if c.hash == 0 {
			return nil, fmt.Errorf("%w: CertID hash algorithm %s is not one the edge accepts", errBadCertID, oid)
		}
		ids = append(ids, c)
	}
	return ids, nil
}

// matches reports whether id names leaf as issued by issuer: same serial,
// and the issuer's name and key hashed with id's algorithm.
func (id certID) matches(leaf, issuer *x509.Certificate) bool {
	if id.serial.Cmp(leaf.SerialNumber) != 0 {
		return false
	}
	key, err := subjectPublicKey(issuer.RawSubjectPublicKeyInfo)
	if err != nil {
		return false
	}
	h := id.hash.New()
	h.Write(issuer.RawSubject)
	if !bytes.Equal(h.Sum(nil), id.nameHash) {
		return false
	}
	h.Reset()
	h.Write(key)
	return bytes.Equal(h.Sum(nil), id.keyHash)
}

// subjectPublicKey returns the value of the subjectPublicKey BIT STRING of
// a DER SubjectPublicKeyInfo: the bytes RFC 6960's issuerKeyHash hashes.
func subjectPublicKey(spki []byte) ([]byte, error) {
	in := cryptobyte.String(spki)
	var seq cryptobyte.String
	var key encasn1.BitString
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.SkipASN1(asn1.SEQUENCE) ||
		!seq.ReadASN1BitString(&key) || !seq.Empty() {
		return nil, errors.New("edge: malformed subjectPublicKeyInfo")
	}
	return key.Bytes, nil
}
