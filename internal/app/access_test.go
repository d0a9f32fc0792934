package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/sealedkey"
)

// forge signs claims with key under method, with the given header fields.
func forge(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenAttacks sends forged, expired, revoked and misdirected tokens to
// the account API: each must be a 401 problem with the Bearer challenge.
func TestTokenAttacks(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	accountID, token := n.account("Token Target", pki.PlanEnterprise)
	csrPEM, _ := opensslCSR(t, "/CN=jwt.test")

	// The real token key, as an attacker with database access would not have
	// it; used to build tokens that are correctly signed but wrong.
	recs, err := n.rawDB.TokenKeys(t.Context())
	if err != nil || len(recs) == 0 {
		t.Fatalf("token keys: %v", err)
	}
	realKey, err := sealedkey.Open(recs[0].EncryptedKey, n.passph)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := auth.KeyID(realKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(realKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	base := func() jwt.MapClaims {
		return jwt.MapClaims{
			"iss": "pkid", "sub": accountID, "aud": "pkid-account-api", "kind": "account",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
	}
	// Recover the genuine token's jti so that the forgeries name a real record.
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var genuine map[string]any
	if err := json.Unmarshal(payload, &genuine); err != nil {
		t.Fatal(err)
	}
	with := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := base()
		c["jti"] = genuine["jti"]
		mut(c)
		return c
	}
	signed := func(c jwt.MapClaims) string {
		return forge(t, jwt.SigningMethodES256, realKey, c, map[string]any{"kid": kid})
	}
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	noneTok := forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, with(func(jwt.MapClaims) {}), map[string]any{"kid": kid})
	cases := map[string]string{
		"no token":                  "",
		"garbage":                   "not.a.jwt",
		"alg none":                  noneTok,
		"HS256 with the public key": forge(t, jwt.SigningMethodHS256, pubDER, with(func(jwt.MapClaims) {}), map[string]any{"kid": kid}),
		"attacker key, our kid":     forge(t, jwt.SigningMethodES256, attacker, with(func(jwt.MapClaims) {}), map[string]any{"kid": kid}),
		"expired":                   signed(with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })),
		"missing exp":               signed(with(func(c jwt.MapClaims) { delete(c, "exp") })),
		"wrong aud":                 signed(with(func(c jwt.MapClaims) { c["aud"] = "pkid-admin-api" })),
		"missing aud":               signed(with(func(c jwt.MapClaims) { delete(c, "aud") })),
		"wrong iss":                 signed(with(func(c jwt.MapClaims) { c["iss"] = "evil" })),
		"unknown jti":               signed(with(func(c jwt.MapClaims) { c["jti"] = "6b1c1d5e-0000-4000-8000-000000000000" })),
		"other subject":             signed(with(func(c jwt.MapClaims) { c["sub"] = "6b1c1d5e-0000-4000-8000-000000000001" })),
		"admin token":               n.admin,
		"1 MB of dots":              strings.Repeat(".", 1<<20),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			r := n.issue(tok, csrPEM)
			if name == "1 MB of dots" {
				// The header is refused by the server's header limit before
				// anything parses it.
				if r.status != http.StatusUnauthorized && r.status != http.StatusRequestHeaderFieldsTooLarge && r.status != http.StatusBadRequest {
					t.Fatalf("status %d", r.status)
				}
				return
			}
			if r.status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", r.status, r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
				t.Errorf("WWW-Authenticate %q", got)
			}
		})
	}

	// The genuine token works, and stops working once revoked.
	if r := n.issue(token, csrPEM); r.status != http.StatusCreated {
		t.Fatalf("genuine token: %d %s", r.status, r.body)
	}
	tokID := genuine["jti"].(string)
	if r := n.do("DELETE", "/admin/api/accounts/"+accountID+"/tokens/"+tokID, n.admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("revoke token: %d %s", r.status, r.body)
	}
	if r := n.issue(token, csrPEM); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d, want 401", r.status)
	}
	// An account token never opens the admin API: a genuine one is told it
	// is not allowed there (SECURITY.md A-10), a revoked one is not a token.
	_, other := n.account("Other", pki.PlanEnterprise)
	if r := n.do("GET", "/admin/api/accounts", other, nil); r.status != http.StatusForbidden ||
		r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(r.body), "forbidden") {
		t.Errorf("account token on the admin API: %d %s, want 403 forbidden", r.status, r.body)
	}
	if r := n.do("GET", "/admin/api/accounts", token, nil); r.status != http.StatusUnauthorized {
		t.Errorf("revoked account token on the admin API: %d, want 401", r.status)
	}
}

// TestPlanAndSuspension: only active Enterprise accounts may hold
// certificates, checked on every request.
func TestPlanAndSuspension(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	csrPEM, _ := opensslCSR(t, "/CN=plan.test")

	_, std := n.account("Standard Co", pki.PlanStandard)
	r := n.issue(std, csrPEM)
	if r.status != http.StatusForbidden || !strings.Contains(r.json(t)["title"].(string), "Enterprise") {
		t.Fatalf("standard plan: %d %s", r.status, r.body)
	}

	id, tok := n.account("Soon Suspended", pki.PlanEnterprise)
	csr2, _ := opensslCSR(t, "/CN=suspend.test")
	if r := n.issue(tok, csr2); r.status != http.StatusCreated {
		t.Fatalf("before suspension: %d %s", r.status, r.body)
	}
	if r := n.do("PATCH", "/admin/api/accounts/"+id, n.admin, map[string]any{"status": "suspended"}); r.status != 200 {
		t.Fatalf("suspend: %d %s", r.status, r.body)
	}
	csr3, _ := opensslCSR(t, "/CN=suspend2.test")
	r = n.issue(tok, csr3)
	if r.status != http.StatusForbidden || r.json(t)["type"] != "urn:pkid:error:accountSuspended" {
		t.Fatalf("suspended: %d %s", r.status, r.body)
	}
	// Reads stay available to a suspended account.
	if r := n.do("GET", "/api/v1/certificates", tok, nil); r.status != 200 {
		t.Errorf("list while suspended: %d", r.status)
	}
	// Back to active, then downgraded: refused again.
	n.do("PATCH", "/admin/api/accounts/"+id, n.admin, map[string]any{"status": "active", "plan": "standard"})
	if r := n.issue(tok, csr3); r.status != http.StatusForbidden {
		t.Fatalf("downgraded: %d %s", r.status, r.body)
	}
}

// TestAccountIsolation: one account can neither see nor list another's
// certificates, and cannot tell them from serials that do not exist.
func TestAccountIsolation(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	_, tokA := n.account("Alice Co", pki.PlanEnterprise)
	_, tokB := n.account("Bob Co", pki.PlanEnterprise)
	csrPEM, _ := opensslCSR(t, "/CN=alice.test")
	r := n.issue(tokA, csrPEM)
	if r.status != http.StatusCreated {
		t.Fatalf("issue: %d %s", r.status, r.body)
	}
	serial := r.json(t)["serial"].(string)

	foreign := n.do("GET", "/api/v1/certificates/"+serial, tokB, nil)
	unknown := n.do("GET", "/api/v1/certificates/70"+strings.Repeat("ab", 16), tokB, nil)
	if foreign.status != http.StatusNotFound || unknown.status != http.StatusNotFound {
		t.Fatalf("foreign %d unknown %d, want 404 both", foreign.status, unknown.status)
	}
	if fb, ub := strings.ReplaceAll(string(foreign.body), serial, "X"), strings.ReplaceAll(string(unknown.body), "70"+strings.Repeat("ab", 16), "X"); fb != ub {
		t.Errorf("a foreign serial can be told from an unknown one:\n%s\n%s", fb, ub)
	}
	list := n.do("GET", "/api/v1/certificates", tokB, nil)
	if strings.Contains(string(list.body), serial) {
		t.Errorf("B's list shows A's certificate")
	}
	listA := n.do("GET", "/api/v1/certificates?status=active", tokA, nil)
	if !strings.Contains(string(listA.body), serial) {
		t.Errorf("A's list lacks its certificate: %s", listA.body)
	}
	// A key certified for A cannot be certified for B.
	if r := n.issue(tokB, csrPEM); r.status != http.StatusBadRequest || r.json(t)["type"] != "urn:pkid:error:badPublicKey" {
		t.Errorf("A's key for B: %d %s", r.status, r.body)
	}
	// The admin sees it.
	if r := n.do("GET", "/admin/api/certificates?status=active", n.admin, nil); !strings.Contains(string(r.body), serial) {
		t.Errorf("admin list lacks the certificate: %d", r.status)
	}
}

// TestMethodNotAllowed: a known path with the wrong method is a 405 problem
// that says which methods the path has.
func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	_, tok := n.account("Methodical", pki.PlanEnterprise)
	r := n.do("PUT", "/api/v1/certificates", tok, `{}`)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, POST" {
		t.Errorf("PUT /api/v1/certificates: %d Allow %q", r.status, r.header.Get("Allow"))
	}
	if r := n.do("DELETE", "/admin/api/accounts", n.admin, nil); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, POST" {
		t.Errorf("DELETE /admin/api/accounts: %d Allow %q", r.status, r.header.Get("Allow"))
	}
}
