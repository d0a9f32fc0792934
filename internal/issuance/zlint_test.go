package issuance

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/pkid/pkid/internal/lint"
	zx "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	zl "github.com/zmap/zlint/v3/lint"
)

// acceptedWarnings are the zlint warnings pkid's certificates raise on
// purpose, by certificate, with the reason.
var acceptedWarnings = map[string]map[string]string{
	"intermediate": {
		// BR 7.1.2.10.3 asks for caIssuers in subordinate CAs. The root is
		// published in PEM (/ca/root.pem) and caIssuers must point at DER;
		// the root has to be in the relying party's trust store anyway.
		"w_sub_ca_aia_missing": "no caIssuers pointer to the root, see NewIntermediate",
	},
}

// fullRegistry is every lint zlint has but lint.ExcludedLints.
func fullRegistry(t testing.TB) zl.Registry {
	t.Helper()
	var skip []string
	for name := range lint.ExcludedLints {
		skip = append(skip, name)
	}
	registry, err := zl.GlobalRegistry().Filter(zl.FilterOptions{ExcludeNames: skip})
	if err != nil {
		t.Fatal(err)
	}
	return registry
}

// TestZlintFullRegistry runs every lint zlint has, including the sources
// pkid's Linter leaves out (root-program, EV, S/MIME, ETSI, CT), on every kind
// of certificate pkid makes. Only lint.ExcludedLints are skipped, each
// documented there. No lint may report an error or fatal, and no warning is
// allowed beyond acceptedWarnings: the exclusions hide nothing.
func TestZlintFullRegistry(t *testing.T) {
	registry := fullRegistry(t)
	h := newHierarchy(t, HierarchyConfig{})
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string][]byte{
		"root":         h.root.Cert.Raw,
		"intermediate": h.intermediate.Cert.Raw,
		"OCSP signer":  h.ocsp.Cert.Raw,
	}
	for name, pub := range map[string]crypto.PublicKey{
		"leaf P-256":   mustKey(t, elliptic.P256()).Public(),
		"leaf P-384":   mustKey(t, elliptic.P384()).Public(),
		"leaf RSA":     testPublicKey(t, "rsa2048.pub.pem"),
		"leaf Ed25519": edPub,
	} {
		certs[name] = issue(t, h.intermediate, testProfile(), testRequest(t, pub)).Raw
	}
	empty := testRequest(t, mustKey(t, elliptic.P256()).Public())
	empty.CommonName, empty.Organization, empty.DNSNames = "", "", nil
	certs["leaf with only the account URI"] = issue(t, h.intermediate, testProfile(), empty).Raw

	for name, der := range certs {
		t.Run(name, func(t *testing.T) {
			c, err := zx.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			rs := zlint.LintCertificateEx(c, registry)
			for lintName, r := range rs.Results {
				switch r.Status {
				case zl.Error, zl.Fatal:
					t.Errorf("%s: %s (%s) %s", lintName, r.Status, r.LintMetadata.Source, r.Details)
				case zl.Warn:
					if _, ok := acceptedWarnings[name][lintName]; !ok {
						t.Errorf("%s: warning (%s) %s", lintName, r.LintMetadata.Source, r.Details)
					}
				case zl.Notice:
					t.Logf("notice %s (%s): %s", lintName, r.LintMetadata.Source, r.Details)
				}
			}
		})
	}
}
