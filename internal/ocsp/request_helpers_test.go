package ocsp_test

import (
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"math/big"
	"net/url"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/pkid/pkid/internal/pki"
)

// Hash algorithm OIDs a CertID may name.
var (
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidMD5    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
	oidNonce  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
)

// certID is one Request's CertID, built field by field so that tests can
// get any of them wrong.
type certID struct {
	alg               asn1.ObjectIdentifier
	nameHash, keyHash []byte
	serial            *big.Int
}

// idFor returns the CertID of serial under issuer with hash.
func idFor(t testing.TB, issuer *x509.Certificate, serial *big.Int, hash crypto.Hash) certID {
	t.Helper()
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) []byte {
		switch hash {
		case crypto.SHA1:
			s := sha1.Sum(b)
			return s[:]
		case crypto.SHA256:
			s := sha256.Sum256(b)
			return s[:]
		case crypto.SHA384:
			s := sha512.Sum384(b)
			return s[:]
		}
		t.Fatalf("no hash %v", hash)
		return nil
	}
	alg := map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA1: oidSHA1, crypto.SHA256: oidSHA256, crypto.SHA384: oidSHA384}[hash]
	return certID{alg: alg, nameHash: sum(issuer.RawSubject), keyHash: sum(spki.PublicKey.RightAlign()), serial: serial}
}

// reqOpts are the optional parts of an OCSPRequest.
type reqOpts struct {
	version   bool   // an explicit version v1
	requestor []byte // requestorName: a directoryName with this DER Name
	nonce     []byte // a nonce extension with this value
	signed    bool   // a (meaningless) optionalSignature
}

var (
	explicit0 = casn1.Tag(0).Constructed().ContextSpecific()
	explicit1 = casn1.Tag(1).Constructed().ContextSpecific()
	explicit2 = casn1.Tag(2).Constructed().ContextSpecific()
	explicit4 = casn1.Tag(4).Constructed().ContextSpecific()
)

// buildRequest returns the DER OCSPRequest asking about ids.
func buildRequest(t testing.TB, ids []certID, o reqOpts) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if o.version {
				b.AddASN1(explicit0, func(b *cryptobyte.Builder) { b.AddASN1Int64(0) })
			}
			if o.requestor != nil {
				b.AddASN1(explicit1, func(b *cryptobyte.Builder) {
					b.AddASN1(explicit4, func(b *cryptobyte.Builder) { b.AddBytes(o.requestor) })
				})
			}
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, id := range ids {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1ObjectIdentifier(id.alg)
								b.AddASN1NULL()
							})
							b.AddASN1OctetString(id.nameHash)
							b.AddASN1OctetString(id.keyHash)
							b.AddASN1BigInt(id.serial)
						})
					})
				}
			})
			if o.nonce != nil {
				b.AddASN1(explicit2, func(b *cryptobyte.Builder) {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(oidNonce)
							b.AddASN1(casn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1OctetString(o.nonce) })
						})
					})
				})
			}
		})
		if o.signed {
			b.AddASN1(explicit0, func(b *cryptobyte.Builder) {
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2})
					})
					b.AddASN1BitString(make([]byte, 64))
				})
			})
		}
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// request returns the plain DER request for serial under issuer.
func request(t testing.TB, issuer *x509.Certificate, serial pki.Serial, hash crypto.Hash) []byte {
	t.Helper()
	return buildRequest(t, []certID{idFor(t, issuer, serial.Big(), hash)}, reqOpts{})
}

// getPath is the GET form's path for a DER request, with the base64
// URL-escaped as RFC 6960 A.1 says.
func getPath(der []byte) string {
	return "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(der))
}
