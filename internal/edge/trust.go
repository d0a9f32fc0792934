package edge

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// maxPresentedCerts bounds the chain a client may present, so that path
// building stays cheap whatever a client sends.
const maxPresentedCerts = 8

// Reasons a client is refused; they label the handshakes metric.
const (
	ReasonNoCertificate = "no_certificate"
	ReasonUntrusted     = "untrusted"
	ReasonExpired       = "expired"
	ReasonInvalid       = "invalid"
	ReasonNoAccount     = "no_account"
	ReasonRevoked       = "revoked"
	ReasonUnknown       = "unknown"
	ReasonUnavailable   = "unavailable"
)

// ErrNoCertificate: the client presented no certificate.
var ErrNoCertificate = errors.New("edge: no client certificate")

// RefusalError is why the edge refused a client. Reason is one of the
// Reason constants; Err the cause (ErrNoCertificate, an x509 verification
// error, ErrNoAccount, ErrRevoked, ErrUnknownCertificate, ErrNoFreshAnswer).
type RefusalError struct {
	Reason string
	Err    error
}

func (e *RefusalError) Error() string {
	return "edge: client refused (" + e.Reason + "): " + e.Err.Error()
}
func (e *RefusalError) Unwrap() error { return e.Err }

// trust is what --ca, --cert and --key say, loaded together so that a
// reload swaps them at once.
type trust struct {
	roots         *x509.CertPool
	intermediates []*x509.Certificate // of the bundle
	bundle        []*x509.Certificate // every certificate of the bundle
	cert          tls.Certificate
}

// loadTrust reads the CA bundle and the server's certificate and key.
func loadTrust(caFile, certFile, keyFile string) (*trust, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("edge: reading the CA bundle: %w", err)
	}
	t, err := parseBundle(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("edge: CA bundle %s: %w", caFile, err)
	}
	t.cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("edge: server certificate and key: %w", err)
	}
	return t, nil
}

// parseBundle reads a PEM bundle of CA certificates. Self-signed
// certificates are the roots; the others are intermediates, offered to path
// building. Every block must be a CA certificate, and there must be a root:
// a client chain must end at a self-signed anchor the operator chose.
func parseBundle(pemBytes []byte) (*trust, error) {
	t := &trust{roots: x509.NewCertPool()}
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a %q block; only CERTIFICATE blocks belong in it", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("%q is not a CA certificate", c.Subject)
		}
		t.bundle = append(t.bundle, c)
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			t.roots.AddCert(c)
		} else {
			t.intermediates = append(t.intermediates, c)
		}
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the last PEM block")
	}
	if len(t.bundle) == len(t.intermediates) {
		return nil, errors.New("no root (self-signed) certificate")
	}
	return t, nil
}

// verify builds a chain from the presented certificates (leaf first) to a
// root of t, for client authentication, at now. It returns the leaf and
// its issuer in the chain.
func (t *trust) verify(presented []*x509.Certificate, now time.Time) (leaf, issuer *x509.Certificate, err error) {
	if len(presented) == 0 {
		return nil, nil, &RefusalError{ReasonNoCertificate, ErrNoCertificate}
	}
	if len(presented) > maxPresentedCerts {
		return nil, nil, &RefusalError{ReasonInvalid, fmt.Errorf("a chain of %d certificates", len(presented))}
	}
	leaf = presented[0]
	pool := x509.NewCertPool()
	for _, c := range t.intermediates {
		pool.AddCert(c)
	}
	for _, c := range presented[1:] {
		pool.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         t.roots,
		Intermediates: pool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		var invalid x509.CertificateInvalidError
		var unknown x509.UnknownAuthorityError
		switch {
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			return nil, nil, &RefusalError{ReasonExpired, err}
		case errors.As(err, &unknown):
			return nil, nil, &RefusalError{ReasonUntrusted, err}
		}
		return nil, nil, &RefusalError{ReasonInvalid, err}
	}
	if leaf.IsCA || len(chains[0]) < 2 {
		return nil, nil, &RefusalError{ReasonInvalid, errors.New("edge: a CA certificate is not a client certificate")}
	}
	return leaf, chains[0][1], nil
}
