package app_test

import (
	"crypto"
	"crypto/x509"
	"net/http"
	"sync"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/pki"
)

// storedOCSP parses the stored OCSP response of serial.
func (n *node) storedOCSP(t *testing.T, serial string) *ocsp.Response {
	t.Helper()
	var der []byte
	if err := n.rawDB.Pool().QueryRow(t.Context(), "SELECT der FROM ocsp_responses WHERE serial = $1", serial).Scan(&der); err != nil {
		t.Fatalf("stored OCSP response of %s: %v", serial, err)
	}
	resp, err := ocsp.ParseResponse(der, n.app.Hierarchy.Intermediate().Cert)
	if err != nil {
		t.Fatalf("parsing stored OCSP response: %v", err)
	}
	return resp
}

// askOCSP asks the node's responder about serial: the answer of a
// certificate without a stored response is its first, signed then.
func (n *node) askOCSP(t *testing.T, serial string) *ocsp.Response {
	t.Helper()
	s, err := pki.ParseSerial(serial)
	if err != nil {
		t.Fatal(err)
	}
	issuer := n.app.Hierarchy.Intermediate().Cert
	req, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: s.Big()}, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		t.Fatal(err)
	}
	r := n.do("POST", "/ocsp", "", req)
	if r.status != http.StatusOK {
		t.Fatalf("OCSP for %s: HTTP %d", serial, r.status)
	}
	resp, err := ocsp.ParseResponse(r.body, issuer)
	if err != nil {
		t.Fatalf("OCSP for %s: %v", serial, err)
	}
	return resp
}

func (n *node) auditCount(t *testing.T, action, serial string) int {
	t.Helper()
	var c int
	if err := n.rawDB.Pool().QueryRow(t.Context(), "SELECT count(*) FROM audit_events WHERE action = $1 AND serial = $2", action, serial).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	_, tokA := n.account("Revoker A", pki.PlanEnterprise)
	_, tokB := n.account("Revoker B", pki.PlanEnterprise)
	csrPEM, _ := opensslCSR(t, "/CN=revoke.test")
	r := n.issue(tokA, csrPEM)
	if r.status != http.StatusCreated {
		t.Fatalf("issue: %d %s", r.status, r.body)
	}
	serial := r.json(t)["serial"].(string)
	if got := n.askOCSP(t, serial); got.Status != ocsp.Good {
		t.Fatalf("fresh certificate's OCSP status %d, want good", got.Status)
	}
	path := "/api/v1/certificates/" + serial + "/revoke"

	for name, c := range map[string]struct {
		token, body string
		status      int
	}{
		"unknown reason":              {tokA, `{"reason":"certificateHold"}`, 400},
		"reason code number":          {tokA, `{"reason":1}`, 400},
		"privilegeWithdrawn (admin)":  {tokA, `{"reason":"privilegeWithdrawn"}`, 400},
		"another account's":           {tokB, `{"reason":"superseded"}`, 404},
		"unknown field":               {tokA, `{"reason":"superseded","when":"now"}`, 400},
		"malformed serial is refused": {tokA, "", 0},
	} {
		t.Run(name, func(t *testing.T) {
			if c.status == 0 {
				if r := n.do("POST", "/api/v1/certificates/zz-not-hex/revoke", tokA, `{}`); r.status != 400 {
					t.Errorf("status %d, want 400", r.status)
				}
				return
			}
			if r := n.do("POST", path, c.token, c.body); r.status != c.status {
				t.Errorf("status %d, want %d: %s", r.status, c.status, r.body)
			}
		})
	}
	if got := n.storedOCSP(t, serial); got.Status != ocsp.Good {
		t.Fatalf("refused revocations changed the status")
	}

	r = n.do("POST", path, tokA, `{"reason":"superseded"}`)
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	obj := r.json(t)
	if obj["status"] != "revoked" || obj["revocation_reason"] != "superseded" || obj["revoked_at"] == nil {
		t.Fatalf("revoked object: %s", r.body)
	}
	resp := n.storedOCSP(t, serial)
	if resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.Superseded {
		t.Errorf("stored OCSP: status %d reason %d", resp.Status, resp.RevocationReason)
	}

	// Again, with the same or another ordinary reason: 200, unchanged.
	for _, reason := range []string{"superseded", "cessationOfOperation", ""} {
		r2 := n.do("POST", path, tokA, `{"reason":"`+reason+`"}`)
		if r2.status != 200 || r2.json(t)["revoked_at"] != obj["revoked_at"] || r2.json(t)["revocation_reason"] != "superseded" {
			t.Errorf("re-revoke %q: %d %s", reason, r2.status, r2.body)
		}
	}
	// keyCompromise replaces the reason, keeps the date, blocks the key.
	r3 := n.do("POST", path, tokA, `{"reason":"keyCompromise"}`)
	if r3.status != 200 || r3.json(t)["revocation_reason"] != "keyCompromise" || r3.json(t)["revoked_at"] != obj["revoked_at"] {
		t.Fatalf("keyCompromise upgrade: %d %s", r3.status, r3.body)
	}
	if resp := n.storedOCSP(t, serial); resp.RevocationReason != ocsp.KeyCompromise || !resp.RevokedAt.Equal(resp.RevokedAt) {
		t.Errorf("stored OCSP after upgrade: reason %d", resp.RevocationReason)
	}
	if got := n.auditCount(t, "certificate.revoked", serial); got != 2 {
		t.Errorf("%d revocation audit events, want 2 (revoke, upgrade)", got)
	}
	// The key is blocked now.
	if r := n.issue(tokA, csrPEM); r.status != 400 || r.json(t)["type"] != "urn:pkid:error:badPublicKey" {
		t.Errorf("re-issuing a compromised key: %d %s", r.status, r.body)
	}
	// An administrator may withdraw privilege.
	r = n.issue(tokA, mustCSR(t))
	s2 := r.json(t)["serial"].(string)
	if r := n.do("POST", "/admin/api/certificates/"+s2+"/revoke", n.admin, `{"reason":"privilegeWithdrawn"}`); r.status != 200 || r.json(t)["revocation_reason"] != "privilegeWithdrawn" {
		t.Errorf("admin privilegeWithdrawn: %d %s", r.status, r.body)
	}
}

func mustCSR(t *testing.T) string {
	t.Helper()
	csr, _ := opensslCSR(t, "/CN=another.test")
	return csr
}

// TestKeyCompromiseSweep: revoking one certificate for keyCompromise revokes
// every other unexpired certificate with that key, in any account.
func TestKeyCompromiseSweep(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	idA, tokA := n.account("Sweep A", pki.PlanEnterprise)
	csrPEM, _ := opensslCSR(t, "/CN=shared.test")
	first := n.issue(tokA, csrPEM).json(t)["serial"].(string)
	second := n.issue(tokA, csrPEM).json(t)["serial"].(string)
	other := n.issue(tokA, mustCSR(t)).json(t)["serial"].(string)

	// The same key in another account is refused while A holds it, so the
	// sibling in another account can only predate the rule; simulate it.
	idB, _ := n.account("Sweep B", pki.PlanEnterprise)
	if _, err := n.rawDB.Pool().Exec(t.Context(), "UPDATE certificates SET account_id = $1 WHERE serial = $2", idB, second); err != nil {
		t.Fatal(err)
	}
	_ = idA

	if r := n.do("POST", "/api/v1/certificates/"+first+"/revoke", tokA, `{"reason":"keyCompromise"}`); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if resp := n.storedOCSP(t, second); resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.KeyCompromise {
		t.Errorf("sibling in account B: status %d reason %d", resp.Status, resp.RevocationReason)
	}
	if resp := n.askOCSP(t, other); resp.Status != ocsp.Good {
		t.Errorf("a certificate with another key was revoked")
	}
	if got := n.auditCount(t, "certificate.revoked", second); got != 1 {
		t.Errorf("sibling revocation audited %d times", got)
	}
}

// TestConcurrentRevocations: many revocations of one certificate at once make
// exactly one change.
func TestConcurrentRevocations(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	_, tok := n.account("Racer", pki.PlanEnterprise)
	serial := n.issue(tok, mustCSR(t)).json(t)["serial"].(string)
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Go(func() {
			statuses[i] = n.do("POST", "/api/v1/certificates/"+serial+"/revoke", tok, `{"reason":"cessationOfOperation"}`).status
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 200 {
			t.Errorf("request %d: %d", i, s)
		}
	}
	if got := n.auditCount(t, "certificate.revoked", serial); got != 1 {
		t.Errorf("%d state changes, want exactly 1", got)
	}
}

// TestRevokeAccount: an administrator revokes every certificate of an account.
func TestRevokeAccount(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	id, tok := n.account("Leaving Co", pki.PlanEnterprise)
	for i := 0; i < 3; i++ {
		if r := n.issue(tok, mustCSR(t)); r.status != 201 {
			t.Fatalf("issue: %d", r.status)
		}
	}
	r := n.do("POST", "/admin/api/accounts/"+id+"/revoke-certificates", n.admin, `{"reason":"cessationOfOperation"}`)
	if r.status != 200 || r.json(t)["revoked"] != float64(3) {
		t.Fatalf("revoke all: %d %s", r.status, r.body)
	}
	list := n.do("GET", "/api/v1/certificates?status=active", tok, nil).json(t)
	if got := len(list["certificates"].([]any)); got != 0 {
		t.Errorf("%d certificates still active", got)
	}
	// Account tokens cannot do this.
	if r := n.do("POST", "/admin/api/accounts/"+id+"/revoke-certificates", tok, `{}`); r.status != http.StatusForbidden {
		t.Errorf("account token: %d", r.status)
	}
}
