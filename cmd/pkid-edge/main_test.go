package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/testbin"
)

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--help"}, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"pkid-edge --listen ADDR --upstream URL --ca FILE", "Example", "--ocsp http://127.0.0.1:8080/ocsp", "PKID_EDGE_", "-grace"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not say %q", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	full := []string{"--upstream", "http://127.0.0.1:9", "--ca", "ca.pem", "--cert", "c.pem", "--key", "k.pem",
		"--ocsp", "http://127.0.0.1:8080/ocsp", "--crl", "http://127.0.0.1:8080/crl"}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no upstream", []string{"--ca", "x"}, nil, "--upstream is required"},
		{"unknown flag", append([]string{"--nope"}, full...), nil, "flag provided but not defined"},
		{"stray argument", append(full, "extra"), nil, "unexpected argument"},
		{"revocation neither on nor off", append(full, "--revocation", "maybe"), nil, "--revocation must be on or off"},
		{"no OCSP URL", full[:len(full)-4], nil, "OCSP responder"},
		{"bad duration in the environment", full, map[string]string{"PKID_EDGE_GRACE": "soon"}, "PKID_EDGE_GRACE"},
		{"missing files", full, nil, "reading the CA bundle"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			if code := run(tc.args, &out); code != 2 {
				t.Fatalf("exit %d, want 2; output:\n%s", code, out.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Fatalf("output does not say %q:\n%s", tc.want, out.String())
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("PKID_EDGE_UPSTREAM", "http://127.0.0.1:9000")
	t.Setenv("PKID_EDGE_REVOCATION", "off")
	t.Setenv("PKID_EDGE_OCSP_CACHE_MAX", "30s")
	o, err := parse([]string{"--ca", "a", "--cert", "b", "--key", "c", "--ocsp-cache-max", "10s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Upstream.String() != "http://127.0.0.1:9000" || !o.cfg.RevocationOff || o.cfg.OCSPCacheMax != 10*time.Second {
		t.Fatalf("%+v", o.cfg)
	}
}

// testCert makes a certificate signed by parent (self-signed when nil).
func testCert(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber, _ = rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, k
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, k
}

func writeFiles(t *testing.T, dir string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	// Write beside and rename, as an operator's tooling would.
	for name, block := range map[string]*pem.Block{
		"server.pem": {Type: "CERTIFICATE", Bytes: cert.Raw},
		"server.key": {Type: "PRIVATE KEY", Bytes: kder},
	} {
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestBinarySignals builds pkid-edge and checks, on the real process, that
// SIGHUP reloads the server certificate and SIGTERM shuts down cleanly. The
// revocation paths are tested in internal/edge; this one runs with
// --revocation=off to stay small.
func TestBinarySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pkid-edge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	root, rootKey := testCert(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, nil)
	server := func() (*x509.Certificate, *ecdsa.PrivateKey) {
		return testCert(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "edge"}, DNSNames: []string{"localhost"},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, root, rootKey)
	}
	acct, _ := url.Parse("urn:pkid:account:0f0e0d0c-0000-4000-8000-000000000001")
	leaf, leafKey := testCert(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "client"}, URIs: []*url.URL{acct},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, root, rootKey)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	first, firstKey := server()
	writeFiles(t, dir, first, firstKey)

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Client-Account"))
	}))
	defer upstream.Close()

	listen, metrics := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "--listen", listen, "--metrics", metrics, "--upstream", upstream.URL,
		"--ca", filepath.Join(dir, "ca.pem"), "--cert", filepath.Join(dir, "server.pem"), "--key", filepath.Join(dir, "server.key"),
		"--revocation=off")
	var out testbin.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	roots := x509.NewCertPool()
	roots.AddCert(root)
	clientCert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: leafKey}
	serverSerial := func() (string, error) {
		conn, err := tls.Dial("tcp", listen, &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{clientCert}})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; output:\n%s", what, out.String())
			}
		}
	}
	waitFor("the first certificate", func() bool { s, err := serverSerial(); return err == nil && s == first.SerialNumber.String() })

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{clientCert}}}}
	resp, err := hc.Get("https://" + listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "0f0e0d0c-0000-4000-8000-000000000001" {
		t.Fatalf("upstream saw account %q", body)
	}

	second, secondKey := server()
	writeFiles(t, dir, second, secondKey)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the reloaded certificate", func() bool { s, err := serverSerial(); return err == nil && s == second.SerialNumber.String() })

	mresp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{`pkid_edge_reloads_total{result="ok"} 1`, `pkid_edge_handshakes_total{result="ok"}`, `pkid_edge_requests_total{code="200"} 1`} {
		if !strings.Contains(string(mbody), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v; output:\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit 10 s after SIGTERM; output:\n%s", out.String())
	}
	for _, want := range []string{`"msg":"request"`, `"account":"0f0e0d0c-0000-4000-8000-000000000001"`, "reloaded", "revocation checking is OFF", "pkid-edge: stopped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, out.String())
		}
	}
}
