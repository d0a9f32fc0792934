package nginx

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ocspDeadline is how soon after the revoke call returns nginx with
// ssl_ocsp must refuse the certificate. pkid answers the call only once its
// responder says "revoked" and the recipe keeps no OCSP cache, so the next
// handshake should already be refused; the slack absorbs a loaded machine.
const ocspDeadline = 2 * time.Second

// crlDeadline bounds the CRL recipe's refusal after the revoke call: pkid's
// CRL job signs within a few seconds of a revocation (debounced), then
// pkid-crl-refresh fetches and reloads nginx. In production the timer's
// period (5 minutes) comes on top; here the test runs the script in a loop.
const crlDeadline = 20 * time.Second

// forgedHeaders are X-Client-* headers a client might send to pass itself
// off as someone; none may reach the upstream as sent.
var forgedHeaders = map[string]string{
	"X-Client-Serial":  "01",
	"x-client-account": "someone-else",
	"X-CLIENT-SUBJECT": "CN=admin",
	"X-Client-Cert":    "forged",
	"X-Client-Verify":  "SUCCESS",
	"X_Client_Account": "someone-else",
}

// TestNginxRecipes runs nginx from deploy/nginx/ocsp.conf and crl.conf in
// front of an upstream, with the real pkid, and checks each recipe: a valid
// client certificate reaches the upstream with the identity headers nginx
// sets (and none the client forged), other CAs' certificates are refused,
// and after pkid revokes the certificate nginx refuses it: with ssl_ocsp on
// the next connection (the time is measured and logged), with ssl_crl once
// pkid-crl-refresh has fetched the new CRL and reloaded nginx. Then the
// claims of the recipes' comments: "ssl_ocsp on" refuses everyone,
// ssl_ocsp_cache hides a revocation, and with pkid down the OCSP recipe
// fails closed while the CRL recipe carries on.
func TestNginxRecipes(t *testing.T) {
	if _, err := os.Stat(nginxBin); err != nil {
		t.Skipf("nginx is not installed (%s is missing): apt-get install nginx; CI's .ci/run installs it", nginxBin)
	}
	start := time.Now()
	work := t.TempDir()
	p := startPKID(t)
	token := p.enterpriseAccount(t, "Nginx Edge Inc")
	t.Logf("pkid up in %v", time.Since(start).Round(time.Millisecond))

	// ssl_client_certificate and pkid crl fetch --ca: pkid's intermediates
	// (one until the rotation subtest) and root.
	chain := filepath.Join(work, "pkid-bundle.pem")
	writeFile(t, chain, string(p.get(t, "/ca/bundle.pem")))

	// nginx's own server certificate, from a throwaway openssl CA that the
	// test's client trusts.
	serverCA := newOpensslCA(t, work, "server-ca", "/CN=nginx test server CA")
	srvCert, srvKey := serverCA.issue(t, "server", "/CN=127.0.0.1",
		"subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
	trust := x509.NewCertPool()
	if b, err := os.ReadFile(serverCA.certFile); err != nil || !trust.AppendCertsFromPEM(b) {
		t.Fatalf("reading %s: %v", serverCA.certFile, err)
	}

	app := newUpstream(t)
	crlFile := filepath.Join(work, "pkid-crl.pem")
	vars := map[string]string{
		"UPSTREAM": app.addr(), "SERVER_NAME": "127.0.0.1", "SERVER_CERT": srvCert, "SERVER_KEY": srvKey,
		"PKID_CA": chain, "PKID_URL": p.url, "CRL_FILE": crlFile,
	}
	foreign := foreignCerts(t, work, chain)
	bystander := p.issue(t, token, work, "bystander") // valid throughout

	ocspEdge := startEdge(t, "ocsp", "ocsp", vars, trust, nil)
	// The CRL recipe starts with only the intermediate's CRL in its file,
	// as if the root's had been forgotten: the crl subtest shows that
	// nginx then refuses everyone.
	writeFile(t, crlFile, string(p.get(t, "/crl.pem")))
	crlEdge := startEdge(t, "crl", "crl", vars, trust, nil)
	refresh := func() (string, error) {
		return runScript(t, filepath.Join(deployDir, "systemd", "pkid-crl-refresh"),
			"PKID="+p.bin, "PKID_URL="+p.url, "PKID_CA="+chain, "CRL_FILE="+crlFile,
			"NGINX_RELOAD="+crlEdge.reloadCommand())
	}

	t.Run("ocsp", func(t *testing.T) {
		c := p.issue(t, token, work, "ocsp")
		checkAdmits(t, ocspEdge, app, c)
		// A resumed session is checked by OCSP too (ocsp.conf keeps
		// resumption on because of that): a session of each TLS version
		// is made now and resumed after the revocation.
		sessions := map[uint16]tls.ClientSessionCache{}
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			sessions[v] = tls.NewLRUClientSessionCache(4)
			for i, wantResumed := range []bool{false, true} {
				o := ocspEdge.request(t, "session", reqOpts{cert: &c.cert, sessions: sessions[v], maxVersion: v})
				if !o.admitted() || o.resumed != wantResumed {
					t.Fatalf("%s connection %d: %v; want admitted, resumed=%v", tls.VersionName(v), i+1, o, wantResumed)
				}
			}
		}
		checkRefusesForeign(t, ocspEdge, app, foreign)

		sent := time.Now()
		p.revoke(t, token, c)
		returned := time.Now()
		var o outcome
		attempts := 0
		for {
			attempts++
			o = ocspEdge.request(t, "revoked", reqOpts{cert: &c.cert})
			if o.refusedCertificate() {
				break
			}
			if !o.admitted() {
				t.Fatalf("after the revocation: %v; want admitted or refused", o)
			}
			if time.Since(returned) > ocspDeadline {
				t.Fatalf("nginx (ssl_ocsp) still admits the certificate %v after the revoke call returned: %v", ocspDeadline, o)
			}
			time.Sleep(10 * time.Millisecond)
		}
		refused := time.Now()
		t.Logf("nginx (ssl_ocsp leaf, no ssl_ocsp_cache) refused the revoked certificate %v after the revoke call returned "+
			"(%v after it was sent; %d connection(s)): %v",
			refused.Sub(returned).Round(time.Millisecond), refused.Sub(sent).Round(time.Millisecond), attempts, o)
		if o.verify != "FAILED:certificate revoked" {
			t.Errorf("refused with client_verify=%q, want %q", o.verify, "FAILED:certificate revoked")
		}
		if app.headers(o.path) != nil {
			t.Errorf("the refused request reached the upstream")
		}
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			o := ocspEdge.request(t, "session-revoked", reqOpts{cert: &c.cert, sessions: sessions[v], maxVersion: v})
			if !o.resumed || !o.refusedCertificate() || o.verify != "FAILED:certificate revoked" {
				t.Errorf("%s resumed session after the revocation: %v; want resumed and refused as revoked", tls.VersionName(v), o)
			}
		}
		if o := ocspEdge.request(t, "bystander", reqOpts{cert: &bystander.cert}); !o.admitted() {
			t.Errorf("another certificate of the account, not revoked: %v; want admitted", o)
		}
	})

	t.Run("crl", func(t *testing.T) {
		// With the intermediate's CRL alone, OpenSSL cannot check the
		// intermediate (X509_V_FLAG_CRL_CHECK_ALL) and nginx refuses all.
		o := crlEdge.request(t, "one-crl", reqOpts{cert: &bystander.cert})
		if !o.refusedCertificate() || o.verify != "FAILED:unable to get certificate CRL" {
			t.Fatalf("with only the intermediate's CRL: %v; want refused, unable to get certificate CRL", o)
		}
		out, err := refresh()
		if err != nil || strings.TrimSpace(out) == "unchanged" {
			t.Fatalf("pkid-crl-refresh: %v %q; want both CRLs written", err, out)
		}
		if _, n := crlSerials(t, crlFile); n != 2 {
			t.Fatalf("%s holds %d CRLs after pkid-crl-refresh, want 2 (the intermediate's and the root's)", crlFile, n)
		}
		waitFor(t, "nginx admits once it has both CRLs", 5*time.Second, func() error {
			if o := crlEdge.request(t, "two-crls", reqOpts{cert: &bystander.cert}); !o.admitted() {
				return fmt.Errorf("%v", o)
			}
			return crlEdge.oneWorker()
		})

		c := p.issue(t, token, work, "crl")
		checkAdmits(t, crlEdge, app, c)
		// No resumption: a resumed session would skip the CRL check, and
		// nginx's session cache outlives the reload that brings a new CRL.
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			sessions := tls.NewLRUClientSessionCache(4)
			for i := 1; i <= 2; i++ {
				if o := crlEdge.request(t, "session", reqOpts{cert: &c.cert, sessions: sessions, maxVersion: v}); !o.admitted() || o.resumed {
					t.Fatalf("%s connection %d: %v; want admitted, never resumed", tls.VersionName(v), i, o)
				}
			}
		}
		checkRefusesForeign(t, crlEdge, app, foreign)

		p.revoke(t, token, c)
		returned := time.Now()
		runs := 0
		for {
			runs++
			out, err := refresh()
			if err != nil {
				t.Fatalf("pkid-crl-refresh: %v", err)
			}
			if listed, _ := crlSerials(t, crlFile); listed[c.serial] {
				t.Logf("pkid-crl-refresh run %d, %v after the revoke call, wrote a CRL listing the certificate: %s",
					runs, time.Since(returned).Round(time.Millisecond), strings.TrimSpace(out))
				break
			}
			if time.Since(returned) > crlDeadline {
				t.Fatalf("no CRL listing %s within %v of the revocation", c.serial, crlDeadline)
			}
			time.Sleep(250 * time.Millisecond)
		}
		// The script has reloaded nginx; the new workers take over at once.
		var last outcome
		waitFor(t, "nginx (ssl_crl) refuses the revoked certificate after the reload", 5*time.Second, func() error {
			last = crlEdge.request(t, "revoked", reqOpts{cert: &c.cert})
			if last.refusedCertificate() {
				return crlEdge.oneWorker()
			}
			return fmt.Errorf("%v", last)
		})
		t.Logf("nginx (ssl_crl) refused the revoked certificate %v after the revoke call returned: %v",
			time.Since(returned).Round(time.Millisecond), last)
		if last.verify != "FAILED:certificate revoked" {
			t.Errorf("refused with client_verify=%q, want %q", last.verify, "FAILED:certificate revoked")
		}
		if o := crlEdge.request(t, "bystander", reqOpts{cert: &bystander.cert}); !o.admitted() {
			t.Errorf("another certificate of the account, not revoked: %v; want admitted", o)
		}
		if out, err := refresh(); err != nil || strings.TrimSpace(out) != "unchanged" {
			t.Errorf("pkid-crl-refresh with nothing new: %v %q; want \"unchanged\" (and no reload)", err, out)
		}
	})

	t.Run("ssl_ocsp on", func(t *testing.T) {
		// ocsp.conf says "leaf" because "on" also asks about the
		// intermediate, for which pkid has no root-signed answer.
		e := startEdge(t, "ocsp-on", "ocsp", vars, trust, replaceOnce(t, "ssl_ocsp leaf;", "ssl_ocsp on;"))
		o := e.request(t, "valid", reqOpts{cert: &bystander.cert})
		if !o.refusedCertificate() || o.verify != "FAILED:certificate status request failed" {
			t.Errorf("ssl_ocsp on, a valid certificate: %v; want refused, certificate status request failed", o)
		}
		if !e.errorLogHas("OCSP response not successful (6: unauthorized)") {
			t.Errorf("nginx's error log does not say the responder answered unauthorized for the intermediate")
		}
	})

	t.Run("ssl_ocsp_cache", func(t *testing.T) {
		// The README's trade-off: nginx keeps a cached answer until its
		// nextUpdate (a day by default), whatever pkid says meanwhile.
		e := startEdge(t, "ocsp-cache", "ocsp", vars, trust, replaceOnce(t, "ssl_ocsp_cache off;", "ssl_ocsp_cache shared:pkid_ocsp:1m;"))
		c := p.issue(t, token, work, "cached")
		if o := e.request(t, "valid", reqOpts{cert: &c.cert}); !o.admitted() {
			t.Fatalf("with ssl_ocsp_cache, a valid certificate: %v; want admitted", o)
		}
		p.revoke(t, token, c)
		if o := e.request(t, "revoked", reqOpts{cert: &c.cert}); !o.admitted() {
			t.Errorf("with ssl_ocsp_cache, just after the revocation: %v; the README says the cached good answer still admits it", o)
		}
		if o := ocspEdge.request(t, "revoked-uncached", reqOpts{cert: &c.cert}); !o.refusedCertificate() {
			t.Errorf("without ssl_ocsp_cache, the same certificate: %v; want refused", o)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		// issue #6: after `pkid ca rotate`, certificates of both
		// intermediates are admitted, and a revocation of one of the
		// superseded intermediate's is seen by both recipes.
		old := p.issue(t, token, work, "old-generation")
		before := p.get(t, "/ca/chain.pem")
		t.Logf("pkid ca rotate: %s", strings.TrimSpace(p.run(t, "", "ca", "rotate")))
		// The running pkid takes the new intermediate in without a restart.
		waitFor(t, "pkid serve publishes the new intermediate", 20*time.Second, func() error {
			if bytes.Equal(p.get(t, "/ca/chain.pem"), before) {
				return errors.New("/ca/chain.pem unchanged")
			}
			return nil
		})
		fresh := p.issue(t, token, work, "new-generation")
		leaf, err := x509.ParseCertificate(fresh.cert.Certificate[0])
		if err != nil || !strings.HasSuffix(leaf.Issuer.CommonName, " G2") {
			t.Fatalf("a certificate issued after the rotation comes from %q (%v), want the G2 intermediate", leaf.Issuer.CommonName, err)
		}

		// The operator's steps (deploy/nginx/README.md): the new bundle into
		// PKID_CA and a reload; the refresh script then fetches every
		// intermediate's CRL.
		writeFile(t, chain, string(p.get(t, "/ca/bundle.pem")))
		for _, e := range []*edge{ocspEdge, crlEdge} {
			args := strings.Fields(e.reloadCommand())
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("reloading nginx %s: %v: %s", e.name, err, out)
			}
		}
		if out, err := refresh(); err != nil {
			t.Fatalf("pkid-crl-refresh after the rotation: %v %s", err, out)
		}
		if _, n := crlSerials(t, crlFile); n != 3 {
			t.Fatalf("%s holds %d CRLs after the rotation, want 3 (each intermediate's and the root's)", crlFile, n)
		}
		for _, e := range []*edge{ocspEdge, crlEdge} {
			for _, c := range []*clientCert{old, fresh, bystander} {
				waitFor(t, "nginx "+e.name+" admits "+c.serial, 5*time.Second, func() error {
					if o := e.request(t, "rotated", reqOpts{cert: &c.cert}); !o.admitted() {
						return fmt.Errorf("%v", o)
					}
					return e.oneWorker()
				})
			}
		}

		p.revoke(t, token, old)
		returned := time.Now()
		waitFor(t, "nginx (ssl_ocsp) refuses the revoked certificate of the superseded intermediate", ocspDeadline, func() error {
			if o := ocspEdge.request(t, "old-revoked", reqOpts{cert: &old.cert}); !o.refusedCertificate() || o.verify != "FAILED:certificate revoked" {
				return fmt.Errorf("%v", o)
			}
			return nil
		})
		for {
			if _, err := refresh(); err != nil {
				t.Fatalf("pkid-crl-refresh: %v", err)
			}
			if listed, _ := crlSerials(t, crlFile); listed[old.serial] {
				break
			}
			if time.Since(returned) > crlDeadline {
				t.Fatalf("no CRL listing %s within %v of the revocation", old.serial, crlDeadline)
			}
			time.Sleep(250 * time.Millisecond)
		}
		waitFor(t, "nginx (ssl_crl) refuses the revoked certificate of the superseded intermediate", 5*time.Second, func() error {
			if o := crlEdge.request(t, "old-revoked", reqOpts{cert: &old.cert}); !o.refusedCertificate() || o.verify != "FAILED:certificate revoked" {
				return fmt.Errorf("%v", o)
			}
			return crlEdge.oneWorker()
		})
		for _, e := range []*edge{ocspEdge, crlEdge} {
			for _, c := range []*clientCert{fresh, bystander} {
				if o := e.request(t, "still-valid", reqOpts{cert: &c.cert}); !o.admitted() {
					t.Errorf("nginx %s after the revocation, %s (not revoked): %v; want admitted", e.name, c.serial, o)
				}
			}
		}
	})

	t.Run("pkid down", func(t *testing.T) {
		p.stop()
		o := ocspEdge.request(t, "pkid-down", reqOpts{cert: &bystander.cert})
		if !o.refusedCertificate() || o.verify != "FAILED:certificate status request failed" {
			t.Errorf("ssl_ocsp with pkid down: %v; want refused (fail closed), certificate status request failed", o)
		}
		if o := crlEdge.request(t, "pkid-down", reqOpts{cert: &bystander.cert}); !o.admitted() {
			t.Errorf("ssl_crl with pkid down: %v; want admitted (the CRLs are local and current)", o)
		}
		if _, err := refresh(); err == nil {
			t.Errorf("pkid-crl-refresh with pkid down succeeded; want a failure for the timer to report")
		}
		if o := crlEdge.request(t, "pkid-down-after-refresh", reqOpts{cert: &bystander.cert}); !o.admitted() {
			t.Errorf("ssl_crl after a failed refresh: %v; want admitted (the file is left as it was)", o)
		}
	})
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// checkAdmits makes a request with c through e, with forged identity
// headers, and checks that it reached the upstream with the identity nginx
// read from the certificate and nothing the client forged.
func checkAdmits(t *testing.T, e *edge, app *upstream, c *clientCert) {
	t.Helper()
	o := e.request(t, "valid", reqOpts{cert: &c.cert, header: forgedHeaders})
	if !o.admitted() || o.verify != "SUCCESS" {
		t.Fatalf("a valid certificate: %v; want admitted, client_verify SUCCESS", o)
	}
	h := app.headers(o.path)
	if h == nil {
		t.Fatalf("%s: the upstream did not see the request", o.path)
	}
	leaf, err := x509.ParseCertificate(c.cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.Get("X-Client-Serial"), strings.ToUpper(c.serial); got != want {
		t.Errorf("X-Client-Serial %q, want %q (pkid's serial, upper case)", got, want)
	}
	if got, want := h.Get("X-Client-Subject"), "CN="+leaf.Subject.CommonName+",O=Nginx Edge Inc"; got != want {
		t.Errorf("X-Client-Subject %q, want %q", got, want)
	}
	if got := h.Get("X-Client-Verify"); got != "SUCCESS" {
		t.Errorf("X-Client-Verify %q, want SUCCESS", got)
	}
	// The account is in the certificate, which the upstream gets whole.
	certPEM, err := url.QueryUnescape(h.Get("X-Client-Cert"))
	block, _ := pem.Decode([]byte(certPEM))
	if err != nil || block == nil || string(block.Bytes) != string(leaf.Raw) {
		t.Errorf("X-Client-Cert is not the client's certificate: %q", h.Get("X-Client-Cert"))
	}
	accounts := 0
	for _, u := range leaf.URIs {
		if strings.HasPrefix(u.String(), "urn:pkid:account:") {
			accounts++
		}
	}
	if accounts != 1 {
		t.Errorf("the certificate names %d accounts in urn:pkid:account URIs, want 1", accounts)
	}
	for k, v := range h {
		norm := strings.ReplaceAll(strings.ToLower(k), "_", "-")
		if !strings.HasPrefix(norm, "x-client-") {
			continue
		}
		switch norm {
		case "x-client-serial", "x-client-subject", "x-client-verify", "x-client-cert":
		default:
			t.Errorf("the upstream got %s: %q, which nginx does not set", k, v)
		}
	}
}

// foreignCert is a client certificate nginx must refuse whatever the recipe.
type foreignCert struct {
	name string
	cert tls.Certificate
}

// foreignCerts makes client certificates of CAs that are not pkid's: one
// from an unrelated CA, and one from a CA that took the name of pkid's
// issuing intermediate (sent along with the leaf), which only the
// signature check tells apart. Both name an account as pkid's do.
func foreignCerts(t *testing.T, dir, chainFile string) []foreignCert {
	t.Helper()
	b, err := os.ReadFile(chainFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	intermediate, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	const ext = "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n" +
		"subjectAltName=DNS:client.nginx.test,URI:urn:pkid:account:00000000-0000-0000-0000-000000000000\n"

	other := newOpensslCA(t, dir, "other-ca", "/CN=Some Other CA")
	otherCert, otherKey := other.issue(t, "other-client", "/CN=client.nginx.test", ext)
	otherPEM, _ := os.ReadFile(otherCert)

	// Go, not openssl, makes the impostor: openssl would encode the name
	// as UTF8String where pkid's has PrintableString, and then the names
	// would differ after all.
	impostorPEM, impLeaf, impKey := impostor(t, dir, intermediate.RawSubject)

	return []foreignCert{
		{"another CA", keyPair(t, otherPEM, otherKey)},
		// The leaf's authority key identifier is not pkid's intermediate's
		// key, so OpenSSL takes the impostor the client sent, which no
		// trusted certificate vouches for.
		{"a CA named like pkid's intermediate", keyPair(t, append(impLeaf, impostorPEM...), impKey)},
	}
}

// checkRefusesForeign checks that e refuses the certificates of other CAs
// and a client without a certificate, and that none reaches the upstream.
func checkRefusesForeign(t *testing.T, e *edge, app *upstream, foreign []foreignCert) {
	t.Helper()
	for _, f := range foreign {
		o := e.request(t, "foreign", reqOpts{cert: &f.cert})
		// OpenSSL goes on checking after the first error, and the
		// reason logged is the last one: with ssl_crl, the impostor's
		// missing CRL. What matters is that verification failed.
		if !o.refusedCertificate() || !strings.HasPrefix(o.verify, "FAILED:") {
			t.Errorf("%s: %v; want refused, client_verify FAILED:...", f.name, o)
		}
		if app.headers(o.path) != nil {
			t.Errorf("%s: the request reached the upstream", f.name)
		}
	}
	o := e.request(t, "no-certificate", reqOpts{})
	if o.status != http.StatusBadRequest || !strings.Contains(o.body, "No required SSL certificate was sent") || app.headers(o.path) != nil {
		t.Errorf("no client certificate: %v; want 400 No required SSL certificate was sent", o)
	}
}

// replaceOnce returns an edit that replaces old, which must occur exactly
// once in the rendered recipe, by new.
func replaceOnce(t *testing.T, old, new string) func(string) string {
	return func(s string) string {
		if n := strings.Count(s, old); n != 1 {
			t.Fatalf("the recipe has %q %d times, want once", old, n)
		}
		return strings.Replace(s, old, new, 1)
	}
}

// impostor makes a self-signed CA whose subject is name, byte for byte, and
// a client certificate it signed; it returns the CA and the leaf, PEM, and
// the leaf's key file.
func impostor(t *testing.T, dir string, name []byte) (caPEM, leafPEM []byte, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), RawSubject: name,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	account, _ := url.Parse("urn:pkid:account:00000000-0000-0000-0000-000000000000")
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client.nginx.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames: []string{"client.nginx.test"}, URIs: []*url.URL{account},
	}, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(dir, "impostor-client.key")
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), keyFile
}
