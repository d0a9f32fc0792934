package faults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/testdb"
)

// failAuditSQL makes audit inserts fail the way a broken audit sink would:
// a trigger that raises. %s is the trigger's WHEN condition.
const failAuditSQL = `
CREATE OR REPLACE FUNCTION fault_audit_fails() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'fault test: the audit trail cannot be written (%%)', NEW.action;
END $$;
CREATE TRIGGER fault_audit_fails BEFORE INSERT ON audit_events
	FOR EACH ROW WHEN (%s) EXECUTE FUNCTION fault_audit_fails();`

const dropFailAuditSQL = `DROP TRIGGER fault_audit_fails ON audit_events`

// TestAuditFailure makes audit inserts fail with a trigger (SECURITY.md P9;
// issue 6): an operation whose audit event cannot be written fails with a
// 5xx problem and changes nothing, and no certificate is signed. When only
// the final "issued" event fails, after the signature, the row stays
// pending: the client gets nothing, OCSP answers good for it, and an
// administrator's revocation resolves it (docs/DESIGN.md).
func TestAuditFailure(t *testing.T) {
	url := testdb.New(t)
	initHierarchy(t, url, issuance.HierarchyConfig{}, time.Now())
	// No background jobs: the CRL job signs with the intermediate too, and
	// the signature count must move only through what the test does.
	n := startNode(t, "node", url, app.Options{}, false)
	c := newClient()
	admin := n.adminToken(t)
	token := newAccount(t, c, n.base, admin)
	issuer := n.app.Hierarchy.Intermediate().Cert
	var l ledger
	victim := l.issue(c, n.base, token)
	if victim.status != http.StatusCreated {
		t.Fatalf("issue: %d %v", victim.status, victim.err)
	}
	// The responder signs and stores a certificate's first response when
	// first asked: ask, so that the victim has one to compare.
	if st, err := ocspStatus(c, n.base, issuer, victim.serial, false); err != nil || st != "good" {
		t.Fatalf("OCSP for the victim: %q %v, want good", st, err)
	}

	type state struct {
		rows, issued int
		sigs         uint64
		victimOCSP   []byte // the stored response
		victimRevoke int    // 1 when revoked in the database
	}
	snapshot := func() state {
		var s state
		s.rows = queryInt(t, url, "SELECT count(*) FROM certificates")
		s.issued = queryInt(t, url, "SELECT count(*) FROM certificates WHERE state = 'issued'")
		s.sigs = n.app.Hierarchy.Intermediate().CertificatesSigned()
		s.victimRevoke = queryInt(t, url, "SELECT count(*) FROM certificates WHERE serial = $1 AND revoked_at IS NOT NULL", victim.serial)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, "SELECT der FROM ocsp_responses WHERE serial = $1", victim.serial).Scan(&s.victimOCSP); err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("every audit insert fails", func(t *testing.T) {
		execSQL(t, url, fmt.Sprintf(failAuditSQL, "true"))
		defer execSQL(t, url, dropFailAuditSQL)
		for _, tc := range []struct {
			name string
			call func() (int, error) // status, and why the body is not a problem document
		}{
			{"issue", func() (int, error) { o := l.issue(c, n.base, token); return o.status, o.problem }},
			{"issue refused for a bad CSR (the refusal cannot be audited)", func() (int, error) {
				r, err := send(c, "POST", n.base+"/api/v1/certificates", token, map[string]any{"csr": "not a CSR"})
				if err != nil {
					return 0, err
				}
				return r.status, checkProblem(r)
			}},
			{"revoke", func() (int, error) {
				o := l.revoke(c, n.base, token, victim.serial, "keyCompromise")
				return o.status, o.problem
			}},
			{"admin revoke", func() (int, error) {
				r, err := send(c, "POST", n.base+"/admin/api/certificates/"+victim.serial+"/revoke", admin, map[string]any{"reason": "superseded"})
				if err != nil {
					return 0, err
				}
				return r.status, checkProblem(r)
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := snapshot()
				status, problem := tc.call()
				if status/100 != 5 || problem != nil {
					t.Errorf("answered %d (problem document: %v), want a 5xx problem", status, problem)
				}
				if after := snapshot(); after.rows != before.rows || after.issued != before.issued || after.sigs != before.sigs ||
					after.victimRevoke != before.victimRevoke || !bytes.Equal(after.victimOCSP, before.victimOCSP) {
					t.Errorf("something changed: before %d rows, %d issued, %d signatures, revoked %d; after %d, %d, %d, %d; stored OCSP changed: %v",
						before.rows, before.issued, before.sigs, before.victimRevoke, after.rows, after.issued, after.sigs, after.victimRevoke,
						!bytes.Equal(after.victimOCSP, before.victimOCSP))
				}
				if st, err := ocspStatus(c, n.base, issuer, victim.serial, false); err != nil || st != "good" {
					t.Errorf("OCSP for the certificate: %q %v, want good (nothing was revoked)", st, err)
				}
			})
		}
	})

	t.Run("the issued event fails after the signature", func(t *testing.T) {
		execSQL(t, url, fmt.Sprintf(failAuditSQL, "NEW.action = 'certificate.issued'"))
		before := snapshot()
		o := l.issue(c, n.base, token)
		execSQL(t, url, dropFailAuditSQL)
		if o.status/100 != 5 || o.problem != nil {
			t.Fatalf("answered %d (problem document: %v), want a 5xx problem", o.status, o.problem)
		}
		after := snapshot()
		if after.sigs != before.sigs+1 || after.rows != before.rows+1 || after.issued != before.issued {
			t.Fatalf("want one signature and one pending row: signatures %d→%d, rows %d→%d, issued %d→%d",
				before.sigs, after.sigs, before.rows, after.rows, before.issued, after.issued)
		}
		pending := readPending(t, url)
		if len(pending) != 1 {
			t.Fatalf("pending rows %v, want one", pending)
		}
		serial := pending[0]
		if st, err := ocspStatus(c, n.base, issuer, serial, false); err != nil || st != "good" {
			t.Errorf("OCSP for the pending certificate: %q %v, want good: a signature exists", st, err)
		}
		if r, err := send(c, "GET", n.base+"/api/v1/certificates/"+serial, token, nil); err != nil || r.status != http.StatusNotFound {
			t.Errorf("the account sees its pending certificate: %d %v, want 404", r.status, err)
		}
		// The documented way out: an administrator revokes it.
		mustSend(t, c, "POST", n.base+"/admin/api/certificates/"+serial+"/revoke", admin, map[string]any{"reason": "superseded"}, http.StatusOK)
		if st, err := ocspStatus(c, n.base, issuer, serial, false); err != nil || st != "revoked" {
			t.Errorf("OCSP after the administrator revoked the pending certificate: %q %v, want revoked", st, err)
		}
	})

	tl := compare(t, &l, readRows(t, url), http.StatusInternalServerError, http.StatusServiceUnavailable)
	if tl.issued != 1 {
		t.Errorf("%d certificates handed out, want only the one before the trigger", tl.issued)
	}
}

// readPending returns the serials of the pending rows.
func readPending(t *testing.T, url string) []string {
	t.Helper()
	var out []string
	for s, r := range readRows(t, url) {
		if r.state == "pending" {
			out = append(out, s)
		}
	}
	return out
}
