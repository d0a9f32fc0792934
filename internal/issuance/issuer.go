// Package issuance is the only package of pkid that signs. It builds pkid's
// CA hierarchy (root, issuing intermediate, delegated OCSP responder) and the
// client certificates that are the product, and it never signs anything that
// zlint has not seen first.
//
// Every certificate goes through the same two steps, after Boulder's
// issuance package. Prepare builds the exact tbsCertificate (x509's own
// encoding, stopped before it signs: see captureTBS; for client
// certificates, the same bytes written by encodeClientTBS), lints it as a
// certificate whose signature is a placeholder that verifies under no key,
// and returns a single-use token. Issue has the real key sign the very
// tbsCertificate bytes that were linted, verifies the signature and returns
// the DER. A refusal at any point before Issue leaves no signature behind,
// which Signatures lets callers and tests observe. (The root is the
// exception, being its own issuer: see NewRoot.)
//
// CRLs follow the same path in SignCRL: the tbsCertList is linted with the
// placeholder signature, then the real key signs the linted bytes with
// signBytes. OCSP responses are not linted: SignOCSP checks what it is asked
// to sign itself.
//
// Keys are only ever crypto.Signer: a key in memory, in an HSM or in a KMS
// are the same here. The package does no I/O beyond asking a Signer to sign.
package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// Issuer is a certificate and the key that signs in its name: a CA
// certificate, or the delegated OCSP responder's certificate.
type Issuer struct {
	// ID is the lowercase hex SHA-256 of Cert.Raw, the issuer's name in the
	// database.
	ID string
	// Cert is the issuer's certificate.
	Cert *x509.Certificate
	// Signer is the issuer's private key. It is exported so that the key can
	// be sealed for storage; signing with it directly bypasses linting and
	// the signature count, so nothing outside this package should.
	Signer crypto.Signer

	// sigAlg is the signature algorithm every signature of this issuer uses,
	// fixed so that the to-be-signed bytes that are linted name the
	// algorithm the real key then signs with.
	sigAlg x509.SignatureAlgorithm
	// signatures counts the real signatures made with Signer;
	// certificates, those of them that signed a certificate.
	signatures   atomic.Uint64
	certificates atomic.Uint64

	// placeholder is the signature value of this issuer's lint
	// certificates and CRLs: see placeholderSignature.
	placeholder []byte
}

// NewIssuer returns the Issuer for a DER certificate and the key that
// certifies. It fails unless signer's public key is the certificate's and the
// key is of a type pkid signs with.
func NewIssuer(certDER []byte, signer crypto.Signer) (*Issuer, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("issuance: parsing issuer certificate: %w", err)
	}
	if signer == nil {
		return nil, errors.New("issuance: no signer")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("issuance: the signer's public key is not the key of %q", cert.Subject)
	}
	alg, err := signatureAlgorithm(signer.Public())
	if err != nil {
		return nil, err
	}
	placeholder, err := placeholderSignature(cert.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cert.Raw)
	return &Issuer{ID: hex.EncodeToString(sum[:]), Cert: cert, Signer: signer, sigAlg: alg, placeholder: placeholder}, nil
}

// Signatures returns how many times this issuer's key has been asked to sign
// (certificates, CRLs and OCSP responses). Tests use it to show that a
// refusal signed nothing; serve can export it as a metric.
func (i *Issuer) Signatures() uint64 { return i.signatures.Load() }

// CertificatesSigned returns how many certificates this issuer's key has been
// asked to sign: Signatures without the CRLs and OCSP responses, which
// background jobs sign at times a test does not control.
func (i *Issuer) CertificatesSigned() uint64 { return i.certificates.Load() }

// GenerateKey returns a new ECDSA private key on curve, from crypto/rand. pkid
// uses P-384 for the root and P-256 for everything that signs often.
func GenerateKey(curve elliptic.Curve) (crypto.Signer, error) {
	switch curve {
	case elliptic.P256(), elliptic.P384(), elliptic.P521():
	default:
		return nil, errors.New("issuance: GenerateKey supports P-256, P-384 and P-521 only")
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issuance: generating key: %w", err)
	}
	return key, nil
}

// signatureAlgorithm picks the algorithm an issuer with key pub signs with:
// ECDSA with the hash that matches the curve (RFC 5480 §4), RSA PKCS #1 v1.5
// with SHA-256 (the most widely verifiable), or Ed25519.
func signatureAlgorithm(pub crypto.PublicKey) (x509.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		case elliptic.P521():
			return x509.ECDSAWithSHA512, nil
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return 0, fmt.Errorf("issuance: %d-bit RSA issuer keys are too weak", k.N.BitLen())
		}
		return x509.SHA256WithRSA, nil
	case ed25519.PublicKey:
		return x509.PureEd25519, nil
	}
	return 0, fmt.Errorf("issuance: unsupported issuer key type %T", pub)
}

// newThrowawayKey returns a fresh software key of the same kind as pub, so
// that it produces signatures of the same algorithm: NewRoot's twin, the one
// certificate that must be linted with a signature that verifies.
func newThrowawayKey(pub crypto.PublicKey) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.GenerateKey(k.Curve, rand.Reader)
	case *rsa.PublicKey:
		// The signature algorithm (SHA256WithRSA) does not depend on the
		// modulus size, so the smallest acceptable key does.
		return rsa.GenerateKey(rand.Reader, 2048)
	case ed25519.PublicKey:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("issuance: unsupported issuer key type %T", pub)
}

// countingSigner is the issuer's key with every use counted.
type countingSigner struct{ i *Issuer }

func (s countingSigner) Public() crypto.PublicKey { return s.i.Signer.Public() }

func (s countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	// Counted before the call: an HSM that fails half-way may still have
	// produced a signature somewhere.
	s.i.signatures.Add(1)
	return s.i.Signer.Sign(r, digest, opts)
}
