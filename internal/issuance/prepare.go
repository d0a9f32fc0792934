package issuance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/pkid/pkid/internal/pki"
)

// Errors of the prepare-then-issue protocol. Callers test them with
// errors.Is.
var (
	// ErrAlreadyIssued: Issue was called a second time with the same
	// Prepared. Each Prepared yields at most one signature.
	ErrAlreadyIssued = errors.New("issuance: prepared certificate already issued")
	// ErrWrongIssuer: a Prepared was given to an issuer other than the one
	// that prepared it.
	ErrWrongIssuer = errors.New("issuance: prepared certificate belongs to another issuer")
	// ErrTBSMismatch: the certificate the real key signed differs from the
	// one that was linted; the certificate is not returned.
	ErrTBSMismatch = errors.New("issuance: signed certificate differs from the linted one")
	// ErrBadRequest: the request cannot be certified as it stands (validity
	// outside what the issuer and profile allow, a malformed serial, an
	// unsupported key). It is a bug or a misconfiguration of the caller:
	// requests are validated by policy before they reach issuance.
	ErrBadRequest = errors.New("issuance: request cannot be certified")
)

// LintError reports a certificate that zlint refused. Nothing was signed by
// a real key. Err is the linter's error, a *lint.Error in practice.
type LintError struct {
	Serial pki.Serial // the serial of the refused certificate
	Err    error
}

func (e *LintError) Error() string {
	return fmt.Sprintf("issuance: certificate %s refused by lint: %v", e.Serial, e.Err)
}

func (e *LintError) Unwrap() error { return e.Err }

// certLinter is what Prepare needs of a linter; *lint.Linter is one.
// Benchmarks substitute a no-op to measure everything but zlint.
type certLinter interface {
	Certificate(der []byte) error
}

// Prepared is a single-use issuance token: the exact certificate that Issue
// will sign, already linted. LintDER is that certificate as zlint saw it: the
// tbsCertificate that Issue will sign, with the issuer's signature algorithm
// and a placeholder signature that verifies under no key (see
// placeholderSignature). It is the record of what the CA is about to sign, to
// be stored before the real signature is made (Boulder stores the same
// thing), and it is not a valid certificate.
type Prepared struct {
	LintDER []byte

	issuer   *Issuer
	serial   pki.Serial
	tbs      []byte // the tbsCertificate of LintDER, in a buffer of its own
	sigAlgID []byte // its signatureAlgorithm, DER
	redeemed atomic.Bool
}

// Serial returns the serial number of the prepared certificate.
func (p *Prepared) Serial() pki.Serial { return p.serial }

// prepare builds the tbsCertificate of tmpl for pub as issued by i, lints it
// and returns the token that Issue redeems. Nothing is signed: see
// captureTBS.
func (i *Issuer) prepare(tmpl *x509.Certificate, pub crypto.PublicKey, l certLinter) (*Prepared, error) {
	tbs, err := i.captureTBS(tmpl, pub)
	if err != nil {
		return nil, err
	}
	return i.prepareTBS(tbs, pki.SerialFromBig(tmpl.SerialNumber), l)
}

// prepareTBS lints the tbsCertificate tbs, of the certificate with the given
// serial, and returns the token that Issue redeems. tbs becomes the
// Prepared's: the caller must not keep it. Every certificate reaches Issue
// through here, so this is where a missing linter is refused.
func (i *Issuer) prepareTBS(tbs []byte, serial pki.Serial, l certLinter) (*Prepared, error) {
	if l == nil {
		return nil, errors.New("issuance: no linter: pkid never signs what it has not linted")
	}
	sigAlgID, err := tbsSignatureAlgorithm(tbs)
	if err != nil {
		return nil, err
	}
	// LintDER gets a copy of the tbsCertificate: it belongs to the caller,
	// and what Issue signs must not change if the caller reuses that buffer.
	lintDER := assembleSigned(tbs, sigAlgID, i.placeholder)
	if err := l.Certificate(lintDER); err != nil {
		return nil, &LintError{Serial: serial, Err: err}
	}
	return &Prepared{
		LintDER:  lintDER,
		issuer:   i,
		serial:   serial,
		tbs:      tbs,
		sigAlgID: sigAlgID, // within tbs
	}, nil
}

// errTBSCaptured is what captureSigner answers in place of a signature: it
// stops x509.CreateCertificate once the tbsCertificate is built.
var errTBSCaptured = errors.New("issuance: tbsCertificate captured, not signed")

// captureTBS returns the tbsCertificate that x509.CreateCertificate builds
// from tmpl for pub with i's certificate as parent, without signing it.
//
// CreateCertificate validates the template, marshals the tbsCertificate and
// hands it whole to crypto.SignMessage, which passes it unhashed to a signer
// that implements crypto.MessageSigner (Go 1.25 and later); the signer's
// error is returned as is, before CreateCertificate verifies or encodes
// anything more. captureSigner is such a signer: its public key is the
// issuer's (so CreateCertificate accepts i.Cert as the parent, and takes the
// issuer name from its RawSubject and the authority key identifier from its
// SubjectKeyId), it keeps the message and refuses to sign. So the bytes
// captured are, by construction, those CreateCertificate would have had the
// issuer's key sign; TestCaptureTBSMatchesCreateCertificate checks it against
// certificates signed by real keys, and fails if a Go release changes this
// behaviour. Nothing is signed or verified to learn what will be signed: a
// signature by another key and its verification, which is what it would
// take otherwise, cost about a tenth of a millisecond per certificate.
func (i *Issuer) captureTBS(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	if i.Cert == nil || len(i.placeholder) == 0 {
		return nil, errors.New("issuance: issuer not made by NewIssuer")
	}
	c := &captureSigner{pub: i.Cert.PublicKey}
	tmpl.SignatureAlgorithm = i.sigAlg
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.Cert, pub, c)
	if errors.Is(err, errTBSCaptured) && c.tbs != nil && der == nil {
		return c.tbs, nil
	}
	if err == nil || c.tbs != nil || errors.Is(err, errTBSCaptured) {
		// CreateCertificate went on without a signature, or asked for one
		// and did not stop: this Go does not work as captureTBS assumes.
		return nil, errors.New("issuance: x509.CreateCertificate did not stop at the capture signer")
	}
	// The template was refused before anything was to be signed.
	return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
}

// captureSigner is the crypto.MessageSigner of captureTBS: it records the
// message it is asked to sign and signs nothing.
type captureSigner struct {
	pub crypto.PublicKey
	tbs []byte
}

var _ crypto.MessageSigner = (*captureSigner)(nil)

func (c *captureSigner) Public() crypto.PublicKey { return c.pub }

// SignMessage keeps a copy of msg. CreateCertificate marshalled msg for this
// call and drops it when the signer fails, but the copy makes what Issue
// signs independent of how a later Go manages that buffer, for the price of
// copying some 600 bytes.
func (c *captureSigner) SignMessage(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	c.tbs = bytes.Clone(msg)
	return nil, errTBSCaptured
}

// Sign would receive a digest, from which the tbsCertificate cannot be
// recovered: it is only called if crypto.SignMessage stops preferring
// SignMessage, and then prepare must fail rather than lint something else.
func (c *captureSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("issuance: the capture signer was asked to sign a digest")
}

// tbsSignatureAlgorithm returns the signature field of a tbsCertificate (RFC
// 5280 §4.1.2.3), DER: the certificate's signatureAlgorithm must be the same
// bytes (§4.1.1.2).
func tbsSignatureAlgorithm(tbs []byte) ([]byte, error) {
	in := cryptobyte.String(tbs)
	var body, alg cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() ||
		!body.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || // version
		!body.SkipASN1(cbasn1.INTEGER) || // serialNumber
		!body.ReadASN1Element(&alg, cbasn1.SEQUENCE) {
		return nil, errors.New("issuance: cannot read the signature algorithm of a tbsCertificate")
	}
	return alg, nil
}

// placeholderSignature returns the signature value of a lint certificate
// whose issuer has key pub: well formed for the issuer's algorithm and as
// long as the longest real signature, so that zcrypto parses it and lints
// that judge a signature by its encoding (zlint infers an ECDSA CRL
// signer's curve from the signature's length) see what they would see in the
// signed certificate or CRL; and invalid under every key by the definition
// of the algorithm, so that a lint certificate stored in the database can
// never pass for a certificate, whoever reads it:
//
//   - ECDSA: the Ecdsa-Sig-Value r = s = n, the order of the curve; SEC 1
//     §4.1.4 rejects any r or s outside [1, n-1] before any arithmetic;
//   - RSA: k zero bytes (k the modulus length), the integer 0, whose RSAVP1
//     image 0 is no EMSA-PKCS1-v1_5 encoding (RFC 8017 §8.2.2), which starts
//     0x00 0x01;
//   - Ed25519: 64 bytes of 0xff, whose S is not below the group order L,
//     which RFC 8032 §5.1.7 rejects.
//
// Which lints look at the signature value at all: zcrypto's parser verifies
// the signature of a certificate whose subject is its issuer's name with the
// certificate's own key, to tell a self-signed certificate; the placeholder
// fails that check, as the real signature does on any certificate that does
// not certify the issuer's own key (NewRoot, whose certificate does, lints a
// real self-signature for this reason). e_crl_ecdsa_signature_encoding_correct,
// and e_mp_ecdsa_signature_encoding_correct from the Mozilla source that pkid
// does not run, infer the signer's curve from the signature's length, which
// is why the placeholder has the longest length; and
// e_cert_issued_by_compromised_emudhra_ca verifies the signature against
// known keys and is excluded (see internal/lint). TestLintDERLintsAsIssued
// checks that every zlint lint gives a lint certificate the verdict it gives
// the issued one.
func placeholderSignature(pub crypto.PublicKey) ([]byte, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		n := k.Curve.Params().N
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(n)
			b.AddASN1BigInt(n)
		})
		return b.Bytes()
	case *rsa.PublicKey:
		return make([]byte, (k.N.BitLen()+7)/8), nil
	case ed25519.PublicKey:
		return bytes.Repeat([]byte{0xff}, ed25519.SignatureSize), nil
	}
	return nil, fmt.Errorf("issuance: unsupported issuer key type %T", pub)
}

// Issue signs the prepared certificate with the issuer's real key, exactly
// once: a second call with the same Prepared fails with ErrAlreadyIssued
// without signing.
//
// The real key signs the linted tbsCertificate bytes themselves, not a
// certificate rebuilt from the template, so what is signed is what zlint saw
// by construction, and the template is marshalled once instead of twice. The
// signature is verified with the issuer's certificate before the certificate
// is returned, as x509.CreateCertificate does, to catch a faulty HSM or KMS;
// and the tbsCertificate of the result is compared with the linted one byte
// for byte (Boulder's tbsCertIsDeterministic), a guard on this function
// itself.
func (i *Issuer) Issue(p *Prepared) ([]byte, error) {
	if p == nil || p.issuer != i {
		return nil, ErrWrongIssuer
	}
	if !p.redeemed.CompareAndSwap(false, true) {
		return nil, ErrAlreadyIssued
	}
	i.certificates.Add(1)
	sig, err := i.signBytes(p.tbs)
	if err != nil {
		return nil, fmt.Errorf("issuance: signing certificate %s: %w", p.serial, err)
	}
	der := assembleSigned(p.tbs, p.sigAlgID, sig)
	parts, err := splitSigned(der)
	if err != nil || !bytes.Equal(parts.TBS, p.tbs) {
		return nil, fmt.Errorf("%w (serial %s)", ErrTBSMismatch, p.serial)
	}
	return der, nil
}

// signBytes signs data (a tbsCertificate or a tbsCertList) with the issuer's real key under its signature algorithm,
// counts the signature, and verifies it with the issuer's certificate.
func (i *Issuer) signBytes(data []byte) ([]byte, error) {
	hash := signatureHash(i.sigAlg)
	digest := data
	if hash != 0 {
		h := hash.New()
		h.Write(data)
		digest = h.Sum(nil)
	}
	sig, err := countingSigner{i}.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, err
	}
	if err := i.Cert.CheckSignature(i.sigAlg, data, sig); err != nil {
		return nil, fmt.Errorf("issuance: the signer returned an invalid signature: %w", err)
	}
	return sig, nil
}

// signatureHash is the digest the issuer's signature algorithm signs; 0 for
// Ed25519, which signs the message itself.
func signatureHash(alg x509.SignatureAlgorithm) crypto.Hash {
	switch alg {
	case x509.ECDSAWithSHA384:
		return crypto.SHA384
	case x509.ECDSAWithSHA512:
		return crypto.SHA512
	case x509.PureEd25519:
		return 0
	default: // ECDSAWithSHA256, SHA256WithRSA: the only others signatureAlgorithm picks
		return crypto.SHA256
	}
}

// assembleSigned returns, in a new buffer, the outer structure of an X.509
// certificate or CRL (RFC 5280 §4.1, §5.1): the to-be-signed data and the
// signature algorithm, both DER, and the signature as a BIT STRING.
func assembleSigned(tbs, sigAlg, sig []byte) []byte {
	buf := make([]byte, outerHeaderRoom, outerHeaderRoom+len(tbs)+len(sigAlg)+headerLen(len(sig)+1)+1+len(sig))
	buf = append(buf, tbs...)
	return wrapSigned(buf, sigAlg, sig)
}

// signedParts are the to-be-signed data and the signature algorithm of a DER
// certificate or CRL, as encoded.
type signedParts struct {
	TBS, Algorithm []byte
}

// splitSigned returns the parts of a DER certificate or CRL, which must be a
// SEQUENCE of exactly a SEQUENCE, a SEQUENCE and a BIT STRING.
func splitSigned(der []byte) (*signedParts, error) {
	in := cryptobyte.String(der)
	var body, tbs, alg cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() ||
		!body.ReadASN1Element(&tbs, cbasn1.SEQUENCE) ||
		!body.ReadASN1Element(&alg, cbasn1.SEQUENCE) ||
		!body.SkipASN1(cbasn1.BIT_STRING) || !body.Empty() {
		return nil, errors.New("issuance: cannot split a structure just signed")
	}
	return &signedParts{TBS: tbs, Algorithm: alg}, nil
}
