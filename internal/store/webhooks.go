package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// SealingSalt returns the deployment's salt for purpose, storing candidate
// as that salt when there is none yet. Every node gets the same salt: of
// two nodes that store theirs at once, the first to commit wins and both
// read it.
func (db *DB) SealingSalt(ctx context.Context, purpose string, candidate []byte) ([]byte, error) {
	var salt []byte
	err := db.pool.QueryRow(ctx, `WITH ins AS (
		INSERT INTO sealing_salts (purpose, salt) VALUES ($1, $2)
		ON CONFLICT (purpose) DO NOTHING RETURNING salt
	)
	SELECT salt FROM ins UNION ALL SELECT salt FROM sealing_salts WHERE purpose = $1
	LIMIT 1`, purpose, candidate).Scan(&salt)
	if err != nil {
		return nil, fmt.Errorf("store: sealing salt %q: %w", purpose, mapErr(err))
	}
	return salt, nil
}

const webhookColumns = `w.account_id::text, w.url, w.sealed_secret, w.previous_sealed_secret, w.previous_expires_at,
	COALESCE(w.notify_days, 0), w.created_at, w.updated_at, w.updated_by, w.secret_rotated_at`

func scanWebhook(row pgx.Row) (*pki.Webhook, error) {
	var w pki.Webhook
	if err := row.Scan(&w.AccountID, &w.URL, &w.SealedSecret, &w.SealedPrevious, &w.PreviousExpiresAt,
		&w.NotifyDays, &w.CreatedAt, &w.UpdatedAt, &w.UpdatedBy, &w.SecretRotatedAt); err != nil {
		return nil, err
	}
	return &w, nil
}

// Webhook returns the account's webhook, or pki.ErrNotFound when the
// account has none or does not exist.
func (db *DB) Webhook(ctx context.Context, accountID string) (*pki.Webhook, error) {
	if !validUUID(accountID) {
		return nil, fmt.Errorf("store: webhook of account %q: %w", accountID, pki.ErrNotFound)
	}
	w, err := scanWebhook(db.pool.QueryRow(ctx, "SELECT "+webhookColumns+" FROM account_webhooks w WHERE w.account_id = $1::uuid", accountID))
	if err != nil {
		return nil, fmt.Errorf("store: webhook of account %s: %w", accountID, mapErr(err))
	}
	return w, nil
}

// UpdateWebhook locks the account, reads its webhook (nil when it has none)
// and lets change decide the new one and complete ev: a webhook to save
// (created or replaced, with updated_at set to the database's time), or nil
// to remove it. The change and ev are written in one transaction, and the
// webhook as saved is returned (nil after a removal). If change returns an
// error nothing is written and the error comes back as it is.
// pki.ErrNotFound means there is no such account. ev.AccountID, when empty,
// becomes accountID.
//
// The account row is locked FOR NO KEY UPDATE: concurrent changes of one
// account's webhook apply one after the other, while issuance for the
// account (whose foreign keys take KEY SHARE) is not held up.
func (db *DB) UpdateWebhook(ctx context.Context, accountID string, change func(cur *pki.Webhook, ev *pki.AuditEvent) (*pki.Webhook, error), ev pki.AuditEvent) (*pki.Webhook, error) {
	if !validUUID(accountID) {
		return nil, fmt.Errorf("store: account %q: %w", accountID, pki.ErrNotFound)
	}
	var saved *pki.Webhook
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, "SELECT 1 FROM accounts WHERE id = $1::uuid FOR NO KEY UPDATE", accountID).Scan(&one); err != nil {
			return fmt.Errorf("store: account %s: %w", accountID, mapErr(err))
		}
		cur, err := scanWebhook(tx.QueryRow(ctx, "SELECT "+webhookColumns+" FROM account_webhooks w WHERE w.account_id = $1::uuid", accountID))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			cur = nil
		case err != nil:
			return fmt.Errorf("store: webhook of account %s: %w", accountID, mapErr(err))
		}
		next, err := change(cur, &ev)
		if err != nil {
			return err
		}
		if ev.AccountID == "" {
			ev.AccountID = accountID
		}
		b := &pgx.Batch{}
		if next == nil {
			b.Queue("DELETE FROM account_webhooks WHERE account_id = $1::uuid", accountID)
		} else {
			b.Queue(`INSERT INTO account_webhooks AS w (account_id, url, sealed_secret, previous_sealed_secret,
					previous_expires_at, notify_days, updated_by, secret_rotated_at)
				VALUES ($1::uuid, $2, $3, $4, $5, NULLIF($6, 0), $7, COALESCE($8, now()))
				ON CONFLICT (account_id) DO UPDATE SET url = EXCLUDED.url, sealed_secret = EXCLUDED.sealed_secret,
					previous_sealed_secret = EXCLUDED.previous_sealed_secret,
					previous_expires_at = EXCLUDED.previous_expires_at, notify_days = EXCLUDED.notify_days,
					updated_by = EXCLUDED.updated_by, updated_at = now(),
					secret_rotated_at = EXCLUDED.secret_rotated_at
				RETURNING `+webhookColumns,
				accountID, storable(next.URL), next.SealedSecret, next.SealedPrevious, next.PreviousExpiresAt,
				next.NotifyDays, storable(ev.Actor), nullTime(next.SecretRotatedAt))
		}
		if err := queueAudit(b, &ev); err != nil {
			return err
		}
		br := tx.SendBatch(ctx, b)
		if next == nil {
			_, err = br.Exec()
		} else {
			saved, err = scanWebhook(br.QueryRow())
		}
		if err == nil {
			_, err = br.Exec()
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("store: saving webhook of account %s: %w", accountID, mapErr(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return saved, nil
}

// enqueueExpiringSQL makes one pending delivery for every certificate that
// is due a notice at $1: issued, unrevoked, not expired, with notAfter
// within the notice period of its account's webhook ($2 days unless the
// webhook sets its own), not renewed (no issued certificate names it in
// renewed_from), of an active account. It walks certificates_account_not_after_idx
// per webhook, and the renewal check is a probe of the unique index on
// renewed_from. ON CONFLICT makes it idempotent and safe for every node to
// run at once: a certificate gets one row whoever finds it.
const enqueueExpiringSQL = `INSERT INTO webhook_deliveries (serial, kind, account_id, next_attempt_at, created_at)
SELECT c.serial, '` + pki.EventCertificateExpiring + `', c.account_id, $1, $1
FROM account_webhooks w
JOIN accounts a ON a.id = w.account_id AND a.status = 'active'
JOIN certificates c ON c.account_id = w.account_id
	AND c.not_after > $1
	AND c.not_after <= $1 + make_interval(days => COALESCE(w.notify_days, $2::int))
WHERE c.state = 'issued' AND c.revoked_at IS NULL
	AND NOT EXISTS (SELECT 1 FROM certificates r WHERE r.renewed_from = c.serial AND r.state = 'issued')
ON CONFLICT (serial, kind) DO NOTHING`

// EnqueueExpiring makes the deliveries that are due at now (see
// enqueueExpiringSQL), defaultDays being the notice period of webhooks that
// set none, and returns how many it made.
func (db *DB) EnqueueExpiring(ctx context.Context, now time.Time, defaultDays int) (int, error) {
	tag, err := db.pool.Exec(ctx, enqueueExpiringSQL, now, defaultDays)
	if err != nil {
		return 0, fmt.Errorf("store: finding certificates due an expiry notice: %w", mapErr(err))
	}
	return int(tag.RowsAffected()), nil
}

const deliveryColumns = `d.id::text, d.serial, d.kind, d.account_id::text, d.state, d.attempts, d.next_attempt_at,
	d.last_attempt_at, COALESCE(d.last_status, 0), COALESCE(d.last_error, ''), d.created_at, d.completed_at`

func deliveryDest(d *pki.WebhookDelivery, serial, state *string) []any {
	return []any{&d.ID, serial, &d.Kind, &d.AccountID, state, &d.Attempts, &d.NextAttemptAt,
		&d.LastAttemptAt, &d.LastStatus, &d.LastError, &d.CreatedAt, &d.CompletedAt}
}

// claimDeliverySQL takes the soonest due pending delivery that no other
// transaction holds, locking only the delivery row (other nodes skip it),
// with the certificate's and the account's state and the webhook as they are
// now.
const claimDeliverySQL = `SELECT ` + deliveryColumns + `,
	c.not_after, c.subject_cn, c.revoked_at IS NOT NULL,
	EXISTS (SELECT 1 FROM certificates r WHERE r.renewed_from = c.serial AND r.state = 'issued'),
	a.status = 'active', w.account_id IS NOT NULL, ` + webhookColumns + `
FROM webhook_deliveries d
JOIN certificates c ON c.serial = d.serial
JOIN accounts a ON a.id = d.account_id
LEFT JOIN account_webhooks w ON w.account_id = d.account_id
WHERE d.state = 'pending' AND d.next_attempt_at <= $1
ORDER BY d.next_attempt_at
LIMIT 1
FOR UPDATE OF d SKIP LOCKED`

// leaseDeliverySQL takes a claimed delivery out of everyone's reach until
// $2 by moving its due time there, and returns that time as stored (to the
// microsecond), which is the lease's token.
const leaseDeliverySQL = `UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE id = $1::uuid RETURNING next_attempt_at`

// recordDeliverySQL writes an attempt's outcome if the lease ($9, the due
// time the claim set) is still the claimer's: the row is pending and no
// other node has claimed it since the lease ran out.
const recordDeliverySQL = `UPDATE webhook_deliveries SET state = $2, attempts = $3, next_attempt_at = $4,
		last_attempt_at = COALESCE($5, last_attempt_at), last_status = NULLIF($6, 0),
		last_error = NULLIF($7, ''), completed_at = $8
	WHERE id = $1::uuid AND state = 'pending' AND next_attempt_at = $9`

// recordTimeout bounds the write of an attempt's outcome, which goes on
// when the caller's context ends.
const recordTimeout = 10 * time.Second

// ErrLeaseLost: a delivery's attempt outlasted its lease, another node
// claimed it meanwhile, and this attempt's outcome was not recorded. The
// notice may be sent twice; receivers deduplicate by delivery id.
var ErrLeaseLost = errors.New("store: the webhook delivery's lease ran out before its outcome was recorded")

// ClaimDelivery claims the soonest delivery due at now, calls handle with it,
// and writes the outcome handle returns, with its audit event. It returns
// false when no delivery is due (or every due one is being claimed by
// another node at that moment).
//
// The claim is a lease, not a held lock: one short transaction picks the
// delivery (FOR UPDATE SKIP LOCKED) and moves its due time to now + lease,
// so that no node claims it again before then; handle runs with no
// transaction open and no pool connection held (it waits on a receiver, up
// to the job's timeout, and a slow receiver must not take connections from
// issuance); a second transaction records the outcome only if the due time
// is still the lease's. If the process dies while handle runs, the delivery
// is claimed again once the lease has run out: delivery is at least once,
// and receivers deduplicate by delivery id. An outcome that comes after its
// lease ran out and another node claimed the delivery is dropped, and
// ClaimDelivery returns ErrLeaseLost.
func (db *DB) ClaimDelivery(ctx context.Context, now time.Time, lease time.Duration, handle func(*pki.DueDelivery) pki.DeliveryOutcome) (bool, error) {
	var d pki.DueDelivery
	var leaseUntil time.Time
	claimed := false
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		var serial, state string
		var hasWebhook bool
		var w pki.Webhook
		var wAccount, wURL, wBy *string
		var wSecret []byte
		var wNotify *int
		var wCreated, wUpdated, wRotated *time.Time
		dest := append(deliveryDest(&d.WebhookDelivery, &serial, &state),
			&d.NotAfter, &d.SubjectCN, &d.Revoked, &d.Renewed, &d.AccountActive, &hasWebhook,
			&wAccount, &wURL, &wSecret, &w.SealedPrevious, &w.PreviousExpiresAt,
			&wNotify, &wCreated, &wUpdated, &wBy, &wRotated)
		err := tx.QueryRow(ctx, claimDeliverySQL, now).Scan(dest...)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: claiming a webhook delivery: %w", mapErr(err))
		}
		d.Serial, d.State = pki.Serial(serial), pki.DeliveryState(state)
		if hasWebhook {
			w.AccountID, w.URL, w.SealedSecret, w.NotifyDays = *wAccount, *wURL, wSecret, *wNotify
			w.CreatedAt, w.UpdatedAt, w.UpdatedBy, w.SecretRotatedAt = *wCreated, *wUpdated, *wBy, *wRotated
			d.Webhook = &w
		}
		if err := tx.QueryRow(ctx, leaseDeliverySQL, d.ID, now.Add(lease)).Scan(&leaseUntil); err != nil {
			return fmt.Errorf("store: leasing webhook delivery %s: %w", d.ID, mapErr(err))
		}
		claimed = true
		return nil
	})
	if err != nil || !claimed {
		return false, err
	}

	out := handle(&d)
	if out.Event.AccountID == "" {
		out.Event.AccountID = d.AccountID
	}
	if out.Event.Serial == "" {
		out.Event.Serial = d.Serial
	}
	// The attempt was made: record it even if ctx ends meanwhile (the node
	// shutting down), so that the receiver is not sent it again for nothing.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	err = db.InTx(rctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(rctx, recordDeliverySQL, d.ID, string(out.State), out.Attempts, out.NextAttemptAt,
			out.AttemptedAt, out.LastStatus, storable(out.LastError), out.CompletedAt, leaseUntil)
		if err != nil {
			return fmt.Errorf("store: recording webhook delivery %s: %w", d.ID, mapErr(err))
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w (delivery %s)", ErrLeaseLost, d.ID)
		}
		b := &pgx.Batch{}
		if err := queueAudit(b, &out.Event); err != nil {
			return err
		}
		if err := tx.SendBatch(rctx, b).Close(); err != nil {
			return fmt.Errorf("store: auditing webhook delivery %s: %w", d.ID, mapErr(err))
		}
		return nil
	})
	return true, err
}

// PendingDeliveries counts the deliveries not yet delivered, failed or
// cancelled.
func (db *DB) PendingDeliveries(ctx context.Context) (int, error) {
	var n int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'").Scan(&n); err != nil {
		return 0, fmt.Errorf("store: counting pending webhook deliveries: %w", mapErr(err))
	}
	return n, nil
}

// WebhookDeliveries lists an account's deliveries, newest first, at most
// limit.
func (db *DB) WebhookDeliveries(ctx context.Context, accountID string, limit int) ([]pki.WebhookDelivery, error) {
	if !validUUID(accountID) {
		return []pki.WebhookDelivery{}, nil
	}
	rows, err := db.pool.Query(ctx, "SELECT "+deliveryColumns+` FROM webhook_deliveries d
		WHERE d.account_id = $1::uuid ORDER BY d.created_at DESC, d.id LIMIT $2`, accountID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: listing webhook deliveries: %w", mapErr(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pki.WebhookDelivery, error) {
		var d pki.WebhookDelivery
		var serial, state string
		err := row.Scan(deliveryDest(&d, &serial, &state)...)
		d.Serial, d.State = pki.Serial(serial), pki.DeliveryState(state)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing webhook deliveries: %w", mapErr(err))
	}
	return out, nil
}
