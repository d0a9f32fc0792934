package store_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

func TestAccounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := &fixture{db: db}
	first := f.newAccount(t, "First")
	second := &pki.Account{Name: "Second", Plan: pki.PlanStandard, Status: pki.AccountSuspended}
	if err := db.CreateAccount(ctx, second, event("account.create")); err != nil {
		t.Fatal(err)
	}
	if first.ID == "" || first.Status != pki.AccountActive || first.CreatedAt.IsZero() || first.UpdatedAt.IsZero() {
		t.Errorf("CreateAccount filled in %+v", first)
	}
	// The audit event names the account that the same statement created.
	if n := count(t, db, "SELECT count(*) FROM audit_events WHERE account_id = $1 AND action = 'account.create'", second.ID); n != 1 {
		t.Errorf("audit events for the new account = %d, want 1", n)
	}

	got, err := db.Account(ctx, second.ID)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *second {
		t.Errorf("Account = %+v, want %+v", got, second)
	}
	all, err := db.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != first.ID || all[1].ID != second.ID {
		t.Errorf("Accounts = %+v, want first then second", all)
	}

	for _, id := range []string{newUUID(), "not-a-uuid", "", strings.ToUpper(newUUID())} {
		if _, err := db.Account(ctx, id); !errors.Is(err, pki.ErrNotFound) {
			t.Errorf("Account(%q) = %v, want ErrNotFound", id, err)
		}
	}

	bad := []*pki.Account{
		{Name: "x", Plan: "gold"},
		{Name: "x", Plan: pki.PlanEnterprise, Status: "deleted"},
	}
	for _, a := range bad {
		if err := db.CreateAccount(ctx, a, event("account.create")); err == nil {
			t.Errorf("CreateAccount(%+v) succeeded", a)
		}
	}
}

func TestUpdateAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := &fixture{db: db}
	a := f.newAccount(t, "Acme")
	errRefused := errors.New("refused by change")

	tests := []struct {
		name    string
		id      string
		change  func(*pki.Account, *pki.AuditEvent) error
		want    error
		wantAcc func(*pki.Account) bool
	}{
		{"suspend", a.ID, func(a *pki.Account, ev *pki.AuditEvent) error {
			a.Status = pki.AccountSuspended
			ev.Detail = map[string]any{"status": "suspended"}
			return nil
		}, nil, func(got *pki.Account) bool {
			return got.Status == pki.AccountSuspended && got.Plan == pki.PlanEnterprise
		}},
		{"rename and downgrade", a.ID, func(a *pki.Account, _ *pki.AuditEvent) error {
			a.Name, a.Plan = "Acme Ltd", pki.PlanStandard
			return nil
		}, nil, func(got *pki.Account) bool {
			return got.Name == "Acme Ltd" && got.Plan == pki.PlanStandard && got.Status == pki.AccountSuspended
		}},
		{"change refuses", a.ID, func(a *pki.Account, _ *pki.AuditEvent) error {
			a.Name = "never saved"
			return errRefused
		}, errRefused, nil},
		{"invalid plan", a.ID, func(a *pki.Account, _ *pki.AuditEvent) error {
			a.Plan = "gold"
			return nil
		}, nil, nil},
		{"unknown account", newUUID(), func(*pki.Account, *pki.AuditEvent) error { return nil }, pki.ErrNotFound, nil},
		{"not a uuid", "42", func(*pki.Account, *pki.AuditEvent) error { return nil }, pki.ErrNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := count(t, db, "SELECT count(*) FROM audit_events")
			got, err := db.UpdateAccount(ctx, tt.id, tt.change, event("account.update"))
			after := count(t, db, "SELECT count(*) FROM audit_events")
			if tt.wantAcc == nil {
				if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
					t.Fatalf("UpdateAccount = %v, want %v", err, tt.want)
				}
				if after != before {
					t.Errorf("a refused update wrote %d audit events", after-before)
				}
				return
			}
			if err != nil {
				t.Fatalf("UpdateAccount: %v", err)
			}
			if !tt.wantAcc(got) || !got.UpdatedAt.After(a.CreatedAt) && !got.UpdatedAt.Equal(a.CreatedAt) {
				t.Errorf("UpdateAccount = %+v", got)
			}
			stored, err := db.Account(ctx, tt.id)
			if err != nil || *stored != *got {
				t.Errorf("stored %+v, %v; returned %+v", stored, err, got)
			}
			if after != before+1 {
				t.Errorf("audit events %d → %d, want one more", before, after)
			}
		})
	}
	if n := count(t, db, `SELECT count(*) FROM audit_events WHERE account_id = $1 AND detail->>'status' = 'suspended'`, a.ID); n != 1 {
		t.Errorf("the change's audit detail was not written with the account's id (%d rows)", n)
	}
}

// TestUpdateAccountSerialises runs concurrent read-modify-write updates: the
// row lock must make each see the previous one's result.
func TestUpdateAccountSerialises(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	a := (&fixture{db: db}).newAccount(t, "n")
	const n = 10
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := db.UpdateAccount(ctx, a.ID, func(a *pki.Account, _ *pki.AuditEvent) error {
				a.Name += "+"
				return nil
			}, event("account.update"))
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := db.Account(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "n"+strings.Repeat("+", n) {
		t.Errorf("name after %d concurrent appends = %q", n, got.Name)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := &fixture{db: db}
	acme, other := f.newAccount(t, "Acme"), f.newAccount(t, "Other")
	admin := &pki.Admin{Username: "alice", PasswordHash: "$argon2id$v=19$..."}
	if err := db.CreateAdmin(ctx, admin, event("admin.create")); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	mk := func(kind pki.TokenKind, account, adminID string, created time.Time) *pki.Token {
		return &pki.Token{ID: newUUID(), Kind: kind, AccountID: account, AdminID: adminID, Name: "ci",
			CreatedBy: "admin:alice", CreatedAt: created, ExpiresAt: now.Add(time.Hour)}
	}
	older := mk(pki.TokenAccount, acme.ID, "", now.Add(-time.Minute))
	newer := mk(pki.TokenAccount, acme.ID, "", time.Time{})
	adminTok := mk(pki.TokenAdmin, "", admin.ID, time.Time{})
	for _, tok := range []*pki.Token{older, newer, adminTok} {
		if err := db.CreateToken(ctx, tok, event("token.create")); err != nil {
			t.Fatalf("CreateToken(%s): %v", tok.Kind, err)
		}
	}
	if newer.CreatedAt.IsZero() {
		t.Error("CreateToken did not fill in CreatedAt")
	}

	create := []struct {
		name string
		tok  *pki.Token
		want error
	}{
		{"same id", &pki.Token{ID: older.ID, Kind: pki.TokenAccount, AccountID: acme.ID, Name: "x", CreatedBy: "x", ExpiresAt: now.Add(time.Hour)}, pki.ErrAlreadyExists},
		{"unknown account", mk(pki.TokenAccount, newUUID(), "", time.Time{}), pki.ErrNotFound},
		{"account not a uuid", mk(pki.TokenAccount, "acme", "", time.Time{}), pki.ErrNotFound},
		{"unknown admin", mk(pki.TokenAdmin, "", newUUID(), time.Time{}), pki.ErrNotFound},
		{"unknown kind", mk("robot", acme.ID, "", time.Time{}), nil},
		{"id not a uuid", &pki.Token{ID: "jti", Kind: pki.TokenAccount, AccountID: acme.ID}, nil},
	}
	for _, tt := range create {
		t.Run("create/"+tt.name, func(t *testing.T) {
			err := db.CreateToken(ctx, tt.tok, event("token.create"))
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("CreateToken = %v, want %v", err, tt.want)
			}
		})
	}

	got, err := db.Token(ctx, adminTok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != pki.TokenAdmin || got.AdminID != admin.ID || got.AccountID != "" || !got.ExpiresAt.Equal(adminTok.ExpiresAt) || got.RevokedAt != nil {
		t.Errorf("Token = %+v", got)
	}
	list, err := db.Tokens(ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != newer.ID || list[1].ID != older.ID {
		t.Errorf("Tokens = %+v, want newer then older", list)
	}
	if list, err := db.Tokens(ctx, "x"); err != nil || len(list) != 0 {
		t.Errorf("Tokens(not a uuid) = %v, %v", list, err)
	}

	revokedAt := now.Add(time.Second)
	revoke := []struct {
		name       string
		account    string
		token      string
		want       error
		wantAudits int
	}{
		{"another account's token", other.ID, older.ID, pki.ErrNotFound, 0},
		{"an admin token", acme.ID, adminTok.ID, pki.ErrNotFound, 0},
		{"unknown token", acme.ID, newUUID(), pki.ErrNotFound, 0},
		{"token not a uuid", acme.ID, "jti", pki.ErrNotFound, 0},
		{"own token", acme.ID, older.ID, nil, 1},
		{"again (idempotent)", acme.ID, older.ID, nil, 0},
	}
	for _, tt := range revoke {
		t.Run("revoke/"+tt.name, func(t *testing.T) {
			before := count(t, db, "SELECT count(*) FROM audit_events")
			ev := event("token.revoke")
			ev.OccurredAt = revokedAt
			err := db.RevokeToken(ctx, tt.account, tt.token, ev)
			if !errors.Is(err, tt.want) {
				t.Fatalf("RevokeToken = %v, want %v", err, tt.want)
			}
			if after := count(t, db, "SELECT count(*) FROM audit_events"); after != before+tt.wantAudits {
				t.Errorf("audit events %d → %d, want %d more", before, after, tt.wantAudits)
			}
		})
	}
	got, err = db.Token(ctx, older.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.RevokedAt == nil || !got.RevokedAt.Equal(revokedAt) || got.ValidAt(now) {
		t.Errorf("revoked token = %+v, want revoked at %v", got, revokedAt)
	}
	if got, _ := db.Token(ctx, adminTok.ID); got.RevokedAt != nil {
		t.Error("revoking through another account touched the admin token")
	}
	for _, id := range []string{newUUID(), "jti"} {
		if _, err := db.Token(ctx, id); !errors.Is(err, pki.ErrNotFound) {
			t.Errorf("Token(%q) = %v, want ErrNotFound", id, err)
		}
	}

	// TokenAndAccount: the same token record, and the account when it
	// exists; a missing token is ErrNotFound, a missing account is nil.
	both := []struct {
		name, token, account string
		wantAccount          string // "" for none
		wantErr              error
	}{
		{"token and its account", newer.ID, acme.ID, acme.ID, nil},
		{"token and another account", newer.ID, other.ID, other.ID, nil},
		{"unknown account", newer.ID, newUUID(), "", nil},
		{"account not a uuid", newer.ID, "acme", "", nil},
		{"unknown token", newUUID(), acme.ID, "", pki.ErrNotFound},
		{"token not a uuid", "jti", acme.ID, "", pki.ErrNotFound},
	}
	for _, tt := range both {
		t.Run("token and account/"+tt.name, func(t *testing.T) {
			tok, acct, err := db.TokenAndAccount(ctx, tt.token, tt.account)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || tok != nil || acct != nil {
					t.Fatalf("TokenAndAccount = %v, %v, %v; want %v", tok, acct, err, tt.wantErr)
				}
				return
			}
			if err != nil || tok == nil || tok.ID != tt.token || tok.AccountID != acme.ID || !tok.ExpiresAt.Equal(newer.ExpiresAt) {
				t.Fatalf("TokenAndAccount token = %+v, %v", tok, err)
			}
			switch {
			case tt.wantAccount == "" && acct != nil:
				t.Errorf("account = %+v, want none", acct)
			case tt.wantAccount != "" && (acct == nil || acct.ID != tt.wantAccount || acct.Plan != pki.PlanEnterprise):
				t.Errorf("account = %+v, want %s", acct, tt.wantAccount)
			case tt.wantAccount != "":
				// The account comes with its policy, as AccountPolicy reads it.
				want, err := db.AccountPolicy(ctx, tt.wantAccount)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(acct.Policy, want) {
					t.Errorf("account's policy = %+v, want %+v", acct.Policy, want)
				}
			}
		})
	}

	// The same reads in one batch of the group read, the first twice: each
	// gets its own answer.
	t.Run("token and account/one batch", func(t *testing.T) {
		var reads []store.TokenRead
		var want []int // index into both
		for i, tt := range append(both[:1:1], both...) {
			if !validUUIDString(tt.token) {
				continue // refused before any batch
			}
			account := tt.account
			if !validUUIDString(account) {
				account = "" // read as NULL, as TokenAndAccount does
			}
			reads = append(reads, store.TokenRead{TokenID: tt.token, AccountID: account})
			want = append(want, max(i-1, 0))
		}
		store.ReadTokens(ctx, db, reads)
		for j, r := range reads {
			tt := both[want[j]]
			if tt.wantErr != nil {
				if !errors.Is(r.Err, tt.wantErr) || r.Token != nil || r.Account != nil {
					t.Errorf("%s: %v, %v, %v; want %v", tt.name, r.Token, r.Account, r.Err, tt.wantErr)
				}
				continue
			}
			if r.Err != nil || r.Token == nil || r.Token.ID != tt.token {
				t.Errorf("%s: token %+v, %v", tt.name, r.Token, r.Err)
			}
			if got := ""; r.Account != nil {
				got = r.Account.ID
				if got != tt.wantAccount || r.Account.Policy == nil {
					t.Errorf("%s: account %+v, want %s with its policy", tt.name, r.Account, tt.wantAccount)
				}
			} else if tt.wantAccount != "" {
				t.Errorf("%s: no account, want %s", tt.name, tt.wantAccount)
			}
		}
	})

	// An account without its policy row (an invariant broken) is still
	// found, so that its token authenticates, but carries no policy: the
	// issuance path then reads the policy itself and refuses.
	t.Run("token and account/no policy row", func(t *testing.T) {
		orphan := f.newAccount(t, "Orphan")
		if _, err := db.Pool().Exec(ctx, "DELETE FROM account_policies WHERE account_id = $1", orphan.ID); err != nil {
			t.Fatal(err)
		}
		tok, acct, err := db.TokenAndAccount(ctx, newer.ID, orphan.ID)
		if err != nil || tok == nil || acct == nil || acct.ID != orphan.ID {
			t.Fatalf("TokenAndAccount = %+v, %+v, %v", tok, acct, err)
		}
		if acct.Policy != nil {
			t.Errorf("account carries policy %+v, which does not exist", acct.Policy)
		}
	})
}

func TestAdmins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	alice := &pki.Admin{Username: "alice", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA"}
	if err := db.CreateAdmin(ctx, alice, event("admin.create")); err != nil {
		t.Fatal(err)
	}
	if alice.ID == "" || alice.CreatedAt.IsZero() {
		t.Errorf("CreateAdmin filled in %+v", alice)
	}
	tests := []struct {
		name     string
		username string
		want     error
	}{
		{"taken", "alice", pki.ErrAlreadyExists},
		{"not canonical", "Bob ", nil},
	}
	for _, tt := range tests {
		t.Run("create/"+tt.name, func(t *testing.T) {
			err := db.CreateAdmin(ctx, &pki.Admin{Username: tt.username, PasswordHash: "h"}, event("admin.create"))
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("CreateAdmin(%q) = %v, want %v", tt.username, err, tt.want)
			}
		})
	}

	got, err := db.AdminByUsername(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if *got != *alice {
		t.Errorf("AdminByUsername = %+v, want %+v", got, alice)
	}
	for _, name := range []string{"bob", "Alice", "alice\x00", "\xff", ""} {
		if _, err := db.AdminByUsername(ctx, name); !errors.Is(err, pki.ErrNotFound) {
			t.Errorf("AdminByUsername(%q) = %v, want ErrNotFound", name, err)
		}
	}
}
