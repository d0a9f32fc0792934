package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// The reads below serve the admin web page: searches, counts and the
// listings that the use-case stores do not offer. They only read.

// Listing limits for the admin page's reads.
const (
	defaultAccountPage = 25
	maxAccountPage     = 200
	maxAccountText     = 200
)

// SearchAccounts returns one page of the accounts matching f, newest first,
// and how many match in all. f.Text matches a case-insensitive substring of
// the name (LIKE wildcards in it are taken literally) or, when it is a UUID,
// the account with that id. f.Limit defaults to 25 and is capped at 200.
func (db *DB) SearchAccounts(ctx context.Context, f pki.AccountFilter) ([]*pki.Account, int, error) {
	if f.Offset < 0 || f.Limit < 0 {
		return nil, 0, pki.Malformed("offset and limit must not be negative")
	}
	if len(f.Text) > maxAccountText {
		return nil, 0, pki.Malformed("search text must be at most %d bytes", maxAccountText)
	}
	limit := f.Limit
	if limit == 0 {
		limit = defaultAccountPage
	}
	limit = min(limit, maxAccountPage)

	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if text := strings.TrimSpace(f.Text); text != "" {
		cond := "name ILIKE " + arg("%"+escapeLike(storable(text))+"%") + ` ESCAPE '\'`
		if validUUID(text) {
			cond = "(" + cond + " OR id = " + arg(text) + "::uuid)"
		}
		where = append(where, cond)
	}
	if f.Plan != "" {
		where = append(where, "plan = "+arg(string(f.Plan)))
	}
	if f.Status != "" {
		where = append(where, "status = "+arg(string(f.Status)))
	}
	clause := ""
	if len(where) > 0 {
		clause = " WHERE " + strings.Join(where, " AND ")
	}
	query := "SELECT " + accountColumns + ", count(*) OVER () FROM accounts" + clause +
		" ORDER BY created_at DESC, id DESC OFFSET " + arg(f.Offset) + " LIMIT " + arg(limit)
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: searching accounts: %w", mapErr(err))
	}
	total := 0
	accounts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.Account, error) {
		var a pki.Account
		var plan, status string
		if err := row.Scan(&a.ID, &a.Name, &plan, &status, &a.CreatedAt, &a.UpdatedAt, &total); err != nil {
			return nil, err
		}
		a.Plan, a.Status = pki.Plan(plan), pki.AccountStatus(status)
		return &a, nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("store: searching accounts: %w", mapErr(err))
	}
	if len(accounts) == 0 && f.Offset > 0 {
		// Past the last page the window count is not there; count apart.
		if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM accounts"+clause, args[:len(args)-2]...).Scan(&total); err != nil {
			return nil, 0, fmt.Errorf("store: counting accounts: %w", mapErr(err))
		}
	}
	return accounts, total, nil
}

// escapeLike makes s match itself in a LIKE pattern with ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// AccountCounts returns how many accounts there are on each plan in each
// status.
func (db *DB) AccountCounts(ctx context.Context) (map[pki.Plan]map[pki.AccountStatus]int, error) {
	rows, err := db.pool.Query(ctx, "SELECT plan, status, count(*) FROM accounts GROUP BY plan, status")
	if err != nil {
		return nil, fmt.Errorf("store: counting accounts: %w", mapErr(err))
	}
	out := map[pki.Plan]map[pki.AccountStatus]int{}
	var plan, status string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&plan, &status, &n}, func() error {
		if out[pki.Plan(plan)] == nil {
			out[pki.Plan(plan)] = map[pki.AccountStatus]int{}
		}
		out[pki.Plan(plan)][pki.AccountStatus(status)] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: counting accounts: %w", mapErr(err))
	}
	return out, nil
}

// CertificateCounts returns how many issued certificates are active at now,
// how many of those expire before soon, and how many are revoked (expired or
// not).
func (db *DB) CertificateCounts(ctx context.Context, now, soon time.Time) (active, expiring, revoked int, err error) {
	err = db.pool.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE revoked_at IS NULL AND not_after > $1),
		count(*) FILTER (WHERE revoked_at IS NULL AND not_after > $1 AND not_after <= $2),
		count(*) FILTER (WHERE revoked_at IS NOT NULL)
		FROM certificates WHERE state = 'issued'`, now, soon).Scan(&active, &expiring, &revoked)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("store: counting certificates: %w", mapErr(err))
	}
	return active, expiring, revoked, nil
}

// ExpiringCertificates returns one page of the issued certificates that are
// active at f.Now and expire no later than before, soonest first (notAfter,
// then serial), of one account when f.AccountID is set, and the cursor of the
// next page ("" on the last). f.Status is ignored: only active certificates
// can expire. Limits and cursors are as for Certificates, except that the
// cursor's position is in notAfter order (one from Certificates is refused
// only if it cannot be read; it then starts at an odd place, harmlessly).
func (db *DB) ExpiringCertificates(ctx context.Context, f pki.CertificateFilter, before time.Time) ([]*pki.Certificate, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultCertificateLimit
	}
	limit = min(limit, maxCertificateLimit)
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	args := []any{now, before}
	where := "state = 'issued' AND revoked_at IS NULL AND not_after > $1 AND not_after <= $2"
	if f.AccountID != "" {
		if !validUUID(f.AccountID) {
			return []*pki.Certificate{}, "", nil
		}
		args = append(args, f.AccountID)
		where += " AND account_id = $3::uuid"
	}
	if f.Cursor != "" {
		notAfter, serial, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		args = append(args, notAfter, string(serial))
		where += fmt.Sprintf(" AND (not_after, serial) > ($%d::timestamptz, $%d::text)", len(args)-1, len(args))
	}
	args = append(args, limit+1)
	query := "SELECT " + certListColumns + " FROM certificates WHERE " + where +
		" ORDER BY not_after, serial LIMIT $" + strconv.Itoa(len(args))
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: listing expiring certificates: %w", mapErr(err))
	}
	certs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.Certificate, error) {
		return scanCertificate(row)
	})
	if err != nil {
		return nil, "", fmt.Errorf("store: listing expiring certificates: %w", mapErr(err))
	}
	if len(certs) <= limit {
		return certs, "", nil
	}
	certs = certs[:limit]
	last := certs[limit-1]
	return certs, encodeCursor(last.NotAfter, last.Serial), nil
}

// SearchAudit returns the audit events matching every field of f that is
// set — account, actor, action, occurred at or after Since and before
// Until, id below BeforeID and above AfterID — newest first (oldest first
// when f.Ascending): at most f.Limit (default 100, at most 1000), each with
// its hash-chain link once the linker has reached it. An account id that is
// not a UUID has no events.
func (db *DB) SearchAudit(ctx context.Context, f pki.AuditFilter) ([]pki.AuditEvent, error) {
	if f.Limit < 0 || f.BeforeID < 0 || f.AfterID < 0 {
		return nil, pki.Malformed("limit, before and after must not be negative")
	}
	limit := f.Limit
	if limit == 0 {
		limit = defaultAuditLimit
	}
	limit = min(limit, maxAuditLimit)
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.AccountID != "" {
		if !validUUID(f.AccountID) {
			return []pki.AuditEvent{}, nil
		}
		where = append(where, "e.account_id = "+arg(f.AccountID)+"::uuid")
	}
	if f.Actor != "" {
		where = append(where, "e.actor = "+arg(storable(f.Actor)))
	}
	if f.Action != "" {
		where = append(where, "e.action = "+arg(storable(f.Action)))
	}
	if f.BeforeID > 0 {
		where = append(where, "e.id < "+arg(f.BeforeID))
	}
	if f.AfterID > 0 {
		where = append(where, "e.id > "+arg(f.AfterID))
	}
	if !f.Since.IsZero() {
		where = append(where, "e.occurred_at >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "e.occurred_at < "+arg(f.Until))
	}
	query := auditListSelect
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	order := " ORDER BY e.id DESC LIMIT "
	if f.Ascending {
		order = " ORDER BY e.id LIMIT "
	}
	query += order + arg(limit)
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: searching audit events: %w", mapErr(err))
	}
	events, err := pgx.CollectRows(rows, scanAuditListRow)
	if err != nil {
		return nil, fmt.Errorf("store: searching audit events: %w", mapErr(err))
	}
	return events, nil
}
