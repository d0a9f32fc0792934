package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// benchCertificate returns a certificate record shaped like an issued
// client certificate (P-256, one DNS name) and a two-certificate chain.
func benchCertificate(b *testing.B) (*pki.Certificate, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: now, NotAfter: now.Add(time.Hour),
		Subject:  pkix.Name{CommonName: "client-1234.example.com", Organization: []string{"Acme"}},
		DNSNames: []string{"client-1234.example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	fp := sha256.Sum256(der)
	block := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return &pki.Certificate{Serial: "7f0123456789abcdef0123456789abcd", DER: der, FingerprintSHA256: fp[:],
		SPKISHA256: fp[:], AccountID: "0190d0b2-7f4a-7c3e-9a1b-2c3d4e5f6a7b", SubjectCN: "client-1234.example.com",
		IssuerID: "5f2a9c3e", NotBefore: now, NotAfter: now.Add(time.Hour), CreatedAt: now}, block + block
}

// nullWriter is a ResponseWriter that throws the body away, as a socket
// would: the benchmarks measure rendering, not buffering.
type nullWriter struct{ h http.Header }

func (w nullWriter) Header() http.Header       { return w.h }
func (nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (nullWriter) WriteHeader(int)             {}

// BenchmarkCertificateResponse is the body of every certificate answer:
// the view, then its JSON.
func BenchmarkCertificateResponse(b *testing.B) {
	c, chain := benchCertificate(b)
	w := nullWriter{http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		writeJSON(w, http.StatusCreated, certificateView(c, chain, c.CreatedAt))
	}
}
