package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

const issuerColumns = `id, kind, COALESCE(parent_id, ''), certificate, encrypted_key, COALESCE(key_uri, ''),
	subject, not_before, not_after, created_at, retired_at, generation, superseded_at`

func scanIssuer(row pgx.Row) (*pki.IssuerRecord, error) {
	var r pki.IssuerRecord
	var kind string
	if err := row.Scan(&r.ID, &kind, &r.ParentID, &r.Certificate, &r.EncryptedKey, &r.KeyURI,
		&r.Subject, &r.NotBefore, &r.NotAfter, &r.CreatedAt, &r.RetiredAt, &r.Generation, &r.SupersededAt); err != nil {
		return nil, err
	}
	r.Kind = pki.IssuerKind(kind)
	return &r, nil
}

// Issuers returns every issuer that is not retired: the root first, then
// intermediates, then OCSP signers, oldest first within a kind. Superseded
// intermediates are listed: they still sign their CRLs and OCSP signers.
func (db *DB) Issuers(ctx context.Context) ([]*pki.IssuerRecord, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+issuerColumns+` FROM issuers WHERE retired_at IS NULL
		ORDER BY CASE kind WHEN 'root' THEN 0 WHEN 'intermediate' THEN 1 ELSE 2 END, created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("store: listing issuers: %w", mapErr(err))
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.IssuerRecord, error) {
		return scanIssuer(row)
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing issuers: %w", mapErr(err))
	}
	return recs, nil
}

const insertIssuerSQL = `INSERT INTO issuers (id, kind, parent_id, certificate, encrypted_key, key_uri,
	subject, not_before, not_after, created_at, retired_at, generation, superseded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10::timestamptz, now()), $11, GREATEST($12::int, 1), $13)
RETURNING created_at`

// queueIssuer adds the insert of r to b; the row's created_at is scanned into
// r.CreatedAt when the batch's result is read.
func queueIssuer(b *pgx.Batch, r *pki.IssuerRecord) {
	var key any
	if len(r.EncryptedKey) > 0 {
		key = r.EncryptedKey
	}
	b.Queue(insertIssuerSQL, r.ID, string(r.Kind), nullText(r.ParentID), r.Certificate, key,
		nullText(r.KeyURI), storable(r.Subject), r.NotBefore, r.NotAfter, nullTime(r.CreatedAt), r.RetiredAt,
		r.Generation, r.SupersededAt).
		QueryRow(func(row pgx.Row) error { return row.Scan(&r.CreatedAt) })
}

// InsertIssuers stores recs (parents before children) and writes ev, in one
// transaction. It fails with pki.ErrAlreadyExists, storing nothing, when a
// current issuer of the same kind exists already: another process ran pkid
// init first. CreatedAt is filled in.
func (db *DB) InsertIssuers(ctx context.Context, recs []*pki.IssuerRecord, ev pki.AuditEvent) error {
	if len(recs) == 0 {
		return fmt.Errorf("store: no issuers to insert")
	}
	b := &pgx.Batch{}
	for _, r := range recs {
		queueIssuer(b, r)
	}
	if err := queueAudit(b, &ev); err != nil {
		return err
	}
	if err := db.InTx(ctx, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
		return fmt.Errorf("store: inserting issuers: %w", mapErr(err))
	}
	return nil
}

// ReplaceIssuer retires the issuer oldID and stores rec, its successor, with
// ev, in one transaction (OCSP signer renewal, intermediate rotation). The old
// issuer's retired_at is ev.OccurredAt (the database's time when zero). It
// returns pki.ErrNotFound, storing nothing, when oldID is not current (another
// node replaced it first).
func (db *DB) ReplaceIssuer(ctx context.Context, oldID string, rec *pki.IssuerRecord, ev pki.AuditEvent) error {
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		// The old row must leave the current set before the new one joins
		// it, or issuers_current_idx would refuse the new row.
		tag, err := tx.Exec(ctx, `UPDATE issuers SET retired_at = COALESCE($2::timestamptz, now())
			WHERE id = $1 AND retired_at IS NULL`, oldID, nullTime(ev.OccurredAt))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("old issuer is not current: %w", pki.ErrNotFound)
		}
		b := &pgx.Batch{}
		queueIssuer(b, rec)
		b.Queue(insertAuditSQL, audit...)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("store: replacing issuer %s: %w", oldID, mapErr(err))
	}
	return nil
}

// TokenKeys returns every token-signing key that is not retired, newest
// first: the first one signs, all of them verify.
func (db *DB) TokenKeys(ctx context.Context) ([]*pki.TokenKeyRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT kid, algorithm, encrypted_key, created_at, retired_at
		FROM token_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid`)
	if err != nil {
		return nil, fmt.Errorf("store: listing token keys: %w", mapErr(err))
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.TokenKeyRecord, error) {
		var k pki.TokenKeyRecord
		err := row.Scan(&k.KID, &k.Algorithm, &k.EncryptedKey, &k.CreatedAt, &k.RetiredAt)
		return &k, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing token keys: %w", mapErr(err))
	}
	return keys, nil
}

// InsertTokenKey stores k, a new token-signing key, and writes ev, in one
// transaction. It fails with pki.ErrAlreadyExists, storing nothing, when a
// current key exists already or k.KID is taken: two processes ran pkid init at
// once, and the one that lost must use the winner's key. The table lock
// (which readers do not wait for) makes the check and the insert one step.
// k.CreatedAt is filled in.
func (db *DB) InsertTokenKey(ctx context.Context, k *pki.TokenKeyRecord, ev pki.AuditEvent) error {
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		var current bool
		b := &pgx.Batch{}
		b.Queue("LOCK TABLE token_keys IN EXCLUSIVE MODE")
		b.Queue("SELECT EXISTS (SELECT 1 FROM token_keys WHERE retired_at IS NULL)").
			QueryRow(func(row pgx.Row) error { return row.Scan(&current) })
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if current {
			return fmt.Errorf("a current token key exists: %w", pki.ErrAlreadyExists)
		}
		b = &pgx.Batch{}
		b.Queue(`INSERT INTO token_keys (kid, algorithm, encrypted_key, created_at, retired_at)
			VALUES ($1, $2, $3, COALESCE($4::timestamptz, now()), $5) RETURNING created_at`,
			k.KID, k.Algorithm, k.EncryptedKey, nullTime(k.CreatedAt), k.RetiredAt).
			QueryRow(func(row pgx.Row) error { return row.Scan(&k.CreatedAt) })
		b.Queue(insertAuditSQL, audit...)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("store: inserting token key %s: %w", k.KID, mapErr(err))
	}
	return nil
}
