package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// CRLChannel is the notification channel on which every new CRL is
// announced, with its issuer's id as payload, so that every node serves it
// at once.
const CRLChannel = "pkid_crl"

// crlLockClass is the first key of the transaction-scoped advisory lock
// that serialises the CRLs of one issuer (the second is derived from the
// issuer's id). Postgres keeps two-key advisory locks apart from the
// one-key locks that CreatePending takes on SPKI hashes.
const crlLockClass = 0x63726c // "crl"

const lockCRLSQL = "SELECT pg_advisory_xact_lock($1::int4, $2::int4)"

// lz4SQL has this transaction compress what it TOASTs with lz4 rather than
// the default pglz, when the server has lz4: a CRL of a million entries
// (45 MB) is stored in about 1.2 s instead of 4.5 s, at 58% of its size
// (pglz: 54%). Without lz4 it changes nothing.
const lz4SQL = `SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings
	WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)`

// lockCRL takes the issuer's CRL lock for the rest of tx and sets lz4SQL.
func lockCRL(ctx context.Context, tx pgx.Tx, issuerID string) error {
	b := &pgx.Batch{}
	b.Queue(lockCRLSQL, crlLockClass, crlLockKey(issuerID))
	b.Queue(lz4SQL)
	return tx.SendBatch(ctx, b).Close()
}

// crlLockKey is the second advisory-lock key for issuerID.
func crlLockKey(issuerID string) int32 {
	sum := sha256.Sum256([]byte(issuerID))
	return int32(binary.BigEndian.Uint32(sum[:4]))
}

const crlInfoColumns = "issuer_id, number, this_update, next_update, entries"

func scanCRL(row pgx.Row, withDER bool) (*pki.CRL, error) {
	var c pki.CRL
	var entries int32
	dst := []any{&c.IssuerID, &c.Number, &c.ThisUpdate, &c.NextUpdate, &entries}
	if withDER {
		dst = append(dst, &c.DER)
	}
	if err := row.Scan(dst...); err != nil {
		return nil, err
	}
	c.Entries = int(entries)
	return &c, nil
}

// latestCRLSQL reads the newest CRL of an issuer by its primary key,
// backwards.
const latestCRLSQL = "SELECT " + crlInfoColumns + "%s FROM crls WHERE issuer_id = $1 ORDER BY number DESC LIMIT 1"

// LatestCRL returns the newest CRL of the issuer issuerID (the one with the
// highest number), DER included, or pki.ErrNotFound when it has none.
func (db *DB) LatestCRL(ctx context.Context, issuerID string) (*pki.CRL, error) {
	c, err := scanCRL(db.pool.QueryRow(ctx, fmt.Sprintf(latestCRLSQL, ", der"), issuerID), true)
	if err != nil {
		return nil, fmt.Errorf("store: latest CRL of %s: %w", issuerID, mapErr(err))
	}
	return c, nil
}

// LatestCRLInfo is LatestCRL without the DER, which may be tens of
// megabytes: what a node checks to learn whether it has the newest CRL.
func (db *DB) LatestCRLInfo(ctx context.Context, issuerID string) (*pki.CRL, error) {
	c, err := scanCRL(db.pool.QueryRow(ctx, fmt.Sprintf(latestCRLSQL, ""), issuerID), false)
	if err != nil {
		return nil, fmt.Errorf("store: latest CRL of %s: %w", issuerID, mapErr(err))
	}
	return c, nil
}

// LatestRevocation returns the latest revocation time among the
// certificates of issuerID (certificates_revoked_idx), or the zero time when
// none is revoked.
func (db *DB) LatestRevocation(ctx context.Context, issuerID string) (time.Time, error) {
	var t *time.Time
	err := db.pool.QueryRow(ctx,
		"SELECT max(revoked_at) FROM certificates WHERE issuer_id = $1 AND revoked_at IS NOT NULL", issuerID).Scan(&t)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: latest revocation of %s: %w", issuerID, mapErr(err))
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}

// NextCRLNumber draws the next CRL number from crl_number_seq. Numbers grow
// across issuers, nodes and restarts; one drawn but not used leaves a gap,
// which RFC 5280 §5.2.3 allows (it asks only that they increase).
func (db *DB) NextCRLNumber(ctx context.Context) (int64, error) {
	var n int64
	if err := db.pool.QueryRow(ctx, "SELECT nextval('crl_number_seq')").Scan(&n); err != nil {
		return 0, fmt.Errorf("store: drawing a CRL number: %w", mapErr(err))
	}
	return n, nil
}

// checkCRL refuses a CRL record that cannot be stored.
func checkCRL(c *pki.CRL) error {
	switch {
	case c == nil || c.IssuerID == "" || len(c.DER) == 0:
		return errors.New("store: CRL without issuer or DER")
	case c.Number <= 0:
		return fmt.Errorf("store: CRL number %d is not positive", c.Number)
	case !c.NextUpdate.After(c.ThisUpdate):
		return fmt.Errorf("store: CRL %d: nextUpdate is not after thisUpdate", c.Number)
	case c.Entries < 0 || c.Entries > 1<<31-1:
		return fmt.Errorf("store: CRL %d: %d entries", c.Number, c.Entries)
	}
	return nil
}

// queueCRL adds to b the statements that publish c: its row, its audit
// event, the removal of all but the newest keep CRLs of its issuer (keep 0:
// none is removed) and the notification, which Postgres delivers at commit.
func queueCRL(b *pgx.Batch, c *pki.CRL, ev *pki.AuditEvent, keep int) error {
	audit, err := auditArgs(ev)
	if err != nil {
		return err
	}
	b.Queue("INSERT INTO crls (issuer_id, number, der, this_update, next_update, entries) VALUES ($1, $2, $3, $4, $5, $6)",
		c.IssuerID, c.Number, c.DER, c.ThisUpdate, c.NextUpdate, int32(c.Entries))
	b.Queue(insertAuditSQL, audit...)
	if keep > 0 {
		b.Queue(`DELETE FROM crls WHERE issuer_id = $1 AND number <= (
			SELECT number FROM crls WHERE issuer_id = $1 ORDER BY number DESC OFFSET $2 LIMIT 1)`, c.IssuerID, keep)
	}
	b.Queue("SELECT pg_notify('"+CRLChannel+"', $1)", c.IssuerID)
	return nil
}

// InsertCRL stores c, a CRL signed outside the CRL job (the root's, signed
// when the root key is in use), with its audit event ev, and announces it on
// CRLChannel, in one transaction that holds the issuer's CRL lock. c.Number
// (from NextCRLNumber) must be above the number of every stored CRL of the
// issuer: otherwise nothing is written and the error wraps
// pki.ErrAlreadyExists. An unknown issuer is pki.ErrNotFound. No CRL is
// removed.
func (db *DB) InsertCRL(ctx context.Context, c *pki.CRL, ev pki.AuditEvent) error {
	if err := checkCRL(c); err != nil {
		return err
	}
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		if err := lockCRL(ctx, tx, c.IssuerID); err != nil {
			return err
		}
		var latest int64
		if err := tx.QueryRow(ctx, "SELECT COALESCE(max(number), 0) FROM crls WHERE issuer_id = $1", c.IssuerID).Scan(&latest); err != nil {
			return err
		}
		if c.Number <= latest {
			return fmt.Errorf("store: CRL %d of %s is not above the latest, %d: %w", c.Number, c.IssuerID, latest, pki.ErrAlreadyExists)
		}
		b := &pgx.Batch{}
		if err := queueCRL(b, c, &ev, 0); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("store: inserting CRL %d of %s: %w", c.Number, c.IssuerID, mapErr(err))
	}
	return nil
}

// revokedSQL lists the revoked certificates of an issuer that expire at or
// after a time (certificates_revoked_expiry_idx). Pending rows are included:
// a certificate may exist for them.
const revokedSQL = `SELECT serial, revoked_at, revocation_reason FROM certificates
	WHERE issuer_id = $1 AND revoked_at IS NOT NULL AND not_after >= $2`

// GenerateCRL makes the next CRL of the issuer issuerID, in one transaction
// that holds the issuer's CRL lock (pg_advisory_xact_lock), so that nodes
// generating at once take turns and each sees what the previous one
// committed. Under the lock it reads the newest CRL of the issuer (prev,
// without DER; nil when there is none) and draws the next number from
// crl_number_seq, which is therefore above every number prev's issuer has
// used. It then calls build with them and with revoked, which returns the
// revoked certificates of the issuer, pending or issued, whose notAfter is
// at or after from (zero: all), in no particular order, as the transaction
// sees them.
//
// build returns the signed CRL (its issuer and number must be the ones
// given) and its audit event; GenerateCRL stores them, removes all but the
// newest keep CRLs of the issuer (keep <= 0: none), announces the CRL on
// CRLChannel and commits. When build fails nothing is written (the number
// is lost, which leaves a gap) and its error is returned as it is.
func (db *DB) GenerateCRL(ctx context.Context, issuerID string, keep int,
	build func(prev *pki.CRL, number int64, revoked func(from time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error),
) error {
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		if err := lockCRL(ctx, tx, issuerID); err != nil {
			return err
		}
		prev, err := scanCRL(tx.QueryRow(ctx, fmt.Sprintf(latestCRLSQL, ""), issuerID), false)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			prev = nil
		case err != nil:
			return err
		}
		var number int64
		if err := tx.QueryRow(ctx, "SELECT nextval('crl_number_seq')").Scan(&number); err != nil {
			return err
		}
		revoked := func(from time.Time) ([]pki.RevokedEntry, error) {
			entries, err := scanRevoked(ctx, tx, issuerID, from)
			if err != nil {
				return nil, fmt.Errorf("store: revoked certificates of %s: %w", issuerID, mapErr(err))
			}
			return entries, nil
		}
		c, ev, err := build(prev, number, revoked)
		if err != nil {
			return err
		}
		if err := checkCRL(c); err != nil {
			return err
		}
		if c.IssuerID != issuerID || c.Number != number {
			return fmt.Errorf("store: built CRL %d of %s, want %d of %s", c.Number, c.IssuerID, number, issuerID)
		}
		b := &pgx.Batch{}
		if err := queueCRL(b, c, &ev, keep); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("store: generating the CRL of %s: %w", issuerID, mapErr(err))
	}
	return nil
}

// scanRevoked reads the rows of revokedSQL. The serial is scanned as text
// and the rest through pgx's binary decoders: a million rows take about
// 0.7 s, most of it the server's.
func scanRevoked(ctx context.Context, tx pgx.Tx, issuerID string, from time.Time) ([]pki.RevokedEntry, error) {
	rows, err := tx.Query(ctx, revokedSQL, issuerID, from)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []pki.RevokedEntry
	var serial string
	var at time.Time
	var reason int16
	for rows.Next() {
		if err := rows.Scan(&serial, &at, &reason); err != nil {
			return nil, err
		}
		out = append(out, pki.RevokedEntry{Serial: pki.Serial(serial), RevokedAt: at, Reason: pki.RevocationReason(reason)})
	}
	return out, rows.Err()
}

// ListenCRL opens a connection of its own (with the pool's settings),
// listens on CRLChannel, calls listening once the LISTEN is in place, then
// calls notify with the payload (an issuer id) of each notification, in
// order, from the calling goroutine. Between notifications it pings the
// server every 15 seconds. It returns when ctx ends (ctx's error) or the
// connection fails (an error wrapping pki.ErrUnavailable); the caller
// reconnects, and should then catch up on what it may have missed.
func (db *DB) ListenCRL(ctx context.Context, listening func(), notify func(issuerID string)) error {
	return db.listen(ctx, CRLChannel, "CRLs", listening, notify)
}
