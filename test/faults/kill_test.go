package faults

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/testbin"
	"github.com/pkid/pkid/internal/testdb"
)

// TestKillPkidDuringIssuance SIGKILLs `pkid serve` while clients issue
// certificates, restarts it on the same address, and checks the client log
// against the database (SECURITY.md P1; issue 6): every certificate a
// client received is issued in the database with the same DER, no serial
// twice, and every row the crash left pending has a good OCSP response and
// is resolved the documented way (docs/DESIGN.md "What a crash leaves
// behind"): an administrator revokes it.
func TestKillPkidDuringIssuance(t *testing.T) {
	dbURL := testdb.Missing(t) // pkid migrate creates it
	env := pkidEnv(dbURL)
	admin := testbin.MustSetup(t, env)
	addr := testbin.FreeAddr(t)
	d := testbin.LaunchNode(t, "pkid (first run)", env, addr)
	if err := d.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	c := newClient()
	token := newAccount(t, c, d.URL, admin)
	issuer := fetchIssuer(t, c, d.URL)

	var l ledger
	var issued atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if o := l.issue(c, d.URL, token); o.status == http.StatusCreated {
					issued.Add(1)
				} else {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	deadline := time.Now().Add(20 * time.Second)
	for issued.Load() < 60 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	d.Kill()
	killedAt := time.Now()
	t.Logf("SIGKILL after %d certificates", issued.Load())
	time.Sleep(200 * time.Millisecond) // clients meet the dead address
	cancel()
	wg.Wait()

	d2 := testbin.LaunchNode(t, "pkid (after SIGKILL)", env, addr)
	if err := d2.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted and ready %s after the SIGKILL", time.Since(killedAt).Round(time.Millisecond))
	if o := l.issue(c, d2.URL, token); o.status != http.StatusCreated {
		t.Fatalf("issue after restart: %d %v", o.status, o.err)
	}

	rows := readRows(t, dbURL)
	tl := compare(t, &l, rows)
	t.Logf("client log: %d issued, %d refused, %d without an answer (in flight at the SIGKILL or sent while pkid was down); %d issued rows whose answer was lost; %d pending rows",
		tl.issued, tl.refused, tl.transport, tl.unanswered, len(tl.pending))
	if tl.transport == 0 {
		t.Log("no request was in flight at the SIGKILL")
	}
	// Every certificate recorded before the SIGKILL, issued or pending, is
	// answered "good" by the restarted node (SECURITY.md P1, P4).
	for s, r := range rows {
		if st, err := ocspStatus(c, d2.URL, issuer, s, false); err != nil || st != "good" {
			t.Errorf("OCSP for %s (%s) after restart: %q %v, want good", s, r.state, st, err)
		}
	}
	for _, s := range tl.pending {
		if st, err := ocspStatus(c, d2.URL, issuer, s, false); err != nil || st != "good" {
			t.Errorf("OCSP for pending %s after restart: %q %v, want good", s, st, err)
		}
		// The documented way out: an administrator revokes it.
		mustSend(t, c, "POST", d2.URL+"/admin/api/certificates/"+s+"/revoke", admin, map[string]any{"reason": "superseded"}, http.StatusOK)
		if st, err := ocspStatus(c, d2.URL, issuer, s, false); err != nil || st != "revoked" {
			t.Errorf("OCSP for pending %s after the admin revoked it: %q %v, want revoked", s, st, err)
		}
	}
	if len(tl.pending) > 0 {
		waitCRL(t, c, d2.URL, issuer, tl.pending[0], 15*time.Second)
	}
}
