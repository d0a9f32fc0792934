package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/testbin"
)

// binaries are the commands under test.
type binaries struct{ pkid, pkictl, edge string }

// buildBinaries builds pkid, pkictl and pkid-edge with go build, like an
// operator would, once per test binary (internal/testbin).
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	p, err := testbin.Build("pkid", "pkictl", "pkid-edge")
	if err != nil {
		t.Fatal(err)
	}
	return binaries{pkid: p[0], pkictl: p[1], edge: p[2]}
}

func TestMain(m *testing.M) { testbin.Main(m) }

// result is a finished command.
type result struct {
	code           int
	stdout, stderr string
}

// run runs a command to completion with env added to the test's
// environment, stdin as its input.
func run(t *testing.T, env []string, stdin, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return result{0, stdout.String(), stderr.String()}
	case errors.As(err, &ee):
		return result{ee.ExitCode(), stdout.String(), stderr.String()}
	default:
		t.Fatalf("%s %v: %v", filepath.Base(bin), args, err)
		return result{}
	}
}

// mustRun is run that fails the test unless the command exits 0.
func mustRun(t *testing.T, env []string, stdin, bin string, args ...string) string {
	t.Helper()
	r := run(t, env, stdin, bin, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", filepath.Base(bin), strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// start starts a long-running command, stopped with SIGTERM when the test
// ends; its output is shown if the test failed.
func start(t *testing.T, env []string, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logs := &testbin.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", filepath.Base(bin), logs.String())
		}
	})
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls check every 100 ms until it returns nil or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api sends a JSON request with a bearer token and decodes the JSON answer,
// which must have status want.
func api(t *testing.T, method, url, token, body string, want int) map[string]any {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, url, resp.StatusCode, want, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: %v: %s", method, url, err, b)
	}
	return m
}

// serverCA is the test's own CA for pkid-edge's server certificate: the edge
// is a server like any other, its certificate is not pkid's business.
type serverCA struct {
	pool     *x509.CertPool
	certFile string
	keyFile  string
}

// newServerCA makes a CA and a server certificate for 127.0.0.1 signed by it,
// written to dir as edge.pem (certificate) and edge.key.
func newServerCA(t *testing.T, dir string) serverCA {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e edge server CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	s := serverCA{pool: x509.NewCertPool(), certFile: filepath.Join(dir, "edge.pem"), keyFile: filepath.Join(dir, "edge.key")}
	s.pool.AddCert(ca)
	writePEM(t, s.certFile, "CERTIFICATE", der)
	writePEM(t, s.keyFile, "PRIVATE KEY", keyDER)
	return s
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// clientCert loads a pkictl directory as a TLS client certificate: cert.pem
// and key.pem, with chain.pem's intermediate sent along.
func clientCert(t *testing.T, dir string) *tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := os.ReadFile(filepath.Join(dir, "chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(chain); block != nil {
		c.Certificate = append(c.Certificate, block.Bytes)
	}
	return &c
}

// copyDir copies the files of a pkictl directory.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"key.pem", "cert.pem", "chain.pem", "root.pem", "pkictl.json"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
