package faults

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/testbin"
	"github.com/pkid/pkid/internal/testpg"
)

// TestPostgresStopped runs two `pkid serve` nodes on a private Postgres
// cluster and takes the database away under them (SECURITY.md P2, P4;
// issue 3 and 6 acceptance):
//
//   - while it is down, both responders answer good and revoked from
//     memory, /crl serves the last CRL, issuance and revocation answer 503
//     problem documents, /readyz 503;
//   - when it is back, both nodes issue and revoke again without a restart,
//     and a revocation on one reaches the other;
//   - under issuance load, through a fast shutdown and through a SIGKILL of
//     every Postgres process, every 201 a client received is in the
//     database byte for byte, and nothing else was answered 2xx.
func TestPostgresStopped(t *testing.T) {
	pg := testpg.Start(t)
	dbURL := pg.URL("pkid")
	env := pkidEnv(dbURL)
	admin := testbin.MustSetup(t, env)
	nodes := []*testbin.Node{testbin.StartNode(t, "node A", env), testbin.StartNode(t, "node B", env)}
	a := nodes[0]
	c := newClient()
	token := newAccount(t, c, a.URL, admin)
	issuer := fetchIssuer(t, c, a.URL)
	var l ledger

	var serials []string
	for range 3 {
		o := l.issue(c, a.URL, token)
		if o.status != http.StatusCreated || o.err != nil {
			t.Fatalf("issue before the outage: %d %v", o.status, o.err)
		}
		serials = append(serials, o.serial)
	}
	revoked, good := serials[0], serials[1:]
	if o := l.revoke(c, a.URL, token, revoked, "keyCompromise"); o.status != http.StatusOK || o.err != nil {
		t.Fatalf("revoke before the outage: %d %v", o.status, o.err)
	}
	// Both responders know every serial before the outage, as they would
	// once relying parties have asked; the CRL lists the revocation.
	want := map[string]string{revoked: "revoked", good[0]: "good", good[1]: "good"}
	for _, n := range nodes {
		for s, st := range want {
			waitOCSP(t, c, n.URL, issuer, s, st, 5*time.Second)
		}
	}
	crlDER := waitCRL(t, c, a.URL, issuer, revoked, 15*time.Second)
	waitCRL(t, c, nodes[1].URL, issuer, revoked, 15*time.Second)

	pg.Stop()
	t.Log("Postgres stopped (fast shutdown)")
	stoppedAt := time.Now()
	for _, n := range nodes {
		checkServingFromMemory(t, c, n, issuer, want, crlDER)
		for _, o := range []outcome{l.issue(c, n.URL, token), l.revoke(c, n.URL, token, good[0], "superseded")} {
			if o.status != http.StatusServiceUnavailable || o.problem != nil {
				t.Errorf("%s: %s while Postgres is down: %d (problem: %v, error: %v), want a 503 problem", n.Name, o.op, o.status, o.problem, o.err)
			}
			t.Logf("%s: %s answered %d in %s while Postgres is down", n.Name, o.op, o.status, o.latency.Round(time.Millisecond))
		}
	}
	// Long enough for the background jobs (OCSP catch-up, LISTEN, CRL
	// cache) to have failed and be retrying with backoff.
	time.Sleep(time.Until(stoppedAt.Add(3 * time.Second)))
	for _, n := range nodes {
		checkServingFromMemory(t, c, n, issuer, want, crlDER)
	}

	pg.Start()
	recovery := measureRecovery(t, c, &l, nodes, token)
	t.Logf("recovery after Postgres accepts connections again: %s", recovery)

	// The revocation refused during the outage now works, and reaches the
	// other node. Its LISTEN connection may still be waiting out its
	// reconnection backoff (up to 5 s); the OCSP cache's catch-up, every
	// 2 s, bounds the delay meanwhile.
	start := time.Now()
	if o := l.revoke(c, a.URL, token, good[0], "superseded"); o.status != http.StatusOK || o.err != nil {
		t.Fatalf("revoke after recovery: %d %v", o.status, o.err)
	}
	waitOCSP(t, c, nodes[1].URL, issuer, good[0], "revoked", 4*time.Second)
	t.Logf("after recovery, a revocation on node A was visible on node B after %s", time.Since(start).Round(time.Millisecond))
	waitCRL(t, c, a.URL, issuer, good[0], 15*time.Second)

	for _, outage := range []struct {
		name string
		stop func()
	}{
		{"fast shutdown", pg.Stop},
		{"SIGKILL of every Postgres process", pg.Kill},
	} {
		issueThroughOutage(t, &l, c, nodes, token, outage.name, outage.stop, pg.Start)
	}

	tl := compare(t, &l, readRows(t, dbURL), http.StatusServiceUnavailable)
	t.Logf("client log: %d issued, %d refused with 503, %d without an answer; %d issued rows whose answer was lost; %d pending rows",
		tl.issued, tl.refused, tl.transport, tl.unanswered, len(tl.pending))
	if tl.transport > 0 {
		t.Errorf("%d issue requests got no HTTP answer: pkid must answer 503, not drop the request", tl.transport)
	}
	for _, s := range tl.pending {
		// A pending row left by the outage: the client got no certificate,
		// but a signature may exist, so OCSP must vouch for it (good until
		// revoked) rather than say unauthorized.
		for _, n := range nodes {
			if st, err := ocspStatus(c, n.URL, issuer, s, false); err != nil || st != "good" {
				t.Errorf("%s: OCSP for pending %s: %q %v, want good", n.Name, s, st, err)
			}
		}
	}
}

// checkServingFromMemory checks what n must still do without its database:
// OCSP (POST and GET) as before, never good for a serial it never issued,
// the same CRL, /healthz 200 and /readyz 503.
func checkServingFromMemory(t *testing.T, c *http.Client, n *testbin.Node, issuer *x509.Certificate, want map[string]string, crlDER []byte) {
	t.Helper()
	for s, st := range want {
		for _, get := range []bool{false, true} {
			got, err := ocspStatus(c, n.URL, issuer, s, get)
			if err != nil || got != st {
				t.Errorf("%s: OCSP (GET %v) for %s while Postgres is down: %q %v, want %s", n.Name, get, s, got, err, st)
			}
		}
	}
	if r, err := ocspAsk(c, n.URL, issuer, revokedSerialOf(want), false); err == nil && r.RevocationReason != ocsp.KeyCompromise {
		t.Errorf("%s: revocation reason %d, want keyCompromise", n.Name, r.RevocationReason)
	}
	// A serial no one issued: unauthorized from the negative cache, or
	// tryLater because the database cannot be asked; never good.
	if got, err := ocspStatus(c, n.URL, issuer, "7fffffffffffffffffffffffffffffff", false); err != nil || (got != "unauthorized" && got != "tryLater") {
		t.Errorf("%s: OCSP for an unknown serial while Postgres is down: %q %v", n.Name, got, err)
	}
	for _, path := range []string{"/crl", "/crl.pem"} {
		r, err := send(c, "GET", n.URL+path, "", nil)
		if err != nil || r.status != http.StatusOK {
			t.Errorf("%s: GET %s while Postgres is down: %d %v", n.Name, path, r.status, err)
		} else if path == "/crl" && !bytes.Equal(r.body, crlDER) {
			t.Errorf("%s: GET /crl while Postgres is down serves another CRL than before", n.Name)
		}
	}
	for path, code := range map[string]int{"/readyz": http.StatusServiceUnavailable, "/healthz": http.StatusOK} {
		if r, err := send(c, "GET", n.URL+path, "", nil); err != nil || r.status != code {
			t.Errorf("%s: GET %s while Postgres is down: %d %v, want %d", n.Name, path, r.status, err, code)
		}
	}
}

func revokedSerialOf(want map[string]string) string {
	for s, st := range want {
		if st == "revoked" {
			return s
		}
	}
	return ""
}

// measureRecovery returns how long after Postgres accepts connections again
// every node answers /readyz 200 and issues a certificate (pkid is not
// restarted: its pool reconnects).
func measureRecovery(t *testing.T, c *http.Client, l *ledger, nodes []*testbin.Node, token string) time.Duration {
	t.Helper()
	up := time.Now()
	deadline := up.Add(30 * time.Second)
	for _, n := range nodes {
		ready := false
		for !ready && time.Now().Before(deadline) {
			r, err := send(c, "GET", n.URL+"/readyz", "", nil)
			ready = err == nil && r.status == http.StatusOK
			if !ready {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if !ready {
			t.Fatalf("%s: /readyz not 200 within 30 s of Postgres coming back", n.Name)
		}
		readyAfter := time.Since(up)
		for {
			o := l.issue(c, n.URL, token)
			if o.status == http.StatusCreated {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no certificate within 30 s of Postgres coming back: last answer %d %v", n.Name, o.status, o.err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("%s: /readyz 200 after %s, issuing after %s", n.Name, readyAfter.Round(time.Millisecond), time.Since(up).Round(time.Millisecond))
	}
	return time.Since(up).Round(time.Millisecond)
}

// issueThroughOutage runs four clients issuing through both nodes, stops
// Postgres with stop a second in, starts it again two seconds later, and
// lets the clients go on until each node has issued again.
func issueThroughOutage(t *testing.T, l *ledger, c *http.Client, nodes []*testbin.Node, token, name string, stop, start func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 4 {
		base := nodes[i%len(nodes)].URL
		wg.Go(func() {
			for ctx.Err() == nil {
				if o := l.issue(c, base, token); o.status != http.StatusCreated {
					time.Sleep(20 * time.Millisecond) // a client backing off
				}
			}
		})
	}
	before := len(l.all())
	time.Sleep(time.Second)
	stop()
	down := time.Now()
	time.Sleep(2 * time.Second)
	start()
	up := time.Now()
	// Run until every node has issued after the restart, at most 30 s.
	deadline := up.Add(30 * time.Second)
	for !issuedSince(l, nodes, up) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()

	var during, after []string
	counts := map[string]int{}
	var first time.Duration
	for _, o := range l.all()[before:] {
		counts[fmt.Sprint(o.status)]++
		if o.status == http.StatusCreated && o.at.After(up) && (first == 0 || o.at.Sub(up) < first) {
			first = o.at.Sub(up)
		}
		if o.status != http.StatusCreated && o.at.After(down) && o.at.Before(up) {
			during = append(during, fmt.Sprint(o.status))
		}
		if o.status == http.StatusCreated && o.at.After(up) {
			after = append(after, o.serial)
		}
	}
	if len(during) == 0 {
		t.Errorf("%s: no request was refused while Postgres was down: the outage was not exercised", name)
	}
	if len(after) == 0 {
		t.Fatalf("%s: nothing issued after Postgres came back", name)
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	summary := ""
	for _, k := range keys {
		summary += fmt.Sprintf(" %s×%d", k, counts[k])
	}
	t.Logf("%s under load: answers by status:%s; first 201 %s after Postgres accepted connections again", name, summary, first.Round(time.Millisecond))
}

// issuedSince reports whether every node has answered 201 after since.
func issuedSince(l *ledger, nodes []*testbin.Node, since time.Time) bool {
	issued := map[string]bool{}
	for _, o := range l.all() {
		if o.status == http.StatusCreated && o.at.After(since) {
			issued[o.base] = true
		}
	}
	for _, n := range nodes {
		if !issued[n.URL] {
			return false
		}
	}
	return true
}

// waitOCSP polls base's responder until it says want for serial, failing
// the test after timeout.
func waitOCSP(t *testing.T, c *http.Client, base string, issuer *x509.Certificate, serial, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, err := ocspStatus(c, base, issuer, serial, false)
		if err == nil && got == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: OCSP for %s is %q (%v) after %s, want %s", base, serial, got, err, timeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCRL polls base's /crl until it is signed by issuer and lists serial,
// and returns its DER.
func waitCRL(t *testing.T, c *http.Client, base string, issuer *x509.Certificate, serial string, timeout time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r, err := send(c, "GET", base+"/crl", "", nil)
		if err == nil && r.status == http.StatusOK {
			crl, err := x509.ParseRevocationList(r.body)
			if err != nil {
				t.Fatalf("%s/crl: %v", base, err)
			}
			if err := crl.CheckSignatureFrom(issuer); err != nil {
				t.Fatalf("%s/crl: %v", base, err)
			}
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber.Text(16) == serial {
					return r.body
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/crl does not list %s after %s", base, serial, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
