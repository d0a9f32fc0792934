package benchkit

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestCSRs(t *testing.T) {
	csrs, err := CSRs(3, "bench.test")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, s := range csrs {
		b, rest := pem.Decode([]byte(s))
		if b == nil || b.Type != "CERTIFICATE REQUEST" || len(strings.TrimSpace(string(rest))) != 0 {
			t.Fatalf("CSR %d is not one PEM CSR: %q", i, s)
		}
		csr, err := x509.ParseCertificateRequest(b.Bytes)
		if err != nil || csr.CheckSignature() != nil {
			t.Fatalf("CSR %d: %v", i, err)
		}
		if want := "client-" + string(rune('0'+i)) + ".bench.test"; csr.Subject.CommonName != want {
			t.Errorf("CSR %d: CN %q, want %q", i, csr.Subject.CommonName, want)
		}
		key := string(csr.RawSubjectPublicKeyInfo)
		if seen[key] {
			t.Errorf("CSR %d reuses a key", i)
		}
		seen[key] = true
	}
}
