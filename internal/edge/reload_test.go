package edge

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// serverSerial returns the serial of the certificate the edge presents.
func (h *harness) serverSerial(t *testing.T, c *client) string {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(h.root.cert)
	conn, err := tls.Dial("tcp", h.addr, &tls.Config{
		RootCAs: roots, ServerName: "localhost",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c.tls, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// TestReload: Reload swaps --ca, --cert and --key for new handshakes; a bad
// file keeps everything as it was.
func TestReload(t *testing.T) {
	h := newHarness(t)
	c := h.leaf(account)
	h.mustGet(t, c)
	old := h.serverSerial(t, c)

	// A renewed server certificate.
	k := newKey(t)
	renewed := sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "edge"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   h.clock.Now().Add(-time.Hour), NotAfter: h.clock.Now().AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, h.root, &k.PublicKey, nil)
	writePEM(t, h.path("server.pem"), "CERTIFICATE", renewed.Raw)
	writeKey(t, h.path("server.key"), k)
	if err := h.edge.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := h.serverSerial(t, c); got != renewed.SerialNumber.Text(16) || got == old {
		t.Fatalf("the edge presents %s after the reload, want %s", got, renewed.SerialNumber.Text(16))
	}
	h.mustGet(t, c)

	bad := []struct {
		name  string
		spoil func(t *testing.T)
		err   error
	}{
		{"key of another certificate", func(t *testing.T) { writeKey(t, h.path("server.key"), newKey(t)) }, nil},
		{"missing CA bundle", func(t *testing.T) { _ = os.Remove(h.path("ca.pem")) }, fs.ErrNotExist},
		{"CA bundle without a root", func(t *testing.T) {
			writePEM(t, h.path("ca.pem"), "CERTIFICATE", h.inter.cert.Raw)
		}, nil},
		{"CA bundle with a key in it", func(t *testing.T) {
			writeKey(t, h.path("ca.pem"), newKey(t))
		}, nil},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			writePEM(t, h.path("ca.pem"), "CERTIFICATE", h.root.cert.Raw)
			writePEM(t, h.path("server.pem"), "CERTIFICATE", renewed.Raw)
			writeKey(t, h.path("server.key"), k)
			tc.spoil(t)
			before := testutil.ToFloat64(h.edge.m.reloads.WithLabelValues("error"))
			err := h.edge.Reload()
			if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) {
				t.Fatalf("Reload: %v", err)
			}
			if testutil.ToFloat64(h.edge.m.reloads.WithLabelValues("error")) != before+1 {
				t.Error("the failed reload was not counted")
			}
			if got := h.serverSerial(t, c); got != renewed.SerialNumber.Text(16) {
				t.Fatalf("after a failed reload the edge presents %s", got)
			}
			h.mustGet(t, c)
		})
	}

	// Another CA: our clients become untrusted at once.
	other := newRoot(t, "Other Root", h.clock.Now())
	writePEM(t, h.path("ca.pem"), "CERTIFICATE", other.cert.Raw)
	writePEM(t, h.path("server.pem"), "CERTIFICATE", renewed.Raw)
	writeKey(t, h.path("server.key"), k)
	if err := h.edge.Reload(); err != nil {
		t.Fatal(err)
	}
	h.mustRefuse(t, c)
}

// TestRevocationOff: the benchmark's baseline accepts a revoked certificate
// and never asks the responder.
func TestRevocationOff(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RevocationOff = true; c.OCSPURL, c.CRLURL = "", "" })
	c := h.leaf(account)
	h.ocsp.set(func(f *fakeOCSP) { f.revoked[c.leaf.SerialNumber.Text(16)] = h.clock.Now() })
	h.mustGet(t, c)
	if n := h.ocsp.requests.Load(); n != 0 {
		t.Fatalf("%d OCSP requests with revocation off", n)
	}
	h.mustRefuse(t, newRoot(t, "Other Root", h.clock.Now()).leaf(t, account, h.clock.Now(), ""))
}

func TestConfigValidate(t *testing.T) {
	h := newHarness(t)
	base := h.edge.cfg
	cases := []struct {
		name string
		edit func(c *Config)
	}{
		{"no upstream", func(c *Config) { c.Upstream = nil }},
		{"upstream without scheme", func(c *Config) { u := *c.Upstream; u.Scheme = ""; c.Upstream = &u }},
		{"no CA", func(c *Config) { c.CAFile = "" }},
		{"no key", func(c *Config) { c.KeyFile = "" }},
		{"no OCSP URL", func(c *Config) { c.OCSPURL = "" }},
		{"CRL URL not http", func(c *Config) { c.CRLURL = "file:///etc/crl" }},
		{"negative grace", func(c *Config) { c.Grace = -time.Second }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Registry = nil
			tc.edit(&c)
			if _, err := New(c); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}
