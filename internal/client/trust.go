package client

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrUntrusted is wrapped by every refusal to trust what pkid returned: a
// root that is not the pinned one, a chain that does not lead to the trusted
// root, a certificate for a key that is not ours.
var ErrUntrusted = errors.New("client: untrusted certificate")

// Fingerprint returns the SHA-256 fingerprint of c's DER as lowercase hex,
// the form `pkid init` prints and the API's fingerprint_sha256 uses.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseFingerprint parses a SHA-256 fingerprint written as 64 hex digits, in
// either case, optionally separated by colons or spaces (OpenSSL writes
// "AB:CD:…").
func ParseFingerprint(s string) ([]byte, error) {
	clean := strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s))
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("client: a root fingerprint is the SHA-256 of the root certificate: 64 hexadecimal digits, colons allowed")
	}
	return b, nil
}

// ParseCertificatesPEM decodes one or more "CERTIFICATE" blocks. Anything
// else in the input (another block type, text that is not white space around
// the blocks) is an error: a certificate file that holds something unexpected
// is not one to trust.
func ParseCertificatesPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := b
	for len(bytes.TrimSpace(rest)) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("client: text that is not PEM among the certificates")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("client: a %q block among the certificates", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("client: parsing a certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("client: no certificate")
	}
	return out, nil
}

// parseOneCertificatePEM decodes exactly one certificate.
func parseOneCertificatePEM(b []byte, what string) (*x509.Certificate, error) {
	cs, err := ParseCertificatesPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(cs) != 1 {
		return nil, fmt.Errorf("%s: %d certificates where one was expected", what, len(cs))
	}
	return cs[0], nil
}

// encodeCertificatesPEM encodes certs as consecutive CERTIFICATE blocks.
func encodeCertificatesPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// checkRoot refuses a trust anchor that is not a self-signed CA certificate.
func checkRoot(root *x509.Certificate) error {
	if !root.IsCA || !bytes.Equal(root.RawIssuer, root.RawSubject) {
		return fmt.Errorf("%w: the root is not a self-issued CA certificate", ErrUntrusted)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("%w: the root's self-signature does not verify: %v", ErrUntrusted, err)
	}
	return nil
}

// pinnedRoot returns the certificate of certs whose SHA-256 fingerprint is
// pin: the root the user pinned.
func pinnedRoot(certs []*x509.Certificate, pin []byte) (*x509.Certificate, error) {
	for _, c := range certs {
		if sum := sha256.Sum256(c.Raw); bytes.Equal(sum[:], pin) {
			return c, checkRoot(c)
		}
	}
	got := "no certificate"
	if len(certs) > 0 {
		got = "a root with fingerprint " + Fingerprint(certs[len(certs)-1])
	}
	return nil, fmt.Errorf("%w: pkid presents %s, not the pinned root %s", ErrUntrusted, got, hex.EncodeToString(pin))
}

// verifyLeaf checks that leaf chains to root through the intermediates of
// chain, at now, for client authentication, and that it certifies pub. It
// returns the certificate that issued leaf.
func verifyLeaf(leaf *x509.Certificate, chain []*x509.Certificate, root *x509.Certificate, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range chain {
		if !c.Equal(root) {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: the certificate does not chain to the trusted root (sha256 %s): %v", ErrUntrusted, Fingerprint(root), err)
	}
	if len(chains[0]) < 2 {
		return nil, fmt.Errorf("%w: the certificate is the root itself", ErrUntrusted)
	}
	if pub != nil && !samePublicKey(pub, leaf.PublicKey) {
		return nil, fmt.Errorf("%w: the certificate is not for this machine's key", ErrUntrusted)
	}
	return chains[0][1], nil
}
