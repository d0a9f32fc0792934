package lint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	zl "github.com/zmap/zlint/v3/lint"
	"github.com/zmap/zlint/v3/util"
)

var (
	linterOnce sync.Once
	linter     *Linter
	linterErr  error
)

// testLinter shares one Linter between tests, as production code does.
func testLinter(t testing.TB) *Linter {
	t.Helper()
	linterOnce.Do(func() { linter, linterErr = New() })
	if linterErr != nil {
		t.Fatalf("New: %v", linterErr)
	}
	return linter
}

// fixture is a small CA and the template of a client certificate in pkid's
// profile, which test cases break one field at a time.
type fixture struct {
	caCert *x509.Certificate
	caKey  crypto.Signer
	leaf   crypto.Signer
	now    time.Time
}

var (
	fixtureOnce sync.Once
	fix         fixture
)

func mustKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testFixture(t testing.TB) fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		now := time.Now()
		caKey := mustKey(t, elliptic.P256())
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(0x70_01020304050607),
			Subject:               pkix.Name{Organization: []string{"pkid test"}, CommonName: "pkid test CA"},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(365 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		caCert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		fix = fixture{caCert: caCert, caKey: caKey, leaf: mustKey(t, elliptic.P256()), now: now}
	})
	return fix
}

// clientTemplate is a client certificate in pkid's profile.
func (f fixture) clientTemplate() *x509.Certificate {
	u, _ := url.Parse("urn:pkid:account:7d5c0a52-8f3e-4b8e-9d0b-4c1e6c2f9a10")
	serial, _ := new(big.Int).SetString("70112233445566778899aabbccddeeff00", 16)
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Acme"}, CommonName: "svc.acme.example"},
		NotBefore:             f.now.Add(-5 * time.Minute),
		NotAfter:              f.now.Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
		DNSNames:              []string{"svc.acme.example"},
		URIs:                  []*url.URL{u},
		OCSPServer:            []string{"http://127.0.0.1:8080/ocsp"},
		IssuingCertificateURL: []string{"http://127.0.0.1:8080/ca/issuer.cer"},
		CRLDistributionPoints: []string{"http://127.0.0.1:8080/crl"},
	}
}

func (f fixture) sign(t testing.TB, tmpl *x509.Certificate) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, f.leaf.Public(), f.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestNewExcludesOnlyWhatIsDocumented(t *testing.T) {
	l := testLinter(t)
	names := l.CertificateLints()
	for name := range ExcludedLints {
		if slices.Contains(names, name) {
			t.Errorf("excluded lint %s is in the registry", name)
		}
		if zl.GlobalRegistry().CertificateLints().ByName(name) == nil {
			t.Errorf("excluded lint %s does not exist in zlint; the exclusion list is stale", name)
		}
	}
	bySource := map[zl.LintSource]int{}
	for _, c := range l.certs {
		if _, ok := ExcludedSources[c.Source]; ok {
			t.Errorf("lint %s of excluded source %s is in the registry", c.Name, c.Source)
		}
		bySource[c.Source]++
	}
	// Every certificate lint of zlint is either run or excluded by a
	// documented rule.
	for _, c := range zl.GlobalRegistry().CertificateLints().Lints() {
		_, srcExcluded := ExcludedSources[c.Source]
		_, nameExcluded := ExcludedLints[c.Name]
		if !srcExcluded && !nameExcluded && !slices.Contains(names, c.Name) {
			t.Errorf("lint %s (%s) is neither run nor documented as excluded", c.Name, c.Source)
		}
	}
	for _, src := range []zl.LintSource{zl.RFC5280, zl.CABFBaselineRequirements, zl.Community} {
		if bySource[src] == 0 {
			t.Errorf("no %s lints in the registry", src)
		}
	}
	if len(l.crls) == 0 {
		t.Error("no CRL lints in the registry")
	}
}

func TestCertificate(t *testing.T) {
	l := testLinter(t)
	f := testFixture(t)
	tests := []struct {
		name   string
		mutate func(*x509.Certificate)
		want   string // a lint that must fail; "" means the certificate passes
	}{
		{name: "client profile passes", mutate: func(*x509.Certificate) {}},
		{
			name:   "keyCertSign on a leaf",
			mutate: func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign },
			want:   "e_ext_key_usage_cert_sign_without_ca",
		},
		{
			name: "empty subject without a SAN",
			mutate: func(c *x509.Certificate) {
				c.Subject = pkix.Name{}
				c.DNSNames, c.URIs = nil, nil
			},
			want: "e_subject_empty_without_san",
		},
		{
			name:   "DNS name with an underscore",
			mutate: func(c *x509.Certificate) { c.DNSNames = []string{"bad_name.example"} },
			want:   "e_rfc_dnsname_underscore_in_sld",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := f.clientTemplate()
			tc.mutate(tmpl)
			err := l.Certificate(f.sign(t, tmpl))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Certificate: %v (details %v)", err, detailsOf(err))
				}
				return
			}
			var lerr *Error
			if !errors.As(err, &lerr) {
				t.Fatalf("Certificate = %v, want *Error", err)
			}
			if !slices.Contains(lerr.Lints, tc.want) {
				t.Errorf("failed lints %v do not include %s", lerr.Lints, tc.want)
			}
		})
	}
}

// TestNotTLSServerShortcut checks that skipping the BR lints for
// certificates that cannot authenticate a TLS server changes no result: every
// lint skipped answers NA when run.
func TestNotTLSServerShortcut(t *testing.T) {
	l := testLinter(t)
	f := testFixture(t)
	for name, mutate := range map[string]func(*x509.Certificate){
		"client":   func(*x509.Certificate) {},
		"no EKU":   func(c *x509.Certificate) { c.ExtKeyUsage = nil },
		"server":   func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} },
		"OCSP":     func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning} },
		"any":      func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} },
		"code sig": func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning} },
	} {
		t.Run(name, func(t *testing.T) {
			tmpl := f.clientTemplate()
			mutate(tmpl)
			cert, err := zx509.ParseCertificate(f.sign(t, tmpl))
			if err != nil {
				t.Fatal(err)
			}
			if util.IsServerAuthCert(cert) {
				return
			}
			kept := map[string]bool{}
			for _, c := range l.notTLSServer {
				kept[c.Name] = true
			}
			for _, c := range l.certs {
				if kept[c.Name] {
					continue
				}
				if r := c.Execute(cert, l.config); r.Status != zl.NA {
					t.Errorf("skipped lint %s answers %s", c.Name, r.Status)
				}
			}
		})
	}
}

func TestCertificateUnparsable(t *testing.T) {
	l := testLinter(t)
	for name, der := range map[string][]byte{
		"empty":   nil,
		"garbage": []byte("not a certificate"),
	} {
		t.Run(name, func(t *testing.T) {
			var lerr *Error
			if err := l.Certificate(der); !errors.As(err, &lerr) || !slices.Contains(lerr.Lints, "x509_parse") {
				t.Fatalf("Certificate = %v, want *Error naming x509_parse", err)
			}
			if err := l.CRL(der); !errors.As(err, &lerr) || !slices.Contains(lerr.Lints, "x509_parse") {
				t.Fatalf("CRL = %v, want *Error naming x509_parse", err)
			}
		})
	}
}

func TestCRL(t *testing.T) {
	l := testLinter(t)
	f := testFixture(t)
	day := 24 * time.Hour
	entry := func(reason int) x509.RevocationListEntry {
		return x509.RevocationListEntry{
			SerialNumber:   big.NewInt(0x7012345),
			RevocationTime: f.now.Add(-time.Hour),
			ReasonCode:     reason,
		}
	}
	tests := []struct {
		name    string
		ca      bool // lint with CACRL
		entries []x509.RevocationListEntry
		next    time.Duration
		want    string
	}{
		{name: "empty", next: day},
		{name: "keyCompromise", entries: []x509.RevocationListEntry{entry(1)}, next: day},
		{name: "unassigned reason 7", entries: []x509.RevocationListEntry{entry(7)}, next: day, want: "e_crl_has_valid_reason_code"},
		{name: "subscriber CRL for 10 days", next: 10 * day},
		{name: "subscriber CRL for 11 days", next: 11 * day, want: "e_crl_next_update_invalid"},
		{name: "CA CRL for 365 days", ca: true, entries: []x509.RevocationListEntry{entry(1)}, next: 365 * day},
		// BR 7.2.2 (zlint e_cab_crl_has_valid_reason_code) allows 1, 3, 4, 5 and 9
		// only: an intermediate is revoked for keyCompromise, not cACompromise.
		{name: "cACompromise", ca: true, entries: []x509.RevocationListEntry{entry(2)}, next: 365 * day, want: "e_cab_crl_has_valid_reason_code"},
		{name: "CA CRL for 400 days", ca: true, next: 400 * day, want: "e_crl_next_update_invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
				Number:                    big.NewInt(3),
				ThisUpdate:                f.now.Add(-time.Minute),
				NextUpdate:                f.now.Add(-time.Minute + tc.next),
				RevokedCertificateEntries: tc.entries,
			}, f.caCert, f.caKey)
			if err != nil {
				t.Fatal(err)
			}
			lintCRL := l.CRL
			if tc.ca {
				lintCRL = l.CACRL
			}
			err = lintCRL(der)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("lint: %v (details %v)", err, detailsOf(err))
				}
				return
			}
			var lerr *Error
			if !errors.As(err, &lerr) || !slices.Contains(lerr.Lints, tc.want) {
				t.Fatalf("lint = %v, want *Error naming %s", err, tc.want)
			}
		})
	}
}

// panickingCRLLint is a broken lint.
type panickingCRLLint struct{}

func (panickingCRLLint) CheckApplies(*zx509.RevocationList) bool { return true }
func (panickingCRLLint) Execute(*zx509.RevocationList) *zl.LintResult {
	panic("broken lint")
}

// TestCRLLintPanic: a CRL lint that panics yields Fatal, not a crash.
func TestCRLLintPanic(t *testing.T) {
	lint := &zl.RevocationListLint{
		LintMetadata: zl.LintMetadata{Name: "e_panics"},
		Lint:         func() zl.RevocationListLintInterface { return panickingCRLLint{} },
	}
	r := executeCRL(lint, &zx509.RevocationList{}, testLinter(t).config)
	if r.Status != zl.Fatal {
		t.Fatalf("status = %s, want fatal", r.Status)
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Subject: "certificate", Lints: []string{"e_a", "e_b"}}
	if got, want := e.Error(), "lint: certificate failed e_a, e_b"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func detailsOf(err error) map[string]string {
	var lerr *Error
	if errors.As(err, &lerr) {
		return lerr.Details
	}
	return nil
}

// reportThroughput reports certs/s of wall time and, from the process's CPU
// time since cpuStart, cpu-µs/op and certs/core-s, which a busy shared
// machine inflates less than wall time.
func reportThroughput(b *testing.B, cpuStart time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
	if cpu := processCPUTime() - cpuStart; cpu > 0 {
		perOp := float64(cpu.Microseconds()) / float64(b.N)
		b.ReportMetric(perOp, "cpu-µs/op")
		b.ReportMetric(1e6/perOp, "certs/core-s")
	}
}

// BenchmarkCertificate measures linting one P-256 client certificate in
// pkid's profile, parsing included.
func BenchmarkCertificate(b *testing.B) {
	l := testLinter(b)
	f := testFixture(b)
	der := f.sign(b, f.clientTemplate())
	b.ReportAllocs()
	start := processCPUTime()
	for b.Loop() {
		if err := l.Certificate(der); err != nil {
			b.Fatal(err)
		}
	}
	reportThroughput(b, start)
}

// BenchmarkParse measures zcrypto's parsing alone, the part of
// BenchmarkCertificate that no choice of lints can remove.
func BenchmarkParse(b *testing.B) {
	f := testFixture(b)
	der := f.sign(b, f.clientTemplate())
	b.ReportAllocs()
	start := processCPUTime()
	for b.Loop() {
		if _, err := zx509.ParseCertificate(der); err != nil {
			b.Fatal(err)
		}
	}
	reportThroughput(b, start)
}

// BenchmarkCertificateParallel is BenchmarkCertificate on every core.
func BenchmarkCertificateParallel(b *testing.B) {
	l := testLinter(b)
	f := testFixture(b)
	der := f.sign(b, f.clientTemplate())
	b.ReportAllocs()
	start := processCPUTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Certificate(der); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportThroughput(b, start)
}
