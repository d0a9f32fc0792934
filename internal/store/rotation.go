package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// IssuersChannel is the notification channel on which a change of the CA
// hierarchy (rotation, retirement) is announced; the payload is the ID of
// the intermediate concerned. Nodes also poll, so a missed notification
// delays a change, never loses it.
const IssuersChannel = "pkid_issuers"

// RetiredIntermediates returns the intermediates that have been retired,
// oldest first.
func (db *DB) RetiredIntermediates(ctx context.Context) ([]*pki.IssuerRecord, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+issuerColumns+` FROM issuers
		WHERE kind = 'intermediate' AND retired_at IS NOT NULL ORDER BY generation`)
	if err != nil {
		return nil, fmt.Errorf("store: listing retired intermediates: %w", mapErr(err))
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.IssuerRecord, error) {
		return scanIssuer(row)
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing retired intermediates: %w", mapErr(err))
	}
	return recs, nil
}

// RotateIntermediate marks the current intermediate oldID superseded and
// stores inter, its successor, and signer, the successor's OCSP signer, with
// ev, in one transaction, then notifies IssuersChannel. The row lock the
// UPDATE takes serialises concurrent rotations: the second finds oldID
// superseded and gets pki.ErrNotFound, storing nothing; issuers_current_idx
// and issuers_generation_idx refuse a second current intermediate or a
// reused generation whatever the caller does (pki.ErrAlreadyExists).
func (db *DB) RotateIntermediate(ctx context.Context, oldID string, inter, signer *pki.IssuerRecord, ev pki.AuditEvent) error {
	if inter.Kind != pki.IssuerIntermediate || signer.Kind != pki.IssuerOCSP || signer.ParentID != inter.ID {
		return fmt.Errorf("store: rotation needs an intermediate and an OCSP signer it issued")
	}
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE issuers SET superseded_at = COALESCE($2::timestamptz, now())
			WHERE id = $1 AND kind = 'intermediate' AND superseded_at IS NULL AND retired_at IS NULL`,
			oldID, nullTime(ev.OccurredAt))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("intermediate %s is not current: %w", oldID, pki.ErrNotFound)
		}
		b := &pgx.Batch{}
		queueIssuer(b, inter)
		queueIssuer(b, signer)
		b.Queue(insertAuditSQL, audit...)
		b.Queue("SELECT pg_notify('"+IssuersChannel+"', $1)", inter.ID)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("store: rotating intermediate %s: %w", oldID, mapErr(err))
	}
	return nil
}

// RetireIntermediate retires the superseded intermediate id and its OCSP
// signers, with ev, in one transaction, and notifies IssuersChannel. It
// returns pki.ErrNotFound when id is not a live superseded intermediate.
func (db *DB) RetireIntermediate(ctx context.Context, id string, ev pki.AuditEvent) error {
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE issuers SET retired_at = COALESCE($2::timestamptz, now())
			WHERE id = $1 AND kind = 'intermediate' AND superseded_at IS NOT NULL AND retired_at IS NULL`,
			id, nullTime(ev.OccurredAt))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("intermediate %s is not live and superseded: %w", id, pki.ErrNotFound)
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE issuers SET retired_at = COALESCE($2::timestamptz, now())
			WHERE parent_id = $1 AND kind = 'ocsp' AND retired_at IS NULL`, id, nullTime(ev.OccurredAt))
		b.Queue(insertAuditSQL, audit...)
		b.Queue("SELECT pg_notify('"+IssuersChannel+"', $1)", id)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("store: retiring intermediate %s: %w", id, mapErr(err))
	}
	return nil
}

// TakeKeyOffline removes the sealed key of the root id from the database,
// leaving keyURI (ca.OfflineKeyURI) in its place, and writes ev, in one
// transaction. It returns pki.ErrNotFound when the root's key is not in the
// database (taken offline already, or in an HSM).
func (db *DB) TakeKeyOffline(ctx context.Context, id, keyURI string, ev pki.AuditEvent) error {
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE issuers SET encrypted_key = NULL, key_uri = $2
			WHERE id = $1 AND kind = 'root' AND encrypted_key IS NOT NULL`, id, keyURI)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("the root's key is not in the database: %w", pki.ErrNotFound)
		}
		_, err = tx.Exec(ctx, insertAuditSQL, audit...)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: taking the key of %s offline: %w", id, mapErr(err))
	}
	return nil
}

// LastCertificateExpiry returns the latest notAfter of the certificates
// issuerID issued, pending ones included (they may yet be signed), or the
// zero time when it issued none. It reads every certificate of the issuer
// through the (issuer_id, serial) index: run it rarely (the retirement job
// asks once per superseded intermediate and remembers).
func (db *DB) LastCertificateExpiry(ctx context.Context, issuerID string) (time.Time, error) {
	var last *time.Time
	err := db.pool.QueryRow(ctx, `SELECT max(not_after) FROM certificates WHERE issuer_id = $1`, issuerID).Scan(&last)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: reading the last expiry of %s: %w", issuerID, mapErr(err))
	}
	if last == nil {
		return time.Time{}, nil
	}
	return *last, nil
}

// ListenIssuers listens on IssuersChannel, calls listening once the LISTEN
// is in place, then notify with the intermediate ID of each notification,
// until ctx ends or the connection fails.
func (db *DB) ListenIssuers(ctx context.Context, listening func(), notify func(id string)) error {
	return db.listen(ctx, IssuersChannel, "CA hierarchy changes", listening, notify)
}
