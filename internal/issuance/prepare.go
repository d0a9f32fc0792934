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
	// one that was linted. It is never returned to the caller.
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
	tmpl     *x509.Certificate
	pub      crypto.PublicKey
	lintTBS  []byte
	redeemed atomic.Bool
}

// Serial returns the serial number of the prepared certificate.
func (p *Prepared) Serial() pki.Serial { return pki.SerialFromBig(p.tmpl.SerialNumber) }

// prepare signs tmpl for pub with the issuer's throwaway key, lints the
// result and returns the token that Issue redeems. An issuer without a
// certificate is a root about to sign itself: tmpl is then its own parent.
func (i *Issuer) prepare(tmpl *x509.Certificate, pub crypto.PublicKey, l certLinter) (*Prepared, error) {
	if l == nil {
		return nil, errors.New("issuance: no linter: pkid never signs what it has not linted")
	}
	tmpl.SignatureAlgorithm = i.sigAlg
	var (
		parent *x509.Certificate
		signer crypto.Signer
	)
	if i.Cert == nil {
		// A self-signed certificate: the template is the parent and carries
		// no public key, so CreateCertificate accepts any signer. The
		// throwaway key is fresh: roots are made once.
		key, err := newThrowawayKey(i.Signer.Public())
		if err != nil {
			return nil, fmt.Errorf("issuance: generating throwaway key: %w", err)
		}
		parent, signer = tmpl, key
	} else {
		tw, err := i.throwawayFor()
		if err != nil {
			return nil, err
		}
		parent, signer = tw.parent, tw.signer
	}
	lintDER, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	serial := pki.SerialFromBig(tmpl.SerialNumber)
	if err := l.Certificate(lintDER); err != nil {
		return nil, &LintError{Serial: serial, Err: err}
	}
	tbs, err := rawTBS(lintDER)
	if err != nil {
		return nil, err
	}
	return &Prepared{LintDER: lintDER, issuer: i, tmpl: tmpl, pub: pub, lintTBS: tbs}, nil
}

// Issue signs the prepared certificate with the issuer's real key, exactly
// once: a second call with the same Prepared fails with ErrAlreadyIssued
// without signing. It checks that the to-be-signed bytes of the result equal
// those that were linted, byte for byte (Boulder's tbsCertIsDeterministic),
// and returns the certificate's DER only then.
func (i *Issuer) Issue(p *Prepared) ([]byte, error) {
	if p == nil || p.issuer != i {
		return nil, ErrWrongIssuer
	}
	if !p.redeemed.CompareAndSwap(false, true) {
		return nil, ErrAlreadyIssued
	}
	parent := i.Cert
	if parent == nil {
		parent = p.tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, p.tmpl, parent, p.pub, countingSigner{i})
	if err != nil {
		return nil, fmt.Errorf("issuance: signing certificate %s: %w", p.Serial(), err)
	}
	tbs, err := rawTBS(der)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tbs, p.lintTBS) {
		return nil, fmt.Errorf("%w (serial %s)", ErrTBSMismatch, p.Serial())
	}
	return der, nil
}

// rawTBS returns the tbsCertificate of a DER certificate, as encoded.
func rawTBS(der []byte) ([]byte, error) {
	var cert struct {
		TBS       asn1.RawValue
		Algorithm asn1.RawValue
		Signature asn1.BitString
	}
	rest, err := asn1.Unmarshal(der, &cert)
	if err != nil || len(rest) != 0 {
		return nil, errors.New("issuance: cannot find the tbsCertificate of a certificate just made")
	}
	return cert.TBS.FullBytes, nil
}
