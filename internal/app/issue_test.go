package app_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// TestIssueWithOpenSSL is the product's happy path: a CSR made by openssl
// yields a certificate that openssl verifies against the published chain,
// for the CSR's key, with exactly the extensions the CA decides.
func TestIssueWithOpenSSL(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	accountID, token := n.account("Acme Corp", pki.PlanEnterprise)
	csrPEM, keyFile := opensslCSR(t, "/CN=payments-client/O=Evil Org/OU=admins")

	r := n.issue(token, csrPEM)
	if r.status != http.StatusCreated {
		t.Fatalf("issue: %d %s", r.status, r.body)
	}
	obj := r.json(t)
	serial := obj["serial"].(string)
	if got, want := r.header.Get("Location"), "/api/v1/certificates/"+serial; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	for _, f := range []string{"serial", "status", "certificate", "chain", "not_before", "not_after", "fingerprint_sha256", "account_id"} {
		if _, ok := obj[f]; !ok {
			t.Errorf("certificate object lacks %q", f)
		}
	}
	if obj["status"] != "active" || obj["account_id"] != accountID {
		t.Errorf("status %v account %v", obj["status"], obj["account_id"])
	}
	leaf := parseCertPEM(t, obj["certificate"].(string))
	if got := pki.SerialFromBig(leaf.SerialNumber); string(got) != serial {
		t.Errorf("serial field %s, certificate serial %s", serial, got)
	}
	if len(leaf.SerialNumber.Bytes()) < 16 {
		t.Errorf("serial %x has fewer than 128 bits", leaf.SerialNumber)
	}

	// openssl verify against the published root and chain.
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := n.do("GET", "/ca/root.pem", "", nil)
	chain := n.do("GET", "/ca/chain.pem", "", nil)
	if root.status != 200 || chain.status != 200 {
		t.Fatalf("root %d chain %d", root.status, chain.status)
	}
	if obj["chain"] != string(chain.body) {
		t.Errorf("the certificate object's chain differs from /ca/chain.pem")
	}
	out, err := exec.Command("openssl", "verify", "-CAfile", write("root.pem", string(root.body)),
		"-untrusted", write("chain.pem", string(chain.body)), "-purpose", "sslclient",
		write("leaf.pem", obj["certificate"].(string))).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(": OK")) {
		t.Fatalf("openssl verify: %v: %s", err, out)
	}

	// The certificate's key is the CSR's key.
	pubFromKey, err := exec.Command("openssl", "pkey", "-in", keyFile, "-pubout").Output()
	if err != nil {
		t.Fatal(err)
	}
	pubFromCert, err := exec.Command("openssl", "x509", "-in", filepath.Join(dir, "leaf.pem"), "-noout", "-pubkey").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pubFromKey, pubFromCert) {
		t.Errorf("certificate key differs from the CSR's key")
	}

	// Exactly the extensions the CA decides; nothing from the CSR.
	var oids []string
	for _, e := range leaf.Extensions {
		oids = append(oids, e.Id.String())
	}
	slices.Sort(oids)
	want := []string{
		"1.3.6.1.5.5.7.1.1", // AIA
		"2.5.29.14",         // SKI
		"2.5.29.15",         // KU
		"2.5.29.17",         // SAN
		"2.5.29.19",         // BC
		"2.5.29.31",         // CRL DP
		"2.5.29.35",         // AKI
		"2.5.29.37",         // EKU
	}
	slices.Sort(want)
	if !slices.Equal(oids, want) {
		t.Errorf("extensions %v, want %v", oids, want)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Errorf("basicConstraints: CA=%v valid=%v", leaf.IsCA, leaf.BasicConstraintsValid)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %v, want digitalSignature only", leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(leaf.UnknownExtKeyUsage) > 0 {
		t.Errorf("EKU %v %v, want clientAuth only", leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage)
	}
	if got := leaf.Subject.CommonName; got != "payments-client" {
		t.Errorf("CN %q", got)
	}
	if !slices.Equal(leaf.Subject.Organization, []string{"Acme Corp"}) || len(leaf.Subject.OrganizationalUnit) > 0 {
		t.Errorf("subject %v: O must be the account's name, nothing else from the CSR", leaf.Subject)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "urn:pkid:account:"+accountID {
		t.Errorf("URI SANs %v", leaf.URIs)
	}
	if !slices.Equal(leaf.OCSPServer, []string{"http://pkid.test/ocsp"}) ||
		!slices.Equal(leaf.IssuingCertificateURL, []string{"http://pkid.test/ca/issuer.cer"}) ||
		!slices.Equal(leaf.CRLDistributionPoints, []string{"http://pkid.test/crl"}) {
		t.Errorf("AIA %v %v CDP %v", leaf.OCSPServer, leaf.IssuingCertificateURL, leaf.CRLDistributionPoints)
	}
	inter := n.app.Hierarchy.Intermediate().Cert
	if !bytes.Equal(leaf.AuthorityKeyId, inter.SubjectKeyId) {
		t.Errorf("AKI %x, intermediate SKI %x", leaf.AuthorityKeyId, inter.SubjectKeyId)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d > 91*24*time.Hour || d < 89*24*time.Hour {
		t.Errorf("validity %s, want the 90-day default", d)
	}
	if skew := time.Since(leaf.NotBefore); skew < time.Minute || skew > 10*time.Minute {
		t.Errorf("notBefore backdated by %s, want a few minutes", skew)
	}

	// zlint finds nothing wrong with the leaf or the hierarchy.
	for name, der := range map[string][]byte{
		"leaf": leaf.Raw, "intermediate": inter.Raw, "root": n.app.Hierarchy.Root().Raw,
		"ocsp signer": n.app.Hierarchy.OCSPSigner().Cert.Raw,
	} {
		if err := n.app.Linter.Certificate(der); err != nil {
			t.Errorf("zlint on %s: %v", name, err)
		}
	}

	// The row is there, issued, with the same DER.
	var state string
	var der []byte
	err = n.rawDB.Pool().QueryRow(t.Context(), "SELECT state, der FROM certificates WHERE serial = $1", serial).Scan(&state, &der)
	if err != nil || state != "issued" || !bytes.Equal(der, leaf.Raw) {
		t.Errorf("row: state %q err %v, DER equal %v", state, err, bytes.Equal(der, leaf.Raw))
	}
	if fp := obj["fingerprint_sha256"].(string); fp != hex.EncodeToString(sha256Sum(leaf.Raw)) {
		t.Errorf("fingerprint %s", fp)
	}

	// GET returns the same certificate; the list has it.
	g := n.do("GET", "/api/v1/certificates/"+serial, token, nil)
	if g.status != 200 || g.json(t)["certificate"] != obj["certificate"] {
		t.Errorf("GET: %d %s", g.status, g.body)
	}
	// A serial spelled with upper case and colons is the same serial.
	spelled := strings.ToUpper(serial[:2]) + ":" + serial[2:]
	if g := n.do("GET", "/api/v1/certificates/"+spelled, token, nil); g.status != 200 {
		t.Errorf("GET %s: %d", spelled, g.status)
	}

	// The issuance is audited before and after signing.
	var actions []string
	rows, err := n.rawDB.Pool().Query(t.Context(), "SELECT action FROM audit_events WHERE serial = $1 ORDER BY id", serial)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a string
		_ = rows.Scan(&a)
		actions = append(actions, a)
	}
	if !slices.Equal(actions, []string{"certificate.signing", "certificate.issued"}) {
		t.Errorf("audit actions %v", actions)
	}
}

// TestIssueDNSNamesAndValidity checks that validated DNS SANs are certified
// alongside the account URI and that validity_days is capped by policy.
func TestIssueDNSNamesAndValidity(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	_, token := n.account("Names Inc", pki.PlanEnterprise)
	csrPEM, _ := opensslCSR(t, "/CN=api.names.test", "-addext", "subjectAltName=DNS:api.names.test,DNS:b.names.test")
	r := n.do("POST", "/api/v1/certificates", token, map[string]any{"csr": csrPEM, "validity_days": 5000})
	if r.status != http.StatusCreated {
		t.Fatalf("issue: %d %s", r.status, r.body)
	}
	leaf := parseCertPEM(t, r.json(t)["certificate"].(string))
	if !slices.Equal(leaf.DNSNames, []string{"api.names.test", "b.names.test"}) {
		t.Errorf("DNS names %v", leaf.DNSNames)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d > 91*24*time.Hour {
		t.Errorf("validity %s exceeds the 90-day maximum", d)
	}

	r = n.do("POST", "/api/v1/certificates", token, map[string]any{"csr": csrPEM, "validity_days": 7})
	if r.status != http.StatusCreated {
		t.Fatalf("issue: %d %s", r.status, r.body)
	}
	leaf = parseCertPEM(t, r.json(t)["certificate"].(string))
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 7*24*time.Hour || d > 7*24*time.Hour+10*time.Minute {
		t.Errorf("validity %s, want 7 days plus the backdate", d)
	}
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
