package issuance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
)

const testAccountID = "7d5c0a52-8f3e-4b8e-9d0b-4c1e6c2f9a10"

func testProfile() ClientProfile {
	return ClientProfile{PublicURL: testPublicURL, Now: func() time.Time { return testNow }}
}

// testRequest is a client certificate request as the ca package makes it:
// 90 days, backdated five minutes.
func testRequest(t testing.TB, pub crypto.PublicKey) ClientRequest {
	t.Helper()
	serial, err := pki.NewSerial(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ClientRequest{
		Serial:       serial,
		PublicKey:    pub,
		CommonName:   "svc.acme.example",
		DNSNames:     []string{"svc.acme.example", "api.acme.example"},
		Organization: "Acme",
		AccountID:    testAccountID,
		NotBefore:    testNow.Add(-5 * time.Minute),
		NotAfter:     testNow.Add(90 * 24 * time.Hour),
	}
}

func issue(t testing.TB, is *Issuer, p ClientProfile, req ClientRequest) *x509.Certificate {
	t.Helper()
	prep, err := is.Prepare(p, req, testLinter(t))
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	der, err := is.Issue(prep)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientProfile(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	key := mustKey(t, elliptic.P256())
	req := testRequest(t, key.Public())
	c := issue(t, h.intermediate, testProfile(), req)

	// Exactly these extensions, with this criticality.
	checkExtensions(t, c, map[string]bool{
		"keyUsage": true, "extKeyUsage": false, "basicConstraints": true,
		"subjectKeyIdentifier": false, "authorityKeyIdentifier": false,
		"authorityInfoAccess": false, "cRLDistributionPoints": false, "subjectAltName": false,
	})
	checks := []struct {
		name string
		ok   bool
	}{
		{"serial", pki.SerialFromBig(c.SerialNumber) == req.Serial},
		{"subject", c.Subject.CommonName == "svc.acme.example" && slices.Equal(c.Subject.Organization, []string{"Acme"}) && len(c.Subject.Names) == 2},
		{"issuer", bytes.Equal(c.RawIssuer, h.intermediate.Cert.RawSubject)},
		{"validity", c.NotBefore.Equal(req.NotBefore) && c.NotAfter.Equal(req.NotAfter)},
		{"keyUsage", c.KeyUsage == x509.KeyUsageDigitalSignature},
		{"extKeyUsage", slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) && len(c.UnknownExtKeyUsage) == 0},
		{"basicConstraints", c.BasicConstraintsValid && !c.IsCA},
		{"AKI", bytes.Equal(c.AuthorityKeyId, h.intermediate.Cert.SubjectKeyId)},
		{"SKI", len(c.SubjectKeyId) == 20 && !bytes.Equal(c.SubjectKeyId, c.AuthorityKeyId)},
		{"OCSP", slices.Equal(c.OCSPServer, []string{testPublicURL + "/ocsp"})},
		{"caIssuers", slices.Equal(c.IssuingCertificateURL, []string{testPublicURL + "/ca/issuer.cer"})},
		{"CRL DP", slices.Equal(c.CRLDistributionPoints, []string{testPublicURL + "/crl"})},
		{"DNS SAN", slices.Equal(c.DNSNames, req.DNSNames)},
		{"URI SAN", len(c.URIs) == 1 && c.URIs[0].String() == "urn:pkid:account:"+testAccountID},
		{"no other SAN", len(c.EmailAddresses)+len(c.IPAddresses) == 0},
		{"signature algorithm", c.SignatureAlgorithm == x509.ECDSAWithSHA256},
		{"public key", key.Public().(*ecdsa.PublicKey).Equal(c.PublicKey)},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("%s is wrong", ch.name)
		}
	}
	if err := c.CheckSignatureFrom(h.intermediate.Cert); err != nil {
		t.Errorf("not signed by the intermediate: %v", err)
	}
}

// TestClientKeyTypes issues for every key type pkid certifies and verifies
// each chain with Go's verifier, for client authentication.
func TestClientKeyTypes(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(h.root.Cert)
	inters.AddCert(h.intermediate.Cert)
	for name, pub := range map[string]crypto.PublicKey{
		"ECDSA P-256": mustKey(t, elliptic.P256()).Public(),
		"ECDSA P-384": mustKey(t, elliptic.P384()).Public(),
		"RSA 2048":    testPublicKey(t, "rsa2048.pub.pem"),
		"Ed25519":     edPub,
	} {
		t.Run(name, func(t *testing.T) {
			c := issue(t, h.intermediate, testProfile(), testRequest(t, pub))
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("keyUsage = %b", c.KeyUsage)
			}
			_, err := c.Verify(x509.VerifyOptions{
				Roots: roots, Intermediates: inters, CurrentTime: testNow,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// The certificate is for clients only.
			_, err = c.Verify(x509.VerifyOptions{
				Roots: roots, Intermediates: inters, CurrentTime: testNow,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err == nil {
				t.Error("a client certificate verifies for server authentication")
			}
		})
	}
}

// TestEmptySubject: with neither CN nor organization the subject is empty,
// and RFC 5280 §4.2.1.6 then wants the SAN critical.
func TestEmptySubject(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	req := testRequest(t, mustKey(t, elliptic.P256()).Public())
	req.CommonName, req.Organization = "", "  "
	c := issue(t, h.intermediate, testProfile(), req)
	if len(c.Subject.Names) != 0 {
		t.Errorf("subject = %s, want empty", c.Subject)
	}
	if !extensions(t, c)["subjectAltName"] {
		t.Error("SAN of a certificate with an empty subject is not critical")
	}
}

func TestOrganizationTrimmed(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	tests := []struct{ name, in, want string }{
		{"short", "Acme", "Acme"},
		{"spaces", "  Acme  ", "Acme"},
		{"64 characters", strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{"long ASCII", strings.Repeat("a", 200), strings.Repeat("a", 64)},
		{"long multi-byte", strings.Repeat("é", 100), strings.Repeat("é", 64)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := testRequest(t, mustKey(t, elliptic.P256()).Public())
			req.Organization = tc.in
			c := issue(t, h.intermediate, testProfile(), req)
			if got := c.Subject.Organization; len(got) != 1 || got[0] != tc.want || !utf8.ValidString(got[0]) {
				t.Errorf("O = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPrepareRefusals(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	weakRSA := testPublicKey(t, "rsa1024.pub.pem")
	day := 24 * time.Hour
	tests := []struct {
		name    string
		issuer  *Issuer
		profile func(*ClientProfile)
		req     func(*ClientRequest)
	}{
		{name: "notAfter past the issuer", req: func(r *ClientRequest) { r.NotAfter = h.intermediate.Cert.NotAfter.Add(time.Second) }},
		{name: "notBefore in the future", req: func(r *ClientRequest) { r.NotBefore = testNow.Add(2 * time.Minute) }},
		{name: "backdated two days", req: func(r *ClientRequest) { r.NotBefore = testNow.Add(-2 * day) }},
		{name: "notAfter before notBefore", req: func(r *ClientRequest) { r.NotAfter = r.NotBefore.Add(-time.Second) }},
		{name: "201 days", req: func(r *ClientRequest) { r.NotAfter = testNow.Add(201 * day) }},
		{name: "beyond the profile's cap", profile: func(p *ClientProfile) { p.MaxValidity = 30 * day }},
		{name: "profile cap above the hard cap", profile: func(p *ClientProfile) { p.MaxValidity = 300 * day }},
		{name: "https public URL", profile: func(p *ClientProfile) { p.PublicURL = "https://ca.example" }},
		{name: "no public URL", profile: func(p *ClientProfile) { p.PublicURL = "" }},
		{name: "serial not canonical", req: func(r *ClientRequest) { r.Serial = pki.Serial(strings.ToUpper(string(r.Serial))) }},
		{name: "serial too short", req: func(r *ClientRequest) { r.Serial = "70ab" }},
		{name: "serial too long", req: func(r *ClientRequest) { r.Serial = pki.Serial("7" + strings.Repeat("0", 40)) }},
		{name: "empty serial", req: func(r *ClientRequest) { r.Serial = "" }},
		{name: "no public key", req: func(r *ClientRequest) { r.PublicKey = nil }},
		{name: "RSA 1024", req: func(r *ClientRequest) { r.PublicKey = weakRSA }},
		{name: "P-224", req: func(r *ClientRequest) { r.PublicKey = &ecdsa.PublicKey{Curve: elliptic.P224()} }},
		{name: "no account", req: func(r *ClientRequest) { r.AccountID = "" }},
		{name: "account id with a colon", req: func(r *ClientRequest) { r.AccountID = "a:b" }},
		{name: "account id with a space", req: func(r *ClientRequest) { r.AccountID = "a b" }},
		{name: "OCSP signer as issuer", issuer: h.ocsp},
		{name: "root as issuer of a leaf past its own notAfter", issuer: h.root, req: func(r *ClientRequest) { r.NotAfter = h.root.Cert.NotAfter.Add(time.Hour) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			is := tc.issuer
			if is == nil {
				is = h.intermediate
			}
			p := testProfile()
			if tc.profile != nil {
				tc.profile(&p)
			}
			req := testRequest(t, mustKey(t, elliptic.P256()).Public())
			if tc.req != nil {
				tc.req(&req)
			}
			before := is.Signatures()
			prep, err := is.Prepare(p, req, testLinter(t))
			if !errors.Is(err, ErrBadRequest) || prep != nil {
				t.Fatalf("Prepare = %v, %v; want ErrBadRequest", prep, err)
			}
			if is.Signatures() != before {
				t.Error("a refusal made a signature")
			}
		})
	}
}

// TestPrepareAcceptsBoundaries: the limits themselves are allowed.
func TestPrepareAcceptsBoundaries(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	tests := []struct {
		name string
		req  func(*ClientRequest)
	}{
		{"notAfter at the issuer's", func(r *ClientRequest) {
			r.NotAfter = h.intermediate.Cert.NotAfter
			r.NotBefore = r.NotAfter.Add(-90 * 24 * time.Hour)
		}},
		{"200 days", func(r *ClientRequest) { r.NotAfter = testNow.Add(MaxClientValidity) }},
		{"backdated a day", func(r *ClientRequest) { r.NotBefore = testNow.Add(-MaxBackdate) }},
		{"notBefore a minute ahead", func(r *ClientRequest) { r.NotBefore = testNow.Add(time.Minute) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := testRequest(t, mustKey(t, elliptic.P256()).Public())
			tc.req(&req)
			p := testProfile()
			if tc.name == "notAfter at the issuer's" {
				// Issue at the end of the intermediate's life.
				end := req.NotBefore.Add(5 * time.Minute)
				p.Now = func() time.Time { return end }
			}
			issue(t, h.intermediate, p, req)
		})
	}
}

// TestLintStopsBrokenProfile breaks the profile on purpose, through the
// test-only hook, and checks that zlint refuses it before any real signature.
func TestLintStopsBrokenProfile(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	tests := []struct {
		name   string
		mutate func(*x509.Certificate)
		lint   string
	}{
		{"missing EKU", func(c *x509.Certificate) { c.ExtKeyUsage = nil }, "e_sub_cert_eku_missing"},
		{"missing EKU and a 250-day validity", func(c *x509.Certificate) {
			c.ExtKeyUsage = nil
			c.NotAfter = c.NotBefore.Add(250 * 24 * time.Hour)
		}, "e_server_cert_valid_time_longer_than_200_days"},
		{"keyCertSign on a leaf", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }, "e_ext_key_usage_cert_sign_without_ca"},
		{"HTTPS CRL DP on a leaf without EKU", func(c *x509.Certificate) {
			c.ExtKeyUsage = nil
			c.CRLDistributionPoints = []string{"https://ca.example/crl"}
		}, "e_crl_distrib_points_not_http"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testProfile()
			p.mutate = tc.mutate
			before := h.intermediate.Signatures()
			prep, err := h.intermediate.Prepare(p, testRequest(t, mustKey(t, elliptic.P256()).Public()), testLinter(t))
			var le *LintError
			if !errors.As(err, &le) || prep != nil {
				t.Fatalf("Prepare = %v, %v; want *LintError", prep, err)
			}
			var lerr *lint.Error
			if !errors.As(err, &lerr) || !slices.Contains(lerr.Lints, tc.lint) {
				t.Fatalf("lint failures %v do not include %s", lerr, tc.lint)
			}
			if h.intermediate.Signatures() != before {
				t.Error("a lint failure made a real signature")
			}
		})
	}
}

// TestPrepareMisuse: no linter, or an Issuer not made by NewIssuer, is
// refused before anything is signed.
func TestPrepareMisuse(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	tests := []struct {
		name   string
		issuer *Issuer
		linter *lint.Linter
	}{
		{"no linter", h.intermediate, nil},
		{"zero Issuer", &Issuer{}, testLinter(t)},
		{"Issuer literal", &Issuer{ID: h.intermediate.ID, Cert: h.intermediate.Cert, Signer: h.intermediate.Signer}, testLinter(t)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prep, err := tc.issuer.Prepare(testProfile(), testRequest(t, mustKey(t, elliptic.P256()).Public()), tc.linter)
			if err == nil || prep != nil {
				t.Fatal("Prepare succeeded")
			}
			if tc.issuer.Signatures() != 0 && tc.issuer != h.intermediate {
				t.Error("a refusal made a signature")
			}
		})
	}
}

func TestIssueOnce(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	prep, err := h.intermediate.Prepare(testProfile(), testRequest(t, mustKey(t, elliptic.P256()).Public()), testLinter(t))
	if err != nil {
		t.Fatal(err)
	}
	before, beforeCerts := h.intermediate.Signatures(), h.intermediate.CertificatesSigned()
	if _, err := h.intermediate.Issue(prep); err != nil {
		t.Fatalf("first Issue: %v", err)
	}
	der, err := h.intermediate.Issue(prep)
	if !errors.Is(err, ErrAlreadyIssued) || der != nil {
		t.Fatalf("second Issue = %v, %v; want ErrAlreadyIssued", der, err)
	}
	if got := h.intermediate.Signatures() - before; got != 1 {
		t.Errorf("%d signatures, want 1", got)
	}
	if got := h.intermediate.CertificatesSigned() - beforeCerts; got != 1 {
		t.Errorf("%d certificates signed, want 1", got)
	}
}

// TestIssueOnceConcurrently redeems one token from many goroutines: exactly
// one signature results.
func TestIssueOnceConcurrently(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	prep, err := h.intermediate.Prepare(testProfile(), testRequest(t, mustKey(t, elliptic.P256()).Public()), testLinter(t))
	if err != nil {
		t.Fatal(err)
	}
	before := h.intermediate.Signatures()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	for range 8 {
		wg.Go(func() {
			_, err := h.intermediate.Issue(prep)
			if err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if !errors.Is(err, ErrAlreadyIssued) {
				t.Errorf("Issue: %v", err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || h.intermediate.Signatures()-before != 1 {
		t.Fatalf("%d successes, %d signatures; want 1 and 1", ok, h.intermediate.Signatures()-before)
	}
}

func TestIssueWrongIssuer(t *testing.T) {
	a, b := newHierarchy(t, HierarchyConfig{}), newHierarchy(t, HierarchyConfig{})
	prep, err := a.intermediate.Prepare(testProfile(), testRequest(t, mustKey(t, elliptic.P256()).Public()), testLinter(t))
	if err != nil {
		t.Fatal(err)
	}
	before := b.intermediate.Signatures()
	if _, err := b.intermediate.Issue(prep); !errors.Is(err, ErrWrongIssuer) {
		t.Fatalf("Issue by another issuer = %v, want ErrWrongIssuer", err)
	}
	if _, err := b.intermediate.Issue(nil); !errors.Is(err, ErrWrongIssuer) {
		t.Fatalf("Issue(nil) = %v, want ErrWrongIssuer", err)
	}
	if b.intermediate.Signatures() != before {
		t.Error("a refused Issue made a signature")
	}
	// The token was not spent by the refusal.
	if _, err := a.intermediate.Issue(prep); err != nil {
		t.Fatalf("Issue by the right issuer after a refusal: %v", err)
	}
}

// TestTBSDeterminism: what is signed is, byte for byte, what was linted; the
// lint certificate itself is not signed by the issuer.
func TestTBSDeterminism(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	prep, err := h.intermediate.Prepare(testProfile(), testRequest(t, mustKey(t, elliptic.P256()).Public()), testLinter(t))
	if err != nil {
		t.Fatal(err)
	}
	der, err := h.intermediate.Issue(prep)
	if err != nil {
		t.Fatal(err)
	}
	lintCert, err := x509.ParseCertificate(prep.LintDER)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(lintCert.RawTBSCertificate, cert.RawTBSCertificate) {
		t.Fatal("issued TBS differs from the linted TBS")
	}
	if err := lintCert.CheckSignatureFrom(h.intermediate.Cert); err == nil {
		t.Fatal("the lint certificate verifies under the intermediate's key")
	}
	if err := cert.CheckSignatureFrom(h.intermediate.Cert); err != nil {
		t.Fatalf("issued certificate does not verify: %v", err)
	}
	if prep.Serial() != pki.SerialFromBig(cert.SerialNumber) {
		t.Errorf("Prepared.Serial() = %s", prep.Serial())
	}
}

// TestLintDERIsTheCallers: scribbling over LintDER after Prepare does not
// change what Issue signs.
func TestLintDERIsTheCallers(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	prep, err := h.intermediate.Prepare(testProfile(), testRequest(t, mustKey(t, elliptic.P256()).Public()), testLinter(t))
	if err != nil {
		t.Fatal(err)
	}
	lintCert, err := x509.ParseCertificate(prep.LintDER)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(lintCert.RawTBSCertificate)
	for i := range prep.LintDER {
		prep.LintDER[i] = 0xff
	}
	der, err := h.intermediate.Issue(prep)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert.RawTBSCertificate, want) {
		t.Fatal("Issue signed bytes other than those linted")
	}
}

// faultySigner is an HSM that returns broken signatures.
type faultySigner struct{ crypto.Signer }

func (f faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := f.Signer.Sign(r, digest, opts)
	if err == nil {
		sig[len(sig)-1] ^= 0x01
	}
	return sig, err
}

// TestIssueChecksSignature: a signature that does not verify under the
// issuer's certificate is never returned as a certificate.
func TestIssueChecksSignature(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	faulty, err := NewIssuer(h.intermediate.Cert.Raw, faultySigner{h.intermediate.Signer})
	if err != nil {
		t.Fatal(err)
	}
	prep, err := faulty.Prepare(testProfile(), testRequest(t, mustKey(t, elliptic.P256()).Public()), testLinter(t))
	if err != nil {
		t.Fatal(err)
	}
	der, err := faulty.Issue(prep)
	if err == nil || der != nil {
		t.Fatalf("Issue with a faulty signer = %x, %v; want an error", der, err)
	}
	if faulty.Signatures() != 1 {
		t.Errorf("Signatures() = %d, want 1: the key was used", faulty.Signatures())
	}
}
