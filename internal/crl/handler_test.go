package crl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/crl"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
)

// served is a router serving a cache that holds one intermediate CRL and
// one root CRL, on a settable clock.
type served struct {
	router  http.Handler
	inter   *pki.CRL
	root    *pki.CRL
	now     time.Time
	cache   *crl.Cache
	interID string
}

func newServed(t *testing.T, revoked pki.Serial) *served {
	t.Helper()
	h := testHierarchy(t)
	this := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
	s := &served{now: this.Add(time.Minute), interID: h.inter.ID}
	var entries []pki.RevokedEntry
	if revoked != "" {
		entries = append(entries, pki.RevokedEntry{Serial: revoked, RevokedAt: this.Add(-time.Second), Reason: pki.ReasonKeyCompromise})
	}
	der, err := h.inter.SignCRL(issuance.CRLTemplate{Number: 10, ThisUpdate: this, NextUpdate: this.Add(24 * time.Hour),
		Entries: entries, IDPURL: crlURL}, h.linter)
	if err != nil {
		t.Fatal(err)
	}
	s.inter = &pki.CRL{IssuerID: h.inter.ID, Number: 10, DER: der, ThisUpdate: this, NextUpdate: this.Add(24 * time.Hour), Entries: len(entries)}
	rootDER, err := h.root.SignCRL(issuance.CRLTemplate{Number: 11, ThisUpdate: this, NextUpdate: this.AddDate(0, 0, 365), CA: true}, h.linter)
	if err != nil {
		t.Fatal(err)
	}
	s.root = &pki.CRL{IssuerID: h.root.ID, Number: 11, DER: rootDER, ThisUpdate: this, NextUpdate: this.AddDate(0, 0, 365)}
	s.cache = crl.NewCache(nil, func() []string { return nil }, crl.CacheOptions{})
	s.cache.Install(s.inter)
	s.cache.Install(s.root)
	r := chi.NewRouter()
	crl.NewHandler(s.cache, func() string { return h.root.ID }, func() string { return s.interID }, func() time.Time { return s.now }).Routes(r)
	s.router = r
	return s
}

func (s *served) do(method, path string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.router.ServeHTTP(w, req)
	return w
}

func TestHandler(t *testing.T) {
	t.Parallel()
	s := newServed(t, "")
	pemBody := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: s.inter.DER})
	lastModified := s.inter.ThisUpdate.UTC().Format(http.TimeFormat)

	der := s.do(http.MethodGet, "/crl", nil)
	etag := der.Header().Get("ETag")
	pemETag := s.do(http.MethodGet, "/crl.pem", nil).Header().Get("ETag")
	if !strings.HasPrefix(etag, `"`) || etag == pemETag {
		t.Fatalf("ETags %q (DER) and %q (PEM): want strong and distinct", etag, pemETag)
	}
	tests := []struct {
		name        string
		method      string
		path        string
		header      map[string]string
		status      int
		contentType string
		body        []byte
	}{
		{"DER", http.MethodGet, "/crl", nil, 200, "application/pkix-crl", s.inter.DER},
		{"PEM", http.MethodGet, "/crl.pem", nil, 200, "application/x-pem-file", pemBody},
		{"root", http.MethodGet, "/ca/root.crl", nil, 200, "application/pkix-crl", s.root.DER},
		{"HEAD", http.MethodHead, "/crl", nil, 200, "application/pkix-crl", nil},
		{"matching ETag", http.MethodGet, "/crl", map[string]string{"If-None-Match": etag}, 304, "", nil},
		{"ETag among others", http.MethodGet, "/crl", map[string]string{"If-None-Match": `"x", ` + etag}, 304, "", nil},
		{"weak form of the ETag", http.MethodGet, "/crl", map[string]string{"If-None-Match": "W/" + etag}, 304, "", nil},
		{"other ETag", http.MethodGet, "/crl", map[string]string{"If-None-Match": `"x"`}, 200, "application/pkix-crl", s.inter.DER},
		{"DER ETag on PEM", http.MethodGet, "/crl.pem", map[string]string{"If-None-Match": etag}, 200, "application/x-pem-file", pemBody},
		{"PEM ETag", http.MethodGet, "/crl.pem", map[string]string{"If-None-Match": pemETag}, 304, "", nil},
		{"not modified since thisUpdate", http.MethodGet, "/crl", map[string]string{"If-Modified-Since": lastModified}, 304, "", nil},
		{"modified since", http.MethodGet, "/crl", map[string]string{
			"If-Modified-Since": s.inter.ThisUpdate.Add(-time.Second).UTC().Format(http.TimeFormat)}, 200, "application/pkix-crl", s.inter.DER},
		{"If-None-Match wins over If-Modified-Since", http.MethodGet, "/crl", map[string]string{
			"If-None-Match": `"x"`, "If-Modified-Since": lastModified}, 200, "application/pkix-crl", s.inter.DER},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := s.do(tc.method, tc.path, tc.header)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if got := w.Header().Get("Content-Type"); tc.contentType != "" && got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			if got := w.Header().Get("Cache-Control"); got != "public, max-age=60" {
				t.Errorf("Cache-Control %q", got)
			}
			if w.Header().Get("ETag") == "" {
				t.Error("no ETag")
			}
			if got := w.Header().Get("Last-Modified"); w.Code == 200 && got != lastModified {
				t.Errorf("Last-Modified %q, want %q", got, lastModified)
			}
			if !bytes.Equal(w.Body.Bytes(), tc.body) {
				t.Errorf("body of %d bytes, want %d", w.Body.Len(), len(tc.body))
			}
		})
	}
	if w := s.do(http.MethodPost, "/crl", nil); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}

// TestHandlerSameSecond: a CRL that replaced one with the same thisUpdate
// second answers If-Modified-Since with itself; its ETag still gets 304.
func TestHandlerSameSecond(t *testing.T) {
	t.Parallel()
	s := newServed(t, "")
	h := testHierarchy(t)
	der, err := h.inter.SignCRL(issuance.CRLTemplate{Number: 12, ThisUpdate: s.inter.ThisUpdate, NextUpdate: s.inter.NextUpdate,
		IDPURL: crlURL}, h.linter)
	if err != nil {
		t.Fatal(err)
	}
	s.cache.Install(&pki.CRL{IssuerID: h.inter.ID, Number: 12, DER: der, ThisUpdate: s.inter.ThisUpdate, NextUpdate: s.inter.NextUpdate})
	ims := map[string]string{"If-Modified-Since": s.inter.ThisUpdate.UTC().Format(http.TimeFormat)}
	w := s.do(http.MethodGet, "/crl", ims)
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), der) {
		t.Fatalf("If-Modified-Since: %d, want the new CRL", w.Code)
	}
	if w := s.do(http.MethodGet, "/crl", map[string]string{"If-None-Match": w.Header().Get("ETag")}); w.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d, want 304", w.Code)
	}
}

// TestHandlerFreshness: max-age never reaches past nextUpdate; an expired
// CRL, or none, is a 503 problem, never a CRL.
func TestHandlerFreshness(t *testing.T) {
	t.Parallel()
	s := newServed(t, "")
	s.now = s.inter.NextUpdate.Add(-30*time.Second - 500*time.Millisecond)
	if got := s.do(http.MethodGet, "/crl", nil).Header().Get("Cache-Control"); got != "public, max-age=30" {
		t.Fatalf("30.5 s before nextUpdate: Cache-Control %q", got)
	}
	problem := func(path string) {
		t.Helper()
		w := s.do(http.MethodGet, path, nil)
		var p map[string]any
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Content-Type") != "application/problem+json" ||
			json.Unmarshal(w.Body.Bytes(), &p) != nil || p["status"] != float64(503) {
			t.Fatalf("%s: %d %s %s", path, w.Code, w.Header().Get("Content-Type"), w.Body)
		}
		if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Retry-After") == "" {
			t.Fatalf("%s: headers %v", path, w.Header())
		}
	}
	s.now = s.inter.NextUpdate
	problem("/crl")
	problem("/crl.pem")
	if w := s.do(http.MethodGet, "/ca/root.crl", nil); w.Code != 200 {
		t.Fatalf("root CRL, still valid: %d", w.Code)
	}
	s.interID = "an issuer without a CRL"
	s.now = s.inter.ThisUpdate
	problem("/crl")
}

// TestServedCRLRevokes: the CRL the job signs for a revoked certificate, as
// served, with the root's beside it for the whole chain as nginx's ssl_crl
// takes them, makes openssl refuse that certificate and accept another.
func TestServedCRLRevokes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	revoked, good := e.h.leaf(t), e.h.leaf(t)
	now := time.Now()
	e.revoke(t, pki.SerialFromBig(revoked.SerialNumber), revoked.NotAfter, now.Add(-time.Second), pki.ReasonKeyCompromise)
	e.clock.Set(now)
	cache := crl.NewCache(e.db, func() []string { return []string{e.h.inter.ID, e.h.root.ID} }, crl.CacheOptions{})
	if _, err := e.job(t, nil, cache, crl.JobConfig{}).Generate(ctx); err != nil {
		t.Fatal(err)
	}
	// The root's CRL from a job of its own, as serve may run one.
	rootJob, err := crl.NewJob(e.db, func() *issuance.Issuer { return e.h.root }, cache, e.h.linter,
		crl.JobConfig{CA: true, Validity: 365 * 24 * time.Hour, Interval: 90 * 24 * time.Hour, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rootCRL, err := rootJob.Generate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.h.linter.CACRL(rootCRL.DER); err != nil || rootCRL.Entries != 0 {
		t.Fatalf("root CRL: %d entries, lint %v", rootCRL.Entries, err)
	}

	r := chi.NewRouter()
	crl.NewHandler(cache, func() string { return e.h.root.ID }, func() string { return e.h.inter.ID }, nil).Routes(r)
	srv := httptest.NewServer(r)
	defer srv.Close()
	fetch := func(path string) []byte {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		return b
	}
	dir := t.TempDir()
	both := append(fetch("/crl.pem"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: fetch("/ca/root.crl")})...)
	crlFile := filepath.Join(dir, "crls.pem")
	if err := os.WriteFile(crlFile, both, 0o600); err != nil {
		t.Fatal(err)
	}
	root := writePEM(t, dir, "root.pem", "CERTIFICATE", e.h.root.Cert.Raw)
	inter := writePEM(t, dir, "inter.pem", "CERTIFICATE", e.h.inter.Cert.Raw)
	for _, flag := range []string{"-crl_check", "-crl_check_all"} {
		out, err := openssl(t, "verify", flag, "-CRLfile", crlFile, "-CAfile", root, "-untrusted", inter,
			writePEM(t, dir, "revoked.pem", "CERTIFICATE", revoked.Raw))
		if err == nil || !strings.Contains(out, "certificate revoked") {
			t.Fatalf("%s, revoked: %v\n%s", flag, err, out)
		}
		out, err = openssl(t, "verify", flag, "-CRLfile", crlFile, "-CAfile", root, "-untrusted", inter,
			writePEM(t, dir, "good.pem", "CERTIFICATE", good.Raw))
		if err != nil || !strings.HasSuffix(strings.TrimSpace(out), ": OK") {
			t.Fatalf("%s, good: %v\n%s", flag, err, out)
		}
	}
}
