package issuance

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync/atomic"

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
// will sign, already linted. LintDER is that certificate signed by a
// throwaway key: the record of what the CA is about to sign, to be stored
// before the real signature is made. It is not a valid certificate.
type Prepared struct {
	LintDER []byte

	issuer   *Issuer
	serial   pki.Serial
	tbs      []byte // the tbsCertificate of LintDER
	sigAlgID []byte // its signatureAlgorithm, DER
	redeemed atomic.Bool
}

// Serial returns the serial number of the prepared certificate.
func (p *Prepared) Serial() pki.Serial { return p.serial }

// prepare signs tmpl for pub with the issuer's throwaway key, lints the
// result and returns the token that Issue redeems.
func (i *Issuer) prepare(tmpl *x509.Certificate, pub crypto.PublicKey, l certLinter) (*Prepared, error) {
	if l == nil {
		return nil, errors.New("issuance: no linter: pkid never signs what it has not linted")
	}
	tw, err := i.throwawayFor()
	if err != nil {
		return nil, err
	}
	tmpl.SignatureAlgorithm = i.sigAlg
	lintDER, err := x509.CreateCertificate(rand.Reader, tmpl, tw.parent, pub, tw.signer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	serial := pki.SerialFromBig(tmpl.SerialNumber)
	if err := l.Certificate(lintDER); err != nil {
		return nil, &LintError{Serial: serial, Err: err}
	}
	parts, err := splitSigned(lintDER)
	if err != nil {
		return nil, err
	}
	// The parts are copied: LintDER belongs to the caller, and what Issue
	// signs must not change if the caller reuses that buffer.
	return &Prepared{
		LintDER:  lintDER,
		issuer:   i,
		serial:   serial,
		tbs:      bytes.Clone(parts.TBS.FullBytes),
		sigAlgID: bytes.Clone(parts.Algorithm.FullBytes),
	}, nil
}

// Issue signs the prepared certificate with the issuer's real key, exactly
// once: a second call with the same Prepared fails with ErrAlreadyIssued
// without signing.
//
// The real key signs the linted tbsCertificate bytes themselves, not a
// certificate rebuilt from the template, so what is signed is what zlint saw
// by construction, and the template is marshalled once instead of twice
// (about a tenth of issuance's cost). The signature is verified with the
// issuer's certificate before the certificate is returned, as
// x509.CreateCertificate does, to catch a faulty HSM or KMS; and the
// tbsCertificate of the result is compared with the linted one byte for byte
// (Boulder's tbsCertIsDeterministic), a guard on this function itself.
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
	der, err := asn1.Marshal(signed{
		TBS:       asn1.RawValue{FullBytes: p.tbs},
		Algorithm: asn1.RawValue{FullBytes: p.sigAlgID},
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	if err != nil {
		return nil, fmt.Errorf("issuance: encoding certificate %s: %w", p.serial, err)
	}
	parts, err := splitSigned(der)
	if err != nil || !bytes.Equal(parts.TBS.FullBytes, p.tbs) {
		return nil, fmt.Errorf("%w (serial %s)", ErrTBSMismatch, p.serial)
	}
	return der, nil
}

// signBytes signs data (a tbsCertificate, later a tbsCertList or an OCSP
// ResponseData) with the issuer's real key under its signature algorithm,
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

// signed is the outer structure of an X.509 certificate or CRL (RFC 5280
// §4.1, §5.1): to-be-signed data, signature algorithm, signature, with the
// first two kept as encoded.
type signed struct {
	TBS       asn1.RawValue
	Algorithm asn1.RawValue
	Signature asn1.BitString
}

// splitSigned returns the parts of a DER certificate or CRL.
func splitSigned(der []byte) (*signed, error) {
	var s signed
	rest, err := asn1.Unmarshal(der, &s)
	if err != nil || len(rest) != 0 {
		return nil, errors.New("issuance: cannot split a structure just signed")
	}
	return &s, nil
}
