package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkid/pkid/internal/client"
	"github.com/pkid/pkid/internal/client/clienttest"
)

func TestLoadRefusesBrokenDirectories(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	otherKey, _ := client.GenerateKey(client.KeyEC)
	otherKeyPEM, _ := client.MarshalKeyPEM(otherKey)
	tests := []struct {
		name     string
		breakDir func(t *testing.T, dir string)
		want     string
	}{
		{"empty directory", func(t *testing.T, dir string) {
			for _, f := range []string{"key.pem", "cert.pem", "chain.pem", "root.pem", "pkictl.json"} {
				os.Remove(filepath.Join(dir, f))
			}
		}, "run pkictl enroll first"},
		{"key of another certificate", func(t *testing.T, dir string) { write(t, dir, "key.pem", otherKeyPEM) }, "does not hold the key"},
		{"certificate file with two certificates", func(t *testing.T, dir string) {
			write(t, dir, "cert.pem", []byte(clienttest.PEM(s.CA.Root)+clienttest.PEM(s.CA.Root)))
		}, "2 certificates"},
		{"root that is not self-signed", func(t *testing.T, dir string) {
			write(t, dir, "root.pem", []byte(clienttest.PEM(s.CA.Intermediate)))
		}, "not a self-issued CA"},
		{"junk in the chain", func(t *testing.T, dir string) {
			write(t, dir, "chain.pem", []byte(s.CA.ChainPEM()+"junk\n"))
		}, "not PEM"},
		{"state that is not JSON", func(t *testing.T, dir string) { write(t, dir, "pkictl.json", []byte("{")) }, "pkictl.json"},
		{"huge certificate file", func(t *testing.T, dir string) {
			write(t, dir, "cert.pem", []byte(strings.Repeat("A", 2<<20)))
		}, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := enroll(t, s, client.EnrollRequest{})
			tc.breakDir(t, b.Dir)
			if _, err := client.Load(b.Dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		if _, err := client.Load(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, client.ErrNotEnrolled) {
			t.Fatalf("Load: %v", err)
		}
	})
}

func TestParseKeyPEM(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs8, _ := client.MarshalKeyPEM(ec)
	block := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	tests := []struct {
		name string
		in   []byte
		err  string
	}{
		{"PKCS#8", pkcs8, ""},
		{"SEC 1", block("EC PRIVATE KEY", ecDER), ""},
		{"PKCS#1", block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), ""},
		{"a certificate", block("CERTIFICATE", []byte{1}), "not a private key"},
		{"two keys", append(append([]byte{}, pkcs8...), pkcs8...), "exactly one"},
		{"garbage", []byte("hello"), "exactly one"},
		{"bad DER", block("PRIVATE KEY", []byte{0x30, 1}), "parsing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := client.ParseKeyPEM(tc.in)
			if tc.err == "" {
				if err != nil || k == nil {
					t.Fatalf("ParseKeyPEM: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("ParseKeyPEM: %v, want %q", err, tc.err)
			}
		})
	}
}

func TestParseFingerprint(t *testing.T) {
	t.Parallel()
	const fp = "3f0c1d2e3f405162738495a6b7c8d9eaf0f1e2d3c4b5a69788796a5b4c3d2e1f"
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"lower case", fp, true},
		{"upper case with colons", strings.ToUpper(colons(fp)), true},
		{"surrounding space", "  " + fp + "\n", true},
		{"SHA-1 length", fp[:40], false},
		{"not hex", strings.Replace(fp, "3", "g", 1), false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := client.ParseFingerprint(tc.in)
			if (err == nil) != tc.ok || (tc.ok && len(b) != 32) {
				t.Fatalf("ParseFingerprint: %x %v", b, err)
			}
		})
	}
}

func TestNewCSR(t *testing.T) {
	t.Parallel()
	for _, kt := range []client.KeyType{client.KeyEC, client.KeyRSA} {
		t.Run(string(kt), func(t *testing.T) {
			k, err := client.GenerateKey(kt)
			if err != nil {
				t.Fatal(err)
			}
			p, err := client.NewCSR(k, "svc.test", []string{"svc.test"})
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode([]byte(p))
			csr, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil || csr.CheckSignature() != nil {
				t.Fatalf("CSR: %v", err)
			}
			if csr.Subject.CommonName != "svc.test" || len(csr.DNSNames) != 1 || client.TypeOf(csr.PublicKey) != kt {
				t.Errorf("CSR %v %v %T", csr.Subject, csr.DNSNames, csr.PublicKey)
			}
		})
	}
	if _, err := client.ParseKeyType("dsa"); err == nil {
		t.Errorf("ParseKeyType accepted dsa")
	}
}
