package issuance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	zx "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	zl "github.com/zmap/zlint/v3/lint"

	"github.com/pkid/pkid/internal/lint"
)

// spySigner counts every use of a key, whichever way it is asked to sign.
type spySigner struct {
	crypto.Signer
	calls *atomic.Int64
}

func (s spySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.calls.Add(1)
	return s.Signer.Sign(r, digest, opts)
}

// recordingCertLinter keeps the last certificate it was asked to lint and
// asks the real linter.
type recordingCertLinter struct {
	real *lint.Linter
	der  []byte
}

func (r *recordingCertLinter) Certificate(der []byte) error {
	r.der = bytes.Clone(der)
	return r.real.Certificate(der)
}

// testCA is a self-signed CA certificate for key, valid around testNow.
func testCA(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	return selfSignedCA(t, key, testNow.Add(-time.Hour), testNow.AddDate(1, 0, 0))
}

// selfSignedCA is a self-signed CA certificate for key, O=Test, CN=Test CA,
// valid from notBefore to notAfter.
func selfSignedCA(t *testing.T, key crypto.Signer, notBefore, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"Test"}, CommonName: "Test CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// issuerKeys are the kinds of key an issuer may have (signatureAlgorithm).
func issuerKeys(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]crypto.Signer{
		"P-256":    mustKey(t, elliptic.P256()),
		"P-384":    mustKey(t, elliptic.P384()),
		"P-521":    mustKey(t, elliptic.P521()),
		"RSA-2048": rsaKey,
		"Ed25519":  edKey,
	}
}

// TestCaptureTBSMatchesCreateCertificate: for every kind of issuer key, the
// tbsCertificate that Prepare lints and Issue signs is byte for byte the one
// x509.CreateCertificate signs with the issuer's real key for the same
// template, and Prepare does not use the key. It fails if a Go release stops
// handing the whole tbsCertificate to a crypto.MessageSigner, or changes what
// it builds around it.
func TestCaptureTBSMatchesCreateCertificate(t *testing.T) {
	for name, key := range issuerKeys(t) {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int64
			is, err := NewIssuer(testCA(t, key), spySigner{key, &calls})
			if err != nil {
				t.Fatal(err)
			}
			var tmpl *x509.Certificate
			p := testProfile()
			p.mutate = func(c *x509.Certificate) { tmpl = c }
			req := testRequest(t, mustKey(t, elliptic.P256()).Public())
			rec := &recordingCertLinter{real: testLinter(t)}
			prep, err := is.prepareClient(p, req, rec)
			if err != nil {
				t.Fatal(err)
			}
			if calls.Load() != 0 || is.Signatures() != 0 {
				t.Fatalf("Prepare used the issuer's key (%d calls, %d signatures)", calls.Load(), is.Signatures())
			}
			if !bytes.Equal(rec.der, prep.LintDER) {
				t.Fatal("the linted certificate is not LintDER")
			}

			ref, err := x509.CreateCertificate(rand.Reader, tmpl, is.Cert, req.PublicKey, key)
			if err != nil {
				t.Fatal(err)
			}
			refCert, err := x509.ParseCertificate(ref)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(prep.tbs, refCert.RawTBSCertificate) {
				t.Fatalf("captured tbsCertificate differs from x509.CreateCertificate's:\n%x\n%x", prep.tbs, refCert.RawTBSCertificate)
			}
			lintParts, err := splitSigned(prep.LintDER)
			if err != nil {
				t.Fatal(err)
			}
			refParts, err := splitSigned(ref)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(lintParts.TBS, refParts.TBS) || !bytes.Equal(lintParts.Algorithm, refParts.Algorithm) {
				t.Fatal("LintDER differs from a real certificate outside the signature value")
			}

			der, err := is.Issue(prep)
			if err != nil {
				t.Fatal(err)
			}
			if calls.Load() != 1 {
				t.Fatalf("Issue asked the key %d times, want 1", calls.Load())
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(cert.RawTBSCertificate, refCert.RawTBSCertificate) {
				t.Fatal("Issue signed a tbsCertificate other than x509.CreateCertificate's")
			}
			if err := cert.CheckSignatureFrom(is.Cert); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPlaceholderSignature: the lint certificate's signature is well formed
// for the issuer's algorithm, as long as the longest real signature, and
// verifies under no key: x509 rejects it with the issuer's key, and for
// ECDSA its r and s are the curve order, which every verifier rejects.
func TestPlaceholderSignature(t *testing.T) {
	wantLen := map[string]int{"P-256": 72, "P-384": 104, "P-521": 139, "RSA-2048": 256, "Ed25519": 64}
	for name, key := range issuerKeys(t) {
		t.Run(name, func(t *testing.T) {
			is, prep := preparedBy(t, key)
			lintCert, err := x509.ParseCertificate(prep.LintDER)
			if err != nil {
				t.Fatal(err)
			}
			if lintCert.SignatureAlgorithm != is.sigAlg {
				t.Errorf("signature algorithm %v, want %v", lintCert.SignatureAlgorithm, is.sigAlg)
			}
			if got := len(lintCert.Signature); got != wantLen[name] {
				t.Errorf("placeholder is %d bytes, want %d", got, wantLen[name])
			}
			if err := lintCert.CheckSignatureFrom(is.Cert); err == nil {
				t.Fatal("the lint certificate verifies under the issuer's key")
			}
			if _, err := zx.ParseCertificate(prep.LintDER); err != nil {
				t.Fatalf("zcrypto cannot parse the lint certificate: %v", err)
			}
			if pub, ok := key.Public().(*ecdsa.PublicKey); ok {
				var sig struct{ R, S *big.Int }
				if rest, err := asn1.Unmarshal(lintCert.Signature, &sig); err != nil || len(rest) != 0 {
					t.Fatalf("placeholder is not an Ecdsa-Sig-Value: %v", err)
				}
				n := pub.Curve.Params().N
				if sig.R.Cmp(n) != 0 || sig.S.Cmp(n) != 0 {
					t.Errorf("placeholder r, s = %v, %v; want the curve order", sig.R, sig.S)
				}
			}
		})
	}
}

// TestCaptureSignerSignsNothing: the capture signer answers every request
// with an error, and hands SignMessage's message back untouched.
func TestCaptureSignerSignsNothing(t *testing.T) {
	c := &captureSigner{pub: mustKey(t, elliptic.P256()).Public()}
	msg := []byte("tbs")
	if sig, err := crypto.SignMessage(c, rand.Reader, msg, crypto.SHA256); sig != nil || !errors.Is(err, errTBSCaptured) {
		t.Fatalf("SignMessage = %x, %v", sig, err)
	}
	if !bytes.Equal(c.tbs, msg) {
		t.Fatalf("captured %q", c.tbs)
	}
	if sig, err := c.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); sig != nil || err == nil || errors.Is(err, errTBSCaptured) {
		t.Fatalf("Sign = %x, %v; want a failure that is not a capture", sig, err)
	}
}

// lintVerdicts runs every zlint lint but lint.ExcludedLints on a certificate
// or CRL and returns each lint's status.
func lintVerdicts(t *testing.T, der []byte, crl bool) map[string]zl.LintStatus {
	t.Helper()
	registry := fullRegistry(t)
	var rs *zlint.ResultSet
	if crl {
		r, err := zx.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		rs = zlint.LintRevocationListEx(r, registry)
	} else {
		c, err := zx.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		rs = zlint.LintCertificateEx(c, registry)
	}
	out := make(map[string]zl.LintStatus, len(rs.Results))
	for name, r := range rs.Results {
		out[name] = r.Status
	}
	return out
}

func sameVerdicts(t *testing.T, linted, signed map[string]zl.LintStatus) {
	t.Helper()
	if len(linted) != len(signed) {
		t.Errorf("%d lints ran on the lint copy, %d on the signed one", len(linted), len(signed))
	}
	for name, s := range signed {
		if linted[name] != s {
			t.Errorf("%s: %s on the lint copy, %s on what was signed", name, linted[name], s)
		}
	}
}

// TestLintDERLintsAsIssued: every zlint lint, from every source, gives the
// lint certificate (placeholder signature) the verdict it gives the issued
// certificate, for every kind of issuer key; and likewise for the lint copy
// of a CRL, for the intermediate's (P-256) and the root's (P-384, where the
// ECDSA encoding lints tell the curve by the signature's length).
func TestLintDERLintsAsIssued(t *testing.T) {
	for name, key := range issuerKeys(t) {
		t.Run(name, func(t *testing.T) {
			is, prep := preparedBy(t, key)
			der, err := is.Issue(prep)
			if err != nil {
				t.Fatal(err)
			}
			sameVerdicts(t, lintVerdicts(t, prep.LintDER, false), lintVerdicts(t, der, false))
		})
	}
	h := newHierarchy(t, HierarchyConfig{})
	for name, c := range map[string]struct {
		is  *Issuer
		tmp CRLTemplate
	}{
		"intermediate CRL": {h.intermediate, crlTemplate(crlEntries(3, testNow))},
		"root CRL": {h.root, CRLTemplate{Number: 1, ThisUpdate: testNow, NextUpdate: testNow.AddDate(0, 0, 7), CA: true,
			Entries: crlEntries(2, testNow)}},
	} {
		t.Run(name, func(t *testing.T) {
			rec := &recordingLinter{real: testLinter(t)}
			der, err := c.is.signCRL(c.tmp, rec)
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.seen) != 1 {
				t.Fatalf("%d CRLs linted, want 1", len(rec.seen))
			}
			sameVerdicts(t, lintVerdicts(t, rec.seen[0], true), lintVerdicts(t, der, true))
		})
	}
}

// preparedBy returns an issuer with key and a client certificate it has
// prepared for a fresh P-256 key.
func preparedBy(t *testing.T, key crypto.Signer) (*Issuer, *Prepared) {
	t.Helper()
	is, err := NewIssuer(testCA(t, key), key)
	if err != nil {
		t.Fatal(err)
	}
	prep, err := is.Prepare(testProfile(), testRequest(t, mustKey(t, elliptic.P256()).Public()), testLinter(t))
	if err != nil {
		t.Fatal(err)
	}
	return is, prep
}
