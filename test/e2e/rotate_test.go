package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/testdb"
)

// TestRotationAtTheEdge is issue #6's rollover acceptance with the real
// binaries: after `pkid ca rotate` (run while pkid serve runs, which takes
// the new intermediate in without a restart), pkid-edge admits certificates
// of both intermediates, and refuses a revoked certificate of the
// superseded one, both when OCSP answers and when only the CRLs can (the
// edge then follows the new intermediate's own CRL, /crl/2).
func TestRotationAtTheEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pkid, pkictl and pkid-edge")
	}
	bins := buildBinaries(t)
	work := t.TempDir()
	pkidEnv := []string{"DATABASE_URL=" + testdb.Missing(t), "PKID_KEY_PASSPHRASE=e2e passphrase", "PKID_LOG_FORMAT=text"}
	mustRun(t, pkidEnv, "", bins.pkid, "migrate")
	rootFP := regexp.MustCompile(`[0-9a-f]{64}`).FindString(mustRun(t, pkidEnv, "", bins.pkid, "init"))
	mustRun(t, pkidEnv, "correct horse battery staple\n", bins.pkid, "admin", "create-user", "--username", "ops")
	adminToken := strings.TrimSpace(mustRun(t, pkidEnv, "", bins.pkid, "admin", "token", "--username", "ops"))
	httpAddr, tlsAddr := freeAddr(t), freeAddr(t)
	pkidURL, pkidTLS := "http://"+httpAddr, "https://"+tlsAddr
	start(t, append(pkidEnv, "PKID_HTTP_ADDR="+httpAddr, "PKID_TLS_ADDR="+tlsAddr,
		"PKID_TLS_HOSTNAMES=127.0.0.1,localhost", "PKID_PUBLIC_URL="+pkidURL), bins.pkid, "serve")
	waitFor(t, "pkid ready", 30*time.Second, func() error { return getStatus(pkidURL+"/readyz", 200) })

	acct := api(t, "POST", pkidURL+"/admin/api/accounts", adminToken, `{"name":"Rollover Inc","plan":"enterprise"}`, 201)
	tok := api(t, "POST", pkidURL+"/admin/api/accounts/"+acct["id"].(string)+"/tokens", adminToken, `{"name":"e2e","ttl_hours":1}`, 201)
	ctlEnv := []string{"PKICTL_TOKEN=" + tok["token"].(string)}
	enroll := func(name string) string {
		dir := filepath.Join(work, name)
		mustRun(t, ctlEnv, "", bins.pkictl, "enroll", "--server", pkidURL, "--tls-server", pkidTLS,
			"--cn", name+".test", "--root-fingerprint", rootFP, "--out", dir)
		return dir
	}
	oldDir, keepDir, renewDir := enroll("old"), enroll("keep"), enroll("renewed")

	// The operator keeps the root key offline: out of the database, into
	// a file; `pkid ca rotate` then needs the file.
	rootKey := filepath.Join(work, "root-key.pem")
	mustRun(t, pkidEnv, "", bins.pkid, "ca", "export-root-key", "--out", rootKey)
	if r := run(t, pkidEnv, "", bins.pkid, "ca", "rotate"); r.code != 1 || !strings.Contains(r.stderr, "root key is offline") {
		t.Fatalf("pkid ca rotate without the root key: exit %d, want 1 and a word about the offline root key\n%s", r.code, r.stderr)
	}
	chainBefore := get(t, pkidURL+"/ca/chain.pem")
	out := mustRun(t, pkidEnv, "", bins.pkid, "ca", "rotate", "--root-key", rootKey)
	if !strings.Contains(out, "generation 2") {
		t.Fatalf("pkid ca rotate printed:\n%s", out)
	}
	waitFor(t, "pkid serve issuing from the new intermediate", 20*time.Second, func() error {
		if bytes.Equal(get(t, pkidURL+"/ca/chain.pem"), chainBefore) {
			return errors.New("/ca/chain.pem unchanged")
		}
		return nil
	})
	freshDir := enroll("fresh")
	old, fresh := clientCert(t, oldDir), clientCert(t, freshDir)
	if !strings.HasSuffix(fresh.Leaf.Issuer.CommonName, " G2") || strings.HasSuffix(old.Leaf.Issuer.CommonName, " G2") {
		t.Fatalf("issuers: before the rotation %q, after %q", old.Leaf.Issuer.CommonName, fresh.Leaf.Issuer.CommonName)
	}
	// A certificate of the superseded intermediate renews itself over mTLS
	// (pkictl's usual way, no token): the renewal comes from the new one.
	mustRun(t, nil, "", bins.pkictl, "renew", "--dir", renewDir, "--force")
	if c := clientCert(t, renewDir); !strings.HasSuffix(c.Leaf.Issuer.CommonName, " G2") {
		t.Errorf("the mTLS renewal of an old certificate comes from %q, want the G2 intermediate", c.Leaf.Issuer.CommonName)
	}

	// Edge A asks pkid's responder; edge B's responder is unreachable, so
	// the CRLs decide there. Both trust the root alone: clients send their
	// intermediate (pkictl's chain.pem).
	dead := "http://" + freeAddr(t) + "/ocsp"
	rootFile := filepath.Join(oldDir, "root.pem")
	edgeA := startEdgeWith(t, bins, mkdir(t, work, "edge-a"), rootFile, "--ocsp", pkidURL+"/ocsp", "--crl", pkidURL+"/crl")
	edgeB := startEdgeWith(t, bins, mkdir(t, work, "edge-b"), rootFile, "--ocsp", dead, "--crl", pkidURL+"/crl",
		"--crl-refresh", "1s", "--ocsp-retry", "1h")
	for name, e := range map[string]edgeClient{"A (OCSP)": edgeA, "B (CRL)": edgeB} {
		for label, c := range map[string]string{"old": oldDir, "keep": keepDir, "fresh": freshDir, "renewed": renewDir} {
			cert := clientCert(t, c)
			// Edge B fetches /crl/2 when it meets the first certificate
			// that names it, and refuses until it has it (fail closed).
			waitFor(t, "edge "+name+" admitting "+label, 10*time.Second, func() error {
				_, err := e.get(cert)
				return err
			})
		}
	}

	mustRun(t, ctlEnv, "", bins.pkictl, "revoke", "--dir", oldDir, "--reason", "keyCompromise")
	revokedAt := time.Now()
	waitFor(t, "edge A refusing the revoked certificate of the superseded intermediate", revocationDeadline, func() error {
		if _, err := edgeA.get(old); err == nil {
			return fmt.Errorf("still admitted %v after the revocation", time.Since(revokedAt).Round(time.Millisecond))
		}
		return nil
	})
	waitFor(t, "edge B refusing it by the first intermediate's CRL", 15*time.Second, func() error {
		if _, err := edgeB.get(old); err == nil {
			return fmt.Errorf("still admitted %v after the revocation", time.Since(revokedAt).Round(time.Millisecond))
		}
		return nil
	})
	for name, e := range map[string]edgeClient{"A": edgeA, "B": edgeB} {
		for label, c := range map[string]string{"keep": keepDir, "fresh": freshDir} {
			if _, err := e.get(clientCert(t, c)); err != nil {
				t.Errorf("edge %s, %s (not revoked) after the revocation: %v", name, label, err)
			}
		}
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b.Bytes()
}

func mkdir(t *testing.T, parent, name string) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
