package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// OCSPChannel is the notification channel on which every change of a
// certificate's stored OCSP response is announced, with the serial as
// payload, so that every node's responder reloads it at once.
const OCSPChannel = "pkid_ocsp"

// CertificatesByKey returns every certificate, pending or issued, whose SPKI
// hash is spki and whose notAfter is after after (certificates_spki_idx).
func (db *DB) CertificatesByKey(ctx context.Context, spki []byte, after time.Time) ([]*pki.Certificate, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+certListColumns+
		" FROM certificates WHERE spki_sha256 = $1 AND not_after > $2 ORDER BY created_at, serial", spki, after)
	if err != nil {
		return nil, fmt.Errorf("store: certificates by key: %w", mapErr(err))
	}
	certs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.Certificate, error) {
		return scanCertificate(row)
	})
	if err != nil {
		return nil, fmt.Errorf("store: certificates by key: %w", mapErr(err))
	}
	return certs, nil
}

// revokeSQL applies one revocation if the row is still as the caller read it,
// replaces the certificate's OCSP response, writes the audit event and
// notifies every node, in one statement. It returns a row only when the
// revocation applied.
var revokeSQL = `WITH upd AS (
	UPDATE certificates SET revoked_at = $2, revocation_reason = $3
	WHERE serial = $1
	  AND revoked_at IS NOT DISTINCT FROM $4::timestamptz
	  AND revocation_reason IS NOT DISTINCT FROM $5::smallint
	RETURNING serial, issuer_id
), resp AS (
	INSERT INTO ocsp_responses (serial, issuer_id, der, this_update, next_update)
	SELECT serial, issuer_id, $6, $7, $8 FROM upd
	ON CONFLICT (serial) DO UPDATE SET der = EXCLUDED.der, this_update = EXCLUDED.this_update,
		next_update = EXCLUDED.next_update, updated_at = clock_timestamp()
	RETURNING updated_at
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT ` + auditValues(9, "") + ` FROM upd
)
SELECT resp.updated_at, pg_notify('` + OCSPChannel + `', $1) FROM resp`

// blockKeySQL blocks a key and, if it was not blocked already, audits it.
var blockKeySQL = `WITH ins AS (
	INSERT INTO blocked_keys (spki_sha256, source, serial) VALUES ($1, 'keyCompromise', $2)
	ON CONFLICT (spki_sha256) DO NOTHING RETURNING spki_sha256
)
INSERT INTO audit_events (` + auditColumns + `)
SELECT ` + auditValues(3, "") + ` FROM ins`

// Revoke applies revs and, when block is set, puts a key on the block list,
// in one transaction: either every applicable change and its audit event is
// committed, or none is. A revocation whose row changed since the caller read
// it is skipped (its Prev fields no longer match), which is how concurrent
// revocations of one certificate make exactly one change. The serials that
// changed are returned; their responses' UpdatedAt is set.
func (db *DB) Revoke(ctx context.Context, revs []*pki.Revocation, block *pki.BlockedKey) ([]pki.Serial, error) {
	if len(revs) == 0 && block == nil {
		return nil, nil
	}
	var changed []pki.Serial
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		changed = changed[:0]
		b := &pgx.Batch{}
		for _, r := range revs {
			if r.Response == nil || r.Response.Serial != r.Serial {
				return fmt.Errorf("store: revocation of %s carries no OCSP response for it", r.Serial)
			}
			audit, err := auditArgs(&r.Event)
			if err != nil {
				return err
			}
			var prevReason any
			if r.PrevReason != nil {
				prevReason = int16(*r.PrevReason)
			}
			args := append([]any{string(r.Serial), r.RevokedAt, int16(r.Reason), r.PrevRevokedAt, prevReason,
				r.Response.DER, r.Response.ThisUpdate, r.Response.NextUpdate}, audit...)
			b.Queue(revokeSQL, args...)
		}
		if block != nil {
			audit, err := auditArgs(&block.Event)
			if err != nil {
				return err
			}
			b.Queue(blockKeySQL, append([]any{block.SPKISHA256, nullText(string(block.Serial))}, audit...)...)
		}
		br := tx.SendBatch(ctx, b)
		for _, r := range revs {
			var updatedAt time.Time
			var notified string
			err := br.QueryRow().Scan(&updatedAt, &notified)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				continue // changed by someone else meanwhile
			case err != nil:
				br.Close()
				return err
			}
			r.Response.UpdatedAt = updatedAt
			changed = append(changed, r.Serial)
		}
		if block != nil {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return err
			}
		}
		return br.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("store: revoking: %w", mapErr(err))
	}
	return changed, nil
}

// Renewal returns the certificate that renewed serial, or pki.ErrNotFound.
func (db *DB) Renewal(ctx context.Context, serial pki.Serial) (*pki.Certificate, error) {
	c, err := scanCertificate(db.pool.QueryRow(ctx, "SELECT "+certListColumns+" FROM certificates WHERE renewed_from = $1", string(serial)))
	if err != nil {
		return nil, fmt.Errorf("store: renewal of %s: %w", serial, mapErr(err))
	}
	return c, nil
}
