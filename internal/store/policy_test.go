package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

var caKeyTypes = []pki.KeyType{pki.KeyECDSAP256, pki.KeyECDSAP384, pki.KeyRSA2048, pki.KeyRSA3072, pki.KeyRSA4096}

func TestAccountPolicyDefaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := &fixture{db: db}
	a := f.newAccount(t, "Acme")

	p, err := db.AccountPolicy(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := pki.AccountPolicy{AccountID: a.ID, AllowedNames: []string{"*"}, KeyTypes: caKeyTypes,
		MaxActiveCertificates: 1000, MaxIssuancesPerHour: 100, UpdatedBy: "system"}
	p.UpdatedAt = time.Time{}
	if !policyEqual(p, &want) {
		t.Errorf("default policy = %+v, want %+v", p, want)
	}
	for _, id := range []string{newUUID(), "not-a-uuid", ""} {
		if _, err := db.AccountPolicy(ctx, id); !errors.Is(err, pki.ErrNotFound) {
			t.Errorf("AccountPolicy(%q) = %v, want ErrNotFound", id, err)
		}
		if _, _, err := db.IssuancePolicy(ctx, id, time.Now()); !errors.Is(err, pki.ErrNotFound) {
			t.Errorf("IssuancePolicy(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func policyEqual(a, b *pki.AccountPolicy) bool {
	return a.AccountID == b.AccountID && slices.Equal(a.AllowedNames, b.AllowedNames) &&
		a.AllowURISANs == b.AllowURISANs && slices.Equal(a.KeyTypes, b.KeyTypes) &&
		a.MaxValidityDays == b.MaxValidityDays && a.MaxActiveCertificates == b.MaxActiveCertificates &&
		a.MaxIssuancesPerHour == b.MaxIssuancesPerHour && a.UpdatedAt.Equal(b.UpdatedAt) && a.UpdatedBy == b.UpdatedBy
}

func TestUpdateAccountPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := &fixture{db: db}
	a := f.newAccount(t, "Acme")
	errRefused := errors.New("refused by change")
	ev := pki.AuditEvent{Actor: "admin:alice", Action: "account.policy.updated", Outcome: pki.OutcomeSuccess}

	tests := []struct {
		name   string
		id     string
		change func(*pki.AccountPolicy, *pki.AuditEvent) error
		want   error // nil: saved
		saved  func(*pki.AccountPolicy) bool
	}{
		{"narrow everything", a.ID, func(p *pki.AccountPolicy, ev *pki.AuditEvent) error {
			p.AllowedNames = []string{"*.acme.example", "api.acme.example"}
			p.AllowURISANs = true
			p.KeyTypes = []pki.KeyType{pki.KeyECDSAP256}
			p.MaxValidityDays, p.MaxActiveCertificates, p.MaxIssuancesPerHour = 30, 5, 2
			ev.Detail = map[string]any{"changed": "all"}
			return nil
		}, nil, func(p *pki.AccountPolicy) bool {
			return slices.Equal(p.AllowedNames, []string{"*.acme.example", "api.acme.example"}) && p.AllowURISANs &&
				slices.Equal(p.KeyTypes, []pki.KeyType{pki.KeyECDSAP256}) && p.MaxValidityDays == 30 &&
				p.MaxActiveCertificates == 5 && p.MaxIssuancesPerHour == 2 && p.UpdatedBy == "admin:alice"
		}},
		{"no names at all", a.ID, func(p *pki.AccountPolicy, _ *pki.AuditEvent) error {
			p.AllowedNames = nil
			return nil
		}, nil, func(p *pki.AccountPolicy) bool { return p.AllowedNames != nil && len(p.AllowedNames) == 0 }},
		{"change refuses", a.ID, func(*pki.AccountPolicy, *pki.AuditEvent) error { return errRefused }, errRefused, nil},
		{"unknown account", newUUID(), func(*pki.AccountPolicy, *pki.AuditEvent) error { return nil }, pki.ErrNotFound, nil},
		{"database refuses an unknown key type", a.ID, func(p *pki.AccountPolicy, _ *pki.AuditEvent) error {
			p.KeyTypes = []pki.KeyType{"ed25519"}
			return nil
		}, errAny, nil},
		{"database refuses a negative quota", a.ID, func(p *pki.AccountPolicy, _ *pki.AuditEvent) error {
			p.MaxIssuancesPerHour = -1
			return nil
		}, errAny, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := count(t, db, "SELECT count(*) FROM audit_events WHERE action = $1", ev.Action)
			prev, _ := db.AccountPolicy(ctx, a.ID)
			got, err := db.UpdateAccountPolicy(ctx, tc.id, tc.change, ev)
			after := count(t, db, "SELECT count(*) FROM audit_events WHERE action = $1", ev.Action)
			switch {
			case tc.want == nil:
				if err != nil {
					t.Fatal(err)
				}
				if !tc.saved(got) {
					t.Errorf("saved %+v", got)
				}
				read, err := db.AccountPolicy(ctx, a.ID)
				if err != nil || !policyEqual(read, got) {
					t.Errorf("read back %+v, %v; saved %+v", read, err, got)
				}
				if after != before+1 {
					t.Errorf("audit events %d -> %d, want one more", before, after)
				}
			case tc.want == errAny:
				if err == nil {
					t.Fatal("saved")
				}
			default:
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			}
			if tc.want != nil {
				if now, _ := db.AccountPolicy(ctx, a.ID); !policyEqual(now, prev) {
					t.Errorf("a refused change was saved: %+v", now)
				}
				if after != before {
					t.Errorf("a refused change was audited")
				}
			}
		})
	}
	// The event carries the account and the detail the change set.
	var detail []byte
	err := db.Pool().QueryRow(ctx, "SELECT detail FROM audit_events WHERE action = $1 AND account_id = $2 ORDER BY id LIMIT 1",
		ev.Action, a.ID).Scan(&detail)
	var d map[string]any
	if err != nil || json.Unmarshal(detail, &d) != nil || d["changed"] != "all" {
		t.Errorf("audit detail %s, %v", detail, err)
	}
}

// errAny marks a case that must fail, with whatever error.
var errAny = errors.New("any error")

// setQuotas sets an account's quotas directly.
func setQuotas(t *testing.T, db *store.DB, accountID string, active, hourly int) {
	t.Helper()
	_, err := db.UpdateAccountPolicy(context.Background(), accountID, func(p *pki.AccountPolicy, _ *pki.AuditEvent) error {
		p.MaxActiveCertificates, p.MaxIssuancesPerHour = active, hourly
		return nil
	}, event("account.policy.updated"))
	if err != nil {
		t.Fatal(err)
	}
}

func TestIssuancePolicyQuotas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := newFixture(t, db)
	acct := f.account.ID
	other := f.newAccount(t, "Other").ID
	now := time.Now()

	// What counts as active: issued or pending, unrevoked, unexpired (a
	// renewed certificate too, as the listings show it). Each of these rows
	// is created two hours ago, outside the hourly window.
	old := now.Add(-2 * time.Hour)
	mk := func(accountID string, mutate func(*pki.Certificate)) *pki.Certificate {
		c := f.pending(accountID, nil)
		c.CreatedAt = old
		if mutate != nil {
			mutate(c)
		}
		return f.issue(t, c)
	}
	mk(acct, nil)                                                             // active
	mk(acct, func(c *pki.Certificate) { c.NotAfter = now.Add(-time.Minute) }) // expired
	revoked := mk(acct, nil)
	rev := pki.ReasonSuperseded
	if _, err := db.Revoke(ctx, []*pki.Revocation{{Serial: revoked.Serial, RevokedAt: now, Reason: rev,
		Response: standInResponse(revoked), Event: event("certificate.revoked")}}, nil); err != nil {
		t.Fatal(err)
	}
	renewed := mk(acct, nil)                                               // active
	mk(acct, func(c *pki.Certificate) { c.RenewedFrom = &renewed.Serial }) // active
	pending := f.pending(acct, nil)
	pending.CreatedAt = old
	if err := createPending(ctx, f, pending, event("certificate.signing")); err != nil { // active
		t.Fatal(err)
	}
	mk(other, nil) // another account's
	const wantActive = 4

	t.Run("uncapped counts nothing", func(t *testing.T) {
		setQuotas(t, db, acct, 0, 0)
		_, u, err := db.IssuancePolicy(ctx, acct, now)
		if err != nil {
			t.Fatal(err)
		}
		if u.Active != 0 || !u.HourFullSince.IsZero() || u.Now.IsZero() {
			t.Fatalf("usage %+v", u)
		}
	})
	for _, tc := range []struct {
		cap, want int
	}{
		{1, 2}, // stops just past the cap
		{wantActive - 1, wantActive},
		{wantActive, wantActive},
		{1000, wantActive},
	} {
		setQuotas(t, db, acct, tc.cap, 0)
		p, u, err := db.IssuancePolicy(ctx, acct, now)
		if err != nil {
			t.Fatal(err)
		}
		if p.MaxActiveCertificates != tc.cap || u.Active != tc.want {
			t.Errorf("cap %d: active = %d, want %d", tc.cap, u.Active, tc.want)
		}
	}

	// The hourly window: nothing in it yet (everything above is two hours
	// old); then three certificates at known times within it.
	setQuotas(t, db, acct, 0, 3)
	if _, u, err := db.IssuancePolicy(ctx, acct, now); err != nil || !u.HourFullSince.IsZero() {
		t.Fatalf("empty window: %+v, %v", u, err)
	}
	var stamps []time.Time
	for _, ago := range []time.Duration{50 * time.Minute, 30 * time.Minute, 10 * time.Minute} {
		c := f.pending(acct, nil)
		c.CreatedAt = now.Add(-ago).Truncate(time.Microsecond)
		f.issue(t, c)
		stamps = append(stamps, c.CreatedAt)
	}
	for _, tc := range []struct {
		limit int
		full  time.Time // zero: room left
	}{
		{4, time.Time{}},
		{3, stamps[0]}, // exactly full: the oldest in the window
		{2, stamps[1]}, // over (the limit was lowered): the oldest of the newest two
		{1, stamps[2]},
	} {
		setQuotas(t, db, acct, 0, tc.limit)
		_, u, err := db.IssuancePolicy(ctx, acct, now)
		if err != nil {
			t.Fatal(err)
		}
		if !u.HourFullSince.Equal(tc.full) {
			t.Errorf("limit %d: full since %s, want %s", tc.limit, u.HourFullSince, tc.full)
		}
		if u.Now.Sub(now).Abs() > time.Minute {
			t.Errorf("database clock %s far from %s", u.Now, now)
		}
	}
}

// TestIssuancePolicyPlan checks that the quota counts are index range scans
// that stop at the cap, with many certificates in the account: the read that
// every issuance makes must not grow with the account.
func TestIssuancePolicyPlan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := newFixture(t, db)
	acct := f.account.ID
	// 3,000 certificates in the account, created over the last day, and as
	// many in each of eight other accounts; then statistics, as autovacuum
	// would gather them.
	accounts := []string{acct}
	for range 8 {
		accounts = append(accounts, f.newAccount(t, "Other").ID)
	}
	for _, a := range accounts {
		_, err := db.Pool().Exec(ctx, `INSERT INTO certificates (serial, issuer_id, account_id, state, lint_der, der,
				fingerprint_sha256, spki_sha256, subject_cn, not_before, not_after, created_at)
			SELECT to_hex(i) || substr(md5($2 || i), 1, 16), $1, $2::uuid, 'issued', '\x00', '\x00',
				sha256(($2 || i)::bytea), sha256(('k' || $2 || i)::bytea), 'c' || i,
				now() - interval '1 day', now() + interval '30 days', now() - (i * 20 || ' seconds')::interval
			FROM generate_series(1, 3000) i`, f.issuer.ID, a)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool().Exec(ctx, "ANALYZE certificates"); err != nil {
		t.Fatal(err)
	}
	setQuotas(t, db, acct, 1000, 100)

	var plan []map[string]any
	var raw []byte
	err := db.Pool().QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+store.IssuancePolicySQL, acct, time.Now()).Scan(&raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &plan); err != nil {
		t.Fatal(err)
	}
	var scans []string
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if typ, _ := n["Node Type"].(string); strings.Contains(typ, "Scan") {
			scans = append(scans, typ+" "+str(n["Relation Name"])+" "+str(n["Index Name"])+" rows="+str(n["Actual Rows"]))
		}
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			walk(k.(map[string]any))
		}
	}
	walk(plan[0]["Plan"].(map[string]any))
	joined := strings.Join(scans, "\n")
	t.Logf("plan scans (%.3f ms):\n%s", plan[0]["Execution Time"], joined)
	if strings.Contains(joined, "Seq Scan") {
		t.Errorf("a quota count scans a table sequentially:\n%s", joined)
	}
	for _, idx := range []string{"certificates_account_not_after_idx", "certificates_account_idx"} {
		if !strings.Contains(joined, idx) {
			t.Errorf("plan does not use %s:\n%s", idx, joined)
		}
	}
}

func str(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

// BenchmarkIssuancePolicy measures the read that a policy adds to every
// issuance: without quotas (a primary-key lookup), and with both quotas
// set and the account at its cap of 1,000 active certificates (the counts
// walk 1,001 and 100 index entries).
func BenchmarkIssuancePolicy(b *testing.B) {
	ctx := context.Background()
	db := testdb.Open(b)
	f := newFixture(b, db)
	acct := f.account.ID
	_, err := db.Pool().Exec(ctx, `INSERT INTO certificates (serial, issuer_id, account_id, state, lint_der, der,
			fingerprint_sha256, spki_sha256, subject_cn, not_before, not_after, created_at)
		SELECT to_hex(i) || substr(md5($2 || i), 1, 16), $1, $2::uuid, 'issued', '\x00', '\x00',
			sha256(($2 || i)::bytea), sha256(('k' || $2 || i)::bytea), 'c' || i,
			now() - interval '1 day', now() + interval '30 days', now() - (i || ' seconds')::interval
		FROM generate_series(1, 1000) i`, f.issuer.ID, acct)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, "VACUUM ANALYZE certificates"); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name           string
		active, hourly int
	}{
		{"no quotas", 0, 0},
		{"at both caps", 1000, 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, err := db.UpdateAccountPolicy(ctx, acct, func(p *pki.AccountPolicy, _ *pki.AuditEvent) error {
				p.MaxActiveCertificates, p.MaxIssuancesPerHour = bc.active, bc.hourly
				return nil
			}, event("account.policy.updated"))
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			for b.Loop() {
				if _, _, err := db.IssuancePolicy(ctx, acct, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
