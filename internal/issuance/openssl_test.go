package issuance

import (
	"bytes"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// openssl runs the real openssl binary and returns its combined output.
func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	return string(out), err
}

func writePEM(t *testing.T, dir, name string, ders ...[]byte) string {
	t.Helper()
	var buf bytes.Buffer
	for _, der := range ders {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestOpenSSLVerifiesChain issues a client certificate for a key and CSR that
// OpenSSL made, and has `openssl verify` check the chain for TLS client use,
// as nginx's ssl_verify_client does. The OCSP signer's chain is checked too.
func TestOpenSSLVerifiesChain(t *testing.T) {
	dir := t.TempDir()
	keyFile, csrFile := filepath.Join(dir, "client.key"), filepath.Join(dir, "client.csr")
	if out, err := openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keyFile); err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, out)
	}
	if out, err := openssl(t, "req", "-new", "-key", keyFile, "-subj", "/CN=svc.acme.example", "-out", csrFile); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	csrPEM, err := os.ReadFile(csrFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		t.Fatal("openssl wrote no CSR")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}

	// A hierarchy made now: openssl verify checks validity against its own
	// clock.
	now := time.Now()
	l := testLinter(t)
	root, err := NewRoot(HierarchyConfig{}, mustKey(t, elliptic.P384()), now, l)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := NewIntermediate(root, HierarchyConfig{PublicURL: testPublicURL}, mustKey(t, elliptic.P256()), now, l)
	if err != nil {
		t.Fatal(err)
	}
	ocsp, err := NewOCSPSigner(inter, HierarchyConfig{}, mustKey(t, elliptic.P256()), now, l)
	if err != nil {
		t.Fatal(err)
	}
	req := testRequest(t, csr.PublicKey)
	req.CommonName, req.DNSNames = csr.Subject.CommonName, []string{csr.Subject.CommonName}
	req.NotBefore, req.NotAfter = now.Add(-5*time.Minute).Truncate(time.Second), now.Add(90*24*time.Hour).Truncate(time.Second)
	leaf := issue(t, inter, ClientProfile{PublicURL: testPublicURL, Now: func() time.Time { return now }}, req)

	rootFile := writePEM(t, dir, "root.pem", root.Cert.Raw)
	chainFile := writePEM(t, dir, "chain.pem", inter.Cert.Raw)
	leafFile := writePEM(t, dir, "leaf.pem", leaf.Raw)
	ocspFile := writePEM(t, dir, "ocsp.pem", ocsp.Cert.Raw)

	tests := []struct {
		name string
		args []string
		ok   bool
	}{
		{"leaf for TLS clients", []string{"-purpose", "sslclient", leafFile}, true},
		{"leaf, any purpose", []string{leafFile}, true},
		{"leaf for TLS servers", []string{"-purpose", "sslserver", leafFile}, false},
		{"OCSP signer", []string{ocspFile}, true},
		{"intermediate", []string{chainFile}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"verify", "-x509_strict", "-CAfile", rootFile, "-untrusted", chainFile}, tc.args...)
			out, err := openssl(t, args...)
			ok := err == nil && strings.HasSuffix(strings.TrimSpace(out), ": OK")
			if ok != tc.ok {
				t.Fatalf("openssl verify ok=%v, want %v:\n%s", ok, tc.ok, out)
			}
		})
	}

	// The certificate is for OpenSSL's key: the two public keys match.
	pub, err := openssl(t, "pkey", "-in", keyFile, "-pubout")
	if err != nil {
		t.Fatal(err)
	}
	certPub, err := openssl(t, "x509", "-in", leafFile, "-noout", "-pubkey")
	if err != nil {
		t.Fatal(err)
	}
	if pub != certPub {
		t.Fatalf("certificate key differs from openssl's key:\n%s\n%s", pub, certPub)
	}
}
