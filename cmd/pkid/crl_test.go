package main

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
)

// crlServer serves CRLs by path with validators, as pkid does, and counts
// its 304s.
type crlServer struct {
	mu          sync.Mutex
	bodies      map[string][]byte
	status      map[string]int
	notModified int
}

func (s *crlServer) set(path string, der []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodies[path], s.status[path] = der, 0
}

func (s *crlServer) fail(path string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[path] = status
}

func (s *crlServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	body, status := s.bodies[r.URL.Path], s.status[r.URL.Path]
	s.mu.Unlock()
	if status != 0 {
		http.Error(w, "down", status)
		return
	}
	if body == nil {
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(body)
	rec := httptest.NewRecorder()
	rec.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	rec.Header().Set("Content-Type", "application/pkix-crl")
	modified := time.Time{}
	if rl, err := x509.ParseRevocationList(body); err == nil {
		modified = rl.ThisUpdate
	}
	http.ServeContent(rec, r, "", modified, bytes.NewReader(body))
	if rec.Code == http.StatusNotModified {
		s.mu.Lock()
		s.notModified++
		s.mu.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func TestCRLFetch(t *testing.T) {
	l, err := lint.New()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cfg := issuance.HierarchyConfig{PublicURL: "http://127.0.0.1:8080"}
	rootKey, _ := issuance.GenerateKey(elliptic.P384())
	root, err := issuance.NewRoot(cfg, rootKey, now, l)
	if err != nil {
		t.Fatal(err)
	}
	interKey, _ := issuance.GenerateKey(elliptic.P256())
	inter, err := issuance.NewIntermediate(root, cfg, interKey, now, l)
	if err != nil {
		t.Fatal(err)
	}
	// twin has the intermediate's name and another key.
	twinKey, _ := issuance.GenerateKey(elliptic.P256())
	twin, err := issuance.NewIntermediate(root, cfg, twinKey, now, l)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(is *issuance.Issuer, number int64, this time.Time, ca bool) []byte {
		t.Helper()
		tmpl := issuance.CRLTemplate{Number: number, ThisUpdate: this, NextUpdate: this.Add(24 * time.Hour), IDPURL: "http://127.0.0.1:8080/crl"}
		if ca {
			tmpl.IDPURL, tmpl.CA, tmpl.NextUpdate = "", true, this.AddDate(0, 0, 365)
		}
		der, err := is.SignCRL(tmpl, l)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	recent := now.Add(-time.Minute)

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw})...)
	if err := os.WriteFile(caFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "crls.pem")
	srv := &crlServer{bodies: map[string][]byte{}, status: map[string]int{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	fetch := func(extra ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		args := append([]string{"--url", ts.URL + "/crl", "--ca", caFile, "--out", out, "--root-crl"}, extra...)
		err := cmdCRLFetch(context.Background(), args, &stdout, &stderr)
		return stdout.String() + stderr.String(), err
	}
	held := func() []byte {
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pemOf := func(ders ...[]byte) []byte {
		var b []byte
		for _, d := range ders {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: d})...)
		}
		return b
	}

	interCRL, rootCRL := sign(inter, 10, recent, false), sign(root, 11, recent, true)
	srv.set("/crl", interCRL)
	srv.set("/ca/root.crl", rootCRL)

	// The first fetch writes both CRLs, the intermediate's first.
	if msg, err := fetch(); err != nil || !strings.Contains(msg, "updated") {
		t.Fatalf("first fetch: %v\n%s", err, msg)
	}
	if !bytes.Equal(held(), pemOf(interCRL, rootCRL)) {
		t.Fatal("the output is not the two CRLs, PEM")
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("output mode %v, %v", st.Mode(), err)
	}

	// Nothing new: conditional GETs, 304s, the output untouched.
	before, _ := os.Stat(out)
	if msg, err := fetch(); err != nil || strings.TrimSpace(msg) != "unchanged" {
		t.Fatalf("second fetch: %v\n%s", err, msg)
	}
	if after, _ := os.Stat(out); srv.notModified != 2 || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("%d 304s; output rewritten: %v", srv.notModified, !after.ModTime().Equal(before.ModTime()))
	}

	// A newer CRL replaces the old one; the root's is kept from the file.
	newer := sign(inter, 12, recent, false)
	srv.set("/crl", newer)
	if msg, err := fetch(); err != nil || !strings.Contains(msg, "updated "+ts.URL+"/crl") || !strings.Contains(msg, "kept "+ts.URL+"/ca/root.crl") {
		t.Fatalf("third fetch: %v\n%s", err, msg)
	}
	good := held()
	if !bytes.Equal(good, pemOf(newer, rootCRL)) {
		t.Fatal("the output lacks the newer CRL")
	}

	past := now.Add(-48 * time.Hour)
	tests := []struct {
		name  string
		setup func()
		want  string
	}{
		{"number going down", func() { srv.set("/crl", sign(inter, 9, recent, false)) }, "went down"},
		{"number reused", func() { srv.set("/crl", sign(inter, 12, recent.Add(time.Second), false)) }, "two different CRLs"},
		{"bad signature", func() { srv.set("/crl", sign(twin, 20, recent, false)) }, "does not verify"},
		{"root CRL signed by another", func() { srv.set("/ca/root.crl", sign(inter, 21, recent, false)) }, "same issuer"},
		{"expired", func() { srv.set("/crl", sign(inter, 22, past, false)) }, "expired"},
		{"from the future", func() { srv.set("/crl", sign(inter, 23, now.Add(time.Hour), false)) }, "in the future"},
		{"server down", func() { srv.fail("/crl", http.StatusServiceUnavailable) }, "503"},
		{"not a CRL", func() { srv.set("/crl", []byte("<html>hello</html>")) }, "not a CRL"},
		{"PEM of something else", func() {
			srv.set("/crl", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Cert.Raw}))
		}, "not one X509 CRL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.set("/crl", newer)
			srv.set("/ca/root.crl", rootCRL)
			tc.setup()
			msg, err := fetch()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q\n%s", err, tc.want, msg)
			}
			if !bytes.Equal(held(), good) {
				t.Fatal("a failed fetch changed the output")
			}
		})
	}

	// A PEM answer is accepted as well as DER.
	newest := sign(inter, 30, recent, false)
	srv.set("/crl", pemOf(newest))
	srv.set("/ca/root.crl", rootCRL)
	if msg, err := fetch(); err != nil {
		t.Fatalf("PEM answer: %v\n%s", err, msg)
	}
	if !bytes.Equal(held(), pemOf(newest, rootCRL)) {
		t.Fatal("the output lacks the CRL served as PEM")
	}

	// Without --root-crl only the intermediate's CRL is written.
	var stdout, stderr bytes.Buffer
	if err := cmdCRLFetch(context.Background(), []string{"--url", ts.URL + "/crl", "--ca", caFile, "--out", out}, &stdout, &stderr); err != nil {
		t.Fatalf("without --root-crl: %v\n%s", err, stderr.String())
	}
	if !bytes.Equal(held(), pemOf(newest)) {
		t.Fatal("without --root-crl the output should hold the intermediate's CRL alone")
	}

	if err := cmdCRLFetch(context.Background(), []string{"--url", ts.URL + "/crl"}, &stdout, &stderr); !errors.Is(err, errUsage) {
		t.Fatalf("missing flags: %v", err)
	}
}

func TestSiblingURL(t *testing.T) {
	tests := []struct{ base, want string }{
		{"http://pkid:8080/crl", "http://pkid:8080/ca/root.crl"},
		{"http://h/pki/crl", "http://h/pki/ca/root.crl"},
		{"https://h/crl?x=1", "https://h/ca/root.crl"},
	}
	for _, tc := range tests {
		got, err := siblingURL(tc.base, "ca/root.crl")
		if err != nil || got != tc.want {
			t.Errorf("siblingURL(%q) = %q, %v; want %q", tc.base, got, err, tc.want)
		}
	}
	if _, err := siblingURL("/crl", "ca/root.crl"); err == nil {
		t.Error("a relative --url was accepted")
	}
}
