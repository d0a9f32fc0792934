package app_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/testnode"
)

// rotate runs what `pkid ca rotate` does against n's database.
func (n *node) rotate(t *testing.T) (*ca.Rotation, error) {
	t.Helper()
	l, err := lint.New()
	if err != nil {
		t.Fatal(err)
	}
	icfg := ca.InitConfig{Hierarchy: issuance.HierarchyConfig{PublicURL: testnode.PublicURL}}
	return ca.Rotate(t.Context(), n.rawDB, icfg, keystore.Sealed(n.passph), l, time.Now())
}

// awaitGeneration waits until n has taken in a rotation to generation gen
// (it is notified; nothing here asks it to reload).
func (n *node) awaitGeneration(t *testing.T, gen int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n.app.Hierarchy.Current().Generation != gen {
		if time.Now().After(deadline) {
			t.Fatalf("the node still issues from generation %d, want %d", n.app.Hierarchy.Current().Generation, gen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// issued is a certificate a test got from the API.
type issued struct {
	serial string
	pem    string
	chain  string
	cert   *x509.Certificate
}

func (n *node) mustIssue(t *testing.T, token, cn string) issued {
	t.Helper()
	csr, _ := opensslCSR(t, "/CN="+cn)
	r := n.issue(token, csr)
	if r.status != http.StatusCreated {
		t.Fatalf("issue %s: %d %s", cn, r.status, r.body)
	}
	obj := r.json(t)
	pemText := obj["certificate"].(string)
	return issued{serial: obj["serial"].(string), pem: pemText, chain: obj["chain"].(string), cert: parseCertPEM(t, pemText)}
}

// TestRotate is issue #6's rollover acceptance, in process: after `pkid ca
// rotate` a second, already running node issues from the new intermediate
// without a restart; certificates of both intermediates verify with
// openssl; each intermediate's OCSP answers (signed by its own delegated
// signer) and CRL (listing only its own revocations) cover its own
// certificates; renewing an old certificate issues from the new
// intermediate.
func TestRotate(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	n2 := startNode(t, n.dbURL, n.rawDB, n.passph)
	_, token := n.account("Rollover Inc", pki.PlanEnterprise)
	gen1 := n.app.Hierarchy.Intermediate()

	oldRevoked := n.mustIssue(t, token, "old-revoked.test")
	oldGood := n.mustIssue(t, token, "old-good.test")
	oldRenewed := n.mustIssue(t, token, "old-renewed.test")

	rot, err := n.rotate(t)
	if err != nil {
		t.Fatal(err)
	}
	if rot.Generation != 2 || rot.Previous.ID != gen1.ID {
		t.Fatalf("rotation made generation %d after %s", rot.Generation, rot.Previous.ID)
	}
	n.awaitGeneration(t, 2)
	n2.awaitGeneration(t, 2)
	gen2 := n2.app.Hierarchy.Intermediate()
	if gen2.ID != rot.Next.ID || gen2.Cert.Subject.CommonName != "pkid Issuing CA G2" {
		t.Fatalf("current intermediate %s %q, want the rotation's", gen2.ID, gen2.Cert.Subject.CommonName)
	}
	if !bytes.Equal(gen2.Cert.RawIssuer, gen1.Cert.RawIssuer) || gen2.Cert.CheckSignatureFrom(n.app.Hierarchy.Root()) != nil {
		t.Fatal("the new intermediate is not signed by the same root")
	}

	newRevoked := n2.mustIssue(t, token, "new-revoked.test")
	newGood := n.mustIssue(t, token, "new-good.test")
	for _, c := range []issued{newRevoked, newGood} {
		if c.cert.CheckSignatureFrom(gen2.Cert) != nil {
			t.Fatalf("%s is not issued by the new intermediate", c.cert.Subject.CommonName)
		}
		if !slices.Equal(c.cert.CRLDistributionPoints, []string{testnode.PublicURL + "/crl/2"}) ||
			!slices.Equal(c.cert.IssuingCertificateURL, []string{testnode.PublicURL + "/ca/issuer/2.cer"}) {
			t.Errorf("new certificate names CRL %v and issuer %v", c.cert.CRLDistributionPoints, c.cert.IssuingCertificateURL)
		}
	}
	for _, c := range []issued{oldRevoked, oldGood} {
		if c.cert.CheckSignatureFrom(gen1.Cert) != nil || !slices.Equal(c.cert.CRLDistributionPoints, []string{testnode.PublicURL + "/crl"}) {
			t.Fatalf("old certificate %s: not from generation 1 or names CRL %v", c.cert.Subject.CommonName, c.cert.CRLDistributionPoints)
		}
	}
	// Each certificate object's chain is its own issuer's.
	if got := n.do("GET", "/api/v1/certificates/"+oldGood.serial, token, nil).json(t)["chain"].(string); got != string(n.app.Hierarchy.ChainPEMFor(gen1.ID)) || !strings.Contains(got, pemOf(gen1.Cert)) {
		t.Error("the old certificate's chain is not the old intermediate's")
	}
	if !strings.Contains(newGood.chain, pemOf(gen2.Cert)) || strings.Contains(newGood.chain, pemOf(gen1.Cert)) {
		t.Error("the new certificate's chain is not the new intermediate's")
	}

	// Renewing an old certificate issues from the new intermediate.
	r := n.do("POST", "/api/v1/certificates/"+oldRenewed.serial+"/renew", token, nil)
	if r.status != http.StatusCreated {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	if renewed := parseCertPEM(t, r.json(t)["certificate"].(string)); renewed.CheckSignatureFrom(gen2.Cert) != nil {
		t.Error("the renewal of an old certificate is not issued by the new intermediate")
	}

	// Public routes: /ca/chain.pem is the current intermediate then the
	// root; /ca/bundle.pem every live intermediate then the root; each
	// intermediate at its own caIssuers URL.
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	get := func(path string) []byte {
		r := n.do("GET", path, "", nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		return r.body
	}
	root := pemOf(n.app.Hierarchy.Root())
	if got := string(get("/ca/chain.pem")); got != pemOf(gen2.Cert)+root {
		t.Error("/ca/chain.pem is not the new intermediate then the root")
	}
	bundle := string(get("/ca/bundle.pem"))
	if bundle != pemOf(gen2.Cert)+pemOf(gen1.Cert)+root {
		t.Error("/ca/bundle.pem is not both intermediates, newest first, then the root")
	}
	if !bytes.Equal(get("/ca/issuer.cer"), gen2.Cert.Raw) || !bytes.Equal(get("/ca/issuer/2.cer"), gen2.Cert.Raw) {
		t.Error("/ca/issuer.cer and /ca/issuer/2.cer are not the new intermediate")
	}
	for _, p := range []string{"/ca/issuer/1.cer", "/ca/issuer/3.cer", "/ca/issuer/02.cer", "/crl/3", "/crl/0", "/crl/02", "/crl/x.pem", "/crl/9999999"} {
		want := http.StatusNotFound
		if p == "/ca/issuer/1.cer" {
			want = http.StatusOK
		}
		if r := n.do("GET", p, "", nil); r.status != want {
			t.Errorf("GET %s: %d, want %d", p, r.status, want)
		}
	}

	rootFile, bundleFile := write("root.pem", root), write("bundle.pem", bundle)
	leaf := func(c issued) string { return write(c.serial+".pem", c.pem) }
	for _, c := range []issued{oldRevoked, oldGood, newRevoked, newGood} {
		out, err := exec.Command("openssl", "verify", "-CAfile", rootFile, "-untrusted", bundleFile,
			"-purpose", "sslclient", leaf(c)).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(": OK")) {
			t.Fatalf("openssl verify %s: %v: %s", c.cert.Subject.CommonName, err, out)
		}
		// And with the chain of its own certificate object.
		out, err = exec.Command("openssl", "verify", "-CAfile", rootFile, "-untrusted", write(c.serial+"-chain.pem", c.chain),
			"-purpose", "sslclient", leaf(c)).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(": OK")) {
			t.Fatalf("openssl verify %s with its chain: %v: %s", c.cert.Subject.CommonName, err, out)
		}
	}

	// Revoke one certificate of each intermediate, on either node.
	for _, x := range []struct {
		n *node
		c issued
	}{{n2, oldRevoked}, {n, newRevoked}} {
		if r := x.n.do("POST", "/api/v1/certificates/"+x.c.serial+"/revoke", token, `{"reason":"keyCompromise"}`); r.status != http.StatusOK {
			t.Fatalf("revoke %s: %d %s", x.c.cert.Subject.CommonName, r.status, r.body)
		}
	}

	// OCSP, asked with openssl of both nodes: each answer is signed by the
	// delegated signer that the certificate's own issuer certified.
	interFiles := map[string]string{gen1.ID: write("gen1.pem", pemOf(gen1.Cert)), gen2.ID: write("gen2.pem", pemOf(gen2.Cert))}
	for _, x := range []struct {
		c      issued
		issuer *x509.Certificate
		want   string
	}{{oldRevoked, gen1.Cert, "revoked"}, {oldGood, gen1.Cert, "good"}, {newRevoked, gen2.Cert, "revoked"}, {newGood, gen2.Cert, "good"}} {
		id := ca.Fingerprint(x.issuer.Raw)
		for _, node := range []*node{n, n2} {
			awaitOCSP(t, node, x.c, x.issuer, x.want)
			out, err := exec.Command("openssl", "ocsp", "-issuer", interFiles[id], "-cert", leaf(x.c),
				"-url", node.srv.URL+"/ocsp", "-CAfile", rootFile, "-verify_other", interFiles[id]).CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("Response verify OK")) || !bytes.Contains(out, []byte(": "+x.want)) {
				t.Errorf("openssl ocsp %s: %v: %s", x.c.cert.Subject.CommonName, err, out)
			}
		}
	}

	// Each intermediate answers only for its own: a request that names the
	// other intermediate as the issuer is unauthorized.
	for _, x := range []struct {
		c     issued
		wrong *x509.Certificate
	}{{oldGood, gen2.Cert}, {newGood, gen1.Cert}} {
		req, err := ocsp.CreateRequest(x.c.cert, x.wrong, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := n.do("POST", "/ocsp", "", req)
		var re ocsp.ResponseError
		if _, err := ocsp.ParseResponse(r.body, nil); !errors.As(err, &re) || re.Status != ocsp.Unauthorized {
			t.Errorf("OCSP for %s naming the other intermediate: %v, want unauthorized", x.c.cert.Subject.CommonName, err)
		}
	}

	// CRLs: /crl is the first intermediate's (its certificates name it),
	// /crl/2 the new one's; each lists only its own revocation, and openssl
	// checks each certificate against the CRL of its issuer.
	crl1 := awaitCRL(t, n, "/crl", gen1.Cert, oldRevoked.cert)
	crl2 := awaitCRL(t, n2, "/crl/2", gen2.Cert, newRevoked.cert)
	for _, x := range []struct {
		crl  *x509.RevocationList
		only *x509.Certificate
	}{{crl1, oldRevoked.cert}, {crl2, newRevoked.cert}} {
		if len(x.crl.RevokedCertificateEntries) != 1 || x.crl.RevokedCertificateEntries[0].SerialNumber.Cmp(x.only.SerialNumber) != 0 {
			t.Errorf("CRL of %s lists %d entries, want only %s", x.crl.Issuer, len(x.crl.RevokedCertificateEntries), x.only.Subject.CommonName)
		}
	}
	if c, err := x509.ParseRevocationList(get("/crl/1")); err != nil || c.CheckSignatureFrom(gen1.Cert) != nil {
		t.Errorf("/crl/1 is not the first intermediate's CRL (%v)", err)
	}
	crlFile := write("crls.pem", pemBlock("X509 CRL", crl1.Raw)+pemBlock("X509 CRL", crl2.Raw))
	for _, x := range []struct {
		c    issued
		want string
	}{{oldRevoked, "certificate revoked"}, {oldGood, ": OK"}, {newRevoked, "certificate revoked"}, {newGood, ": OK"}} {
		out, _ := exec.Command("openssl", "verify", "-crl_check", "-CAfile", rootFile, "-untrusted", bundleFile,
			"-CRLfile", crlFile, leaf(x.c)).CombinedOutput()
		if !bytes.Contains(out, []byte(x.want)) {
			t.Errorf("openssl verify -crl_check %s: want %q: %s", x.c.cert.Subject.CommonName, x.want, out)
		}
	}

	// The rotation is audited once, and the root's CRL was signed again.
	var rotations, rootCRLs int
	if err := n.rawDB.Pool().QueryRow(t.Context(), "SELECT count(*) FROM audit_events WHERE action = $1", ca.ActionIntermediateRotated).Scan(&rotations); err != nil {
		t.Fatal(err)
	}
	if err := n.rawDB.Pool().QueryRow(t.Context(), "SELECT count(*) FROM crls WHERE issuer_id = $1", n.app.Hierarchy.RootID()).Scan(&rootCRLs); err != nil {
		t.Fatal(err)
	}
	if rotations != 1 || rootCRLs != 2 {
		t.Errorf("%d rotation audit events and %d root CRLs, want 1 and 2", rotations, rootCRLs)
	}
}

// awaitOCSP waits until node answers want for c and checks the answer's
// signer: a delegated responder that issuer certified.
func awaitOCSP(t *testing.T, node *node, c issued, issuer *x509.Certificate, want string) {
	t.Helper()
	req, err := ocsp.CreateRequest(c.cert, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]int{"good": ocsp.Good, "revoked": ocsp.Revoked}[want]
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := node.do("POST", "/ocsp", "", req)
		resp, err := ocsp.ParseResponseForCert(r.body, c.cert, issuer)
		if err == nil && resp.Status == status {
			if resp.Certificate == nil || resp.Certificate.CheckSignatureFrom(issuer) != nil {
				t.Fatalf("OCSP for %s is not signed by a responder its issuer certified", c.cert.Subject.CommonName)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("OCSP for %s: %v (status %v), want %s", c.cert.Subject.CommonName, err, resp, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// awaitCRL waits until node serves at path a CRL of issuer that lists
// revoked, and returns it.
func awaitCRL(t *testing.T, node *node, path string, issuer, revoked *x509.Certificate) *x509.RevocationList {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := node.do("GET", path, "", nil)
		if r.status == http.StatusOK {
			crl, err := x509.ParseRevocationList(r.body)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			if err := crl.CheckSignatureFrom(issuer); err != nil {
				t.Fatalf("GET %s: not signed by %s: %v", path, issuer.Subject, err)
			}
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(revoked.SerialNumber) == 0 {
					return crl
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s never listed %s: %d", path, revoked.Subject.CommonName, r.status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pemOf(c *x509.Certificate) string { return pemBlock("CERTIFICATE", c.Raw) }

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// TestRotateConcurrently: two rotations at once make one new intermediate;
// the other stores nothing and says so.
func TestRotateConcurrently(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, errs[i] = n.rotate(t) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ca.ErrRotationRaced):
			t.Fatalf("losing rotation: %v, want ErrRotationRaced", err)
		}
	}
	var inters, current, signers int
	err := n.rawDB.Pool().QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE kind = 'intermediate'),
		count(*) FILTER (WHERE kind = 'intermediate' AND superseded_at IS NULL),
		count(*) FILTER (WHERE kind = 'ocsp' AND retired_at IS NULL) FROM issuers`).Scan(&inters, &current, &signers)
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || inters != 2 || current != 1 || signers != 2 {
		t.Fatalf("%d rotations won, %d intermediates (%d current), %d OCSP signers; want 1, 2 (1), 2", won, inters, current, signers)
	}
	n.awaitGeneration(t, 2)
}

// TestRetireIntermediate: a superseded intermediate stays until its last
// certificate has expired and a CRL has been signed after that; then it is
// retired (audited), its CRL URL and OCSP answers go, and /crl serves the
// current intermediate's CRL.
func TestRetireIntermediate(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	_, token := n.account("Retiree", pki.PlanEnterprise)
	old := n.mustIssue(t, token, "last-of-gen1.test")
	gen1 := n.app.Hierarchy.Intermediate()
	if _, err := n.rotate(t); err != nil {
		t.Fatal(err)
	}
	n.awaitGeneration(t, 2)
	ctx := context.Background()
	retire := func(now time.Time) []string {
		t.Helper()
		ids, err := ca.RetireIntermediates(ctx, n.rawDB, n.rawDB.LastCertificateExpiry, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.app.ReloadHierarchy(ctx); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if ids := retire(time.Now()); len(ids) != 0 {
		t.Fatalf("retired %v while its certificate is valid", ids)
	}
	// Past the last expiry, but no CRL since: not yet.
	after := old.cert.NotAfter.Add(time.Hour)
	if ids := retire(after); len(ids) != 0 {
		t.Fatalf("retired %v before its final CRL", ids)
	}
	n.clock.Advance(time.Until(after))
	job := n.app.CRLJob(gen1.ID)
	if job == nil {
		t.Fatal("no CRL job for the superseded intermediate")
	}
	if _, err := job.Generate(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := retire(after); !slices.Equal(ids, []string{gen1.ID}) {
		t.Fatalf("retired %v, want the first intermediate", ids)
	}
	if in := n.app.Hierarchy.IntermediateByID(gen1.ID); in != nil || len(n.app.Hierarchy.Issuers()) != 1 || n.app.CRLJob(gen1.ID) != nil {
		t.Fatal("the retired intermediate is still loaded")
	}
	var detail string
	if err := n.rawDB.Pool().QueryRow(ctx, "SELECT detail::text FROM audit_events WHERE action = $1", ca.ActionIntermediateRetired).Scan(&detail); err != nil {
		t.Fatalf("no retirement audit event: %v", err)
	}
	if !strings.Contains(detail, gen1.ID) || !strings.Contains(detail, "final_crl_number") {
		t.Errorf("retirement audit detail %s does not name the intermediate and its final CRL", detail)
	}
	var retiredSigners int
	if err := n.rawDB.Pool().QueryRow(ctx, "SELECT count(*) FROM issuers WHERE parent_id = $1 AND kind = 'ocsp' AND retired_at IS NULL", gen1.ID).Scan(&retiredSigners); err != nil || retiredSigners != 0 {
		t.Errorf("%d live OCSP signers of the retired intermediate (%v)", retiredSigners, err)
	}
	// The old certificate's chain is still its issuer's.
	if got := n.app.Hierarchy.ChainPEMFor(gen1.ID); !strings.Contains(string(got), pemOf(gen1.Cert)) {
		t.Error("the chain of a retired intermediate's certificate is lost")
	}
	if r := n.do("GET", "/crl/1", "", nil); r.status != http.StatusNotFound {
		t.Errorf("GET /crl/1 after retirement: %d", r.status)
	}
	// /crl now serves the current intermediate's CRL (signed at the
	// advanced clock, so that it is not past its nextUpdate).
	if _, err := n.app.CRLJob(n.app.Hierarchy.Intermediate().ID).Generate(ctx); err != nil {
		t.Fatal(err)
	}
	r := n.do("GET", "/crl", "", nil)
	crl, err := x509.ParseRevocationList(r.body)
	if r.status != http.StatusOK || err != nil || crl.CheckSignatureFrom(n.app.Hierarchy.Intermediate().Cert) != nil {
		t.Errorf("GET /crl after retirement: %d %v: not the current intermediate's", r.status, err)
	}
	// A restarted node loads the hierarchy without the retired one.
	if _, err := ca.LoadHierarchy(ctx, n.rawDB, keystore.Sealed(n.passph), time.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestOfflineRootKey: once `pkid ca export-root-key` has taken the root key
// out of the database, serving is unaffected, a rotation needs the key
// back (and refuses another key), and init lets a due root CRL pass with a
// warning while it is still current.
func TestOfflineRootKey(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	ctx := context.Background()
	keys := keystore.Sealed(n.passph)
	l, err := lint.New()
	if err != nil {
		t.Fatal(err)
	}
	sealed, commit, err := ca.ExportRootKey(ctx, n.rawDB, keys, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := commit(ctx); err != nil {
		t.Fatal(err)
	}
	var stored []byte
	var uri string
	if err := n.rawDB.Pool().QueryRow(ctx, "SELECT encrypted_key, key_uri FROM issuers WHERE kind = 'root'").Scan(&stored, &uri); err != nil {
		t.Fatal(err)
	}
	if stored != nil || uri != ca.OfflineKeyURI {
		t.Fatalf("the root key is still in the database (key %d bytes, uri %q)", len(stored), uri)
	}
	var exported int
	if err := n.rawDB.Pool().QueryRow(ctx, "SELECT count(*) FROM audit_events WHERE action = $1", ca.ActionRootKeyExported).Scan(&exported); err != nil || exported != 1 {
		t.Fatalf("%d export audit events (%v), want 1", exported, err)
	}
	if _, _, err := ca.ExportRootKey(ctx, n.rawDB, keys, time.Now()); !errors.Is(err, ca.ErrRootKeyOffline) {
		t.Errorf("exporting again: %v, want ErrRootKeyOffline", err)
	}

	// Serving does not need it.
	_, token := n.account("Offline Root", pki.PlanEnterprise)
	n.mustIssue(t, token, "served.test")
	if _, err := ca.LoadHierarchy(ctx, n.rawDB, keys, time.Now()); err != nil {
		t.Fatalf("loading the hierarchy without the root key: %v", err)
	}

	icfg := ca.InitConfig{Hierarchy: issuance.HierarchyConfig{PublicURL: testnode.PublicURL}}
	if _, err := ca.Rotate(ctx, n.rawDB, icfg, keys, l, time.Now()); !errors.Is(err, ca.ErrRootKeyOffline) {
		t.Fatalf("rotating without the root key: %v, want ErrRootKeyOffline", err)
	}
	var interKey []byte
	if err := n.rawDB.Pool().QueryRow(ctx, "SELECT encrypted_key FROM issuers WHERE kind = 'intermediate'").Scan(&interKey); err != nil {
		t.Fatal(err)
	}
	icfg.RootKey = interKey
	if _, err := ca.Rotate(ctx, n.rawDB, icfg, keys, l, time.Now()); err == nil {
		t.Fatal("rotating with another key than the root's succeeded")
	}
	icfg.RootKey = sealed
	if _, err := ca.Rotate(ctx, n.rawDB, icfg, keys, l, time.Now()); err != nil {
		t.Fatalf("rotating with the root key given: %v", err)
	}
	n.awaitGeneration(t, 2)

	// init, half a year on: the root's CRL is due but still current.
	later := time.Now().Add(200 * 24 * time.Hour)
	icfg.RootKey = nil
	if _, _, err := ca.Init(ctx, n.rawDB, icfg, keys, l, later); !errors.Is(err, ca.ErrRootKeyOffline) {
		t.Errorf("init with the root's CRL due, the key offline and no one to warn: %v, want ErrRootKeyOffline", err)
	}
	var warned []string
	icfg.Warn = func(msg string) { warned = append(warned, msg) }
	if _, _, err := ca.Init(ctx, n.rawDB, icfg, keys, l, later); err != nil || len(warned) != 1 {
		t.Errorf("init with the root's CRL due and the key offline: %v, warnings %q; want success and one warning", err, warned)
	}
	icfg.RootKey = sealed
	var before int
	_ = n.rawDB.Pool().QueryRow(ctx, "SELECT count(*) FROM crls WHERE issuer_id = $1", n.app.Hierarchy.RootID()).Scan(&before)
	if _, _, err := ca.Init(ctx, n.rawDB, icfg, keys, l, later); err != nil {
		t.Fatalf("init with the root key given: %v", err)
	}
	var after int
	_ = n.rawDB.Pool().QueryRow(ctx, "SELECT count(*) FROM crls WHERE issuer_id = $1", n.app.Hierarchy.RootID()).Scan(&after)
	if after != before+1 {
		t.Errorf("init with the root key given signed %d root CRLs, want 1", after-before)
	}
}

// TestRetireExpiredIntermediate: a superseded intermediate whose own
// certificate has expired is retired from the database too, although no
// node loads it any more.
func TestRetireExpiredIntermediate(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	ctx := context.Background()
	l, err := lint.New()
	if err != nil {
		t.Fatal(err)
	}
	keys := keystore.Sealed(n.passph)
	_, token := n.account("Expired Intermediate", pki.PlanEnterprise)
	n.mustIssue(t, token, "keeps-gen1.test") // generation 1 stays: it has a valid certificate
	short := ca.InitConfig{Hierarchy: issuance.HierarchyConfig{PublicURL: testnode.PublicURL, IntermediateValidity: time.Hour, OCSPValidity: time.Hour}}
	gen2, err := ca.Rotate(ctx, n.rawDB, short, keys, l, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.rotate(t); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Hour)
	// A node that starts then leaves the expired one out, and starts.
	h, err := ca.LoadHierarchy(ctx, n.rawDB, keys, later)
	if err != nil {
		t.Fatalf("starting after a superseded intermediate expired: %v", err)
	}
	if h.IntermediateByID(gen2.Next.ID) != nil || len(h.Intermediates()) != 2 {
		t.Errorf("the expired intermediate is loaded (%d live)", len(h.Intermediates()))
	}
	ids, err := ca.RetireIntermediates(ctx, n.rawDB, n.rawDB.LastCertificateExpiry, later)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{gen2.Next.ID}) {
		t.Fatalf("retired %v, want only the expired generation 2", ids)
	}
	var retired bool
	if err := n.rawDB.Pool().QueryRow(ctx, "SELECT retired_at IS NOT NULL FROM issuers WHERE id = $1", gen2.Next.ID).Scan(&retired); err != nil || !retired {
		t.Errorf("generation 2 is not retired in the database (%v)", err)
	}
}
