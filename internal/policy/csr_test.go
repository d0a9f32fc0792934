package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"

	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/pkid/pkid/internal/pki"
)

// csrCase is one CSR submitted through ParseCSR then CheckCSR. id is the
// SECURITY.md row it exercises.
type csrCase struct {
	id     string
	name   string
	csr    func(t testing.TB) string
	lim    *Limits
	kind   pki.Kind // "" means accepted
	policy bool     // the refusal is a *pki.PolicyError (403), not a RequestError
	want   *Checked // for accepted cases: CommonName and DNSNames to expect
}

func accepted(cn string, dns ...string) *Checked { return &Checked{CommonName: cn, DNSNames: dns} }

func text(s string) func(testing.TB) string { return func(testing.TB) string { return s } }

func file(name string) func(testing.TB) string {
	return func(t testing.TB) string { return fixture(t, name) }
}

func good(t testing.TB) string { return p256(t, names("client", "svc.example.com")) }

func goodDER(t testing.TB) []byte { return csrDER(t, names("client", "svc.example.com"), keyP256()) }

func randomBytes(n int) []byte {
	rng := mrand.New(mrand.NewChaCha8([32]byte{42}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

var (
	oidMustStaple  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}
	oidPrivate     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}
	oidServerAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidCodeSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}
	oidAnyEKU      = asn1.ObjectIdentifier{2, 5, 29, 37, 0}
	oidUPN         = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
)

func parseCases() []csrCase {
	return []csrCase{
		{id: "C-02", name: "empty", csr: text(""), kind: pki.KindBadCSR},
		{id: "C-02", name: "whitespace only", csr: text(" \n\t\r\n"), kind: pki.KindBadCSR},
		{id: "C-02", name: "random bytes", csr: text(string(randomBytes(600))), kind: pki.KindBadCSR},
		{id: "C-02", name: "random bytes in PEM armour", csr: text(csrPEM(randomBytes(600))), kind: pki.KindBadCSR},
		{id: "C-02", name: "bad base64 inside PEM", csr: text("-----BEGIN CERTIFICATE REQUEST-----\nMIIB!!!!not*base64@@@\n-----END CERTIFICATE REQUEST-----\n"), kind: pki.KindBadCSR},
		{id: "C-02", name: "truncated DER", csr: func(t testing.TB) string { d := goodDER(t); return csrPEM(d[:len(d)/2]) }, kind: pki.KindBadCSR},
		{id: "C-02", name: "truncated by one byte", csr: func(t testing.TB) string { d := goodDER(t); return csrPEM(d[:len(d)-1]) }, kind: pki.KindBadCSR},
		{id: "C-02", name: "raw DER without PEM", csr: func(t testing.TB) string { return string(goodDER(t)) }, kind: pki.KindBadCSR},
		{id: "C-02", name: "missing END line", csr: func(t testing.TB) string { s := good(t); return s[:strings.Index(s, "-----END")] }, kind: pki.KindBadCSR},
		{id: "C-33", name: "larger than 64 KiB", csr: func(t testing.TB) string { return good(t) + strings.Repeat(" ", maxCSRSize) }, kind: pki.KindBadCSR},
		{id: "C-03", name: "label CERTIFICATE", csr: func(t testing.TB) string { return pemOf("CERTIFICATE", goodDER(t)) }, kind: pki.KindBadCSR},
		{id: "C-03", name: "label PRIVATE KEY", csr: privateKeyPEM("PRIVATE KEY"), kind: pki.KindBadCSR},
		{id: "C-03", name: "label EC PRIVATE KEY", csr: privateKeyPEM("EC PRIVATE KEY"), kind: pki.KindBadCSR},
		{id: "C-03", name: "label RSA PRIVATE KEY", csr: privateKeyPEM("RSA PRIVATE KEY"), kind: pki.KindBadCSR},
		{id: "C-03", name: "label ENCRYPTED PRIVATE KEY", csr: privateKeyPEM("ENCRYPTED PRIVATE KEY"), kind: pki.KindBadCSR},
		{id: "C-03", name: "label PUBLIC KEY", csr: func(t testing.TB) string {
			der, _ := x509.MarshalPKIXPublicKey(keyP256().Public())
			return pemOf("PUBLIC KEY", der)
		}, kind: pki.KindBadCSR},
		{id: "C-03", name: "label X509 CRL", csr: func(t testing.TB) string { return pemOf("X509 CRL", goodDER(t)) }, kind: pki.KindBadCSR},
		{id: "C-03", name: "lower-case label", csr: func(t testing.TB) string { return pemOf("certificate request", goodDER(t)) }, kind: pki.KindBadCSR},
		{id: "C-03", name: "PEM headers", csr: func(t testing.TB) string {
			return strings.Replace(good(t), "-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1)
		}, kind: pki.KindBadCSR},
		{id: "C-04", name: "two CSR blocks", csr: func(t testing.TB) string { return good(t) + good(t) }, kind: pki.KindBadCSR},
		{id: "C-04", name: "CSR then certificate", csr: func(t testing.TB) string { return good(t) + pemOf("CERTIFICATE", goodDER(t)) }, kind: pki.KindBadCSR},
		{id: "C-04", name: "broken block then good block", csr: func(t testing.TB) string {
			return "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n" + good(t)
		}, kind: pki.KindBadCSR},
		{id: "C-05", name: "junk before", csr: func(t testing.TB) string { return "here is my CSR:\n" + good(t) }, kind: pki.KindBadCSR},
		{id: "C-05", name: "junk after", csr: func(t testing.TB) string { return good(t) + "thanks!\n" }, kind: pki.KindBadCSR},
		{id: "C-05", name: "non-ASCII space before", csr: func(t testing.TB) string { return "\u00a0" + good(t) }, kind: pki.KindBadCSR},
		{id: "C-05", name: "stray END line after", csr: func(t testing.TB) string { return good(t) + "-----END CERTIFICATE REQUEST-----\n" }, kind: pki.KindBadCSR},
		{id: "C-06", name: "DER with trailing data", csr: func(t testing.TB) string { return csrPEM(append(goodDER(t), 0x05, 0x00)) }, kind: pki.KindBadCSR},
		{id: "C-06", name: "DER with trailing garbage", csr: func(t testing.TB) string { return csrPEM(append(goodDER(t), randomBytes(40)...)) }, kind: pki.KindBadCSR},

		{id: "C-03", name: "NEW CERTIFICATE REQUEST label", csr: func(t testing.TB) string { return pemOf("NEW CERTIFICATE REQUEST", goodDER(t)) }, want: accepted("client", "svc.example.com")},
		{id: "C-05", name: "leading and trailing whitespace", csr: func(t testing.TB) string { return "\n\t  \r\n" + good(t) + "\r\n\n  \t" }, want: accepted("client", "svc.example.com")},
		{id: "C-05", name: "CRLF line endings", csr: func(t testing.TB) string { return strings.ReplaceAll(good(t), "\n", "\r\n") }, want: accepted("client", "svc.example.com")},
		{id: "C-05", name: "no final newline", csr: func(t testing.TB) string { return strings.TrimRight(good(t), "\n") }, want: accepted("client", "svc.example.com")},
	}
}

// privateKeyPEM returns a real private key under the given label, the
// mistake ParseCSR must refuse without echoing anything of it.
func privateKeyPEM(label string) func(testing.TB) string {
	return func(t testing.TB) string {
		der, err := x509.MarshalPKCS8PrivateKey(keyP256())
		if err != nil {
			t.Fatal(err)
		}
		return pemOf(label, der)
	}
}

func signatureCases() []csrCase {
	return []csrCase{
		{id: "C-07", name: "flipped signature bit P-256", csr: func(t testing.TB) string { return csrPEM(flipLast(goodDER(t))) }, kind: pki.KindBadCSR},
		{id: "C-07", name: "flipped signature bit RSA", csr: func(t testing.TB) string {
			return csrPEM(flipLast(csrDER(t, names("client"), keyRSA2048())))
		}, kind: pki.KindBadCSR},
		{id: "C-07", name: "signature by another key", csr: func(t testing.TB) string {
			return csrPEM(resign(t, goodDER(t), keyP384(), asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, crypto.SHA256))
		}, kind: pki.KindBadCSR},
		{id: "C-07", name: "RSA algorithm on an ECDSA signature", csr: func(t testing.TB) string {
			tbs, _, sig := csrSplit(t, goodDER(t))
			alg := mustMarshal(t, pkix.AlgorithmIdentifier{Algorithm: oidSigSHA256WithRSA, Parameters: asn1.NullRawValue})
			return csrPEM(csrJoin(tbs, alg, sig))
		}, kind: pki.KindBadCSR},
		{id: "C-08", name: "SHA-1 RSA signature", csr: func(t testing.TB) string {
			return csrPEM(resign(t, csrDER(t, names("client"), keyRSA2048()), keyRSA2048(), oidSigSHA1WithRSA, crypto.SHA1))
		}, kind: pki.KindBadSignatureAlgorithm},
		{id: "C-08", name: "SHA-1 RSA signature by openssl", csr: file("sha1-rsa2048.csr"), kind: pki.KindBadSignatureAlgorithm},
		{id: "C-08", name: "MD5 RSA signature", csr: func(t testing.TB) string {
			return csrPEM(resign(t, csrDER(t, names("client"), keyRSA2048()), keyRSA2048(), oidSigMD5WithRSA, crypto.MD5))
		}, kind: pki.KindBadSignatureAlgorithm},
		{id: "C-08", name: "MD5 RSA signature by openssl", csr: file("md5-rsa2048.csr"), kind: pki.KindBadSignatureAlgorithm},
		{id: "C-08", name: "ECDSA with SHA-1", csr: func(t testing.TB) string {
			return csrPEM(resign(t, goodDER(t), keyP256(), oidSigECDSAWithSHA1, crypto.SHA1))
		}, kind: pki.KindBadSignatureAlgorithm},
		{id: "C-08", name: "RSA-PSS signature", csr: func(t testing.TB) string {
			tmpl := names("client")
			tmpl.SignatureAlgorithm = x509.SHA256WithRSAPSS
			return csrPEM(csrDER(t, tmpl, keyRSA2048()))
		}, kind: pki.KindBadSignatureAlgorithm},
		{id: "C-08", name: "unknown signature algorithm", csr: func(t testing.TB) string {
			tbs, _, sig := csrSplit(t, goodDER(t))
			return csrPEM(csrJoin(tbs, mustMarshal(t, pkix.AlgorithmIdentifier{Algorithm: oidPrivate}), sig))
		}, kind: pki.KindBadSignatureAlgorithm},
		{id: "C-08", name: "DSA key and signature by openssl", csr: file("dsa2048.csr"), kind: pki.KindBadPublicKey},
		{id: "C-08", name: "ECDSA P-384 key with SHA-512", csr: func(t testing.TB) string {
			tmpl := names("client", "svc.example.com")
			tmpl.SignatureAlgorithm = x509.ECDSAWithSHA512
			return csrPEM(csrDER(t, tmpl, keyP384()))
		}, want: accepted("client", "svc.example.com")},
	}
}

func keyCases() []csrCase {
	n2048 := func() *big.Int { return rsaKey(keyRSA2048()).N }
	return []csrCase{
		{id: "C-09", name: "RSA-1024", csr: func(t testing.TB) string { return csrPEM(csrDER(t, names("client"), keyRSA1024())) }, kind: pki.KindBadPublicKey},
		{id: "C-10", name: "RSA-2049", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, oddModulus(2049, 1), 65537)) }, kind: pki.KindBadPublicKey},
		{id: "C-10", name: "RSA-2056", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, oddModulus(2056, 2), 65537)) }, kind: pki.KindBadPublicKey},
		{id: "C-10", name: "RSA-8192", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, oddModulus(8192, 3), 65537)) }, kind: pki.KindBadPublicKey},
		{id: "C-10", name: "RSA-16384", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, oddModulus(16384, 4), 65537)) }, kind: pki.KindBadPublicKey},
		{id: "C-11", name: "RSA e=3", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, n2048(), 3)) }, kind: pki.KindBadPublicKey},
		{id: "C-11", name: "RSA e=17", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, n2048(), 17)) }, kind: pki.KindBadPublicKey},
		{id: "C-11", name: "RSA e=1", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, n2048(), 1)) }, kind: pki.KindBadPublicKey},
		{id: "C-11", name: "RSA e=65539", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, n2048(), 65539)) }, kind: pki.KindBadPublicKey},
		{id: "C-12", name: "RSA even modulus", csr: func(t testing.TB) string {
			n := new(big.Int).SetBit(n2048(), 0, 0)
			return spkiCSR(t, rsaSPKI(t, n, 65537))
		}, kind: pki.KindBadPublicKey},
		{id: "C-12", name: "RSA modulus divisible by 3", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, multipleOf(3), 65537)) }, kind: pki.KindBadPublicKey},
		{id: "C-12", name: "RSA modulus divisible by 751", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, multipleOf(751), 65537)) }, kind: pki.KindBadPublicKey},
		{id: "C-14", name: "ROCA key", csr: func(t testing.TB) string { return spkiCSR(t, fixtureSPKI(t, "roca-rsa2048.pub.pem")) }, kind: pki.KindBadPublicKey},
		{id: "C-14", name: "ECDSA private key 2^16", csr: func(t testing.TB) string {
			return csrPEM(csrDER(t, names("client"), scalarKey(t, elliptic.P256(), big.NewInt(1<<16))))
		}, kind: pki.KindBadPublicKey},
		{id: "C-15", name: "Fermat-factorable RSA key", csr: func(t testing.TB) string { return spkiCSR(t, rsaSPKI(t, fermatModulus(), 65537)) }, kind: pki.KindBadPublicKey},
		{id: "C-16", name: "P-224", csr: func(t testing.TB) string { return csrPEM(csrDER(t, names("client"), keyP224())) }, kind: pki.KindBadPublicKey},
		{id: "C-16", name: "P-521", csr: func(t testing.TB) string { return csrPEM(csrDER(t, names("client"), keyP521())) }, kind: pki.KindBadPublicKey},
		{id: "C-16", name: "secp256k1 by openssl", csr: file("secp256k1.csr"), kind: pki.KindBadPublicKey},
		{id: "C-16", name: "brainpoolP256r1 by openssl", csr: file("brainpoolP256r1.csr"), kind: pki.KindBadPublicKey},
		{id: "C-16", name: "P-256 with explicit parameters by openssl", csr: file("p256-explicit-params.csr"), kind: pki.KindBadPublicKey},
		{id: "C-17", name: "ECDSA point off the curve", csr: func(t testing.TB) string {
			spki, _ := x509.MarshalPKIXPublicKey(keyP256().Public())
			spki[len(spki)-1] ^= 1
			return spkiCSR(t, spki)
		}, kind: pki.KindBadPublicKey},
		{id: "C-17", name: "ECDSA point at infinity", csr: func(t testing.TB) string { return spkiCSR(t, ecSPKI(t, []byte{0})) }, kind: pki.KindBadPublicKey},
		{id: "C-17", name: "ECDSA all-zero point", csr: func(t testing.TB) string { return spkiCSR(t, ecSPKI(t, make([]byte, 65))) }, kind: pki.KindBadPublicKey},
		{id: "C-17", name: "ECDSA x coordinate not reduced mod p", csr: func(t testing.TB) string {
			point := make([]byte, 65)
			point[0] = 4
			elliptic.P256().Params().P.FillBytes(point[1:33])
			point[64] = 1
			return spkiCSR(t, ecSPKI(t, point))
		}, kind: pki.KindBadPublicKey},
		{id: "C-18", name: "DSA key by openssl", csr: file("dsa2048.csr"), kind: pki.KindBadPublicKey},
		{id: "C-19", name: "Ed25519", csr: func(t testing.TB) string { return csrPEM(csrDER(t, names("client"), keyEd25519())) }, kind: pki.KindBadPublicKey},
		{id: "C-19", name: "Ed448 by openssl", csr: file("ed448.csr"), kind: pki.KindBadPublicKey},
		{id: "C-19", name: "RSA-PSS SPKI by openssl", csr: file("rsa-pss-spki.csr"), kind: pki.KindBadPublicKey},

		{id: "C-09", name: "P-256", csr: good, want: accepted("client", "svc.example.com")},
		{id: "C-09", name: "P-384", csr: func(t testing.TB) string {
			return csrPEM(csrDER(t, names("client", "svc.example.com"), keyP384()))
		}, want: accepted("client", "svc.example.com")},
		{id: "C-09", name: "RSA-2048", csr: func(t testing.TB) string {
			return csrPEM(csrDER(t, names("client", "svc.example.com"), keyRSA2048()))
		}, want: accepted("client", "svc.example.com")},
		{id: "C-09", name: "RSA-4096 SHA-384 by openssl", csr: file("rsa4096.csr"), want: accepted("rsa4096-client", "svc.example.com", "api.example.com")},
	}
}

// multipleOf returns an odd 2048-bit multiple of p.
func multipleOf(p int64) *big.Int {
	n := oddModulus(2048, uint64(p))
	bp := big.NewInt(p)
	n.Sub(n, new(big.Int).Mod(n, bp))
	if n.Bit(0) == 0 {
		n.Sub(n, bp)
	}
	return n
}

// ecSPKI is a P-256 SubjectPublicKeyInfo around an arbitrary point encoding.
func ecSPKI(t testing.TB, point []byte) []byte {
	return mustMarshal(t, struct {
		Alg pkix.AlgorithmIdentifier
		Key asn1.BitString
	}{
		Alg: pkix.AlgorithmIdentifier{Algorithm: oidKeyECDSA, Parameters: asn1.RawValue{FullBytes: mustMarshal(t, oidCurveP256)}},
		Key: asn1.BitString{Bytes: point, BitLength: 8 * len(point)},
	})
}

func extensionCases() []csrCase {
	bc := func(t testing.TB, ca bool) pkix.Extension {
		v := []byte{0x30, 0x00}
		if ca {
			v = mustMarshal(t, struct{ CA bool }{true})
		}
		return pkix.Extension{Id: oidExtBasicConstraints, Critical: true, Value: v}
	}
	ku := func(t testing.TB, bits ...int) pkix.Extension {
		var b [1]byte
		n := 0
		for _, i := range bits {
			b[0] |= 0x80 >> i
			n = max(n, i+1)
		}
		return pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: mustMarshal(t, asn1.BitString{Bytes: b[:], BitLength: n})}
	}
	eku := func(t testing.TB, oids ...asn1.ObjectIdentifier) pkix.Extension {
		return pkix.Extension{Id: oidExtExtKeyUsage, Value: mustMarshal(t, oids)}
	}
	ext := func(build func(t testing.TB) []pkix.Extension) func(testing.TB) string {
		return func(t testing.TB) string { return p256(t, withExts(build(t)...)) }
	}
	return []csrCase{
		{id: "C-20", name: "basicConstraints CA:TRUE", csr: ext(func(t testing.TB) []pkix.Extension { return []pkix.Extension{bc(t, true)} }), kind: pki.KindBadCSR},
		{id: "C-20", name: "keyUsage keyCertSign", csr: ext(func(t testing.TB) []pkix.Extension { return []pkix.Extension{ku(t, 0, keyUsageCertSign)} }), kind: pki.KindBadCSR},
		{id: "C-20", name: "keyUsage cRLSign", csr: ext(func(t testing.TB) []pkix.Extension { return []pkix.Extension{ku(t, keyUsageCRLSign)} }), kind: pki.KindBadCSR},
		{id: "C-20", name: "EKU serverAuth", csr: ext(func(t testing.TB) []pkix.Extension { return []pkix.Extension{eku(t, oidServerAuth)} }), kind: pki.KindBadCSR},
		{id: "C-20", name: "EKU clientAuth and serverAuth", csr: ext(func(t testing.TB) []pkix.Extension {
			return []pkix.Extension{eku(t, oidEKUClientAuth, oidServerAuth)}
		}), kind: pki.KindBadCSR},
		{id: "C-20", name: "EKU codeSigning", csr: ext(func(t testing.TB) []pkix.Extension { return []pkix.Extension{eku(t, oidCodeSigning)} }), kind: pki.KindBadCSR},
		{id: "C-20", name: "EKU anyExtendedKeyUsage", csr: ext(func(t testing.TB) []pkix.Extension { return []pkix.Extension{eku(t, oidAnyEKU)} }), kind: pki.KindBadCSR},
		{id: "C-20", name: "malformed basicConstraints", csr: ext(func(t testing.TB) []pkix.Extension {
			return []pkix.Extension{{Id: oidExtBasicConstraints, Value: []byte{0x01, 0x01, 0xff}}}
		}), kind: pki.KindBadCSR},
		{id: "C-21", name: "duplicate extension", csr: ext(func(t testing.TB) []pkix.Extension {
			return []pkix.Extension{{Id: oidPrivate, Value: []byte{5, 0}}, {Id: oidPrivate, Value: []byte{5, 0}}}
		}), kind: pki.KindBadCSR},
		{id: "C-21", name: "two extensionRequest attributes", csr: func(t testing.TB) string {
			return rawCSR(t, 0, subjectCN(t, "client"),
				extensionRequest(t, []pkix.Extension{sanExt(dnsName("svc.example.com"))}),
				extensionRequest(t, []pkix.Extension{bc(t, true)}))
		}, kind: pki.KindBadCSR},
		{id: "C-21", name: "extensionRequest with two values", csr: func(t testing.TB) string {
			return rawCSR(t, 0, subjectCN(t, "client"),
				extensionRequest(t, []pkix.Extension{sanExt(dnsName("svc.example.com"))}, []pkix.Extension{bc(t, true)}))
		}, kind: pki.KindBadCSR},
		{id: "C-02", name: "CSR version 2", csr: func(t testing.TB) string {
			return rawCSR(t, 1, subjectCN(t, "client"), extensionRequest(t, []pkix.Extension{sanExt(dnsName("svc.example.com"))}))
		}, kind: pki.KindBadCSR},

		{id: "C-20", name: "basicConstraints CA:FALSE ignored", csr: ext(func(t testing.TB) []pkix.Extension { return []pkix.Extension{bc(t, false)} }), want: accepted("client", "svc.example.com")},
		{id: "C-20", name: "keyUsage digitalSignature ignored", csr: ext(func(t testing.TB) []pkix.Extension { return []pkix.Extension{ku(t, 0)} }), want: accepted("client", "svc.example.com")},
		{id: "C-20", name: "EKU clientAuth ignored", csr: ext(func(t testing.TB) []pkix.Extension { return []pkix.Extension{eku(t, oidEKUClientAuth)} }), want: accepted("client", "svc.example.com")},
		{id: "C-22", name: "must-staple ignored", csr: ext(func(t testing.TB) []pkix.Extension {
			return []pkix.Extension{{Id: oidMustStaple, Value: []byte{0x30, 0x03, 0x02, 0x01, 0x05}}}
		}), want: accepted("client", "svc.example.com")},
		{id: "C-22", name: "unknown critical extension ignored", csr: ext(func(t testing.TB) []pkix.Extension {
			return []pkix.Extension{{Id: oidPrivate, Critical: true, Value: []byte{5, 0}}}
		}), want: accepted("client", "svc.example.com")},
		{id: "C-24", name: "challengePassword and unstructuredName by openssl ignored", csr: file("p256-attributes.csr"), want: accepted("attrs-client", "attrs.example.com")},
		{id: "C-24", name: "unknown attribute ignored", csr: func(t testing.TB) string {
			attr := mustMarshal(t, struct {
				Type   asn1.ObjectIdentifier
				Values []string `asn1:"set"`
			}{oidPrivate, []string{"san:upn=admin@corp"}})
			return rawCSR(t, 0, subjectCN(t, "client"), attr, extensionRequest(t, []pkix.Extension{sanExt(dnsName("svc.example.com"))}))
		}, want: accepted("client", "svc.example.com")},
		{id: "C-24", name: "no attributes at all", csr: func(t testing.TB) string { return rawCSR(t, 0, subjectCN(t, "client")) }, want: accepted("client")},
	}
}

func sanCases() []csrCase {
	sans := func(gn ...[]byte) func(testing.TB) string {
		return func(t testing.TB) string {
			tmpl := names("client")
			tmpl.ExtraExtensions = []pkix.Extension{sanExt(gn...)}
			return p256(t, tmpl)
		}
	}
	otherName := func(t testing.TB) []byte {
		value := mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(t, "admin@corp.example")})
		return generalName(cbasn1.Tag(0).Constructed().ContextSpecific(), append(mustMarshal(t, oidUPN), value...))
	}
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("h%d.example.com", i)
		}
		return out
	}
	return []csrCase{
		{id: "C-26", name: "IP SAN", csr: func(t testing.TB) string {
			tmpl := names("client", "svc.example.com")
			tmpl.IPAddresses = []net.IP{net.ParseIP("192.0.2.1")}
			return p256(t, tmpl)
		}, kind: pki.KindBadCSR},
		{id: "C-27", name: "email SAN", csr: func(t testing.TB) string {
			tmpl := names("client", "svc.example.com")
			tmpl.EmailAddresses = []string{"a@example.com"}
			return p256(t, tmpl)
		}, kind: pki.KindBadCSR},
		{id: "C-27", name: "URI SAN", csr: func(t testing.TB) string {
			tmpl := names("client", "svc.example.com")
			tmpl.URIs = []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/ns/a/sa/b"}}
			return p256(t, tmpl)
		}, kind: pki.KindBadCSR},
		{id: "C-27", name: "otherName UPN SAN", csr: func(t testing.TB) string { return sans(dnsName("svc.example.com"), otherName(t))(t) }, kind: pki.KindBadCSR},
		{id: "C-27", name: "directoryName SAN", csr: func(t testing.TB) string {
			return sans(generalName(cbasn1.Tag(4).Constructed().ContextSpecific(), subjectCN(t, "admin")))(t)
		}, kind: pki.KindBadCSR},
		{id: "C-27", name: "registeredID SAN", csr: sans(generalName(cbasn1.Tag(8).ContextSpecific(), []byte{0x2a, 0x03})), kind: pki.KindBadCSR},
		{id: "C-27", name: "empty subjectAltName", csr: sans(), kind: pki.KindBadCSR},
		{id: "C-28", name: "constructed dNSName", csr: sans(generalName(cbasn1.Tag(2).Constructed().ContextSpecific(), []byte{0x04, 0x01, 'a'})), kind: pki.KindBadCSR},
		{id: "C-29", name: "U-label dNSName", csr: sans(dnsName("bücher.example")), kind: pki.KindBadCSR},
		{id: "C-31", name: "101 DNS names", csr: func(t testing.TB) string { return p256(t, names("", many(101)...)) }, kind: pki.KindBadCSR},
		{id: "C-31", name: "3 DNS names over a limit of 2", csr: func(t testing.TB) string { return p256(t, names("", many(3)...)) }, lim: &Limits{MaxDNSNames: 2}, kind: pki.KindBadCSR},
		{id: "C-31", name: "100 DNS names", csr: func(t testing.TB) string { return p256(t, names("", many(100)...)) }, want: accepted("", many(100)...)},
		{id: "C-31", name: "zero Limits means the default cap", csr: func(t testing.TB) string { return p256(t, names("", many(100)...)) }, lim: &Limits{}, want: accepted("", many(100)...)},
		{id: "C-31", name: "duplicates removed, order kept", csr: func(t testing.TB) string {
			return p256(t, names("", "b.example.com", "a.example.com", "b.example.com"))
		}, want: accepted("", "b.example.com", "a.example.com")},
	}
}

// dnsCase is a CSR naming one DNS name besides the CN "client".
func dnsCase(id, name, dns string, kind pki.Kind) csrCase {
	c := csrCase{id: id, name: name, kind: kind, csr: func(t testing.TB) string {
		tmpl := names("client")
		tmpl.ExtraExtensions = []pkix.Extension{sanExt(dnsName("ok.example.com"), dnsName(dns))}
		return p256(t, tmpl)
	}}
	if kind == "" {
		c.want = accepted("client", "ok.example.com", dns)
	}
	return c
}

func nameCases() []csrCase {
	allow := &Limits{AllowWildcards: true}
	wildcard := dnsCase("C-25", "wildcard allowed", "*.svc.example.com", "")
	wildcard.lim = allow
	return []csrCase{
		dnsCase("C-28", "NUL in DNS name", "svc.example.com\x00.evil.com", pki.KindBadCSR),
		dnsCase("C-28", "space in DNS name", "svc example.com", pki.KindBadCSR),
		dnsCase("C-28", "empty DNS name", "", pki.KindBadCSR),
		dnsCase("C-28", "trailing dot", "svc.example.com.", pki.KindBadCSR),
		dnsCase("C-28", "leading dot", ".example.com", pki.KindBadCSR),
		dnsCase("C-28", "empty label", "svc..example.com", pki.KindBadCSR),
		dnsCase("C-28", "254 characters", strings.Repeat("a.", 125)+"abcd", pki.KindBadCSR),
		dnsCase("C-28", "64-character label", strings.Repeat("a", 64)+".example.com", pki.KindBadCSR),
		dnsCase("C-28", "underscore", "_acme.example.com", pki.KindBadCSR),
		dnsCase("C-28", "upper case", "Svc.Example.com", pki.KindBadCSR),
		dnsCase("C-28", "leading hyphen", "-svc.example.com", pki.KindBadCSR),
		dnsCase("C-28", "trailing hyphen", "svc-.example.com", pki.KindBadCSR),
		dnsCase("C-28", "single label", "localhost", pki.KindBadCSR),
		dnsCase("C-28", "other punctuation", "svc!.example.com", pki.KindBadCSR),
		dnsCase("C-26", "IPv4 address as DNS name", "192.0.2.1", pki.KindBadCSR),
		dnsCase("C-29", "bad punycode", "xn--a.example.com", pki.KindBadCSR),
		dnsCase("C-29", "punycode of non-NFC text", "xn--cafe-yvc.example.com", pki.KindBadCSR),
		dnsCase("C-29", "empty punycode", "xn--.example.com", pki.KindBadCSR),
		dnsCase("C-29", "R-LDH label", "ab--cd.example.com", pki.KindBadCSR),
		dnsCase("C-25", "double wildcard", "*.*.example.com", pki.KindBadCSR),
		dnsCase("C-25", "partial-label wildcard", "a*.example.com", pki.KindBadCSR),
		dnsCase("C-25", "bare wildcard", "*", pki.KindBadCSR),
		dnsCase("C-25", "wildcard over a TLD", "*.com", pki.KindBadCSR),
		dnsCase("C-25", "wildcard in the middle", "svc.*.example.com", pki.KindBadCSR),
		{id: "C-25", name: "malformed wildcard even when allowed", lim: allow, kind: pki.KindBadCSR, csr: dnsCase("", "", "*.*.example.com", "").csr},
		{id: "C-25", name: "malformed name wins over refused wildcard", kind: pki.KindBadCSR, csr: func(t testing.TB) string {
			return p256(t, names("client", "*.svc.example.com", "UPPER.example.com"))
		}},
		dnsCase("C-25", "unauthorised wildcard", "*.svc.example.com", pki.KindRejectedIdentifier),
		wildcard,
		dnsCase("C-29", "valid A-label", "xn--bcher-kva.example", ""),
		dnsCase("C-28", "digits and hyphens", "a-1.b2.example.com", ""),
		dnsCase("C-28", "253 characters", strings.Repeat("a.", 125)+"abc", ""),
		dnsCase("C-28", "63-character label", strings.Repeat("a", 63)+".example.com", ""),

		{id: "C-30", name: "NUL in CN", csr: func(t testing.TB) string { return p256(t, names("client\x00evil", "svc.example.com")) }, kind: pki.KindBadCSR},
		{id: "C-30", name: "bell in CN", csr: func(t testing.TB) string { return p256(t, names("client\a", "svc.example.com")) }, kind: pki.KindBadCSR},
		{id: "C-30", name: "bidi override in CN", csr: func(t testing.TB) string { return p256(t, names("client\u202egnp.exe")) }, kind: pki.KindBadCSR},
		{id: "C-30", name: "65-character CN", csr: func(t testing.TB) string { return p256(t, names(strings.Repeat("c", 65))) }, kind: pki.KindBadCSR},
		{id: "C-30", name: "65 two-byte characters in CN", csr: func(t testing.TB) string { return p256(t, names(strings.Repeat("é", 65))) }, kind: pki.KindBadCSR},
		{id: "C-30", name: "leading space in CN", csr: func(t testing.TB) string { return p256(t, names(" client")) }, kind: pki.KindBadCSR},
		{id: "C-30", name: "trailing space in CN", csr: func(t testing.TB) string { return p256(t, names("client ")) }, kind: pki.KindBadCSR},
		{id: "C-30", name: "CN not valid UTF-8", csr: func(t testing.TB) string {
			return rawCSR(t, 0, rdn(t, asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte{'c', 0xff, 0xfe}}))
		}, kind: pki.KindBadCSR},
		{id: "C-30", name: "control character in a T61String CN", csr: func(t testing.TB) string {
			return rawCSR(t, 0, rdn(t, asn1.RawValue{Tag: asn1.TagT61String, Bytes: []byte{'c', 0x9b, 'x'}}))
		}, kind: pki.KindBadCSR},
		{id: "C-30", name: "CN an INTEGER", csr: func(t testing.TB) string {
			return rawCSR(t, 0, rdn(t, asn1.RawValue{Tag: asn1.TagInteger, Bytes: []byte{5}}))
		}, kind: pki.KindBadCSR},
		{id: "C-30", name: "two CNs", csr: func(t testing.TB) string {
			return rawCSR(t, 0, mustMarshal(t, pkix.RDNSequence{
				{{Type: oidCommonName, Value: "client"}},
				{{Type: oidCommonName, Value: "other"}},
			}))
		}, kind: pki.KindBadCSR},
		{id: "C-30", name: "empty CN attribute", csr: func(t testing.TB) string {
			tmpl := names("", "svc.example.com")
			tmpl.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: ""}}
			return p256(t, tmpl)
		}, kind: pki.KindBadCSR},
		{id: "C-26", name: "IP address as CN", csr: func(t testing.TB) string { return p256(t, names("192.0.2.1")) }, kind: pki.KindBadCSR},
		{id: "C-26", name: "IPv6 address as CN", csr: func(t testing.TB) string { return p256(t, names("2001:db8::1")) }, kind: pki.KindBadCSR},
		{id: "C-32", name: "no identifiers", csr: func(t testing.TB) string { return p256(t, names("")) }, kind: pki.KindBadCSR},
		{id: "C-32", name: "empty subject, no SAN", csr: func(t testing.TB) string { return rawCSR(t, 0, mustMarshal(t, pkix.RDNSequence{})) }, kind: pki.KindBadCSR},

		{id: "C-30", name: "CN only", csr: func(t testing.TB) string { return p256(t, names("build-agent-7")) }, want: accepted("build-agent-7")},
		{id: "C-30", name: "DNS only", csr: func(t testing.TB) string { return p256(t, names("", "svc.example.com")) }, want: accepted("", "svc.example.com")},
		{id: "C-30", name: "64-character CN", csr: func(t testing.TB) string { return p256(t, names(strings.Repeat("c", 64))) }, want: accepted(strings.Repeat("c", 64))},
		{id: "C-30", name: "64 two-byte characters in CN", csr: func(t testing.TB) string { return p256(t, names(strings.Repeat("é", 64))) }, want: accepted(strings.Repeat("é", 64))},
		{id: "C-30", name: "CN with inner spaces and punctuation", csr: func(t testing.TB) string { return p256(t, names("Billing API (prod) #2")) }, want: accepted("Billing API (prod) #2")},
		{id: "C-30", name: "other subject attributes ignored", csr: func(t testing.TB) string {
			tmpl := names("client", "svc.example.com")
			tmpl.Subject.Organization = []string{"Another Tenant\x00"}
			tmpl.Subject.OrganizationalUnit = []string{"admins"}
			return p256(t, tmpl)
		}, want: accepted("client", "svc.example.com")},
	}
}

// rdn is a one-attribute subject whose CN has an arbitrary ASN.1 value.
func rdn(t testing.TB, value asn1.RawValue) []byte {
	atv := mustMarshal(t, struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}{oidCommonName, value})
	set := mustMarshal(t, asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: atv})
	return mustMarshal(t, asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: set})
}

func allCases() []csrCase {
	return slices.Concat(parseCases(), signatureCases(), keyCases(), extensionCases(), sanCases(), nameCases())
}

func TestParseAndCheckCSR(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range allCases() {
		name := tc.id + "/" + tc.name
		if seen[name] {
			t.Fatalf("duplicate case name %q", name)
		}
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			lim := DefaultLimits()
			if tc.lim != nil {
				lim = *tc.lim
			}
			in := tc.csr(t)
			got, err := parseAndCheck(in, lim)
			if tc.kind == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				checkAccepted(t, got, tc.want)
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %s", tc.kind)
			}
			var re *pki.RequestError
			var pe *pki.PolicyError
			switch {
			case tc.policy || tc.kind == pki.KindRejectedIdentifier:
				if !errors.As(err, &pe) || pe.Kind != tc.kind || pe.Title == "" {
					t.Fatalf("error %#v, want *pki.PolicyError %s", err, tc.kind)
				}
			case !errors.As(err, &re) || re.Kind != tc.kind:
				t.Fatalf("error %#v, want *pki.RequestError %s", err, tc.kind)
			}
			assertNoEcho(t, err, in)
		})
	}
}

func parseAndCheck(text string, lim Limits) (*Checked, error) {
	csr, err := ParseCSR(text)
	if err != nil {
		return nil, err
	}
	return CheckCSR(csr, lim)
}

func checkAccepted(t *testing.T, got, want *Checked) {
	t.Helper()
	if got.CommonName != want.CommonName {
		t.Errorf("CommonName = %q, want %q", got.CommonName, want.CommonName)
	}
	if !slices.Equal(got.DNSNames, want.DNSNames) {
		t.Errorf("DNSNames = %q, want %q", got.DNSNames, want.DNSNames)
	}
	switch k := got.PublicKey.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if got.SPKISHA256 != sha256.Sum256(der) {
			t.Errorf("SPKISHA256 is not the hash of the key's SubjectPublicKeyInfo")
		}
	default:
		t.Errorf("PublicKey is %T", got.PublicKey)
	}
}

// assertNoEcho fails if the error quotes any line of the input longer than a
// few characters: the input may be a private key.
func assertNoEcho(t *testing.T, err error, in string) {
	t.Helper()
	msg := err.Error()
	for line := range strings.Lines(in) {
		line = strings.TrimSpace(line)
		if len(line) >= 12 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line) {
			t.Fatalf("error %q echoes the input", msg)
		}
	}
}

// TestPrivateKeyNotEchoed pins C-03: a private key pasted instead of a CSR is
// refused with a detail that names the mistake and quotes nothing.
func TestPrivateKeyNotEchoed(t *testing.T) {
	in := privateKeyPEM("PRIVATE KEY")(t)
	_, err := ParseCSR(in)
	var re *pki.RequestError
	if !errors.As(err, &re) || re.Kind != pki.KindBadCSR {
		t.Fatalf("ParseCSR(private key) = %v, want badCSR", err)
	}
	if !strings.Contains(re.Detail, "private key") {
		t.Errorf("detail %q does not name the mistake", re.Detail)
	}
	body := strings.Join(strings.Split(in, "\n")[1:3], "")
	for i := 0; i+8 <= len(body); i++ {
		if strings.Contains(re.Detail, body[i:i+8]) {
			t.Fatalf("detail %q quotes the key", re.Detail)
		}
	}
}

// TestCheckCSRTamperedFields covers a CertificateRequest whose parsed fields
// were changed after parsing: the checks read the signed extensions, and a
// mismatch is refused rather than trusted.
func TestCheckCSRTamperedFields(t *testing.T) {
	parse := func(t *testing.T) *x509.CertificateRequest {
		csr, err := ParseCSR(good(t))
		if err != nil {
			t.Fatal(err)
		}
		return csr
	}
	cases := []struct {
		name   string
		tamper func(*x509.CertificateRequest)
	}{
		{"extra DNS name", func(c *x509.CertificateRequest) { c.DNSNames = append(c.DNSNames, "evil.example.com") }},
		{"replaced DNS name", func(c *x509.CertificateRequest) { c.DNSNames = []string{"evil.example.com"} }},
		{"IP address", func(c *x509.CertificateRequest) { c.IPAddresses = []net.IP{net.IPv4(192, 0, 2, 1)} }},
		{"duplicate extension", func(c *x509.CertificateRequest) { c.Extensions = append(c.Extensions, c.Extensions[0]) }},
		{"too many extensions", func(c *x509.CertificateRequest) {
			for i := range maxExtensions {
				c.Extensions = append(c.Extensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, i + 2}})
			}
		}},
		{"common name without subject attribute", func(c *x509.CertificateRequest) { c.Subject.Names = nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			csr := parse(t)
			tc.tamper(csr)
			_, err := CheckCSR(csr, DefaultLimits())
			var re *pki.RequestError
			if !errors.As(err, &re) || re.Kind != pki.KindBadCSR {
				t.Fatalf("CheckCSR = %v, want badCSR", err)
			}
		})
	}
	if _, err := CheckCSR(nil, DefaultLimits()); err == nil {
		t.Fatal("CheckCSR(nil) accepted")
	}
}

// TestCheckCSROrder pins Boulder's order: a bad key is reported even when
// the signature algorithm and the signature are bad too, and a refused
// signature algorithm is reported even when the signature is bad.
func TestCheckCSROrder(t *testing.T) {
	weakAndUnsigned := resign(t, csrDER(t, names("client"), keyRSA1024()), keyRSA1024(), oidSigSHA1WithRSA, crypto.SHA1)
	csr, err := ParseCSR(csrPEM(flipLast(weakAndUnsigned)))
	if err != nil {
		t.Fatal(err)
	}
	var re *pki.RequestError
	if _, err := CheckCSR(csr, DefaultLimits()); !errors.As(err, &re) || re.Kind != pki.KindBadPublicKey {
		t.Fatalf("weak key, SHA-1, bad signature: %v, want badPublicKey", err)
	}
	sha1Bad := flipLast(resign(t, csrDER(t, names("client"), keyRSA2048()), keyRSA2048(), oidSigSHA1WithRSA, crypto.SHA1))
	csr, err = ParseCSR(csrPEM(sha1Bad))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckCSR(csr, DefaultLimits()); !errors.As(err, &re) || re.Kind != pki.KindBadSignatureAlgorithm {
		t.Fatalf("SHA-1, bad signature: %v, want badSignatureAlgorithm", err)
	}
}

// TestOversizeRefusedCheaply checks that a 16k-bit modulus is refused without
// arithmetic on it: a thousand refusals take far less time than one 16k-bit
// signature verification would.
func TestOversizeRefusedCheaply(t *testing.T) {
	csr, err := ParseCSR(spkiCSR(t, rsaSPKI(t, oddModulus(16384, 9), 65537)))
	if err != nil {
		t.Fatal(err)
	}
	res := testing.Benchmark(func(b *testing.B) {
		for b.Loop() {
			if _, err := CheckCSR(csr, DefaultLimits()); err == nil {
				b.Fatal("accepted")
			}
		}
	})
	if per := res.NsPerOp(); per > 200_000 {
		t.Fatalf("refusing a 16k-bit key costs %d ns", per)
	}
}
