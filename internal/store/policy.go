package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// policyColumns are read by scanPolicy (and policyFields), in their order.
const policyColumns = `p.account_id::text, p.allowed_names, p.allow_uri_sans, p.key_types, p.max_validity_days,
	p.max_active_certificates, p.max_issuances_per_hour, p.updated_at, p.updated_by`

// policyFields receives policyColumns, each of which may be NULL, as they
// are when the policy is outer-joined to a row that has none.
type policyFields struct {
	accountID, updatedBy                     *string
	allowedNames, keyTypes                   []string
	allowURISANs                             *bool
	maxValidity, maxActive, maxIssuancesHour *int
	updatedAt                                *time.Time
}

func (f *policyFields) dest() []any {
	return []any{&f.accountID, &f.allowedNames, &f.allowURISANs, &f.keyTypes, &f.maxValidity,
		&f.maxActive, &f.maxIssuancesHour, &f.updatedAt, &f.updatedBy}
}

// policy returns the policy scanned, or nil when the row had none (every
// column of account_policies is NOT NULL, so a NULL account_id means that
// the outer join found no row).
func (f *policyFields) policy() *pki.AccountPolicy {
	if f.accountID == nil || f.allowURISANs == nil || f.maxValidity == nil || f.maxActive == nil ||
		f.maxIssuancesHour == nil || f.updatedAt == nil || f.updatedBy == nil {
		return nil
	}
	p := &pki.AccountPolicy{AccountID: *f.accountID, AllowedNames: f.allowedNames, AllowURISANs: *f.allowURISANs,
		MaxValidityDays: *f.maxValidity, MaxActiveCertificates: *f.maxActive, MaxIssuancesPerHour: *f.maxIssuancesHour,
		UpdatedAt: *f.updatedAt, UpdatedBy: *f.updatedBy}
	if p.AllowedNames == nil {
		p.AllowedNames = []string{}
	}
	p.KeyTypes = make([]pki.KeyType, len(f.keyTypes))
	for i, t := range f.keyTypes {
		p.KeyTypes[i] = pki.KeyType(t)
	}
	return p
}

// scanPolicy reads policyColumns, then extra, from row. A row without a
// policy (of an outer join) is pgx.ErrNoRows.
func scanPolicy(row pgx.Row, extra ...any) (*pki.AccountPolicy, error) {
	var f policyFields
	if err := row.Scan(append(f.dest(), extra...)...); err != nil {
		return nil, err
	}
	p := f.policy()
	if p == nil {
		return nil, pgx.ErrNoRows
	}
	return p, nil
}

// AccountPolicy returns the issuance policy of the account, or
// pki.ErrNotFound when there is no such account (every account has one: the
// database gives each new account the defaults).
func (db *DB) AccountPolicy(ctx context.Context, accountID string) (*pki.AccountPolicy, error) {
	if !validUUID(accountID) {
		return nil, fmt.Errorf("store: policy of account %q: %w", accountID, pki.ErrNotFound)
	}
	p, err := scanPolicy(db.pool.QueryRow(ctx, "SELECT "+policyColumns+" FROM account_policies p WHERE p.account_id = $1::uuid", accountID))
	if err != nil {
		return nil, fmt.Errorf("store: policy of account %s: %w", accountID, mapErr(err))
	}
	return p, nil
}

// issuancePolicySQL reads an account's policy and, in the same statement,
// its use of the quotas the policy sets. Each count is a scalar subquery
// under a CASE, so a quota that is not set (0) costs nothing, and each stops
// just past its cap, so a count costs at most cap+1 index entries however
// many certificates the account holds:
//
//   - active: unrevoked certificates with notAfter after $2, a range of
//     certificates_account_not_after_idx (account_id, not_after, serial)
//     with revoked_at read from each row. The ORDER BY is the index's order:
//     it costs nothing, and it keeps the planner on the index even though
//     the LIMIT, taken from the row, is unknown when the statement is
//     planned (without it a large account's count became a sequential
//     scan). The notAfter bound is written as a row comparison on the
//     index's two leading columns, which, with the account fixed, means
//     not_after > $2: only that index can take it as a range, so the
//     planner cannot prefer walking certificates_not_after_idx through
//     every account's rows, which it did, with not_after > $2 alone, once
//     the table had more pages per row (migration 14's fillfactor) and
//     notAfter followed the heap's order. Certificates replaced by a renewal are not told apart: an
//     anti-join on renewed_from made the count five to ten times dearer
//     (about 5 ms instead of 0.7 ms at 1,000 certificates on a loaded
//     machine), so the quota counts what the listings call active;
//   - the hour: the newest max_issuances_per_hour certificates created in
//     the last hour of the database's clock, from certificates_account_idx
//     (account_id, created_at DESC); OFFSET cap-1 yields the oldest of them
//     only when there are that many.
//
// The hour is the database's, as created_at is: every node counts the same
// window whatever its own clock says.
const issuancePolicySQL = `SELECT ` + policyColumns + `,
	CASE WHEN p.max_active_certificates > 0 THEN (
		SELECT count(*) FROM (
			SELECT 1 FROM certificates c
			WHERE c.account_id = p.account_id AND c.revoked_at IS NULL
			  AND (c.account_id, c.not_after) > (p.account_id, $2)
			ORDER BY c.account_id, c.not_after
			LIMIT p.max_active_certificates + 1) a)
	END,
	CASE WHEN p.max_issuances_per_hour > 0 THEN (
		SELECT c.created_at FROM certificates c
		WHERE c.account_id = p.account_id AND c.created_at > now() - interval '1 hour'
		ORDER BY c.created_at DESC
		OFFSET p.max_issuances_per_hour - 1 LIMIT 1)
	END,
	now()
FROM account_policies p WHERE p.account_id = $1::uuid`

// IssuancePolicy returns the account's policy and its use of the policy's
// quotas, with the database's clock, in one round trip: the one read that a
// policy adds to issuance and renewal, when the policy that came with the
// account (pki.Account.Policy) sets a quota or did not come. Certificates
// count as active while unrevoked and before notAfter at now, the caller's
// clock, as statuses are everywhere else; pending rows count too (a
// signature may exist for them).
// It returns pki.ErrNotFound when the account has no policy row, which a
// caller that has just read the account must treat as an internal error
// and refuse to issue.
//
// The counts read committed rows: concurrent requests of one account do
// not see each other, so a quota can be overshot by the requests in flight
// at the moment it fills (at most the connection pool's size per node).
func (db *DB) IssuancePolicy(ctx context.Context, accountID string, now time.Time) (*pki.AccountPolicy, *pki.QuotaUsage, error) {
	if !validUUID(accountID) {
		return nil, nil, fmt.Errorf("store: policy of account %q: %w", accountID, pki.ErrNotFound)
	}
	var active *int64
	var hourFull *time.Time
	var u pki.QuotaUsage
	p, err := scanPolicy(db.pool.QueryRow(ctx, issuancePolicySQL, accountID, now), &active, &hourFull, &u.Now)
	if err != nil {
		return nil, nil, fmt.Errorf("store: policy of account %s: %w", accountID, mapErr(err))
	}
	if active != nil {
		u.Active = int(*active)
	}
	if hourFull != nil {
		u.HourFullSince = *hourFull
	}
	return p, &u, nil
}

// UpdateAccountPolicy locks the account's policy row, lets change edit the
// policy and complete ev, saves it with updated_at set to the database's
// time and updated_by to ev.Actor, and writes ev, all in one transaction. It
// returns the policy as saved. If change returns an error nothing is
// written and that error is returned as it is. pki.ErrNotFound means there is
// no such account. ev.AccountID, when empty, becomes accountID. Concurrent
// updates apply one after the other, each seeing the last.
func (db *DB) UpdateAccountPolicy(ctx context.Context, accountID string, change func(*pki.AccountPolicy, *pki.AuditEvent) error, ev pki.AuditEvent) (*pki.AccountPolicy, error) {
	if !validUUID(accountID) {
		return nil, fmt.Errorf("store: policy of account %q: %w", accountID, pki.ErrNotFound)
	}
	var saved *pki.AccountPolicy
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		p, err := scanPolicy(tx.QueryRow(ctx, "SELECT "+policyColumns+" FROM account_policies p WHERE p.account_id = $1::uuid FOR UPDATE", accountID))
		if err != nil {
			return fmt.Errorf("store: policy of account %s: %w", accountID, mapErr(err))
		}
		if err := change(p, &ev); err != nil {
			return err
		}
		if ev.AccountID == "" {
			ev.AccountID = accountID
		}
		names := make([]string, len(p.AllowedNames))
		for i, n := range p.AllowedNames {
			names[i] = storable(n)
		}
		keyTypes := make([]string, len(p.KeyTypes))
		for i, t := range p.KeyTypes {
			keyTypes[i] = string(t)
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE account_policies p SET allowed_names = $2, allow_uri_sans = $3, key_types = $4,
				max_validity_days = $5, max_active_certificates = $6, max_issuances_per_hour = $7,
				updated_at = now(), updated_by = $8
			WHERE p.account_id = $1::uuid RETURNING `+policyColumns,
			accountID, names, p.AllowURISANs, keyTypes, p.MaxValidityDays,
			p.MaxActiveCertificates, p.MaxIssuancesPerHour, storable(ev.Actor))
		if err := queueAudit(b, &ev); err != nil {
			return err
		}
		br := tx.SendBatch(ctx, b)
		saved, err = scanPolicy(br.QueryRow())
		if err == nil {
			_, err = br.Exec()
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("store: saving policy of account %s: %w", accountID, mapErr(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return saved, nil
}
