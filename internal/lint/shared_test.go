package lint

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	zl "github.com/zmap/zlint/v3/lint"
)

// TestSharedLintsReviewed checks that every lint pkid runs shares one
// instance: those without fields always, and those with fields only when
// listed in reviewedLints, so that a lint with fields added by a zlint
// upgrade is read for writes to them before it is shared.
func TestSharedLintsReviewed(t *testing.T) {
	l := testLinter(t)
	for _, c := range l.certs {
		_, listed := reviewedLints[c.Name]
		fields := hasFields(c.Lint())
		switch {
		case c.shared == nil:
			t.Errorf("%s has fields and is not in reviewedLints: read its CheckApplies and Execute for writes to them, then list it", c.Name)
		case listed && !fields:
			t.Errorf("%s is in reviewedLints but has no fields to review", c.Name)
		}
	}
	for name := range reviewedLints {
		if !slices.ContainsFunc(l.certs, func(c certLint) bool { return c.Name == name }) {
			t.Errorf("reviewedLints names %s, which pkid does not run", name)
		}
	}
}

// closePrimesModulus returns a 2048-bit RSA modulus whose primes are
// neighbours, which e_rsa_fermat_factorization factors in one round.
func closePrimesModulus(t testing.TB) *big.Int {
	t.Helper()
	p, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 1023))
	if err != nil {
		t.Fatal(err)
	}
	p.SetBit(p, 1023, 1).SetBit(p, 0, 1)
	for !p.ProbablyPrime(20) {
		p.Add(p, big.NewInt(2))
	}
	q := new(big.Int).Add(p, big.NewInt(2))
	for !q.ProbablyPrime(20) {
		q.Add(q, big.NewInt(2))
	}
	return new(big.Int).Mul(p, q)
}

// verdictCertificates returns the certificates whose verdicts
// TestSharedLintsMatchZlint compares: one of each kind pkid signs (root,
// intermediate, OCSP signer, client, TLS server) and deliberately bad ones
// that make each shared lint fail.
func verdictCertificates(t *testing.T) map[string][]byte {
	f := testFixture(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	caTemplate := func() *x509.Certificate {
		return &x509.Certificate{
			SerialNumber:          big.NewInt(0x71_0102030405),
			Subject:               pkix.Name{Organization: []string{"pkid test"}, CommonName: "pkid test intermediate"},
			NotBefore:             f.now.Add(-5 * time.Minute),
			NotAfter:              f.now.Add(30 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLenZero:        true,
			CRLDistributionPoints: []string{"http://127.0.0.1:8080/ca/root.crl"},
			IssuingCertificateURL: []string{"http://127.0.0.1:8080/ca/root.cer"},
		}
	}
	leaf := func(mutate func(*x509.Certificate)) func() *x509.Certificate {
		return func() *x509.Certificate {
			c := f.clientTemplate()
			mutate(c)
			return c
		}
	}
	server := func(mutate func(*x509.Certificate)) func() *x509.Certificate {
		return leaf(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			c.Subject = pkix.Name{CommonName: "localhost"}
			c.DNSNames, c.URIs = []string{"localhost"}, nil
			c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			mutate(c)
		})
	}
	ca := func(mutate func(*x509.Certificate)) func() *x509.Certificate {
		return func() *x509.Certificate {
			c := caTemplate()
			mutate(c)
			return c
		}
	}
	reservedDV, err := x509.OIDFromInts([]uint64{2, 23, 140, 1, 2, 1})
	if err != nil {
		t.Fatal(err)
	}
	reservedOV, err := x509.OIDFromInts([]uint64{2, 23, 140, 1, 2, 2})
	if err != nil {
		t.Fatal(err)
	}
	templates := map[string]struct {
		tmpl func() *x509.Certificate
		pub  crypto.PublicKey
	}{
		"client":       {tmpl: f.clientTemplate},
		"client RSA":   {tmpl: f.clientTemplate, pub: &rsaKey.PublicKey},
		"intermediate": {tmpl: caTemplate},
		"OCSP signer": {tmpl: leaf(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
			c.DNSNames, c.URIs = nil, nil
			c.Subject = pkix.Name{Organization: []string{"pkid test"}, CommonName: "pkid test OCSP"}
		})},
		"TLS server": {tmpl: server(func(*x509.Certificate) {})},
		"TLS server with a bad DNS character": {tmpl: server(func(c *x509.Certificate) {
			c.DNSNames = []string{"bad!name.example"}
		})},
		"TLS server with RSA e=3":     {tmpl: server(func(*x509.Certificate) {}), pub: &rsa.PublicKey{N: rsaKey.N, E: 3}},
		"keyCertSign on a leaf":       {tmpl: leaf(func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign })},
		"empty subject without a SAN": {tmpl: leaf(func(c *x509.Certificate) { c.Subject = pkix.Name{}; c.DNSNames, c.URIs = nil, nil })},
		"DNS name with an underscore": {tmpl: leaf(func(c *x509.Certificate) { c.DNSNames = []string{"bad_name.example"} })},
		"no EKU":                      {tmpl: leaf(func(c *x509.Certificate) { c.ExtKeyUsage = nil })},
		"HTML entity in subject":      {tmpl: leaf(func(c *x509.Certificate) { c.Subject.Organization = []string{"Acme &amp; Co"} })},
		"RSA primes too close":        {tmpl: f.clientTemplate, pub: &rsa.PublicKey{N: closePrimesModulus(t), E: 65537}},
		"CA with an OU":               {tmpl: ca(func(c *x509.Certificate) { c.Subject.OrganizationalUnit = []string{"Ops"} })},
		"CA without an O":             {tmpl: ca(func(c *x509.Certificate) { c.Subject.Organization = nil })},
		"CA without a CN":             {tmpl: ca(func(c *x509.Certificate) { c.Subject.CommonName = "" })},
		"CA with an invalid country":  {tmpl: ca(func(c *x509.Certificate) { c.Subject.Country = []string{"A1"} })},
		"CA with two reserved policies": {tmpl: ca(func(c *x509.Certificate) {
			c.Policies = []x509.OID{reservedDV, reservedOV}
		})},
		"CA with a serverAuth EKU and an OU": {tmpl: ca(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			c.Subject.OrganizationalUnit = []string{"Ops"}
		})},
	}
	certs := map[string][]byte{"root": f.caCert.Raw}
	for name, c := range templates {
		pub := c.pub
		if pub == nil {
			pub = f.leaf.Public()
		}
		der, err := x509.CreateCertificate(rand.Reader, c.tmpl(), f.caCert, pub, f.caKey)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		certs[name] = der
	}
	return certs
}

// TestSharedLintsMatchZlint compares, lint by lint, what Certificate
// computes (shared instances, the BR filter applied by lintsFor) with what
// zlint's own CertificateLint.Execute answers for the same certificate, and
// checks that every lint in reviewedLints failed or warned on at least one
// certificate, so that the comparison covers those results too.
func TestSharedLintsMatchZlint(t *testing.T) {
	l := testLinter(t)
	failed := map[string]bool{}
	for name, der := range verdictCertificates(t) {
		t.Run(name, func(t *testing.T) {
			cert, err := zx509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			selected := map[string]certLint{}
			for _, c := range l.lintsFor(cert) {
				selected[c.Name] = c
			}
			for _, c := range l.certs {
				want := c.CertificateLint.Execute(cert, l.config)
				got := &zl.LintResult{Status: zl.NA}
				if s, ok := selected[c.Name]; ok {
					got = s.run(cert, l.config)
				}
				if got.Status != want.Status || !sameDetails(got.Details, want.Details) {
					t.Errorf("%s: got %s %q, zlint says %s %q", c.Name, got.Status, got.Details, want.Status, want.Details)
				}
				if got.Status == zl.Error || got.Status == zl.Warn {
					failed[c.Name] = true
				}
			}
		})
	}
	for name := range reviewedLints {
		if !failed[name] {
			t.Errorf("no test certificate fails or warns %s", name)
		}
	}
}

// TestSharedLintsConcurrent lints the certificates of
// TestSharedLintsMatchZlint, on which every reviewed lint runs, from several
// goroutines: under -race it shows that the shared instances are only read.
func TestSharedLintsConcurrent(t *testing.T) {
	l := testLinter(t)
	certs := verdictCertificates(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				for _, der := range certs {
					_ = l.Certificate(der)
				}
			}
		})
	}
	wg.Wait()
}

// sameDetails reports whether two lint results' details say the same thing.
// Some lints list what they found in Go's map order (a leaf's key usages,
// say), which differs from run to run, so the words are compared as a
// multiset.
func sameDetails(a, b string) bool {
	if a == b {
		return true
	}
	words := func(s string) []string {
		w := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '[' || r == ']' || r == ',' })
		slices.Sort(w)
		return w
	}
	return slices.Equal(words(a), words(b))
}
