package app_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/pkid/pkid/internal/pki"
)

// tlsClient returns an HTTPS client that trusts only pkid's root and, when
// certPEM is given, presents that client certificate.
func tlsClient(t *testing.T, n *node, certPEM string, keyFile string) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(n.app.Hierarchy.Root())
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	if certPEM != "" {
		keyPEM, err := os.ReadFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		// The chain goes with the certificate: the server asks for
		// certificates under pkid's root, and a client sends one only if
		// it can show the path there.
		chain := string(n.app.Hierarchy.ChainPEM())
		pair, err := tls.X509KeyPair([]byte(certPEM+chain), keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

// TestTLSListenerRenewal: over the TLS listener a certificate renews itself
// with no token; another certificate cannot renew it.
func TestTLSListenerRenewal(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	tl, err := n.app.NewTLSListener(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// httptest's StartTLS would add its own certificate, which crypto/tls
	// prefers to GetCertificate for clients that send no SNI (IP
	// addresses): serve the listener's configuration as pkid serve does.
	srv := httptest.NewUnstartedServer(n.app.Handler)
	cfg := tl.Config()
	srv.Listener = tls.NewListener(srv.Listener, cfg)
	srv.Start()
	t.Cleanup(srv.Close)
	base := "https://" + srv.Listener.Addr().String()

	_, tok := n.account("mTLS Co", pki.PlanEnterprise)
	csr1, key1 := opensslCSR(t, "/CN=one.test")
	csr2, key2 := opensslCSR(t, "/CN=two.test")
	c1 := n.issue(tok, csr1).json(t)
	c2 := n.issue(tok, csr2).json(t)
	serial1 := c1["serial"].(string)

	post := func(client *http.Client, path string) (int, string) {
		resp, err := client.Post(base+path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	renew1 := "/api/v1/certificates/" + serial1 + "/renew"

	// The server certificate verifies for 127.0.0.1 against the root alone.
	if code, body := post(tlsClient(t, n, "", ""), renew1); code != http.StatusUnauthorized {
		t.Errorf("no client certificate, no token: %d %s", code, body)
	}
	if code, body := post(tlsClient(t, n, c2["certificate"].(string), key2), renew1); code != http.StatusForbidden {
		t.Errorf("another certificate renewing this one: %d %s", code, body)
	}
	code, body := post(tlsClient(t, n, c1["certificate"].(string), key1), renew1)
	if code != http.StatusCreated || !strings.Contains(body, `"renewed_from":"`+serial1+`"`) {
		t.Fatalf("self-renewal over mTLS: %d %s", code, body)
	}
	// The other routes still need a token over TLS.
	resp, err := tlsClient(t, n, c1["certificate"].(string), key1).Get(base + "/api/v1/certificates")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("listing with only a client certificate: %d", resp.StatusCode)
	}
	// The listener's certificate is recorded like every other.
	var profile string
	cert, _ := cfg.GetCertificate(nil)
	sn := pki.SerialFromBig(cert.Leaf.SerialNumber)
	if err := n.rawDB.Pool().QueryRow(t.Context(), "SELECT profile FROM certificates WHERE serial = $1", string(sn)).Scan(&profile); err != nil || profile != "server" {
		t.Errorf("server certificate row: %q %v", profile, err)
	}
}
