package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/edge"
)

// fixture is everything around the edge under test, in this process: a CA
// (root, issuing intermediate, delegated OCSP responder) made the way pkid
// makes its hierarchy, an OCSP responder and a CRL server for it, an
// upstream, and client certificates. The certificates are ECDSA P-256, as
// pkictl makes by default.
type fixture struct {
	dir       string
	root      *x509.Certificate
	inter     *x509.Certificate
	interKey  *ecdsa.PrivateKey
	responder *x509.Certificate
	respKey   *ecdsa.PrivateKey
	clients   []tls.Certificate
	ocsp      *httptest.Server
	crl       *httptest.Server
	upstream  *httptest.Server
	ocspHits  atomic.Int64
	crlDER    []byte
}

func mkcert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	if parent == nil {
		parent, parentKey = tmpl, k
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, k, err
}

// newFixture makes the CA, n client certificates and the servers, and
// writes the edge's files (ca.pem: the root only, as pkid's /ca/root.pem;
// server.pem, server.key) into dir.
func newFixture(dir string, n int) (*fixture, error) {
	now := time.Now()
	f := &fixture{dir: dir}
	var rootKey *ecdsa.PrivateKey
	var err error
	ca := func(cn string) *x509.Certificate {
		return &x509.Certificate{
			Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
	}
	if f.root, rootKey, err = mkcert(ca("bench root"), nil, nil); err != nil {
		return nil, err
	}
	if f.inter, f.interKey, err = mkcert(ca("bench intermediate"), f.root, rootKey); err != nil {
		return nil, err
	}
	if f.responder, f.respKey, err = mkcert(&x509.Certificate{
		Subject: pkix.Name{CommonName: "bench OCSP"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
	}, f.inter, f.interKey); err != nil {
		return nil, err
	}
	server, serverKey, err := mkcert(&x509.Certificate{
		Subject: pkix.Name{CommonName: "edge"}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, f.inter, f.interKey)
	if err != nil {
		return nil, err
	}

	f.ocsp = httptest.NewServer(http.HandlerFunc(f.serveOCSP))
	f.crl = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"1"`)
		_, _ = w.Write(f.crlDER)
	}))
	f.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok "+r.Header.Get(edge.HeaderAccount))
	}))
	if f.crlDER, err = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour),
	}, f.inter, f.interKey); err != nil {
		return nil, err
	}

	for i := range n {
		u, _ := url.Parse(fmt.Sprintf("%s%08x-0000-4000-8000-000000000000", edge.AccountURIPrefix, i))
		leaf, key, err := mkcert(&x509.Certificate{
			Subject: pkix.Name{CommonName: fmt.Sprintf("client-%d", i), Organization: []string{"Bench"}},
			URIs:    []*url.URL{u}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 0, 30),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			CRLDistributionPoints: []string{f.crl.URL}, OCSPServer: []string{f.ocsp.URL},
		}, f.inter, f.interKey)
		if err != nil {
			return nil, err
		}
		f.clients = append(f.clients, tls.Certificate{Certificate: [][]byte{leaf.Raw, f.inter.Raw}, PrivateKey: key, Leaf: leaf})
	}

	write := func(name, typ string, ders ...[]byte) error {
		var b []byte
		for _, d := range ders {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
		}
		return os.WriteFile(filepath.Join(dir, name), b, 0o600)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(serverKey)
	if err != nil {
		return nil, err
	}
	return f, errors.Join(
		write("ca.pem", "CERTIFICATE", f.root.Raw),
		write("server.pem", "CERTIFICATE", server.Raw, f.inter.Raw),
		write("server.key", "PRIVATE KEY", kder),
	)
}

// serveOCSP answers "good" for every serial, signed now by the delegated
// responder, valid 8 hours, with RFC 5019 cache headers: what pkid's
// responder sends.
func (f *fixture) serveOCSP(w http.ResponseWriter, r *http.Request) {
	f.ocspHits.Add(1)
	body, _ := io.ReadAll(io.LimitReader(r.Body, 10000))
	req, err := ocsp.ParseRequest(body)
	if err != nil {
		_, _ = w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	now := time.Now().Truncate(time.Minute).Add(-time.Minute)
	der, err := ocsp.CreateResponse(f.inter, f.responder, ocsp.Response{
		Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(8 * time.Hour),
		Certificate: f.responder, IssuerHash: req.HashAlgorithm,
	}, f.respKey)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Header().Set("Cache-Control", fmt.Sprintf("max-age=%d, public, no-transform, must-revalidate", 8*3600))
	_, _ = w.Write(der)
}

func (f *fixture) close() {
	f.ocsp.Close()
	f.crl.Close()
	f.upstream.Close()
}

// args is the edge's command line, with revocation checking on or off.
func (f *fixture) args(listen string, revocation bool) []string {
	a := []string{
		"--listen", listen, "--metrics", "off", "--upstream", f.upstream.URL,
		"--ca", filepath.Join(f.dir, "ca.pem"), "--cert", filepath.Join(f.dir, "server.pem"), "--key", filepath.Join(f.dir, "server.key"),
	}
	if revocation {
		return append(a, "--ocsp", f.ocsp.URL, "--crl", f.crl.URL)
	}
	return append(a, "--revocation=off")
}

// edgeProc is an edge under test: a pkid-edge process, or an in-process
// edge when no binary is given.
type edgeProc struct {
	addr string
	pid  int // of the pkid-edge process; 0 for an in-process edge
	stop func() error
}

// cpu returns the CPU time the edge process has used so far, from the
// scheduler's nanosecond accounting of each of its threads
// (/proc/<pid>/task/*/schedstat, Linux); false for an in-process edge or
// where it cannot be read.
func (p *edgeProc) cpu() (time.Duration, bool) {
	if p.pid == 0 {
		return 0, false
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.pid))
	if err != nil {
		return 0, false
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", p.pid, t.Name()))
		if err != nil {
			continue // the thread ended meanwhile
		}
		var ns int64
		if _, err := fmt.Sscan(string(b), &ns); err != nil {
			return 0, false
		}
		total += time.Duration(ns)
	}
	return total, true
}

// startEdge starts an edge with revocation checking on or off. With bin, it
// runs that pkid-edge binary (its log to logFile); without, an edge.Edge in
// this process with the same configuration.
func (f *fixture) startEdge(bin, logFile string, revocation bool) (*edgeProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	if bin != "" {
		ln.Close()
		logOut, err := os.Create(logFile)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, f.args(addr, revocation)...)
		cmd.Stdout, cmd.Stderr = logOut, logOut
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		p := &edgeProc{addr: addr, pid: cmd.Process.Pid, stop: func() error {
			_ = cmd.Process.Signal(os.Interrupt)
			err := cmd.Wait()
			logOut.Close()
			return err
		}}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return p, nil
			}
			if time.Now().After(deadline) {
				_ = p.stop()
				return nil, fmt.Errorf("%s did not listen on %s; see %s", bin, addr, logFile)
			}
		}
	}
	up, _ := url.Parse(f.upstream.URL)
	cfg := edge.Config{
		Upstream: up, CAFile: filepath.Join(f.dir, "ca.pem"),
		CertFile: filepath.Join(f.dir, "server.pem"), KeyFile: filepath.Join(f.dir, "server.key"),
		OCSPURL: f.ocsp.URL, CRLURL: f.crl.URL, RevocationOff: !revocation,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	e, err := edge.New(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, ln) }()
	return &edgeProc{addr: addr, stop: func() error { cancel(); return <-done }}, nil
}

// clientConfig presents client i's certificate and trusts the bench root.
func (f *fixture) clientConfig(i int) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(f.root)
	c := &f.clients[i%len(f.clients)]
	return &tls.Config{
		RootCAs: roots, ServerName: "localhost",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil },
		// Every connection is a full handshake: no session tickets.
		SessionTicketsDisabled: true,
	}
}
