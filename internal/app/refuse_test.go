package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkid/pkid/internal/pki"
)

// opensslCSRWith makes a CSR with openssl from a key made by genArgs
// ("genpkey" arguments) and extra "req" arguments.
func opensslCSRWith(t *testing.T, genArgs []string, reqArgs ...string) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pem")
	csr := filepath.Join(dir, "csr.pem")
	if out, err := exec.Command("openssl", append([]string{"genpkey", "-out", key}, genArgs...)...).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey %v: %v: %s", genArgs, err, out)
	}
	args := append([]string{"req", "-new", "-key", key, "-out", csr, "-subj", "/CN=client.test"}, reqArgs...)
	if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl req %v: %v: %s", reqArgs, err, out)
	}
	b, err := os.ReadFile(csr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goCSR makes a P-256 CSR with Go, for subjects openssl will not write.
func goCSR(t *testing.T, cn string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return goCSRWithKey(t, cn, k)
}

// smallKeyCSR makes a P-256 CSR whose private key is the scalar 1: its
// public key is the generator, and anyone can sign with it.
func smallKeyCSR(t *testing.T) string {
	t.Helper()
	scalar := make([]byte, 32)
	scalar[31] = 1
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar)
	if err != nil {
		t.Fatal(err)
	}
	return goCSRWithKey(t, "client.test", k)
}

func goCSRWithKey(t *testing.T, cn string, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func jsonBody(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRefusedRequests sends SECURITY.md §1.1's bad CSRs and requests and
// checks that each gets the contract's status as a problem document, and
// that no certificate row and no signature came of it.
func TestRefusedRequests(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	_, token := n.account("Refusals Ltd", pki.PlanEnterprise)

	p256 := []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}
	good, _ := opensslCSR(t, "/CN=good.test")
	block, _ := pem.Decode([]byte(good))
	flipped := append([]byte(nil), block.Bytes...)
	flipped[len(flipped)-3] ^= 0x01 // inside the signature
	certPEM := strings.ReplaceAll(good, "CERTIFICATE REQUEST", "CERTIFICATE")
	keyPEM := "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"

	type tc struct {
		name        string
		contentType string // "" = application/json
		body        string
		status      int
		kind        string // problem type suffix, "" = any
	}
	cases := []tc{
		{"empty body", "", "", 400, "malformed"},
		{"not JSON", "", "csr=abc", 400, "malformed"},
		{"JSON array", "", `["csr"]`, 400, "malformed"},
		{"unknown field", "", jsonBody(t, map[string]any{"csr": good, "is_ca": true}), 400, "malformed"},
		{"missing csr", "", `{"validity_days": 30}`, 400, "malformed"},
		{"two JSON objects", "", jsonBody(t, map[string]any{"csr": good}) + `{}`, 400, "malformed"},
		{"wrong content type", "text/plain", jsonBody(t, map[string]any{"csr": good}), 415, ""},
		{"negative validity", "", jsonBody(t, map[string]any{"csr": good, "validity_days": -1}), 400, "malformed"},
		{"body over 64 KiB", "", jsonBody(t, map[string]any{"csr": good + strings.Repeat(" ", 2<<20)}), 413, ""},
		{"random bytes", "", jsonBody(t, map[string]any{"csr": "\x01\x02garbage\xff"}), 400, "badCSR"},
		{"bad base64 in PEM", "", jsonBody(t, map[string]any{"csr": "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgcmVhbCBDU1IgYXQgYWxs!!\n-----END CERTIFICATE REQUEST-----\n"}), 400, "badCSR"},
		{"truncated DER", "", jsonBody(t, map[string]any{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: block.Bytes[:len(block.Bytes)/2]}))}), 400, "badCSR"},
		{"DER with trailing data", "", jsonBody(t, map[string]any{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: append(append([]byte(nil), block.Bytes...), 0, 0)}))}), 400, "badCSR"},
		{"junk before PEM", "", jsonBody(t, map[string]any{"csr": "junk\n" + good}), 400, "badCSR"},
		{"junk after PEM", "", jsonBody(t, map[string]any{"csr": good + "junk\n"}), 400, "badCSR"},
		{"two PEM blocks", "", jsonBody(t, map[string]any{"csr": good + good}), 400, "badCSR"},
		{"CERTIFICATE label", "", jsonBody(t, map[string]any{"csr": certPEM}), 400, "badCSR"},
		{"PRIVATE KEY label", "", jsonBody(t, map[string]any{"csr": keyPEM}), 400, "badCSR"},
		{"flipped signature", "", jsonBody(t, map[string]any{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: flipped}))}), 400, ""},
		{"SHA-1 signature", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"}, "-sha1")}), 400, "badSignatureAlgorithm"},
		{"RSA-1024", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"})}), 400, "badPublicKey"},
		{"RSA e=3", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-pkeyopt", "rsa_keygen_pubexp:3"})}), 400, "badPublicKey"},
		{"P-224", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-224"})}), 400, "badPublicKey"},
		{"Ed25519", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, []string{"-algorithm", "ED25519"})}), 400, "badPublicKey"},
		{"ECDSA private key 1", "", jsonBody(t, map[string]any{"csr": smallKeyCSR(t)}), 400, "badPublicKey"},
		{"CA:TRUE requested", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, p256, "-addext", "basicConstraints=critical,CA:TRUE")}), 400, "badCSR"},
		{"serverAuth requested", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, p256, "-addext", "extendedKeyUsage=serverAuth")}), 400, "badCSR"},
		{"IP SAN", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, p256, "-addext", "subjectAltName=IP:10.0.0.1")}), 400, "badCSR"},
		{"email SAN", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, p256, "-addext", "subjectAltName=email:a@b.test")}), 400, "badCSR"},
		{"upper-case DNS SAN", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, p256, "-addext", "subjectAltName=DNS:API.test")}), 400, "badCSR"},
		{"NUL in CN", "", jsonBody(t, map[string]any{"csr": goCSR(t, "client\x00.evil.test")}), 400, "badCSR"},
		{"65-character CN", "", jsonBody(t, map[string]any{"csr": goCSR(t, strings.Repeat("a", 65))}), 400, "badCSR"},
		{"no identifiers", "", jsonBody(t, map[string]any{"csr": goCSR(t, "")}), 400, "badCSR"},
		{"wildcard without grant", "", jsonBody(t, map[string]any{"csr": opensslCSRWith(t, p256, "-addext", "subjectAltName=DNS:*.wild.test")}), 403, "rejectedIdentifier"},
	}
	// Refusals whose detail must name the reason, not just the kind.
	wantDetail := map[string]string{"ECDSA private key 1": "private key is at most 2^16"}
	if len(cases) < 20 {
		t.Fatalf("only %d cases", len(cases))
	}
	rows0, sigs0 := n.counts()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", n.srv.URL+"/api/v1/certificates", strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			ct := c.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := n.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p struct {
				Type   string `json:"type"`
				Title  string `json:"title"`
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatalf("problem body: %v", err)
			}
			if resp.StatusCode != c.status || p.Status != c.status {
				t.Fatalf("status %d (problem %d), want %d: %+v", resp.StatusCode, p.Status, c.status, p)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/problem+json" {
				t.Errorf("Content-Type %q", got)
			}
			if p.Title == "" || p.Detail == "" || p.Type == "" {
				t.Errorf("incomplete problem %+v", p)
			}
			if c.kind != "" && p.Type != "urn:pkid:error:"+c.kind {
				t.Errorf("type %q, want kind %s", p.Type, c.kind)
			}
			if want := wantDetail[c.name]; !strings.Contains(p.Detail, want) {
				t.Errorf("detail %q does not say %q", p.Detail, want)
			}
			if strings.Contains(p.Detail, "MIGHAgEA") {
				t.Errorf("the detail echoes the submitted key material")
			}
		})
	}
	rows1, sigs1 := n.counts()
	if rows1 != rows0 || sigs1 != sigs0 {
		t.Errorf("refusals left %d rows and %d signatures", rows1-rows0, sigs1-sigs0)
	}
	// Every refusal that reached the CA is audited.
	var refused int
	if err := n.rawDB.Pool().QueryRow(t.Context(),
		"SELECT count(*) FROM audit_events WHERE action = 'certificate.issue.refused' AND outcome = 'failure'").Scan(&refused); err != nil {
		t.Fatal(err)
	}
	if refused < 20 {
		t.Errorf("%d refusals audited, want at least 20", refused)
	}
}
