package ocsp_test

import (
	"context"
	"encoding/base64"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/ocsp"
	"github.com/pkid/pkid/internal/pki"
)

// run runs a command and returns its combined output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	return string(out), err
}

// TestOpenSSL asks the real openssl about a real certificate whose row and
// first response are in a real database, the way an operator checks a
// responder: by POST with SHA-1 and SHA-256 CertIDs, by GET (curl, then
// openssl reading the answer), before and after a revocation.
func TestOpenSSL(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := newDatabase(t, h)
	leaf := h.leaf(t)
	serial := pki.SerialFromBig(leaf.SerialNumber)
	db.certificate(t, h, serial, leaf.NotAfter, h.response(t, serial, status{}))
	s := newServer(t, h, db, ocsp.CacheOptions{})

	dir := t.TempDir()
	issuer := writePEM(t, dir, "inter.pem", h.inter.Cert.Raw)
	cert := writePEM(t, dir, "leaf.pem", leaf.Raw)
	cafile := writePEM(t, dir, "chain.pem", h.inter.Cert.Raw, h.root.Cert.Raw)
	// args returns openssl ocsp's arguments; a digest option must come
	// before -cert.
	args := func(digest []string, rest ...string) []string {
		a := append([]string{"ocsp", "-issuer", issuer}, digest...)
		return append(append(a, "-cert", cert, "-CAfile", cafile, "-resp_text"), rest...)
	}
	sha256 := []string{"-sha256"}

	check := func(t *testing.T, out string, err error, want ...string) {
		t.Helper()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
		for _, w := range append([]string{"Response verify OK"}, want...) {
			if !strings.Contains(out, w) {
				t.Fatalf("openssl output lacks %q:\n%s", w, out)
			}
		}
	}
	viaGET := func(t *testing.T, digest ...string) (string, error) {
		t.Helper()
		reqFile, respFile := filepath.Join(t.TempDir(), "req.der"), filepath.Join(t.TempDir(), "resp.der")
		if out, err := run(t, "openssl", append(append([]string{"ocsp", "-issuer", issuer}, digest...), "-cert", cert, "-no_nonce", "-reqout", reqFile)...); err != nil {
			t.Fatalf("openssl -reqout: %v\n%s", err, out)
		}
		der, err := os.ReadFile(reqFile)
		if err != nil {
			t.Fatal(err)
		}
		u := s.URL + "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(der))
		if out, err := run(t, "curl", "-sS", "--fail", "-o", respFile, u); err != nil {
			t.Fatalf("curl %s: %v\n%s", u, err, out)
		}
		return run(t, "openssl", args(digest, "-respin", respFile)...)
	}
	url := s.URL + "/ocsp"

	t.Run("good, POST", func(t *testing.T) {
		out, err := run(t, "openssl", args(nil, "-url", url)...)
		check(t, out, err, cert+": good", "Hash Algorithm: sha1", "WARNING: no nonce in response")
	})
	t.Run("good, POST, SHA-256 CertID", func(t *testing.T) {
		out, err := run(t, "openssl", args(sha256, "-url", url)...)
		check(t, out, err, cert+": good", "Hash Algorithm: sha256")
	})
	t.Run("good, GET", func(t *testing.T) {
		out, err := viaGET(t)
		check(t, out, err, cert+": good")
	})
	t.Run("good, GET, SHA-256 CertID", func(t *testing.T) {
		out, err := viaGET(t, sha256...)
		check(t, out, err, cert+": good", "Hash Algorithm: sha256")
	})

	// Revoke as the CA does: the certificate row and the response change
	// in the database, and the CA installs the response in its node's
	// cache.
	revokedAt := time.Now().Add(-time.Minute).Truncate(time.Second)
	db.revoke(t, serial, revokedAt, pki.ReasonKeyCompromise)
	revoked := h.response(t, serial, status{revokedAt: revokedAt, reason: pki.ReasonKeyCompromise})
	if err := db.PutOCSPResponse(context.Background(), revoked); err != nil {
		t.Fatal(err)
	}
	s.cache.Install(revoked)

	t.Run("revoked, POST", func(t *testing.T) {
		out, err := run(t, "openssl", args(nil, "-url", url)...)
		check(t, out, err, cert+": revoked", "Reason: keyCompromise", "Revocation Time: "+revokedAt.UTC().Format("Jan _2 15:04:05 2006 GMT"))
	})
	t.Run("revoked, POST, SHA-256 CertID", func(t *testing.T) {
		out, err := run(t, "openssl", args(sha256, "-url", url)...)
		check(t, out, err, cert+": revoked", "Reason: keyCompromise")
	})
	t.Run("revoked, GET", func(t *testing.T) {
		out, err := viaGET(t)
		check(t, out, err, cert+": revoked", "Reason: keyCompromise")
	})
}
