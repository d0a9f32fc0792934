package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	_ "crypto/md5" // registers crypto.MD5 for the MD5-signed CSR case
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Keys are generated once per test binary: RSA generation dominates the
// package's test time otherwise.
var (
	keyP256    = onceKey(func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) })
	keyP384    = onceKey(func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) })
	keyP224    = onceKey(func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P224(), rand.Reader) })
	keyP521    = onceKey(func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P521(), rand.Reader) })
	keyRSA2048 = onceKey(func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	keyRSA1024 = onceKey(func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 1024) })
	keyEd25519 = onceKey(func() (crypto.Signer, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	})
)

func onceKey(gen func() (crypto.Signer, error)) func() crypto.Signer {
	return sync.OnceValue(func() crypto.Signer {
		k, err := gen()
		if err != nil {
			panic(err)
		}
		return k
	})
}

func rsaKey(k crypto.Signer) *rsa.PrivateKey { return k.(*rsa.PrivateKey) }

// fermatPrimes are two 1024-bit primes about 2^516 apart, the distance of
// Boulder's TestFermat fixture: Fermat's method factors their product in a few
// dozen rounds, while nothing else about the modulus is wrong. crypto/rsa
// refuses to sign with such a key (FIPS 186-5 |p-q| check), so CSRs carrying
// it are unsigned, which is enough because the key is checked first.
var fermatPrimes = sync.OnceValues(func() (*big.Int, *big.Int) {
	for {
		p, err := rand.Prime(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		if p.Bit(1022) == 0 {
			continue // the modulus must have exactly 2048 bits
		}
		q := new(big.Int).Lsh(big.NewInt(1), 516)
		q.Add(q, p).SetBit(q, 0, 1)
		for !q.ProbablyPrime(20) {
			q.Add(q, big.NewInt(2))
		}
		if new(big.Int).Mul(p, q).BitLen() == 2048 {
			return p, q
		}
	}
})

func fermatModulus() *big.Int {
	p, q := fermatPrimes()
	return new(big.Int).Mul(p, q)
}

// csrDER signs tmpl with key, failing the test on error.
func csrDER(t testing.TB, tmpl *x509.CertificateRequest, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return der
}

func pemOf(label string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: label, Bytes: der}))
}

func csrPEM(der []byte) string { return pemOf("CERTIFICATE REQUEST", der) }

// names returns a template with the given common name and DNS names.
func names(cn string, dns ...string) *x509.CertificateRequest {
	return &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
}

// p256 returns the PEM of tmpl signed with the shared P-256 key.
func p256(t testing.TB, tmpl *x509.CertificateRequest) string {
	return csrPEM(csrDER(t, tmpl, keyP256()))
}

// withExts returns a template named svc.example.com that also requests exts.
func withExts(exts ...pkix.Extension) *x509.CertificateRequest {
	tmpl := names("client", "svc.example.com")
	tmpl.ExtraExtensions = exts
	return tmpl
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// csrSplit returns the three elements of a DER CSR: the TBS, the signature
// AlgorithmIdentifier and the signature bits.
func csrSplit(t testing.TB, der []byte) (tbs, alg, sig []byte) {
	t.Helper()
	in := cryptobyte.String(der)
	var body cryptobyte.String
	var tbsE, algE cryptobyte.String
	var bits asn1.BitString
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) ||
		!body.ReadASN1Element(&tbsE, cbasn1.SEQUENCE) ||
		!body.ReadASN1Element(&algE, cbasn1.SEQUENCE) {
		t.Fatal("csrSplit: not a CSR")
	}
	if _, err := asn1.Unmarshal(body, &bits); err != nil {
		t.Fatalf("csrSplit: %v", err)
	}
	return tbsE, algE, bits.Bytes
}

func csrJoin(tbs, alg, sig []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(alg)
		b.AddASN1BitString(sig)
	})
	return b.BytesOrPanic()
}

// tbsSplit returns the elements of a CertificationRequestInfo.
func tbsSplit(t testing.TB, tbs []byte) (version, subject, spki, attrs []byte) {
	t.Helper()
	in := cryptobyte.String(tbs)
	var body, v, s, k cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) ||
		!body.ReadASN1Element(&v, cbasn1.INTEGER) ||
		!body.ReadASN1Element(&s, cbasn1.SEQUENCE) ||
		!body.ReadASN1Element(&k, cbasn1.SEQUENCE) {
		t.Fatal("tbsSplit: not a CertificationRequestInfo")
	}
	return v, s, k, body
}

func tbsJoin(parts ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, p := range parts {
			b.AddBytes(p)
		}
	})
	return b.BytesOrPanic()
}

// withSPKI replaces the public key of a DER CSR, keeping the old signature:
// the result is signed by nobody, which is enough for keys that must be
// refused before the signature is looked at.
func withSPKI(t testing.TB, der, spki []byte) []byte {
	t.Helper()
	tbs, alg, sig := csrSplit(t, der)
	v, s, _, attrs := tbsSplit(t, tbs)
	return csrJoin(tbsJoin(v, s, spki, attrs), alg, sig)
}

// spkiCSR is a P-256 CSR carrying spki instead of its own key.
func spkiCSR(t testing.TB, spki []byte) string {
	return csrPEM(withSPKI(t, csrDER(t, names("client", "svc.example.com"), keyP256()), spki))
}

func rsaSPKI(t testing.TB, n *big.Int, e int) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: e})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// oddModulus returns a deterministic odd number of exactly bits bits whose
// factors are unknown: a stand-in for an RSA modulus of a size that must be
// refused before anything else is done with it.
func oddModulus(bits int, seed uint64) *big.Int {
	rng := mrand.New(mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	buf := make([]byte, (bits+7)/8)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	n := new(big.Int).SetBytes(buf)
	n.SetBit(n, bits-1, 1).SetBit(n, 0, 1)
	for i := bits; i < len(buf)*8; i++ {
		n.SetBit(n, i, 0)
	}
	return n
}

// roughModulus returns an odd number of exactly bits bits with no prime
// factor below 752: the shape of an acceptable RSA modulus, for size checks
// that need no private key.
func roughModulus(bits int, seed uint64) *big.Int {
	n := oddModulus(bits, seed)
	two := big.NewInt(2)
	r := new(big.Int)
	for p := int64(3); p < 752; p += 2 {
		if r.Mod(n, big.NewInt(p)).Sign() == 0 {
			n.Add(n, two)
			p = 1 // start over
		}
	}
	return n
}

// Signature algorithm identifiers the allow-list must refuse.
var (
	oidSigSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSigMD5WithRSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}
	oidSigSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSigECDSAWithSHA1 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
)

// resign re-signs the TBS of der with key under the given algorithm
// identifier and hash, so that the signature is genuine but made with an
// algorithm the allow-list refuses (SHA-1, MD5).
func resign(t testing.TB, der []byte, key crypto.Signer, alg asn1.ObjectIdentifier, h crypto.Hash) []byte {
	t.Helper()
	tbs, _, _ := csrSplit(t, der)
	var digest []byte
	switch h {
	case crypto.SHA1:
		d := sha1.Sum(tbs)
		digest = d[:]
	case crypto.SHA256:
		d := sha256.Sum256(tbs)
		digest = d[:]
	default:
		hh := h.New()
		hh.Write(tbs)
		digest = hh.Sum(nil)
	}
	var sig []byte
	var err error
	var algID []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, h, digest)
		algID = mustMarshal(t, pkix.AlgorithmIdentifier{Algorithm: alg, Parameters: asn1.NullRawValue})
	case *ecdsa.PrivateKey:
		sig, err = ecdsa.SignASN1(rand.Reader, k, digest)
		algID = mustMarshal(t, pkix.AlgorithmIdentifier{Algorithm: alg})
	default:
		t.Fatalf("resign: unsupported key %T", key)
	}
	if err != nil {
		t.Fatalf("resign: %v", err)
	}
	return csrJoin(tbs, algID, sig)
}

// flipLast flips the last bit of the signature.
func flipLast(der []byte) []byte {
	out := append([]byte(nil), der...)
	out[len(out)-1] ^= 1
	return out
}

// rawCSR signs a CertificationRequestInfo assembled from raw parts with the
// shared P-256 key: the way to make CSRs that crypto/x509 would never write
// but would parse.
func rawCSR(t testing.TB, version int, subject []byte, attrs ...[]byte) string {
	t.Helper()
	key := keyP256().(*ecdsa.PrivateKey)
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	var ab cryptobyte.Builder
	ab.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
		for _, a := range attrs {
			b.AddBytes(a)
		}
	})
	tbs := tbsJoin(mustMarshal(t, version), subject, spki, ab.BytesOrPanic())
	digest := sha256.Sum256(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	alg := mustMarshal(t, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}})
	return csrPEM(csrJoin(tbs, alg, sig))
}

// subjectCN is the DER Name "CN=<cn>" with cn as a UTF8String.
func subjectCN(t testing.TB, cn string) []byte {
	return mustMarshal(t, pkix.Name{CommonName: cn}.ToRDNSequence())
}

var oidExtensionRequest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}

// extensionRequest is a PKCS #9 extensionRequest attribute with one value
// per element of sets.
func extensionRequest(t testing.TB, sets ...[]pkix.Extension) []byte {
	t.Helper()
	values := make([]asn1.RawValue, len(sets))
	for i, s := range sets {
		values[i] = asn1.RawValue{FullBytes: mustMarshal(t, s)}
	}
	return mustMarshal(t, struct {
		Type   asn1.ObjectIdentifier
		Values []asn1.RawValue `asn1:"set"`
	}{oidExtensionRequest, values})
}

// sanExt builds a subjectAltName extension from raw GeneralName elements.
func sanExt(generalNames ...[]byte) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, g := range generalNames {
			b.AddBytes(g)
		}
	})
	return pkix.Extension{Id: oidExtSubjectAltName, Value: b.BytesOrPanic()}
}

// generalName encodes one GeneralName with the given context tag.
func generalName(tag cbasn1.Tag, contents []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(contents) })
	return b.BytesOrPanic()
}

func dnsName(s string) []byte { return generalName(cbasn1.Tag(2).ContextSpecific(), []byte(s)) }

// fixture reads a committed file under testdata/.
func fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fixtureSPKI returns the DER of the PUBLIC KEY block in a testdata file.
func fixtureSPKI(t testing.TB, name string) []byte {
	t.Helper()
	block, _ := pem.Decode([]byte(fixture(t, name)))
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("%s: no PUBLIC KEY block", name)
	}
	return block.Bytes
}
