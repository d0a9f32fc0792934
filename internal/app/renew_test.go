package app_test

import (
	"crypto"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// TestRenewWithToken covers renewal with an account token: same key, rekey,
// revoke_previous, and every refusal the issue lists.
func TestRenewWithToken(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	accountID, tok := n.account("Renewer", pki.PlanEnterprise)
	_, other := n.account("Someone Else", pki.PlanEnterprise)
	csrPEM, _ := opensslCSR(t, "/CN=renew.test", "-addext", "subjectAltName=DNS:renew.test")
	first := n.issue(tok, csrPEM).json(t)
	serial := first["serial"].(string)
	renewPath := "/api/v1/certificates/" + serial + "/renew"

	// Another account's serial is 404, like an unknown one.
	if r := n.do("POST", renewPath, other, nil); r.status != http.StatusNotFound {
		t.Errorf("another account's certificate: %d", r.status)
	}
	// No credential at all: 401.
	if r := n.do("POST", renewPath, "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("no credential: %d", r.status)
	}

	r := n.do("POST", renewPath, tok, nil)
	if r.status != http.StatusCreated {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	renewed := r.json(t)
	if renewed["renewed_from"] != serial || renewed["serial"] == serial || renewed["account_id"] != accountID {
		t.Errorf("renewed object: %s", r.body)
	}
	oldLeaf := parseCertPEM(t, first["certificate"].(string))
	newLeaf := parseCertPEM(t, renewed["certificate"].(string))
	if !oldLeaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(newLeaf.PublicKey) {
		t.Errorf("renewal without a CSR changed the key")
	}
	if newLeaf.Subject.CommonName != "renew.test" || len(newLeaf.DNSNames) != 1 {
		t.Errorf("renewal changed the names: %v %v", newLeaf.Subject, newLeaf.DNSNames)
	}
	// The old certificate stays valid, and cannot be renewed twice.
	if g := n.do("GET", "/api/v1/certificates/"+serial, tok, nil).json(t); g["status"] != "active" {
		t.Errorf("old certificate status %v", g["status"])
	}
	if r := n.do("POST", renewPath, tok, nil); r.status != http.StatusConflict || r.json(t)["type"] != "urn:pkid:error:alreadyReplaced" {
		t.Errorf("second renewal: %d %s", r.status, r.body)
	}

	// Rekey with a new CSR for a subset of the names, revoking the previous.
	second := renewed["serial"].(string)
	newCSR, _ := opensslCSR(t, "/CN=renew.test")
	r = n.do("POST", "/api/v1/certificates/"+second+"/renew", tok, map[string]any{"csr": newCSR, "revoke_previous": true})
	if r.status != http.StatusCreated {
		t.Fatalf("rekey: %d %s", r.status, r.body)
	}
	if leaf := parseCertPEM(t, r.json(t)["certificate"].(string)); leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(newLeaf.PublicKey) {
		t.Errorf("rekey kept the old key")
	}
	prev := n.do("GET", "/api/v1/certificates/"+second, tok, nil).json(t)
	if prev["status"] != "revoked" || prev["revocation_reason"] != "superseded" {
		t.Errorf("revoke_previous: %v %v", prev["status"], prev["revocation_reason"])
	}
	// A revoked certificate cannot be renewed.
	if r := n.do("POST", "/api/v1/certificates/"+second+"/renew", tok, nil); r.status != http.StatusConflict {
		t.Errorf("renewing a revoked certificate: %d %s", r.status, r.body)
	}
	// A rekey may not add names.
	third := r.json(t)
	_ = third
	fresh := n.issue(tok, mustCSR(t)).json(t)["serial"].(string)
	wider, _ := opensslCSR(t, "/CN=another.test", "-addext", "subjectAltName=DNS:evil.test")
	if r := n.do("POST", "/api/v1/certificates/"+fresh+"/renew", tok, map[string]any{"csr": wider}); r.status != http.StatusForbidden {
		t.Errorf("rekey adding a name: %d %s", r.status, r.body)
	}
	// Suspended or downgraded accounts cannot renew.
	n.do("PATCH", "/admin/api/accounts/"+accountID, n.admin, map[string]any{"plan": "standard"})
	if r := n.do("POST", "/api/v1/certificates/"+fresh+"/renew", tok, nil); r.status != http.StatusForbidden {
		t.Errorf("standard plan renewal: %d %s", r.status, r.body)
	}
	n.do("PATCH", "/admin/api/accounts/"+accountID, n.admin, map[string]any{"plan": "enterprise", "status": "suspended"})
	if r := n.do("POST", "/api/v1/certificates/"+fresh+"/renew", tok, nil); r.status != http.StatusForbidden {
		t.Errorf("suspended renewal: %d %s", r.status, r.body)
	}
}

// TestConcurrentRenewals: of several renewals of one certificate at once,
// exactly one succeeds.
func TestConcurrentRenewals(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	_, tok := n.account("Double Renewer", pki.PlanEnterprise)
	serial := n.issue(tok, mustCSR(t)).json(t)["serial"].(string)
	var wg sync.WaitGroup
	statuses := make([]int, 6)
	for i := range statuses {
		wg.Go(func() { statuses[i] = n.do("POST", "/api/v1/certificates/"+serial+"/renew", tok, nil).status })
	}
	wg.Wait()
	created := 0
	for _, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
		default:
			t.Errorf("status %d", s)
		}
	}
	if created != 1 {
		t.Errorf("%d renewals succeeded, want exactly 1 (%v)", created, statuses)
	}
}

// TestExpiredCertificates: once a certificate has expired it can be neither
// renewed nor revoked (409 both), and it lists as expired.
func TestExpiredCertificates(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	id, _ := n.account("Time Traveller", pki.PlanEnterprise)
	tok := n.do("POST", "/admin/api/accounts/"+id+"/tokens", n.admin, map[string]any{"name": "long", "ttl_hours": 100}).json(t)["token"].(string)
	r := n.do("POST", "/api/v1/certificates", tok, map[string]any{"csr": mustCSR(t), "validity_days": 1})
	serial := r.json(t)["serial"].(string)
	n.clock.Advance(49 * time.Hour)
	if r := n.do("POST", "/api/v1/certificates/"+serial+"/renew", tok, nil); r.status != http.StatusConflict || r.json(t)["type"] != "urn:pkid:error:certificateExpired" {
		t.Errorf("renewing an expired certificate: %d %s", r.status, r.body)
	}
	if r := n.do("POST", "/api/v1/certificates/"+serial+"/revoke", tok, `{"reason":"superseded"}`); r.status != http.StatusConflict {
		t.Errorf("revoking an expired certificate: %d %s", r.status, r.body)
	}
	if g := n.do("GET", "/api/v1/certificates/"+serial, tok, nil).json(t); g["status"] != "expired" {
		t.Errorf("status %v, want expired", g["status"])
	}
}
