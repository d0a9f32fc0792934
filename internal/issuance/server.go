package issuance

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
)

// MaxServerValidity caps the TLS listener's certificates: they are renewed
// automatically, so they can be short.
const MaxServerValidity = 30 * 24 * time.Hour

// ServerRequest is a request for the certificate of pkid's own TLS listener.
type ServerRequest struct {
	Serial    pki.Serial
	PublicKey crypto.PublicKey
	// Hostnames are DNS names and IP addresses (PKID_TLS_HOSTNAMES); the
	// first becomes the subject CN.
	Hostnames []string
	NotBefore time.Time
	NotAfter  time.Time
}

// PrepareServer builds and lints the server certificate of pkid's TLS
// listener, a profile used for nothing else: keyUsage digitalSignature, EKU
// serverAuth only, CA:FALSE, SAN of the hostnames, the same AIA and CRL
// distribution point as client certificates. It is linted as a private
// server certificate (lint.PrivateServerCertificate).
func (i *Issuer) PrepareServer(p ClientProfile, req ServerRequest, l *lint.Linter) (*Prepared, error) {
	if l == nil {
		return nil, errors.New("issuance: no linter: pkid never signs what it has not linted")
	}
	if i.Cert == nil || i.sigAlg == x509.UnknownSignatureAlgorithm {
		return nil, errors.New("issuance: issuer not made by NewIssuer")
	}
	base, err := baseURL(p.PublicURL)
	if err != nil {
		return nil, err
	}
	serial, err := checkSerial(req.Serial)
	if err != nil {
		return nil, err
	}
	if err := checkSubscriberKey(req.PublicKey); err != nil {
		return nil, err
	}
	if len(req.Hostnames) == 0 {
		return nil, fmt.Errorf("%w: a server certificate needs at least one hostname", ErrBadRequest)
	}
	sp := p
	sp.MaxValidity = MaxServerValidity
	if err := sp.checkValidity(req.NotBefore, req.NotAfter, i.Cert); err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(req.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.Hostnames[0]},
		NotBefore:             req.NotBefore,
		NotAfter:              req.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		OCSPServer:            []string{base + "/ocsp"},
		IssuingCertificateURL: []string{base + IssuerPath(p.Generation)},
		CRLDistributionPoints: []string{base + CRLPath(p.Generation)},
	}
	for _, h := range req.Hostnames {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return i.prepare(tmpl, req.PublicKey, privateServerLinter{l})
}

type privateServerLinter struct{ l *lint.Linter }

func (p privateServerLinter) Certificate(der []byte) error { return p.l.PrivateServerCertificate(der) }
