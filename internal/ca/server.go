package ca

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/policy"
)

// ServerCertValidity is the lifetime of the TLS listener's certificates; they
// are renewed when a third of it is left.
const ServerCertValidity = 7 * 24 * time.Hour

// IssueServerCertificate issues a certificate for pkid's own TLS listener:
// a fresh P-256 key that never leaves this process, certified by the issuing
// intermediate for hostnames (DNS names and IP addresses) with the server
// profile, and recorded, pending then issued, like every certificate pkid
// signs. It returns the certificate and key ready for crypto/tls, with the
// chain.
func (s *Service) IssueServerCertificate(ctx context.Context, hostnames []string) (*tls.Certificate, error) {
	key, err := issuance.GenerateKey(elliptic.P256())
	if err != nil {
		return nil, err
	}
	sum, err := policy.SPKIHash(key.Public())
	if err != nil {
		return nil, err
	}
	ev := pki.AuditEvent{Actor: "system", Detail: map[string]any{"hostnames": hostnames}}
	c, err := s.sign(ctx, signRequest{
		event:    ev,
		checked:  &policy.Checked{PublicKey: key.Public(), DNSNames: hostnames, SPKISHA256: sum},
		validity: ServerCertValidity,
	})
	if err != nil {
		return nil, fmt.Errorf("ca: issuing the TLS listener's certificate: %w", err)
	}
	issuer, err := s.hierarchy.IssuerByID(c.IssuerID)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{
		Certificate: [][]byte{c.DER, issuer.Cert.Raw},
		PrivateKey:  crypto.Signer(key),
		Leaf:        mustParse(c.DER),
	}, nil
}

func mustParse(der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic("ca: a certificate pkid just signed does not parse: " + err.Error())
	}
	return c
}
