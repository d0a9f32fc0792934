package policy

import (
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pkid/pkid/internal/pki"
)

// FuzzParseAndCheckCSR feeds arbitrary bytes to ParseCSR both as text and as
// DER wrapped in a CERTIFICATE REQUEST block, then to CheckCSR, and checks
// that nothing panics, that every error is typed, and that whatever is
// accepted satisfies the documented invariants. Because mutated CSRs almost
// never carry a valid signature, the post-signature rules are also run
// directly on every CSR that parses. Seeds: the committed CSRs under
// testdata/ (as text and as DER) and the corpus in
// testdata/fuzz/FuzzParseAndCheckCSR.
func FuzzParseAndCheckCSR(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.csr"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed CSRs in testdata: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if block, _ := pem.Decode(b); block != nil {
			f.Add(block.Bytes)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzOne(t, string(data))
		fuzzOne(t, csrPEM(data))
	})
}

func fuzzOne(t *testing.T, text string) {
	csr, err := ParseCSR(text)
	if err != nil {
		requireRequestError(t, err, pki.KindBadCSR, pki.KindBadPublicKey)
		return
	}
	for _, lim := range []Limits{DefaultLimits(), {MaxDNSNames: 3, AllowWildcards: true}} {
		if cn, names, err := checkContents(csr, lim); err != nil {
			requireTyped(t, err)
		} else {
			checkInvariants(t, cn, names, lim)
		}
		c, err := CheckCSR(csr, lim)
		if err != nil {
			requireTyped(t, err)
			continue
		}
		checkInvariants(t, c.CommonName, c.DNSNames, lim)
		if err := CheckPublicKey(c.PublicKey); err != nil {
			t.Fatalf("accepted key fails CheckPublicKey: %v", err)
		}
		if h, err := SPKIHash(c.PublicKey); err != nil || h != c.SPKISHA256 {
			t.Fatalf("SPKISHA256 disagrees with SPKIHash: %v", err)
		}
	}
}

func checkInvariants(t *testing.T, cn string, names []string, lim Limits) {
	t.Helper()
	if cn == "" && len(names) == 0 {
		t.Fatal("accepted a CSR without identifiers")
	}
	if cn != "" {
		if err := CheckCommonName(cn); err != nil {
			t.Fatalf("accepted common name fails CheckCommonName: %v", err)
		}
	}
	if len(names) > lim.maxDNSNames() {
		t.Fatalf("accepted %d names over a limit of %d", len(names), lim.maxDNSNames())
	}
	for i, n := range names {
		if err := CheckDNSName(n, lim); err != nil {
			t.Fatalf("accepted name fails CheckDNSName: %v", err)
		}
		for _, m := range names[:i] {
			if m == n {
				t.Fatal("accepted names contain a duplicate")
			}
		}
	}
}

// requireTyped fails unless err is one of the refusals CheckCSR documents.
func requireTyped(t *testing.T, err error) {
	t.Helper()
	var pe *pki.PolicyError
	if errors.As(err, &pe) {
		if pe.Kind != pki.KindRejectedIdentifier {
			t.Fatalf("unexpected policy refusal %v", err)
		}
		return
	}
	requireRequestError(t, err, pki.KindBadCSR, pki.KindBadPublicKey, pki.KindBadSignatureAlgorithm)
}

func requireRequestError(t *testing.T, err error, kinds ...pki.Kind) {
	t.Helper()
	var re *pki.RequestError
	if !errors.As(err, &re) {
		t.Fatalf("error %T %v is not a *pki.RequestError", err, err)
	}
	for _, k := range kinds {
		if re.Kind == k {
			return
		}
	}
	t.Fatalf("error kind %s, want one of %v", re.Kind, kinds)
}

func BenchmarkCheckCSR(b *testing.B) {
	text := p256(b, names("billing-api", "billing.svc.example.com", "billing-internal.svc.example.com"))
	lim := DefaultLimits()
	b.ReportAllocs()
	for b.Loop() {
		csr, err := ParseCSR(text)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := CheckCSR(csr, lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckCSRRSA2048(b *testing.B) {
	text := csrPEM(csrDER(b, names("billing-api", "billing.svc.example.com"), keyRSA2048()))
	lim := DefaultLimits()
	b.ReportAllocs()
	for b.Loop() {
		csr, err := ParseCSR(text)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := CheckCSR(csr, lim); err != nil {
			b.Fatal(err)
		}
	}
}
