package issuance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/lint"
)

const testPublicURL = "http://127.0.0.1:8080"

// testNow is the pinned clock of every test: issuance never reads the wall
// clock when given one. It is after 2026-03-15, when the BRs' 200-day limit
// (SC-081) takes effect in zlint.
var testNow = time.Date(2026, 6, 1, 15, 9, 26, 0, time.UTC)

var (
	linterOnce sync.Once
	sharedLint *lint.Linter
	linterErr  error
)

// testLinter returns one Linter for the whole package, as pkid builds one per
// process.
func testLinter(t testing.TB) *lint.Linter {
	t.Helper()
	linterOnce.Do(func() { sharedLint, linterErr = lint.New() })
	if linterErr != nil {
		t.Fatalf("lint.New: %v", linterErr)
	}
	return sharedLint
}

// hierarchy is a root, an issuing intermediate and an OCSP signer.
type hierarchy struct {
	root, intermediate, ocsp *Issuer
}

// testPublicKey reads a subscriber public key from testdata.
func testPublicKey(t testing.TB, name string) crypto.PublicKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", name)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func mustKey(t testing.TB, c elliptic.Curve) crypto.Signer {
	t.Helper()
	k, err := GenerateKey(c)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newHierarchy builds a fresh hierarchy at testNow. Tests that count
// signatures or issue from the intermediate get their own, so that they do
// not see one another's signatures.
func newHierarchy(t testing.TB, cfg HierarchyConfig) hierarchy {
	t.Helper()
	l := testLinter(t)
	if cfg.PublicURL == "" {
		cfg.PublicURL = testPublicURL
	}
	root, err := NewRoot(cfg, mustKey(t, elliptic.P384()), testNow, l)
	if err != nil {
		t.Fatalf("NewRoot: %v", err)
	}
	inter, err := NewIntermediate(root, cfg, mustKey(t, elliptic.P256()), testNow, l)
	if err != nil {
		t.Fatalf("NewIntermediate: %v", err)
	}
	ocsp, err := NewOCSPSigner(inter, cfg, mustKey(t, elliptic.P256()), testNow, l)
	if err != nil {
		t.Fatalf("NewOCSPSigner: %v", err)
	}
	return hierarchy{root: root, intermediate: inter, ocsp: ocsp}
}

// oidCertPolicies is the one extension the tests name that pkid never
// writes (tbs.go has the others).
var oidCertPolicies = asn1.ObjectIdentifier{2, 5, 29, 32}

var extNames = map[string]string{
	oidExtensionKeyUsage.String():              "keyUsage",
	oidExtensionExtKeyUsage.String():           "extKeyUsage",
	oidExtensionBasicConstraints.String():      "basicConstraints",
	oidExtensionSubjectKeyID.String():          "subjectKeyIdentifier",
	oidExtensionAuthorityKeyID.String():        "authorityKeyIdentifier",
	oidExtensionAuthorityInfoAccess.String():   "authorityInfoAccess",
	oidExtensionCRLDistributionPoints.String(): "cRLDistributionPoints",
	oidExtensionSubjectAltName.String():        "subjectAltName",
	oidCertPolicies.String():                   "certificatePolicies",
	oidOCSPNoCheck.String():                    "ocspNoCheck",
}

// extensions maps each extension of c, by name, to its criticality.
func extensions(t *testing.T, c *x509.Certificate) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, e := range c.Extensions {
		name, ok := extNames[e.Id.String()]
		if !ok {
			name = e.Id.String()
		}
		if _, dup := out[name]; dup {
			t.Errorf("extension %s appears twice", name)
		}
		out[name] = e.Critical
	}
	return out
}

func checkExtensions(t *testing.T, c *x509.Certificate, want map[string]bool) {
	t.Helper()
	got := extensions(t, c)
	for name, crit := range want {
		if gotCrit, ok := got[name]; !ok {
			t.Errorf("%s: missing extension %s", c.Subject.CommonName, name)
		} else if gotCrit != crit {
			t.Errorf("%s: extension %s critical = %v, want %v", c.Subject.CommonName, name, gotCrit, crit)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected extension %s", c.Subject.CommonName, name)
		}
	}
}

func checkSerial128(t *testing.T, c *x509.Certificate) {
	t.Helper()
	if n := len(c.SerialNumber.Bytes()); n != 17 {
		t.Errorf("%s: serial is %d bytes, want 17 (prefix + 128 random bits)", c.Subject.CommonName, n)
	}
}

func TestRootProfile(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	c := h.root.Cert
	checkExtensions(t, c, map[string]bool{"keyUsage": true, "basicConstraints": true, "subjectKeyIdentifier": false})
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if c.Subject.CommonName != DefaultRootCommonName || !slices.Equal(c.Subject.Organization, []string{DefaultOrganization}) {
		t.Errorf("subject = %s", c.Subject)
	}
	if !c.IsCA || c.MaxPathLen != -1 || c.MaxPathLenZero {
		t.Errorf("basicConstraints: IsCA=%v MaxPathLen=%d, want CA without path length", c.IsCA, c.MaxPathLen)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("keyUsage = %b, want keyCertSign|cRLSign", c.KeyUsage)
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() || c.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Errorf("root key %T / %s, want ECDSA P-384 with SHA-384", c.PublicKey, c.SignatureAlgorithm)
	}
	if !c.NotBefore.Equal(testNow.Add(-caBackdate)) || !c.NotAfter.Equal(testNow.Add(DefaultRootValidity)) {
		t.Errorf("validity [%s, %s]", c.NotBefore, c.NotAfter)
	}
	checkSerial128(t, c)
	if got := h.root.Signatures(); got != 2 {
		t.Errorf("root Signatures() = %d, want 2 (itself and the intermediate)", got)
	}
	if len(h.root.ID) != 64 {
		t.Errorf("ID %q is not a hex SHA-256", h.root.ID)
	}
}

func TestIntermediateProfile(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	c := h.intermediate.Cert
	checkExtensions(t, c, map[string]bool{
		"keyUsage": true, "basicConstraints": true, "extKeyUsage": false,
		"subjectKeyIdentifier": false, "authorityKeyIdentifier": false,
		"cRLDistributionPoints": false, "certificatePolicies": false,
	})
	if err := c.CheckSignatureFrom(h.root.Cert); err != nil {
		t.Errorf("intermediate not signed by the root: %v", err)
	}
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("basicConstraints: IsCA=%v MaxPathLen=%d zero=%v, want pathLen 0", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("keyUsage = %b", c.KeyUsage)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}) || len(c.UnknownExtKeyUsage) != 0 {
		t.Errorf("extKeyUsage = %v %v", c.ExtKeyUsage, c.UnknownExtKeyUsage)
	}
	if !bytes.Equal(c.AuthorityKeyId, h.root.Cert.SubjectKeyId) {
		t.Error("AKI is not the root's SKI")
	}
	if !slices.Equal(c.CRLDistributionPoints, []string{testPublicURL + "/ca/root.crl"}) {
		t.Errorf("CRL DP = %v", c.CRLDistributionPoints)
	}
	if len(c.Policies) != 1 || !c.Policies[0].Equal(oidAnyPolicy) {
		t.Errorf("policies = %v, want anyPolicy", c.Policies)
	}
	if len(c.OCSPServer)+len(c.IssuingCertificateURL) != 0 {
		t.Errorf("unexpected AIA %v %v", c.OCSPServer, c.IssuingCertificateURL)
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() || c.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Errorf("intermediate key %T / %s, want P-256 signed with SHA-384 by the P-384 root", c.PublicKey, c.SignatureAlgorithm)
	}
	checkSerial128(t, c)
}

func TestOCSPSignerProfile(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	c := h.ocsp.Cert
	checkExtensions(t, c, map[string]bool{
		"keyUsage": true, "basicConstraints": true, "extKeyUsage": false,
		"subjectKeyIdentifier": false, "authorityKeyIdentifier": false, "ocspNoCheck": false,
	})
	if err := c.CheckSignatureFrom(h.intermediate.Cert); err != nil {
		t.Errorf("OCSP signer not signed by the intermediate: %v", err)
	}
	if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("IsCA=%v keyUsage=%b, want end entity with digitalSignature", c.IsCA, c.KeyUsage)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}) || len(c.UnknownExtKeyUsage) != 0 {
		t.Errorf("extKeyUsage = %v %v, want OCSPSigning only", c.ExtKeyUsage, c.UnknownExtKeyUsage)
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(oidOCSPNoCheck) && !bytes.Equal(e.Value, []byte{0x05, 0x00}) {
			t.Errorf("ocsp-nocheck value = %x, want NULL", e.Value)
		}
	}
	if !bytes.Equal(c.AuthorityKeyId, h.intermediate.Cert.SubjectKeyId) {
		t.Error("AKI is not the intermediate's SKI")
	}
	if !c.NotAfter.Equal(testNow.Add(DefaultOCSPValidity)) {
		t.Errorf("notAfter = %s", c.NotAfter)
	}
	if c.Subject.CommonName != DefaultOCSPCommonName {
		t.Errorf("subject = %s", c.Subject)
	}
	if got := h.ocsp.Signatures(); got != 0 {
		t.Errorf("OCSP signer Signatures() = %d, want 0", got)
	}
}

// TestValidityNeverOutlivesIssuer checks that a CA certificate's notAfter is
// cut to its issuer's.
func TestValidityNeverOutlivesIssuer(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{
		RootValidity:         40 * 24 * time.Hour,
		IntermediateValidity: 60 * 24 * time.Hour,
		OCSPValidity:         90 * 24 * time.Hour,
	})
	if !h.intermediate.Cert.NotAfter.Equal(h.root.Cert.NotAfter) {
		t.Errorf("intermediate notAfter %s, want the root's %s", h.intermediate.Cert.NotAfter, h.root.Cert.NotAfter)
	}
	if !h.ocsp.Cert.NotAfter.Equal(h.intermediate.Cert.NotAfter) {
		t.Errorf("OCSP signer notAfter %s, want the intermediate's %s", h.ocsp.Cert.NotAfter, h.intermediate.Cert.NotAfter)
	}
}

// TestOrganizationInherited checks that a renewal with an empty config (what
// serve does for the OCSP signer) keeps the hierarchy's organization.
func TestOrganizationInherited(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{Organization: "Acme Corp", RootCommonName: "Acme Root"})
	ocsp, err := NewOCSPSigner(h.intermediate, HierarchyConfig{}, mustKey(t, elliptic.P256()), testNow.Add(time.Hour), testLinter(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*x509.Certificate{h.root.Cert, h.intermediate.Cert, h.ocsp.Cert, ocsp.Cert} {
		if !slices.Equal(c.Subject.Organization, []string{"Acme Corp"}) {
			t.Errorf("%s: O = %v, want Acme Corp", c.Subject.CommonName, c.Subject.Organization)
		}
	}
	if h.root.Cert.Subject.CommonName != "Acme Root" {
		t.Errorf("root CN = %q", h.root.Cert.Subject.CommonName)
	}
}

func TestHierarchyRefusals(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	l := testLinter(t)
	key := mustKey(t, elliptic.P256())
	rootSigs, interSigs := h.root.Signatures(), h.intermediate.Signatures()
	tests := []struct {
		name string
		run  func() error
		is   error
	}{
		{"https public URL", func() error {
			_, err := NewIntermediate(h.root, HierarchyConfig{PublicURL: "https://ca.example"}, key, testNow, l)
			return err
		}, ErrBadRequest},
		{"no public URL", func() error {
			_, err := NewIntermediate(h.root, HierarchyConfig{}, key, testNow, l)
			return err
		}, ErrBadRequest},
		{"public URL with a query", func() error {
			_, err := NewIntermediate(h.root, HierarchyConfig{PublicURL: "http://ca.example/?x=1"}, key, testNow, l)
			return err
		}, ErrBadRequest},
		{"expired root", func() error {
			_, err := NewIntermediate(h.root, HierarchyConfig{PublicURL: testPublicURL}, key, h.root.Cert.NotAfter, l)
			return err
		}, ErrBadRequest},
		{"OCSP signer for a year", func() error {
			_, err := NewOCSPSigner(h.intermediate, HierarchyConfig{OCSPValidity: 365 * 24 * time.Hour}, key, testNow, l)
			return err
		}, ErrBadRequest},
		{"negative validity", func() error {
			_, err := NewOCSPSigner(h.intermediate, HierarchyConfig{OCSPValidity: -time.Hour}, key, testNow, l)
			return err
		}, ErrBadRequest},
		{"no linter", func() error {
			_, err := NewIntermediate(h.root, HierarchyConfig{PublicURL: testPublicURL}, key, testNow, nil)
			return err
		}, nil},
		{"no linter for a root", func() error {
			_, err := NewRoot(HierarchyConfig{}, key, testNow, nil)
			return err
		}, nil},
		{"no key", func() error {
			_, err := NewOCSPSigner(h.intermediate, HierarchyConfig{}, nil, testNow, l)
			return err
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
	if h.root.Signatures() != rootSigs || h.intermediate.Signatures() != interSigs {
		t.Errorf("refusals made signatures: root %d→%d, intermediate %d→%d", rootSigs, h.root.Signatures(), interSigs, h.intermediate.Signatures())
	}
}

func TestNewIssuer(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	tests := []struct {
		name   string
		der    []byte
		signer crypto.Signer
		ok     bool
	}{
		{"matching key", h.intermediate.Cert.Raw, h.intermediate.Signer, true},
		{"OCSP signer", h.ocsp.Cert.Raw, h.ocsp.Signer, true},
		{"another key", h.intermediate.Cert.Raw, h.ocsp.Signer, false},
		{"no key", h.intermediate.Cert.Raw, nil, false},
		{"garbage", []byte("not a certificate"), h.intermediate.Signer, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			is, err := NewIssuer(tc.der, tc.signer)
			if tc.ok != (err == nil) {
				t.Fatalf("NewIssuer = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && is.ID != h.intermediate.ID && is.ID != h.ocsp.ID {
				t.Errorf("ID %s is not the certificate's hash", is.ID)
			}
		})
	}
}
