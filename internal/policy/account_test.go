package policy

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/pkid/pkid/internal/pki"
)

const (
	acctA = "0b7d3c1e-5a2f-4c8e-9d61-2f3a4b5c6d7e"
	acctB = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
)

func policyWith(rules ...string) *pki.AccountPolicy {
	return &pki.AccountPolicy{AllowedNames: rules, KeyTypes: CAKeyTypes()}
}

// kindOf returns the Kind of a RequestError or PolicyError, "" for nil, and
// fails the test for anything else.
func kindOf(t *testing.T, err error) pki.Kind {
	t.Helper()
	var re *pki.RequestError
	var pe *pki.PolicyError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re):
		return re.Kind
	case errors.As(err, &pe):
		return pe.Kind
	}
	t.Fatalf("error %T %v is neither a RequestError nor a PolicyError", err, err)
	return ""
}

func TestCheckNameRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, rule string
		ok         bool
	}{
		{"any", "*", true},
		{"exact", "api.a.example", true},
		{"exact A-label", "xn--bcher-kva.example", true},
		{"pattern", "*.a.example", true},
		{"one-label suffix", "*.internal", true},
		{"empty", "", false},
		{"upper case", "API.a.example", false},
		{"U-label", "bücher.example", false},
		{"bad punycode", "xn--zz.example", false},
		{"single label exact", "localhost", false},
		{"double wildcard", "*.*.a.example", false},
		{"inner wildcard", "a*.example", false},
		{"bare star dot", "*.", false},
		{"trailing dot", "*.a.example.", false},
		{"space", "a .example", false},
		{"too long", "*." + strings.Repeat("a.", 126) + "example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckNameRule(tc.rule)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckNameRule(%q) = %v, want ok=%v", tc.rule, err, tc.ok)
			}
		})
	}
}

// TestCheckNames is the acceptance table of allowed and refused names: exact
// names, *.suffix patterns, a name under another account's suffix, and a
// homograph A-label that is not in the list.
func TestCheckNames(t *testing.T) {
	t.Parallel()
	a := policyWith("api.a.example", "*.svc.a.example", "xn--bcher-kva.example")
	for _, tc := range []struct {
		name   string
		policy *pki.AccountPolicy
		cn     string
		dns    []string
		want   pki.Kind
	}{
		{name: "exact DNS name", policy: a, dns: []string{"api.a.example"}},
		{name: "exact common name", policy: a, cn: "api.a.example"},
		{name: "name under the suffix", policy: a, dns: []string{"web.svc.a.example"}},
		{name: "name two labels under the suffix", policy: a, dns: []string{"x.web.svc.a.example"}},
		{name: "listed A-label", policy: a, dns: []string{"xn--bcher-kva.example"}},
		{name: "CN and every SAN allowed", policy: a, cn: "api.a.example", dns: []string{"api.a.example", "db.svc.a.example"}},
		{name: "wildcard SAN below the suffix", policy: a, dns: []string{"*.web.svc.a.example"}},
		{name: "wildcard SAN equal to the pattern", policy: a, dns: []string{"*.svc.a.example"}},
		{name: "any name", policy: policyWith("*"), cn: "Billing service", dns: []string{"anything.example"}},

		{name: "the suffix itself", policy: a, dns: []string{"svc.a.example"}, want: pki.KindRejectedIdentifier},
		{name: "suffix without a dot boundary", policy: a, dns: []string{"evilsvc.a.example"}, want: pki.KindRejectedIdentifier},
		{name: "exact rule is not a suffix", policy: a, dns: []string{"x.api.a.example"}, want: pki.KindRejectedIdentifier},
		{name: "name under another account's suffix", policy: a, dns: []string{"web.svc.b.example"}, want: pki.KindRejectedIdentifier},
		{name: "homograph A-label not in the list", policy: policyWith("apple.example"), dns: []string{"xn--pple-43d.example"}, want: pki.KindRejectedIdentifier},
		{name: "homograph of a listed A-label", policy: a, dns: []string{"xn--bcher-kva.example", "xn--pple-43d.example"}, want: pki.KindRejectedIdentifier},
		{name: "one SAN outside the list", policy: a, cn: "api.a.example", dns: []string{"api.a.example", "api.b.example"}, want: pki.KindRejectedIdentifier},
		{name: "CN outside the list", policy: a, cn: "api.b.example", dns: []string{"api.a.example"}, want: pki.KindRejectedIdentifier},
		{name: "CN that is not a DNS name", policy: a, cn: "Billing service", want: pki.KindRejectedIdentifier},
		{name: "CN in upper case", policy: a, cn: "API.A.EXAMPLE", want: pki.KindRejectedIdentifier},
		{name: "wildcard SAN above the suffix", policy: a, dns: []string{"*.a.example"}, want: pki.KindRejectedIdentifier},
		{name: "wildcard SAN for an exact rule", policy: policyWith("a.example"), dns: []string{"*.a.example"}, want: pki.KindRejectedIdentifier},
		{name: "empty list", policy: policyWith(), cn: "api.a.example", want: pki.KindRejectedIdentifier},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckNames(tc.policy, tc.cn, tc.dns)
			if got := kindOf(t, err); got != tc.want {
				t.Fatalf("CheckNames = %v, want kind %q", err, tc.want)
			}
			var pe *pki.PolicyError
			if errors.As(err, &pe) && !strings.Contains(pe.Detail, "allowed_names") {
				t.Errorf("refusal does not name the rule: %q", pe.Detail)
			}
		})
	}
}

func TestCheckKeyType(t *testing.T) {
	t.Parallel()
	ecOnly := &pki.AccountPolicy{KeyTypes: []pki.KeyType{pki.KeyECDSAP256}}
	for _, tc := range []struct {
		name   string
		policy *pki.AccountPolicy
		key    crypto.PublicKey
		want   pki.Kind
	}{
		{"P-256 allowed", ecOnly, keyP256().Public(), ""},
		{"P-384 refused", ecOnly, keyP384().Public(), pki.KindBadPublicKey},
		{"RSA 2048 refused", ecOnly, keyRSA2048().Public(), pki.KindBadPublicKey},
		{"RSA 2048 in the CA's set", policyWith(), keyRSA2048().Public(), ""},
		{"P-521 is no key type", policyWith(), keyP521().Public(), pki.KindBadPublicKey},
		{"Ed25519 is no key type", policyWith(), keyEd25519().Public(), pki.KindBadPublicKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckKeyType(tc.policy, tc.key)
			if got := kindOf(t, err); got != tc.want {
				t.Fatalf("CheckKeyType = %v, want kind %q", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), "key_types") {
				t.Errorf("refusal does not name the rule: %v", err)
			}
		})
	}
}

func TestCheckAccountPolicy(t *testing.T) {
	t.Parallel()
	good := func() *pki.AccountPolicy {
		return &pki.AccountPolicy{AllowedNames: []string{"*.a.example"}, KeyTypes: CAKeyTypes(),
			MaxValidityDays: 30, MaxActiveCertificates: 1000, MaxIssuancesPerHour: 100}
	}
	many := make([]string, MaxNameRules+1)
	for i := range many {
		many[i] = "h" + big.NewInt(int64(i)).String() + ".example"
	}
	for _, tc := range []struct {
		name   string
		change func(*pki.AccountPolicy)
		field  string // "" when valid; else the field the refusal must name
	}{
		{"valid", func(*pki.AccountPolicy) {}, ""},
		{"no names", func(p *pki.AccountPolicy) { p.AllowedNames = nil }, ""},
		{"CA's maximum validity", func(p *pki.AccountPolicy) { p.MaxValidityDays = 0 }, ""},
		{"no quotas", func(p *pki.AccountPolicy) { p.MaxActiveCertificates, p.MaxIssuancesPerHour = 0, 0 }, ""},
		{"bad rule", func(p *pki.AccountPolicy) { p.AllowedNames = []string{"ok.example", "Bad.example"} }, "allowed_names[1]"},
		{"duplicate rule", func(p *pki.AccountPolicy) { p.AllowedNames = []string{"a.example", "a.example"} }, "allowed_names[1]"},
		{"too many rules", func(p *pki.AccountPolicy) { p.AllowedNames = many }, "allowed_names"},
		{"no key types", func(p *pki.AccountPolicy) { p.KeyTypes = nil }, "key_types"},
		{"unknown key type", func(p *pki.AccountPolicy) { p.KeyTypes = []pki.KeyType{"ed25519"} }, "key_types[0]"},
		{"duplicate key type", func(p *pki.AccountPolicy) { p.KeyTypes = []pki.KeyType{pki.KeyRSA2048, pki.KeyRSA2048} }, "key_types[1]"},
		{"validity above the CA's", func(p *pki.AccountPolicy) { p.MaxValidityDays = 91 }, "max_validity_days"},
		{"negative validity", func(p *pki.AccountPolicy) { p.MaxValidityDays = -1 }, "max_validity_days"},
		{"negative cap", func(p *pki.AccountPolicy) { p.MaxActiveCertificates = -1 }, "max_active_certificates"},
		{"huge rate", func(p *pki.AccountPolicy) { p.MaxIssuancesPerHour = MaxQuota + 1 }, "max_issuances_per_hour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good()
			tc.change(p)
			err := CheckAccountPolicy(p, 90)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if kindOf(t, err) != pki.KindMalformed || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("CheckAccountPolicy = %v, want malformed naming %s", err, tc.field)
			}
		})
	}
}

func TestCapValidity(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name    string
		maxDays int
		in, out time.Duration
	}{
		{"capped", 30, 90 * day, 30 * day},
		{"below the cap", 30, 7 * day, 7 * day},
		{"no cap of its own", 0, 90 * day, 90 * day},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CapValidity(&pki.AccountPolicy{MaxValidityDays: tc.maxDays}, tc.in); got != tc.out {
				t.Fatalf("CapValidity = %s, want %s", got, tc.out)
			}
		})
	}
}

func TestTrustDomain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, want string
	}{
		{"http://pkid.test", "pkid.test"},
		{"http://PKID.Example.com:8080/base", "pkid.example.com"},
		{"http://127.0.0.1:8080", "127.0.0.1"},
		{"http://[::1]:8080", ""},
		{"not a url", ""},
	} {
		t.Run(tc.url, func(t *testing.T) {
			got, err := TrustDomain(tc.url)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("TrustDomain = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("TrustDomain = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestCheckCSRURIs covers URI SANs through CheckCSR: admitted only when the
// CA passes the account's namespace, and then only SPIFFE IDs within it.
func TestCheckCSRURIs(t *testing.T) {
	t.Parallel()
	nsA := URINamespace("pkid.test", acctA)
	withURIs := func(dns []string, uris ...string) func(testing.TB) string {
		return func(t testing.TB) string {
			tmpl := names("", dns...)
			for _, s := range uris {
				u, err := url.Parse(s)
				if err != nil {
					t.Fatal(err)
				}
				tmpl.URIs = append(tmpl.URIs, u)
			}
			return p256(t, tmpl)
		}
	}
	rawURI := func(raw string) func(testing.TB) string {
		return func(t testing.TB) string {
			tmpl := names("client")
			tmpl.ExtraExtensions = []pkix.Extension{sanExt(dnsName("svc.example.com"), generalName(cbasn1.Tag(6).ContextSpecific(), []byte(raw)))}
			return p256(t, tmpl)
		}
	}
	manyURIs := make([]string, maxURISANs+1)
	for i := range manyURIs {
		manyURIs[i] = nsA + "/w" + big.NewInt(int64(i)).String()
	}
	for _, tc := range []struct {
		name      string
		csr       func(testing.TB) string
		namespace string
		want      pki.Kind
		uris      []string // accepted URIs
	}{
		{name: "in the namespace", csr: withURIs([]string{"svc.example.com"}, nsA+"/billing/api"), namespace: nsA, uris: []string{nsA + "/billing/api"}},
		{name: "the namespace itself", csr: withURIs(nil, nsA), namespace: nsA, uris: []string{nsA}},
		{name: "URI only, duplicates removed", csr: withURIs(nil, nsA+"/a", nsA+"/b", nsA+"/a"), namespace: nsA, uris: []string{nsA + "/a", nsA + "/b"}},
		{name: "no namespace: refused as before", csr: withURIs([]string{"svc.example.com"}, nsA+"/x"), want: pki.KindBadCSR},
		{name: "another account's namespace", csr: withURIs(nil, URINamespace("pkid.test", acctB)+"/x"), namespace: nsA, want: pki.KindRejectedIdentifier},
		{name: "another trust domain", csr: withURIs(nil, URINamespace("evil.test", acctA)+"/x"), namespace: nsA, want: pki.KindRejectedIdentifier},
		{name: "id prefix without a slash", csr: withURIs(nil, nsA+"x/y"), namespace: nsA, want: pki.KindRejectedIdentifier},
		{name: "above the namespace", csr: withURIs(nil, "spiffe://pkid.test/account"), namespace: nsA, want: pki.KindRejectedIdentifier},
		{name: "the account URN", csr: withURIs(nil, "urn:pkid:account:"+acctA), namespace: nsA, want: pki.KindBadCSR},
		{name: "not a SPIFFE ID", csr: withURIs(nil, "https://pkid.test/account/"+acctA+"/x"), namespace: nsA, want: pki.KindBadCSR},
		{name: "dot-dot segment", csr: rawURI(nsA + "/../" + acctB), namespace: nsA, want: pki.KindBadCSR},
		{name: "empty segment", csr: rawURI(nsA + "//x"), namespace: nsA, want: pki.KindBadCSR},
		{name: "trailing slash", csr: rawURI(nsA + "/x/"), namespace: nsA, want: pki.KindBadCSR},
		{name: "query", csr: rawURI(nsA + "/x?y=1"), namespace: nsA, want: pki.KindBadCSR},
		{name: "percent-encoding", csr: rawURI(nsA + "/%2e%2e"), namespace: nsA, want: pki.KindBadCSR},
		{name: "port", csr: rawURI("spiffe://pkid.test:443/account/" + acctA + "/x"), namespace: nsA, want: pki.KindBadCSR},
		{name: "upper-case trust domain", csr: rawURI("spiffe://PKID.test/account/" + acctA + "/x"), namespace: nsA, want: pki.KindBadCSR},
		{name: "too many URIs", csr: withURIs(nil, manyURIs...), namespace: nsA, want: pki.KindBadCSR},
		{name: "email still refused", csr: func(t testing.TB) string {
			tmpl := names("client", "svc.example.com")
			tmpl.EmailAddresses = []string{"a@example.com"}
			return p256(t, tmpl)
		}, namespace: nsA, want: pki.KindBadCSR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseAndCheck(tc.csr(t), Limits{URINamespace: tc.namespace})
			if got := kindOf(t, err); got != tc.want {
				t.Fatalf("CheckCSR = %v, want kind %q", err, tc.want)
			}
			if err != nil {
				return
			}
			var got []string
			for _, u := range c.URIs {
				got = append(got, u.String())
			}
			if strings.Join(got, " ") != strings.Join(tc.uris, " ") {
				t.Fatalf("URIs = %v, want %v", got, tc.uris)
			}
		})
	}
}

func TestCheckURI(t *testing.T) {
	t.Parallel()
	nsA := URINamespace("pkid.test", acctA)
	for _, tc := range []struct {
		name, uri, namespace string
		want                 pki.Kind
	}{
		{"inside", nsA + "/x", nsA, ""},
		{"no URIs allowed", nsA + "/x", "", pki.KindRejectedIdentifier},
		{"other account", URINamespace("pkid.test", acctB) + "/x", nsA, pki.KindRejectedIdentifier},
		{"malformed", nsA + "/x/", nsA, pki.KindBadCSR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			if got := kindOf(t, CheckURI(u, tc.namespace)); got != tc.want {
				t.Fatalf("CheckURI = %v, want %q", got, tc.want)
			}
		})
	}
}

func TestMisfits(t *testing.T) {
	t.Parallel()
	nsA := URINamespace("pkid.test", acctA)
	const day = 24 * time.Hour
	now := time.Now()
	cert := func(cn string, dns []string, uris []string, key crypto.PublicKey, days int) *x509.Certificate {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, PublicKey: key,
			NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(time.Duration(days) * day)}
		for _, s := range append([]string{"urn:pkid:account:" + acctA}, uris...) {
			u, _ := url.Parse(s)
			c.URIs = append(c.URIs, u)
		}
		return c
	}
	pol := &pki.AccountPolicy{AllowedNames: []string{"*.a.example"}, AllowURISANs: true,
		KeyTypes: []pki.KeyType{pki.KeyECDSAP256}, MaxValidityDays: 30}
	noURIs := *pol
	noURIs.AllowURISANs = false
	for _, tc := range []struct {
		name   string
		policy *pki.AccountPolicy
		cert   *x509.Certificate
		want   []string // substrings, one per reason
	}{
		{"fits", pol, cert("x.a.example", []string{"x.a.example"}, []string{nsA + "/w"}, keyP256().Public(), 30), nil},
		{"name no longer allowed", pol, cert("x.b.example", []string{"x.a.example", "y.b.example"}, nil, keyP256().Public(), 30),
			[]string{`common name "x.b.example"`, `DNS name "y.b.example"`}},
		{"URI SANs no longer allowed", &noURIs, cert("", []string{"x.a.example"}, []string{nsA + "/w"}, keyP256().Public(), 30),
			[]string{"URI SAN"}},
		{"key type no longer allowed", pol, cert("", []string{"x.a.example"}, nil, keyRSA2048().Public(), 30), []string{"rsa-2048"}},
		{"lifetime above the new cap", pol, cert("", []string{"x.a.example"}, nil, keyP256().Public(), 90), []string{"90 days"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Misfits(tc.policy, tc.cert, nsA, 90*day)
			if len(got) != len(tc.want) {
				t.Fatalf("Misfits = %q, want %d reasons", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("reason %d = %q, want it to mention %q", i, got[i], w)
				}
			}
		})
	}
}
