package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

const accountColumns = "id::text, name, plan, status, created_at, updated_at"

// accountPolicyColumns are accountColumns of accounts a and then
// policyColumns of its account_policies p, for accountFields and
// policyFields.
const accountPolicyColumns = "a.id::text, a.name, a.plan, a.status, a.created_at, a.updated_at, " + policyColumns

// scanAccount reads accountColumns from row.
func scanAccount(row pgx.Row) (*pki.Account, error) {
	var a pki.Account
	var plan, status string
	if err := row.Scan(&a.ID, &a.Name, &plan, &status, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return nil, err
	}
	a.Plan, a.Status = pki.Plan(plan), pki.AccountStatus(status)
	return &a, nil
}

// createAccountSQL inserts the account and its audit event in one statement.
// The event names the new account unless the caller named one.
var createAccountSQL = `WITH acct AS (
	INSERT INTO accounts (name, plan, status) VALUES ($1, $2, $3)
	RETURNING id, created_at, updated_at
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT ` + auditValues(4, "acct.id") + ` FROM acct
)
SELECT id::text, created_at, updated_at FROM acct`

// CreateAccount inserts a and writes ev with it, filling in a.ID, a.CreatedAt
// and a.UpdatedAt; a.Status defaults to active. ev.AccountID, when empty,
// becomes the new account's id in the audit trail.
func (db *DB) CreateAccount(ctx context.Context, a *pki.Account, ev pki.AuditEvent) error {
	if a.Status == "" {
		a.Status = pki.AccountActive
	}
	if !a.Plan.Valid() || !a.Status.Valid() {
		return fmt.Errorf("store: account plan %q or status %q is not one pkid knows", a.Plan, a.Status)
	}
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	args := append([]any{a.Name, string(a.Plan), string(a.Status)}, audit...)
	if err := db.pool.QueryRow(ctx, createAccountSQL, args...).Scan(&a.ID, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return fmt.Errorf("store: creating account: %w", mapErr(err))
	}
	return nil
}

// Account returns the account with this id, or pki.ErrNotFound (also for an
// id that is not a UUID).
func (db *DB) Account(ctx context.Context, id string) (*pki.Account, error) {
	if !validUUID(id) {
		return nil, fmt.Errorf("store: account %q: %w", id, pki.ErrNotFound)
	}
	a, err := scanAccount(db.pool.QueryRow(ctx, "SELECT "+accountColumns+" FROM accounts WHERE id = $1::uuid", id))
	if err != nil {
		return nil, fmt.Errorf("store: account %s: %w", id, mapErr(err))
	}
	return a, nil
}

// Accounts lists every account, oldest first.
func (db *DB) Accounts(ctx context.Context) ([]*pki.Account, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+accountColumns+" FROM accounts ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("store: listing accounts: %w", mapErr(err))
	}
	accounts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.Account, error) {
		return scanAccount(row)
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing accounts: %w", mapErr(err))
	}
	return accounts, nil
}

// UpdateAccount locks the account's row, lets change edit the account and
// complete ev, saves the account's name, plan and status and writes ev, all in
// one transaction, and returns the account as saved. If change returns an
// error, nothing is written and that error is returned as it is. The row lock
// makes concurrent updates apply one after the other, each seeing the last.
// ev.AccountID, when empty, becomes id.
func (db *DB) UpdateAccount(ctx context.Context, id string, change func(*pki.Account, *pki.AuditEvent) error, ev pki.AuditEvent) (*pki.Account, error) {
	if !validUUID(id) {
		return nil, fmt.Errorf("store: account %q: %w", id, pki.ErrNotFound)
	}
	var saved *pki.Account
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		a, err := scanAccount(tx.QueryRow(ctx, "SELECT "+accountColumns+" FROM accounts WHERE id = $1::uuid FOR UPDATE", id))
		if err != nil {
			return fmt.Errorf("store: account %s: %w", id, mapErr(err))
		}
		if err := change(a, &ev); err != nil {
			return err
		}
		if !a.Plan.Valid() || !a.Status.Valid() {
			return fmt.Errorf("store: account plan %q or status %q is not one pkid knows", a.Plan, a.Status)
		}
		if ev.AccountID == "" {
			ev.AccountID = id
		}
		audit, err := auditArgs(&ev)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE accounts SET name = $2, plan = $3, status = $4, updated_at = now()
			WHERE id = $1::uuid RETURNING `+accountColumns, id, a.Name, string(a.Plan), string(a.Status))
		b.Queue(insertAuditSQL, audit...)
		br := tx.SendBatch(ctx, b)
		saved, err = scanAccount(br.QueryRow())
		if err == nil {
			_, err = br.Exec()
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("store: saving account %s: %w", id, mapErr(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return saved, nil
}

var tokenColumns = tokenColumnsOf("")

// tokenColumnsOf returns the columns scanToken reads, of the tokens table
// named alias ("" when it needs no name).
func tokenColumnsOf(alias string) string {
	p := ""
	if alias != "" {
		p = alias + "."
	}
	return p + "id::text, " + p + "kind, COALESCE(" + p + "account_id::text, ''), COALESCE(" + p + "admin_id::text, ''), " +
		p + "name, " + p + "created_by, " + p + "created_at, " + p + "expires_at, " + p + "revoked_at"
}

// scanToken reads tokenColumns, then extra, from row.
func scanToken(row pgx.Row, extra ...any) (*pki.Token, error) {
	var t pki.Token
	var kind string
	if err := row.Scan(append([]any{&t.ID, &kind, &t.AccountID, &t.AdminID, &t.Name, &t.CreatedBy,
		&t.CreatedAt, &t.ExpiresAt, &t.RevokedAt}, extra...)...); err != nil {
		return nil, err
	}
	t.Kind = pki.TokenKind(kind)
	return &t, nil
}

var createTokenSQL = `WITH tok AS (
	INSERT INTO tokens (id, kind, account_id, admin_id, name, created_by, created_at, expires_at)
	VALUES ($1::uuid, $2, $3::uuid, $4::uuid, $5, $6, COALESCE($7::timestamptz, now()), $8)
	RETURNING created_at
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT ` + auditValues(9, "") + ` FROM tok
)
SELECT created_at FROM tok`

// CreateToken inserts t, the record of a token just minted (t.ID, the JWT's
// jti, is chosen by the caller), and writes ev with it. t.CreatedAt defaults
// to the database's time and is filled in. It fails with pki.ErrNotFound when
// the account or administrator does not exist and pki.ErrAlreadyExists when
// the id is taken.
func (db *DB) CreateToken(ctx context.Context, t *pki.Token, ev pki.AuditEvent) error {
	if !validUUID(t.ID) {
		return fmt.Errorf("store: token id %q is not a UUID", t.ID)
	}
	var account, admin any
	switch t.Kind {
	case pki.TokenAccount:
		if !validUUID(t.AccountID) {
			return fmt.Errorf("store: token %s: account %q: %w", t.ID, t.AccountID, pki.ErrNotFound)
		}
		account = t.AccountID
	case pki.TokenAdmin:
		if !validUUID(t.AdminID) {
			return fmt.Errorf("store: token %s: administrator %q: %w", t.ID, t.AdminID, pki.ErrNotFound)
		}
		admin = t.AdminID
	default:
		return fmt.Errorf("store: token %s: kind %q is not one pkid knows", t.ID, t.Kind)
	}
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	args := append([]any{t.ID, string(t.Kind), account, admin, t.Name, storable(t.CreatedBy),
		nullTime(t.CreatedAt), t.ExpiresAt}, audit...)
	if err := db.pool.QueryRow(ctx, createTokenSQL, args...).Scan(&t.CreatedAt); err != nil {
		return fmt.Errorf("store: creating token %s: %w", t.ID, mapErr(err))
	}
	return nil
}

// Token returns the record of the token whose jti is id, or pki.ErrNotFound.
func (db *DB) Token(ctx context.Context, id string) (*pki.Token, error) {
	if !validUUID(id) {
		return nil, fmt.Errorf("store: token %q: %w", id, pki.ErrNotFound)
	}
	t, err := scanToken(db.pool.QueryRow(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE id = $1::uuid", id))
	if err != nil {
		return nil, fmt.Errorf("store: token %s: %w", id, mapErr(err))
	}
	return t, nil
}

// TokenAndAccount returns the record of the token whose jti is tokenID (an
// error wrapping pki.ErrNotFound when there is none) and the account
// accountID (nil, with no error, when there is none) with its issuance
// policy (Policy, nil when the account has no policy row, which the
// issuance path then reads again and refuses on), read in one round trip:
// account tokens are checked on every request, and every round trip costs
// a wake-up of a backend on each side. The policy is joined on its primary
// key to the account's row, so an issuance needs no read of its own for it.
func (db *DB) TokenAndAccount(ctx context.Context, tokenID, accountID string) (*pki.Token, *pki.Account, error) {
	if !validUUID(tokenID) {
		return nil, nil, fmt.Errorf("store: token %q: %w", tokenID, pki.ErrNotFound)
	}
	r := tokenRead{tokenID: tokenID, token: new(*pki.Token), account: new(*pki.Account)}
	if validUUID(accountID) {
		r.accountID = accountID
	}
	if err := db.tokenReads.do(ctx, r); err != nil {
		return nil, nil, err
	}
	return *r.token, *r.account, nil
}

// tokenRead is one TokenAndAccount call. Concurrent calls are read in one
// statement (group.go): every authenticated request makes one, so under
// load this is the most frequent statement pkid runs.
type tokenRead struct {
	tokenID   string
	accountID any           // NULL, which matches no account, unless a UUID
	token     **pki.Token   // set by the batch
	account   **pki.Account // set by the batch; nil when there is none
}

// tokenAndAccountSQL reads tokens ($1) and accounts ($2) with their
// policies, a pair per input row; the last column is the row's position.
// The account joins are outer: an account that does not exist is no account,
// not a missing token; a missing policy row must not make the account look
// missing (a 401), but fail issuance closed as it does when the policy is read
// on its own. The ids travel as text[] and become uuid[] in the statement:
// pgx has no binary encoding of a Go string as a uuid, and for a uuid[]
// parameter it first tries one, fails, formats an error holding the whole
// array, and only then sends text, which cost more than the rest of the
// statement's encoding.
var tokenAndAccountSQL = `SELECT ` + tokenColumnsOf("t") + `, ` + accountPolicyColumns + `, i.ord
	FROM unnest($1::text[]::uuid[], $2::text[]::uuid[]) WITH ORDINALITY AS i(token_id, account_id, ord)
	JOIN tokens t ON t.id = i.token_id
	LEFT JOIN accounts a ON a.id = i.account_id
	LEFT JOIN account_policies p ON p.account_id = a.id`

// readTokens reads batch in one statement and sets every call's results or
// err.
func (db *DB) readTokens(ctx context.Context, batch []*groupCall[tokenRead]) {
	ids, accounts := make([]string, len(batch)), make([]any, len(batch))
	for i, c := range batch {
		ids[i], accounts[i] = c.in.tokenID, c.in.accountID
	}
	err := db.scanTokens(ctx, batch, ids, accounts)
	for _, c := range batch {
		switch {
		case err != nil:
			c.err = fmt.Errorf("store: token %s: %w", c.in.tokenID, err)
		case *c.in.token == nil:
			c.err = fmt.Errorf("store: token %s: %w", c.in.tokenID, pki.ErrNotFound)
		}
	}
}

// scanTokens runs tokenAndAccountSQL and stores each row's token and
// account in its call.
func (db *DB) scanTokens(ctx context.Context, batch []*groupCall[tokenRead], ids []string, accounts []any) error {
	rows, err := db.pool.Query(ctx, tokenAndAccountSQL, ids, accounts)
	if err != nil {
		return mapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var af accountFields
		var pf policyFields
		var ord int64
		t, err := scanToken(rows, append(append(af.dest(), pf.dest()...), &ord)...)
		if err != nil {
			return mapErr(err)
		}
		if ord < 1 || ord > int64(len(batch)) {
			return fmt.Errorf("token read answered for row %d of %d", ord, len(batch))
		}
		c := batch[ord-1]
		*c.in.token = t
		if a := af.account(); a != nil {
			a.Policy = pf.policy()
			*c.in.account = a
		}
	}
	return mapErr(rows.Err())
}

// accountFields receives accountColumns of an outer-joined account, each of
// which may be NULL.
type accountFields struct {
	id, name, plan, status *string
	createdAt, updatedAt   *time.Time
}

func (f *accountFields) dest() []any {
	return []any{&f.id, &f.name, &f.plan, &f.status, &f.createdAt, &f.updatedAt}
}

// account returns the account scanned, or nil when the join found none
// (every column of accounts is NOT NULL).
func (f *accountFields) account() *pki.Account {
	if f.id == nil || f.name == nil || f.plan == nil || f.status == nil || f.createdAt == nil || f.updatedAt == nil {
		return nil
	}
	return &pki.Account{ID: *f.id, Name: *f.name, Plan: pki.Plan(*f.plan), Status: pki.AccountStatus(*f.status),
		CreatedAt: *f.createdAt, UpdatedAt: *f.updatedAt}
}

// Tokens lists an account's tokens, revoked and expired ones included, newest
// first.
func (db *DB) Tokens(ctx context.Context, accountID string) ([]*pki.Token, error) {
	if !validUUID(accountID) {
		return []*pki.Token{}, nil
	}
	rows, err := db.pool.Query(ctx, "SELECT "+tokenColumns+
		" FROM tokens WHERE account_id = $1::uuid ORDER BY created_at DESC, id DESC", accountID)
	if err != nil {
		return nil, fmt.Errorf("store: listing tokens: %w", mapErr(err))
	}
	tokens, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.Token, error) {
		return scanToken(row)
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing tokens: %w", mapErr(err))
	}
	return tokens, nil
}

// revokeTokenSQL revokes the token only if it is the account's and not yet
// revoked, and writes the audit event only if it did. found reads the row as
// it was when the statement began; a concurrent revocation makes upd find
// nothing once it has committed, so exactly one of two racing calls writes.
var revokeTokenSQL = `WITH found AS (
	SELECT 1 FROM tokens WHERE id = $1::uuid AND account_id = $2::uuid
), upd AS (
	UPDATE tokens SET revoked_at = COALESCE($3::timestamptz, now())
	WHERE id = $1::uuid AND account_id = $2::uuid AND revoked_at IS NULL
	RETURNING id
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT ` + auditValues(4, "") + ` FROM upd
)
SELECT EXISTS (SELECT 1 FROM found)`

// RevokeToken marks the account's token tokenID revoked at ev.OccurredAt (the
// database's time when zero) and writes ev. It returns pki.ErrNotFound when
// the token does not exist or belongs to another account. Revoking a revoked
// token succeeds and changes nothing, not even the audit trail.
func (db *DB) RevokeToken(ctx context.Context, accountID, tokenID string, ev pki.AuditEvent) error {
	if !validUUID(accountID) || !validUUID(tokenID) {
		return fmt.Errorf("store: token %q of account %q: %w", tokenID, accountID, pki.ErrNotFound)
	}
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	args := append([]any{tokenID, accountID, nullTime(ev.OccurredAt)}, audit...)
	var found bool
	if err := db.pool.QueryRow(ctx, revokeTokenSQL, args...).Scan(&found); err != nil {
		return fmt.Errorf("store: revoking token %s: %w", tokenID, mapErr(err))
	}
	if !found {
		return fmt.Errorf("store: token %s of account %s: %w", tokenID, accountID, pki.ErrNotFound)
	}
	return nil
}

var createAdminSQL = `WITH adm AS (
	INSERT INTO administrators (username, password_hash) VALUES ($1, $2)
	RETURNING id, created_at
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT ` + auditValues(3, "") + ` FROM adm
)
SELECT id::text, created_at FROM adm`

// CreateAdmin inserts an administrator and writes ev with it, filling in
// a.ID and a.CreatedAt. a.Username must be canonical (trimmed, lower case;
// the database refuses anything else). A taken username is
// pki.ErrAlreadyExists.
func (db *DB) CreateAdmin(ctx context.Context, a *pki.Admin, ev pki.AuditEvent) error {
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	args := append([]any{a.Username, a.PasswordHash}, audit...)
	if err := db.pool.QueryRow(ctx, createAdminSQL, args...).Scan(&a.ID, &a.CreatedAt); err != nil {
		return fmt.Errorf("store: creating administrator %q: %w", a.Username, mapErr(err))
	}
	return nil
}

// AdminByUsername returns the administrator with this canonical username, or
// pki.ErrNotFound.
func (db *DB) AdminByUsername(ctx context.Context, username string) (*pki.Admin, error) {
	if storable(username) != username {
		// Typed at a login form; no administrator can have it.
		return nil, fmt.Errorf("store: administrator: %w", pki.ErrNotFound)
	}
	var a pki.Admin
	err := db.pool.QueryRow(ctx, "SELECT id::text, username, password_hash, created_at FROM administrators WHERE username = $1",
		username).Scan(&a.ID, &a.Username, &a.PasswordHash, &a.CreatedAt)
	if err != nil {
		return nil, fmt.Errorf("store: administrator %q: %w", username, mapErr(err))
	}
	return &a, nil
}
