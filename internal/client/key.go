package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// KeyType names the kind of key pkictl makes.
type KeyType string

// The key types: ECDSA on P-256 (small, fast, the default) and RSA 3072
// (for peers that still need RSA; 3072 bits is NIST's 128-bit level).
const (
	KeyEC  KeyType = "ec"
	KeyRSA KeyType = "rsa"
)

// rsaBits is the size of RSA keys pkictl makes.
const rsaBits = 3072

// ParseKeyType accepts "ec" and "rsa" ("" is ec).
func ParseKeyType(s string) (KeyType, error) {
	switch KeyType(strings.ToLower(s)) {
	case "", KeyEC:
		return KeyEC, nil
	case KeyRSA:
		return KeyRSA, nil
	}
	return "", fmt.Errorf("client: key type %q: use ec or rsa", s)
}

// TypeOf returns the KeyType of k, "" for anything pkictl does not make.
func TypeOf(k crypto.PublicKey) KeyType {
	switch k.(type) {
	case *ecdsa.PublicKey:
		return KeyEC
	case *rsa.PublicKey:
		return KeyRSA
	}
	return ""
}

// GenerateKey makes a fresh private key of type t from crypto/rand.
func GenerateKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case KeyEC, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA:
		return rsa.GenerateKey(rand.Reader, rsaBits)
	}
	return nil, fmt.Errorf("client: key type %q: use ec or rsa", t)
}

// MarshalKeyPEM encodes k as an unencrypted PKCS#8 "PRIVATE KEY" block, the
// form that OpenSSL, nginx, Envoy and Go all read.
func MarshalKeyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("client: encoding the private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM decodes a private key written by MarshalKeyPEM, or the older
// "EC PRIVATE KEY" and "RSA PRIVATE KEY" forms, as a crypto.Signer. Exactly
// one PEM block is allowed.
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(b)
	if block == nil || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("client: the key file must hold exactly one PEM private key")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("client: the key file holds a %q block, not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("client: parsing the private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok || TypeOf(s.Public()) == "" {
		return nil, fmt.Errorf("client: a %T key cannot be used; pkictl uses ECDSA and RSA keys", k)
	}
	return s, nil
}

// NewCSR returns a PEM certificate signing request signed by k, for the
// subject common name cn and the DNS names dns. pkid decides every extension
// of the certificate; the CSR only carries the names and the public key.
func NewCSR(k crypto.Signer, cn string, dns []string) (string, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		return "", fmt.Errorf("client: making the CSR: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// samePublicKey reports whether a and b are the same public key.
func samePublicKey(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
