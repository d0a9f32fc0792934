package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/idna"

	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/pki"
)

// policyCSR makes a P-256 CSR with the given common name (may be empty),
// DNS names and URI SANs.
func policyCSR(t *testing.T, cn string, dns []string, uris ...string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// accountAudit counts the account's audit events with this action.
func (n *node) accountAudit(t *testing.T, action, accountID string) int {
	t.Helper()
	var c int
	if err := n.rawDB.Pool().QueryRow(t.Context(), "SELECT count(*) FROM audit_events WHERE action = $1 AND account_id = $2",
		action, accountID).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// policyBody is a complete policy for PUT /admin/api/accounts/{id}/policy.
type policyBody struct {
	AllowedNames          []string `json:"allowed_names"`
	AllowURISANs          bool     `json:"allow_uri_sans"`
	KeyTypes              []string `json:"key_types"`
	MaxValidityDays       int      `json:"max_validity_days"`
	MaxActiveCertificates int      `json:"max_active_certificates"`
	MaxIssuancesPerHour   int      `json:"max_issuances_per_hour"`
}

// setPolicy replaces an account's policy through the admin API.
func (n *node) setPolicy(accountID string, p policyBody) {
	n.t.Helper()
	if r := n.do("PUT", "/admin/api/accounts/"+accountID+"/policy", n.admin, p); r.status != http.StatusOK {
		n.t.Fatalf("PUT policy: %d %s", r.status, r.body)
	}
}

// expect checks a response's status and, for a problem, its type.
func expect(t *testing.T, what string, r response, status int, kind string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
	}
	if kind != "" {
		if got := r.json(t)["type"]; got != "urn:pkid:error:"+kind {
			t.Fatalf("%s: type %v, want %s: %s", what, got, kind, r.body)
		}
	}
}

// TestAccountPolicyIssuance is the acceptance table of issue 7's policy:
// allowed and refused names (exact, wildcard, a name under another
// account's suffix, a homograph A-label not in the list), URI SANs in and
// out of the account's namespace, a refused key type and a capped validity.
// Every refusal leaves no certificate row, makes no signature and is
// audited.
func TestAccountPolicyIssuance(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	idA, tokA := n.account("Tenant A", pki.PlanEnterprise)
	idB, _ := n.account("Tenant B", pki.PlanEnterprise)
	nsA := "spiffe://pkid.test/account/" + idA
	nsB := "spiffe://pkid.test/account/" + idB
	n.setPolicy(idA, policyBody{AllowedNames: []string{"api.a.example", "*.svc.a.example"}, AllowURISANs: true,
		KeyTypes: []string{"ecdsa-p256"}, MaxValidityDays: 7})
	n.setPolicy(idB, policyBody{AllowedNames: []string{"*.svc.b.example"}, KeyTypes: []string{"ecdsa-p256"}})
	homograph, err := idna.Registration.ToASCII("аpi.a.example") // Cyrillic а
	if err != nil || !strings.HasPrefix(homograph, "xn--") {
		t.Fatalf("homograph %q: %v", homograph, err)
	}
	rsaCSR := opensslCSRWith(t, []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"}, "-subj", "/CN=api.a.example")

	for _, tc := range []struct {
		name   string
		csr    string
		days   int
		status int
		kind   string
		check  func(t *testing.T, leaf *x509.Certificate)
	}{
		{name: "exact name", csr: policyCSR(t, "api.a.example", []string{"api.a.example"}), status: http.StatusCreated},
		{name: "name under an allowed suffix", csr: policyCSR(t, "", []string{"web.svc.a.example", "db.svc.a.example"}), status: http.StatusCreated},
		{name: "SPIFFE ID in the account's namespace", csr: policyCSR(t, "", []string{"web.svc.a.example"}, nsA+"/billing/api"),
			status: http.StatusCreated, check: func(t *testing.T, leaf *x509.Certificate) {
				var got []string
				for _, u := range leaf.URIs {
					got = append(got, u.String())
				}
				if want := []string{"urn:pkid:account:" + idA, nsA + "/billing/api"}; !slices.Equal(got, want) {
					t.Errorf("URI SANs %v, want %v", got, want)
				}
			}},
		{name: "validity capped by the policy", csr: policyCSR(t, "api.a.example", nil), days: 30, status: http.StatusCreated,
			check: func(t *testing.T, leaf *x509.Certificate) {
				if life := time.Until(leaf.NotAfter); life > 7*24*time.Hour || life < 7*24*time.Hour-time.Hour {
					t.Errorf("notAfter in %s, want 7 days", life)
				}
			}},

		{name: "the suffix itself", csr: policyCSR(t, "", []string{"svc.a.example"}), status: http.StatusForbidden, kind: "rejectedIdentifier"},
		{name: "name under another account's suffix", csr: policyCSR(t, "", []string{"web.svc.b.example"}), status: http.StatusForbidden, kind: "rejectedIdentifier"},
		{name: "homograph A-label not in the list", csr: policyCSR(t, homograph, []string{homograph}), status: http.StatusForbidden, kind: "rejectedIdentifier"},
		{name: "common name outside the list", csr: policyCSR(t, "billing", []string{"api.a.example"}), status: http.StatusForbidden, kind: "rejectedIdentifier"},
		{name: "another account's namespace", csr: policyCSR(t, "", nil, nsB+"/x"), status: http.StatusForbidden, kind: "rejectedIdentifier"},
		{name: "a malformed SPIFFE ID", csr: policyCSR(t, "", nil, nsA+"/a/../b"), status: http.StatusBadRequest, kind: "badCSR"},
		{name: "refused key type", csr: rsaCSR, status: http.StatusBadRequest, kind: "badPublicKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, sigs := n.counts()
			refused := n.accountAudit(t, ca.ActionIssueRefused, idA)
			body := map[string]any{"csr": tc.csr}
			if tc.days > 0 {
				body["validity_days"] = tc.days
			}
			r := n.do("POST", "/api/v1/certificates", tokA, body)
			expect(t, "issue", r, tc.status, tc.kind)
			if tc.status != http.StatusCreated {
				if rows2, sigs2 := n.counts(); rows2 != rows || sigs2 != sigs {
					t.Errorf("a refusal left rows %d->%d, signatures %d->%d", rows, rows2, sigs, sigs2)
				}
				if got := n.accountAudit(t, ca.ActionIssueRefused, idA); got != refused+1 {
					t.Errorf("refusal audited %d times", got-refused)
				}
				if d, _ := r.json(t)["detail"].(string); tc.kind == "rejectedIdentifier" && !strings.Contains(d, "allowed_names") && !strings.Contains(d, "namespace") {
					t.Errorf("the refusal does not name the rule: %q", d)
				}
				return
			}
			if tc.check != nil {
				tc.check(t, parseCertPEM(t, r.json(t)["certificate"].(string)))
			}
		})
	}
}

// TestAccountPolicyQuotas: the active-certificate cap answers 403
// quotaExceeded, the hourly limit 429 with Retry-After until the oldest
// issuance of the hour leaves it; both name their quota. Renewal counts
// towards the hourly limit, but an account at its cap may still renew.
func TestAccountPolicyQuotas(t *testing.T) {
	t.Parallel()
	n := newNode(t)

	t.Run("active certificates", func(t *testing.T) {
		id, tok := n.account("Capped", pki.PlanEnterprise)
		n.setPolicy(id, policyBody{AllowedNames: []string{"*"}, KeyTypes: []string{"ecdsa-p256"}, MaxActiveCertificates: 2})
		first := n.issue(tok, policyCSR(t, "one.example", nil)).json(t)["serial"].(string)
		expect(t, "second", n.issue(tok, policyCSR(t, "two.example", nil)), http.StatusCreated, "")
		rows, sigs := n.counts()
		r := n.issue(tok, policyCSR(t, "three.example", nil))
		expect(t, "over the cap", r, http.StatusForbidden, "quotaExceeded")
		if d := r.json(t)["detail"].(string); !strings.Contains(d, "max_active_certificates = 2") {
			t.Errorf("detail does not name the quota: %q", d)
		}
		if rows2, sigs2 := n.counts(); rows2 != rows || sigs2 != sigs {
			t.Errorf("the refusal left a row or a signature")
		}
		// Renewing replaces a certificate: allowed at the cap. The old one
		// counts until it is revoked (or expires), like any active one.
		renewed := n.do("POST", "/api/v1/certificates/"+first+"/renew", tok, nil)
		expect(t, "renew at the cap", renewed, http.StatusCreated, "")
		revoke := func(serial string) {
			t.Helper()
			expect(t, "revoke", n.do("POST", "/api/v1/certificates/"+serial+"/revoke", tok,
				map[string]any{"reason": "superseded"}), http.StatusOK, "")
		}
		revoke(first)
		expect(t, "still at the cap", n.issue(tok, policyCSR(t, "three.example", nil)), http.StatusForbidden, "quotaExceeded")
		// Revoking one more makes room.
		revoke(renewed.json(t)["serial"].(string))
		expect(t, "after a revocation", n.issue(tok, policyCSR(t, "three.example", nil)), http.StatusCreated, "")
	})

	t.Run("issuance per hour", func(t *testing.T) {
		id, tok := n.account("Throttled", pki.PlanEnterprise)
		n.setPolicy(id, policyBody{AllowedNames: []string{"*"}, KeyTypes: []string{"ecdsa-p256"}, MaxIssuancesPerHour: 2})
		first := n.issue(tok, policyCSR(t, "one.example", nil)).json(t)["serial"].(string)
		expect(t, "second", n.issue(tok, policyCSR(t, "two.example", nil)), http.StatusCreated, "")
		rows, sigs := n.counts()
		for _, req := range []struct {
			what string
			r    func() response
		}{
			{"issue", func() response { return n.issue(tok, policyCSR(t, "three.example", nil)) }},
			{"renew", func() response { return n.do("POST", "/api/v1/certificates/"+first+"/renew", tok, nil) }},
		} {
			r := req.r()
			expect(t, req.what+" over the hourly limit", r, http.StatusTooManyRequests, "rateLimited")
			retry, err := strconv.Atoi(r.header.Get("Retry-After"))
			// The oldest of the two was issued moments ago: it leaves the
			// window in just under an hour.
			if err != nil || retry < 3500 || retry > 3600 {
				t.Errorf("%s: Retry-After %q, want just under 3600", req.what, r.header.Get("Retry-After"))
			}
			if d := r.json(t)["detail"].(string); !strings.Contains(d, "max_issuances_per_hour = 2") {
				t.Errorf("%s: detail does not name the quota: %q", req.what, d)
			}
		}
		if rows2, sigs2 := n.counts(); rows2 != rows || sigs2 != sigs {
			t.Errorf("the refusals left a row or a signature")
		}
		// An hour later (by the database's clock, as every node counts it),
		// there is room again.
		if _, err := n.rawDB.Pool().Exec(t.Context(),
			"UPDATE certificates SET created_at = created_at - interval '1 hour' WHERE account_id = $1", id); err != nil {
			t.Fatal(err)
		}
		expect(t, "an hour later", n.issue(tok, policyCSR(t, "three.example", nil)), http.StatusCreated, "")
	})
}

// TestAccountPolicyWithToken: the policy comes with the account when the
// token is checked, so issuance makes no read of its own for it; it is
// still the policy as it is at each request. A change between two requests
// with the same token is seen by the second (names, and a quota set where
// there was none), and an account whose policy row is missing still
// authenticates but is refused issuance and renewal (fail closed, 500),
// leaving no row and no signature.
func TestAccountPolicyWithToken(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	id, tok := n.account("Carried", pki.PlanEnterprise)
	p := policyBody{AllowedNames: []string{"a.example"}, KeyTypes: []string{"ecdsa-p256"}}
	n.setPolicy(id, p)
	first := n.issue(tok, policyCSR(t, "a.example", nil))
	expect(t, "allowed name", first, http.StatusCreated, "")

	p.AllowedNames = []string{"b.example"}
	n.setPolicy(id, p)
	expect(t, "name allowed no longer", n.issue(tok, policyCSR(t, "a.example", nil)), http.StatusForbidden, "rejectedIdentifier")
	expect(t, "newly allowed name", n.issue(tok, policyCSR(t, "b.example", nil)), http.StatusCreated, "")

	// Two active certificates; a cap of two, set now, refuses the next.
	p.MaxActiveCertificates = 2
	n.setPolicy(id, p)
	expect(t, "cap set between requests", n.issue(tok, policyCSR(t, "b.example", nil)), http.StatusForbidden, "quotaExceeded")
	p.MaxActiveCertificates = 0
	n.setPolicy(id, p)
	expect(t, "cap lifted", n.issue(tok, policyCSR(t, "b.example", nil)), http.StatusCreated, "")

	if _, err := n.rawDB.Pool().Exec(t.Context(), "DELETE FROM account_policies WHERE account_id = $1", id); err != nil {
		t.Fatal(err)
	}
	expect(t, "list without a policy row", n.do("GET", "/api/v1/certificates", tok, nil), http.StatusOK, "")
	rows, sigs := n.counts()
	expect(t, "issue without a policy row", n.issue(tok, policyCSR(t, "b.example", nil)), http.StatusInternalServerError, "serverInternal")
	serial := first.json(t)["serial"].(string)
	expect(t, "renew without a policy row", n.do("POST", "/api/v1/certificates/"+serial+"/renew", tok, nil),
		http.StatusInternalServerError, "serverInternal")
	if rows2, sigs2 := n.counts(); rows2 != rows || sigs2 != sigs {
		t.Errorf("refusals without a policy left rows %d->%d, signatures %d->%d", rows, rows2, sigs, sigs2)
	}
}

// TestAccountPolicyRenewal: a renewal is held to the account's policy as it
// is at renewal time, not as it was at issuance: names, key type, URI SANs
// and validity are checked again after a policy change.
func TestAccountPolicyRenewal(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	id, tok := n.account("Renewing", pki.PlanEnterprise)
	ns := "spiffe://pkid.test/account/" + id
	open := policyBody{AllowedNames: []string{"*.svc.r.example"}, AllowURISANs: true, KeyTypes: []string{"ecdsa-p256"}}
	n.setPolicy(id, open)
	issued := n.issue(tok, policyCSR(t, "", []string{"web.svc.r.example"}, ns+"/web"))
	expect(t, "issue", issued, http.StatusCreated, "")
	serial := issued.json(t)["serial"].(string)
	renew := func(body any) response { return n.do("POST", "/api/v1/certificates/"+serial+"/renew", tok, body) }

	for _, tc := range []struct {
		name   string
		change func(p *policyBody)
		body   any
		status int
		kind   string
	}{
		{"name no longer allowed", func(p *policyBody) { p.AllowedNames = []string{"*.svc.other.example"} }, nil, http.StatusForbidden, "rejectedIdentifier"},
		{"no names at all", func(p *policyBody) { p.AllowedNames = []string{} }, nil, http.StatusForbidden, "rejectedIdentifier"},
		{"key type no longer allowed", func(p *policyBody) { p.KeyTypes = []string{"ecdsa-p384"} }, nil, http.StatusBadRequest, "badPublicKey"},
		{"URI SANs no longer allowed", func(p *policyBody) { p.AllowURISANs = false }, nil, http.StatusForbidden, "rejectedIdentifier"},
		{"rekey adding a URI SAN", func(*policyBody) {},
			map[string]any{"csr": policyCSR(t, "", []string{"web.svc.r.example"}, ns+"/web", ns+"/admin")}, http.StatusForbidden, "rejectedIdentifier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := open
			tc.change(&p)
			n.setPolicy(id, p)
			rows, sigs := n.counts()
			expect(t, "renew", renew(tc.body), tc.status, tc.kind)
			if rows2, sigs2 := n.counts(); rows2 != rows || sigs2 != sigs {
				t.Errorf("the refusal left a row or a signature")
			}
		})
	}

	// Back within the policy, with a shorter validity: renewed, with the
	// same names and URI SANs, for the new maximum.
	p := open
	p.MaxValidityDays = 3
	n.setPolicy(id, p)
	r := renew(nil)
	expect(t, "renew within the policy", r, http.StatusCreated, "")
	leaf := parseCertPEM(t, r.json(t)["certificate"].(string))
	if !slices.Equal(leaf.DNSNames, []string{"web.svc.r.example"}) || len(leaf.URIs) != 2 || leaf.URIs[1].String() != ns+"/web" {
		t.Errorf("renewal changed the names: %v %v", leaf.DNSNames, leaf.URIs)
	}
	if life := time.Until(leaf.NotAfter); life > 3*24*time.Hour {
		t.Errorf("renewal lives %s, over the policy's 3 days", life)
	}
}

// TestAccountPolicyAPI covers GET and PUT /admin/api/accounts/{id}/policy:
// the defaults of a new account, a round trip of what GET returns, the
// audit event of a change, and the refusals.
func TestAccountPolicyAPI(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	id, tok := n.account("Policy API", pki.PlanEnterprise)
	path := "/admin/api/accounts/" + id + "/policy"

	r := n.do("GET", path, n.admin, nil)
	expect(t, "GET", r, http.StatusOK, "")
	got := r.json(t)
	for field, want := range map[string]any{
		"account_id": id, "allow_uri_sans": false, "max_validity_days": 0.0, "ca_max_validity_days": 90.0,
		"max_active_certificates": 1000.0, "max_issuances_per_hour": 100.0, "updated_by": "system",
		"uri_namespace": "spiffe://pkid.test/account/" + id,
	} {
		if got[field] != want {
			t.Errorf("default %s = %v, want %v", field, got[field], want)
		}
	}
	if names, _ := got["allowed_names"].([]any); len(names) != 1 || names[0] != "*" {
		t.Errorf("default allowed_names %v", got["allowed_names"])
	}
	if kts, _ := got["key_types"].([]any); len(kts) != 5 {
		t.Errorf("default key_types %v", got["key_types"])
	}

	// What GET returns can be edited and sent back as it is.
	got["allowed_names"] = []string{"*.api.example"}
	got["max_issuances_per_hour"] = 10
	r = n.do("PUT", path, n.admin, got)
	expect(t, "PUT round trip", r, http.StatusOK, "")
	if saved := r.json(t); saved["max_issuances_per_hour"] != 10.0 || saved["updated_by"] == "system" {
		t.Errorf("saved %s", r.body)
	}
	events := n.do("GET", "/admin/api/audit?account_id="+id, n.admin, nil).json(t)["events"].([]any)
	var change map[string]any
	for _, e := range events {
		if ev := e.(map[string]any); ev["action"] == ca.ActionPolicyUpdated {
			change = ev["detail"].(map[string]any)
		}
	}
	if rate, _ := change["max_issuances_per_hour"].(map[string]any); rate["from"] != 100.0 || rate["to"] != 10.0 || change["key_types"] != nil {
		t.Errorf("audited change %v: want the two changed fields with from and to", change)
	}

	valid := func() map[string]any {
		return map[string]any{"allowed_names": []string{"*"}, "allow_uri_sans": false, "key_types": []string{"ecdsa-p256"},
			"max_validity_days": 0, "max_active_certificates": 0, "max_issuances_per_hour": 0}
	}
	with := func(k string, v any) map[string]any { m := valid(); m[k] = v; return m }
	without := func(k string) map[string]any { m := valid(); delete(m, k); return m }
	for _, tc := range []struct {
		name   string
		method string
		path   string
		token  string
		body   any
		status int
		kind   string
	}{
		{"missing field", "PUT", path, n.admin, without("max_issuances_per_hour"), http.StatusBadRequest, "malformed"},
		{"unknown field", "PUT", path, n.admin, with("allowed_ips", []string{}), http.StatusBadRequest, "malformed"},
		{"malformed rule", "PUT", path, n.admin, with("allowed_names", []string{"*.*.example"}), http.StatusBadRequest, "malformed"},
		{"U-label rule", "PUT", path, n.admin, with("allowed_names", []string{"bücher.example"}), http.StatusBadRequest, "malformed"},
		{"unknown key type", "PUT", path, n.admin, with("key_types", []string{"ed25519"}), http.StatusBadRequest, "malformed"},
		{"no key type", "PUT", path, n.admin, with("key_types", []string{}), http.StatusBadRequest, "malformed"},
		{"validity over the CA's", "PUT", path, n.admin, with("max_validity_days", 91), http.StatusBadRequest, "malformed"},
		{"negative quota", "PUT", path, n.admin, with("max_active_certificates", -1), http.StatusBadRequest, "malformed"},
		{"another account's id", "PUT", path, n.admin, with("account_id", "00000000-0000-4000-8000-000000000000"), http.StatusBadRequest, "malformed"},
		{"account token", "PUT", path, tok, valid(), http.StatusForbidden, "forbidden"},
		{"account token reading", "GET", path, tok, nil, http.StatusForbidden, "forbidden"},
		{"unknown account", "PUT", "/admin/api/accounts/00000000-0000-4000-8000-000000000000/policy", n.admin, valid(), http.StatusNotFound, "notFound"},
		{"not an account id", "GET", "/admin/api/accounts/nope/policy", n.admin, nil, http.StatusNotFound, "notFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := n.do("GET", path, n.admin, nil).body
			expect(t, tc.method, n.do(tc.method, tc.path, tc.token, tc.body), tc.status, tc.kind)
			if after := n.do("GET", path, n.admin, nil).body; string(after) != string(before) {
				t.Errorf("a refused request changed the policy: %s", after)
			}
		})
	}
	r = n.do("POST", path, n.admin, valid())
	expect(t, "POST", r, http.StatusMethodNotAllowed, "")
	if allow := r.header.Get("Allow"); allow != "GET, PUT" {
		t.Errorf("Allow: %q, want GET, PUT", allow)
	}
}
