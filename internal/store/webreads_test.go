package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/testdb"
)

func TestSearchAccounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := &fixture{db: db}
	names := []string{"Acme Robotics", "acme labs", "Globex", "100% Pure_Data", "Initech"}
	ids := map[string]string{}
	for _, n := range names {
		ids[n] = f.newAccount(t, n).ID
	}
	// Initech is standard and suspended.
	if _, err := db.UpdateAccount(ctx, ids["Initech"], func(a *pki.Account, _ *pki.AuditEvent) error {
		a.Plan, a.Status = pki.PlanStandard, pki.AccountSuspended
		return nil
	}, event("account.updated")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		filter    pki.AccountFilter
		want      []string // newest first
		wantTotal int
	}{
		{"everything, newest first", pki.AccountFilter{}, []string{"Initech", "100% Pure_Data", "Globex", "acme labs", "Acme Robotics"}, 5},
		{"substring ignoring case", pki.AccountFilter{Text: "ACME"}, []string{"acme labs", "Acme Robotics"}, 2},
		{"percent taken literally", pki.AccountFilter{Text: "0%"}, []string{"100% Pure_Data"}, 1},
		{"underscore taken literally", pki.AccountFilter{Text: "e_d"}, []string{"100% Pure_Data"}, 1},
		{"a wildcard that matches nothing literally", pki.AccountFilter{Text: "_"}, []string{"100% Pure_Data"}, 1},
		{"an id", pki.AccountFilter{Text: ids["Globex"]}, []string{"Globex"}, 1},
		{"plan", pki.AccountFilter{Plan: pki.PlanStandard}, []string{"Initech"}, 1},
		{"status", pki.AccountFilter{Status: pki.AccountActive, Text: "o"}, []string{"Globex", "Acme Robotics"}, 2},
		{"first page", pki.AccountFilter{Limit: 2}, []string{"Initech", "100% Pure_Data"}, 5},
		{"last page", pki.AccountFilter{Limit: 2, Offset: 4}, []string{"Acme Robotics"}, 5},
		{"past the end", pki.AccountFilter{Limit: 2, Offset: 10}, nil, 5},
		{"past the end, filtered", pki.AccountFilter{Text: "acme", Offset: 10}, nil, 2},
		{"hostile text", pki.AccountFilter{Text: "'; DROP TABLE accounts; --\x00"}, nil, 0},
	}
	for _, tc := range tests {
		got, total, err := db.SearchAccounts(ctx, tc.filter)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var gotNames []string
		for _, a := range got {
			gotNames = append(gotNames, a.Name)
		}
		if total != tc.wantTotal || len(gotNames) != len(tc.want) {
			t.Errorf("%s: %q of %d, want %q of %d", tc.name, gotNames, total, tc.want, tc.wantTotal)
			continue
		}
		for i := range gotNames {
			if gotNames[i] != tc.want[i] {
				t.Errorf("%s: %q, want %q", tc.name, gotNames, tc.want)
				break
			}
		}
	}
	for _, bad := range []pki.AccountFilter{{Offset: -1}, {Limit: -1}, {Text: string(make([]byte, 201))}} {
		var re *pki.RequestError
		if _, _, err := db.SearchAccounts(ctx, bad); !errors.As(err, &re) {
			t.Errorf("%+v: %v, want a RequestError", bad, err)
		}
	}

	counts, err := db.AccountCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[pki.PlanEnterprise][pki.AccountActive] != 4 || counts[pki.PlanStandard][pki.AccountSuspended] != 1 ||
		counts[pki.PlanStandard][pki.AccountActive] != 0 {
		t.Errorf("AccountCounts = %v", counts)
	}
}

func TestCertificateReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := newFixture(t, db)
	other := f.newAccount(t, "Other")
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	mk := func(accountID string, notAfter time.Duration) *pki.Certificate {
		c := f.pending(accountID, nil)
		c.NotBefore, c.NotAfter = now.Add(-day), now.Add(notAfter)
		return f.issue(t, c)
	}
	in3 := mk(f.account.ID, 3*day)
	in5 := mk(f.account.ID, 5*day)
	in5other := mk(other.ID, 5*day)
	mk(f.account.ID, 60*day)
	expired := f.pending(f.account.ID, nil)
	expired.NotBefore, expired.NotAfter = now.Add(-10*day), now.Add(-day)
	f.issue(t, expired)
	revoked := mk(f.account.ID, 2*day)
	resp := standInResponse(revoked)
	if _, err := db.Revoke(ctx, []*pki.Revocation{{Serial: revoked.Serial, RevokedAt: now, Reason: pki.ReasonSuperseded,
		Response: resp, Event: event("certificate.revoked")}}, nil); err != nil {
		t.Fatal(err)
	}
	pending := f.pending(f.account.ID, nil) // never listed or counted
	pending.NotAfter = now.Add(day)
	if err := db.CreatePending(ctx, pending, event("certificate.signing")); err != nil {
		t.Fatal(err)
	}

	active, expiring, revokedN, err := db.CertificateCounts(ctx, now, now.Add(7*day))
	if err != nil {
		t.Fatal(err)
	}
	if active != 4 || expiring != 3 || revokedN != 1 {
		t.Errorf("CertificateCounts = %d active, %d expiring, %d revoked; want 4, 3, 1", active, expiring, revokedN)
	}

	tests := []struct {
		name   string
		filter pki.CertificateFilter
		want   []pki.Serial
	}{
		{"every account, soonest first", pki.CertificateFilter{Now: now}, []pki.Serial{in3.Serial, in5.Serial, in5other.Serial}},
		{"one account", pki.CertificateFilter{Now: now, AccountID: other.ID}, []pki.Serial{in5other.Serial}},
		{"an account id that is not a UUID", pki.CertificateFilter{Now: now, AccountID: "nope"}, nil},
	}
	for _, tc := range tests {
		got, next, err := db.ExpiringCertificates(ctx, tc.filter, now.Add(7*day))
		if err != nil || next != "" || !sameSerials(got, tc.want) {
			t.Errorf("%s: %v (next %q, %v), want %v", tc.name, serials(got), next, err, tc.want)
		}
	}
	// Pages follow the cursor in notAfter order; ties break by serial.
	var all []pki.Serial
	cursor := ""
	for range 5 {
		page, next, err := db.ExpiringCertificates(ctx, pki.CertificateFilter{Now: now, Cursor: cursor, Limit: 1}, now.Add(7*day))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, serials(page)...)
		if cursor = next; cursor == "" {
			break
		}
	}
	if len(all) != 3 || all[0] != in3.Serial {
		t.Errorf("paged: %v", all)
	}
	var re *pki.RequestError
	if _, _, err := db.ExpiringCertificates(ctx, pki.CertificateFilter{Now: now, Cursor: "garbage"}, now.Add(day)); !errors.As(err, &re) {
		t.Errorf("a made-up cursor: %v, want a RequestError", err)
	}
}

func serials(certs []*pki.Certificate) []pki.Serial {
	var out []pki.Serial
	for _, c := range certs {
		out = append(out, c.Serial)
	}
	return out
}

// sameSerials compares in order, except that the two certificates of equal
// notAfter may come in either (serial) order.
func sameSerials(got []*pki.Certificate, want []pki.Serial) bool {
	if len(got) != len(want) {
		return false
	}
	seen := map[pki.Serial]bool{}
	for _, c := range got {
		seen[c.Serial] = true
	}
	for i, s := range want {
		if !seen[s] {
			return false
		}
		if i == 0 && got[0].Serial != s {
			return false
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i].NotAfter.Before(got[i-1].NotAfter) ||
			got[i].NotAfter.Equal(got[i-1].NotAfter) && got[i].Serial < got[i-1].Serial {
			return false
		}
	}
	return true
}

func TestSearchAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	acct := (&fixture{db: db}).newAccount(t, "Acme") // writes one account.create event
	for _, ev := range []pki.AuditEvent{
		{Actor: "admin:alice", Action: "token.minted", Outcome: pki.OutcomeSuccess, AccountID: acct.ID},
		{Actor: "admin:bob", Action: "token.minted", Outcome: pki.OutcomeSuccess, AccountID: acct.ID},
		{Actor: "admin:alice", Action: "admin.login", Outcome: pki.OutcomeSuccess},
		{Actor: "anonymous", Action: "admin.login.failed", Outcome: pki.OutcomeFailure},
	} {
		if err := db.RecordAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	count := func(f pki.AuditFilter) int {
		t.Helper()
		evs, err := db.SearchAudit(ctx, f)
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].ID >= evs[i-1].ID {
				t.Errorf("%+v: not newest first", f)
			}
		}
		return len(evs)
	}
	all, err := db.SearchAudit(ctx, pki.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		filter pki.AuditFilter
		want   int
	}{
		{"everything", pki.AuditFilter{}, 5},
		{"account", pki.AuditFilter{AccountID: acct.ID}, 3},
		{"actor", pki.AuditFilter{Actor: "admin:alice"}, 2},
		{"action", pki.AuditFilter{Action: "token.minted"}, 2},
		{"actor and action", pki.AuditFilter{Actor: "admin:alice", Action: "token.minted"}, 1},
		{"account and actor", pki.AuditFilter{AccountID: acct.ID, Actor: "admin:bob"}, 1},
		{"older than the newest", pki.AuditFilter{BeforeID: all[0].ID}, 4},
		{"a page", pki.AuditFilter{BeforeID: all[1].ID, Limit: 2}, 2},
		{"an account id that is not a UUID", pki.AuditFilter{AccountID: "x"}, 0},
		{"an actor no one is", pki.AuditFilter{Actor: "admin:alice' OR '1'='1"}, 0},
	}
	for _, tc := range tests {
		if got := count(tc.filter); got != tc.want {
			t.Errorf("%s: %d events, want %d", tc.name, got, tc.want)
		}
	}
	var re *pki.RequestError
	if _, err := db.SearchAudit(ctx, pki.AuditFilter{BeforeID: -1}); !errors.As(err, &re) {
		t.Errorf("negative before: %v", err)
	}
}
