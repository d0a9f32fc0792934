package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// ocspColumns are read by scanOCSP, in its order.
const ocspColumns = `o.serial, o.issuer_id, o.der, o.this_update, o.next_update, o.updated_at`

func scanOCSP(row pgx.Row) (*pki.OCSPResponse, error) {
	var r pki.OCSPResponse
	var serial string
	if err := row.Scan(&serial, &r.IssuerID, &r.DER, &r.ThisUpdate, &r.NextUpdate, &r.UpdatedAt); err != nil {
		return nil, err
	}
	r.Serial = pki.Serial(serial)
	return &r, nil
}

// OCSPResponse returns the stored OCSP response of serial, or pki.ErrNotFound
// when there is none or when both the response and the certificate have
// expired at now: a responder may forget expired certificates (RFC 5019
// §2.2.3), and pkid stops re-signing them. A response past its nextUpdate
// whose certificate has not expired is returned; the caller must not serve it.
func (db *DB) OCSPResponse(ctx context.Context, serial pki.Serial, now time.Time) (*pki.OCSPResponse, error) {
	r, err := scanOCSP(db.pool.QueryRow(ctx, `SELECT `+ocspColumns+`
		FROM ocsp_responses o JOIN certificates c ON c.serial = o.serial
		WHERE o.serial = $1 AND (o.next_update > $2 OR c.not_after > $2)`, string(serial), now))
	if err != nil {
		return nil, fmt.Errorf("store: OCSP response %s: %w", serial, mapErr(err))
	}
	return r, nil
}

// EachOCSPResponse calls fn for every stored response whose nextUpdate is
// after now (ocsp_responses_next_update_idx), as rows arrive from the
// server, so that loading a million responses holds one row at a time
// beyond what fn keeps. It stops at fn's first error and returns it.
func (db *DB) EachOCSPResponse(ctx context.Context, now time.Time, fn func(*pki.OCSPResponse) error) error {
	rows, err := db.pool.Query(ctx, `SELECT `+ocspColumns+` FROM ocsp_responses o WHERE o.next_update > $1`, now)
	if err != nil {
		return fmt.Errorf("store: reading OCSP responses: %w", mapErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanOCSP(rows)
		if err != nil {
			return fmt.Errorf("store: reading OCSP responses: %w", mapErr(err))
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: reading OCSP responses: %w", mapErr(err))
	}
	return nil
}

// OCSPResponsesSince returns up to limit responses written at or after
// since, ordered by (UpdatedAt, Serial), starting strictly after (since,
// after): pass the last row of a page to get the next (keyset paging on
// ocsp_responses_updated_idx; rows stamped alike are neither skipped nor
// repeated).
func (db *DB) OCSPResponsesSince(ctx context.Context, since time.Time, after pki.Serial, limit int) ([]*pki.OCSPResponse, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT `+ocspColumns+` FROM ocsp_responses o
		WHERE o.updated_at >= $1 AND (o.updated_at, o.serial) > ($1, $2)
		ORDER BY o.updated_at, o.serial LIMIT $3`, since, string(after), limit)
	if err != nil {
		return nil, fmt.Errorf("store: OCSP responses since %s: %w", since.Format(time.RFC3339Nano), mapErr(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.OCSPResponse, error) { return scanOCSP(row) })
	if err != nil {
		return nil, fmt.Errorf("store: OCSP responses since %s: %w", since.Format(time.RFC3339Nano), mapErr(err))
	}
	return out, nil
}

// putOCSPSQL stores a response, replacing the certificate's current one,
// and announces it on OCSPChannel; the notification is delivered when the
// statement's implicit transaction commits.
const putOCSPSQL = `WITH up AS (
	INSERT INTO ocsp_responses (serial, issuer_id, der, this_update, next_update)
	VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (serial) DO UPDATE SET issuer_id = EXCLUDED.issuer_id, der = EXCLUDED.der,
		this_update = EXCLUDED.this_update, next_update = EXCLUDED.next_update, updated_at = clock_timestamp()
	RETURNING updated_at
)
SELECT updated_at, pg_notify('` + OCSPChannel + `', $1) FROM up`

// PutOCSPResponse stores r as the response of its certificate, replacing
// any, and notifies every node on OCSPChannel, in one statement. It sets
// r.UpdatedAt. It fails with pki.ErrNotFound when the certificate or the
// issuer does not exist. Revocation writes its responses in its own
// transaction (Revoke), the responder the first ones (FirstOCSPResponse);
// this is for everything else: repairs, tests.
func (db *DB) PutOCSPResponse(ctx context.Context, r *pki.OCSPResponse) error {
	if len(r.DER) == 0 || !r.NextUpdate.After(r.ThisUpdate) {
		return fmt.Errorf("store: OCSP response for %s has no DER or an empty validity interval", r.Serial)
	}
	var notified string
	err := db.pool.QueryRow(ctx, putOCSPSQL, string(r.Serial), r.IssuerID, r.DER, r.ThisUpdate, r.NextUpdate).
		Scan(&r.UpdatedAt, &notified)
	if err != nil {
		return fmt.Errorf("store: storing OCSP response %s: %w", r.Serial, mapErr(err))
	}
	return nil
}

// firstOCSPCertSQL reads what a certificate's first response says: its
// issuer and revocation, if it is pending, issued or revoked and unexpired
// at $2.
const firstOCSPCertSQL = `SELECT serial, issuer_id, not_after, revoked_at, revocation_reason
	FROM certificates WHERE serial = $1 AND not_after > $2`

// firstOCSPInsertSQL stores a certificate's first response unless it has
// one, and only if its revocation is still what the response was signed
// from ($6, $7). It returns a row only when it wrote.
const firstOCSPInsertSQL = `INSERT INTO ocsp_responses (serial, issuer_id, der, this_update, next_update)
	SELECT serial, issuer_id, $3, $4, $5 FROM certificates
	WHERE serial = $1 AND issuer_id = $2
	  AND revoked_at IS NOT DISTINCT FROM $6::timestamptz
	  AND revocation_reason IS NOT DISTINCT FROM $7::smallint
	ON CONFLICT (serial) DO NOTHING
	RETURNING updated_at`

// FirstOCSPResponse returns the first OCSP response of serial, a certificate
// that has none stored: sign makes it from the certificate as it stands
// (Serial, IssuerID, NotAfter, RevokedAt, RevocationReason set), and it is
// stored unless another response got there first (another node's first one,
// or a revocation's), in which case the stored one is returned instead. So
// a response that says "good" is only ever stored, and so served, before
// the revocation's, which has a later UpdatedAt (clock_timestamp, after this
// row's lock is released) and replaces it everywhere. It fails with
// pki.ErrNotFound when serial is not a certificate or has expired at now.
func (db *DB) FirstOCSPResponse(ctx context.Context, serial pki.Serial, now time.Time,
	sign func(c *pki.Certificate) (*pki.OCSPResponse, error)) (*pki.OCSPResponse, error) {
	var c pki.Certificate
	var s string
	var reason *int16
	err := db.pool.QueryRow(ctx, firstOCSPCertSQL, string(serial), now).
		Scan(&s, &c.IssuerID, &c.NotAfter, &c.RevokedAt, &reason)
	if err != nil {
		return nil, fmt.Errorf("store: certificate %s for its first OCSP response: %w", serial, mapErr(err))
	}
	c.Serial = pki.Serial(s)
	if reason != nil {
		r := pki.RevocationReason(*reason)
		c.RevocationReason = &r
	}
	r, err := sign(&c)
	if err != nil {
		return nil, err
	}
	if r == nil || r.Serial != c.Serial || r.IssuerID != c.IssuerID {
		return nil, fmt.Errorf("store: first OCSP response for %s is missing or about another certificate", serial)
	}
	err = db.pool.QueryRow(ctx, firstOCSPInsertSQL, s, r.IssuerID, r.DER, r.ThisUpdate, r.NextUpdate,
		c.RevokedAt, reason).Scan(&r.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return db.OCSPResponse(ctx, serial, now)
	}
	if err != nil {
		return nil, fmt.Errorf("store: storing the first OCSP response of %s: %w", serial, mapErr(err))
	}
	return r, nil
}

// resignSelectSQL locks one batch of responses due for re-signing, oldest
// nextUpdate first, with their certificate's current status. SKIP LOCKED
// lets several nodes share the work, and leaves out a row that a revoking
// transaction is replacing right now (it holds the row's lock).
const resignSelectSQL = `SELECT o.serial, o.issuer_id, o.this_update, o.next_update, o.updated_at,
	c.not_after, c.revoked_at, c.revocation_reason
FROM ocsp_responses o JOIN certificates c ON c.serial = o.serial
WHERE o.next_update < $1 AND c.not_after > $2 AND o.issuer_id = ANY($3)
ORDER BY o.next_update
LIMIT $4
FOR UPDATE OF o SKIP LOCKED`

// resignUpdateSQL writes a re-signed response unless the row changed since
// it was read. Under the row lock it cannot have; the condition is what
// makes the rule "never overwrite a newer response" hold whatever locking
// the callers do.
const resignUpdateSQL = `UPDATE ocsp_responses SET der = $2, this_update = $3, next_update = $4,
	updated_at = clock_timestamp()
WHERE serial = $1 AND updated_at = $5
RETURNING updated_at`

// ResignOCSP re-signs one batch of stored responses in one transaction: it
// locks up to limit responses of the issuers issuerIDs whose nextUpdate is
// before due and whose certificate has not expired at now, skipping rows
// that another transaction holds, and calls sign for each (oldest nextUpdate
// first) with the certificate's Serial, IssuerID, NotAfter, RevokedAt and
// RevocationReason, and the stored response without its DER. Each response
// sign returns is written back where the row's UpdatedAt is still the one
// read; a nil response skips the row, an error rolls the batch back. It
// returns the responses written, with UpdatedAt set, and how many rows it
// locked.
//
// A revocation that commits while the batch holds a row waits for it and
// then replaces the re-signed response; one that holds the row first is
// skipped. Either way the newest status wins.
func (db *DB) ResignOCSP(ctx context.Context, due, now time.Time, issuerIDs []string, limit int,
	sign func(c *pki.Certificate, old *pki.OCSPResponse) (*pki.OCSPResponse, error)) ([]*pki.OCSPResponse, int, error) {
	if limit <= 0 || len(issuerIDs) == 0 {
		return nil, 0, nil
	}
	var written []*pki.OCSPResponse
	selected := 0
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		written, selected = written[:0], 0
		rows, err := tx.Query(ctx, resignSelectSQL, due, now, issuerIDs, limit)
		if err != nil {
			return err
		}
		type due struct {
			cert *pki.Certificate
			old  *pki.OCSPResponse
		}
		batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (due, error) {
			var d due
			d.cert, d.old = &pki.Certificate{}, &pki.OCSPResponse{}
			var serial string
			var reason *int16
			if err := row.Scan(&serial, &d.old.IssuerID, &d.old.ThisUpdate, &d.old.NextUpdate,
				&d.old.UpdatedAt, &d.cert.NotAfter, &d.cert.RevokedAt, &reason); err != nil {
				return d, err
			}
			d.old.Serial = pki.Serial(serial)
			d.cert.Serial, d.cert.IssuerID = d.old.Serial, d.old.IssuerID
			if reason != nil {
				r := pki.RevocationReason(*reason)
				d.cert.RevocationReason = &r
			}
			return d, nil
		})
		if err != nil {
			return err
		}
		selected = len(batch)
		b := &pgx.Batch{}
		var queued []*pki.OCSPResponse
		for _, d := range batch {
			r, err := sign(d.cert, d.old)
			if err != nil {
				return fmt.Errorf("store: re-signing %s: %w", d.old.Serial, err)
			}
			if r == nil {
				continue
			}
			if r.Serial != d.old.Serial || len(r.DER) == 0 || !r.NextUpdate.After(r.ThisUpdate) {
				return fmt.Errorf("store: re-signed response for %s is another serial's or empty", d.old.Serial)
			}
			b.Queue(resignUpdateSQL, string(r.Serial), r.DER, r.ThisUpdate, r.NextUpdate, d.old.UpdatedAt)
			queued = append(queued, r)
		}
		if len(queued) == 0 {
			return nil
		}
		br := tx.SendBatch(ctx, b)
		for _, r := range queued {
			err := br.QueryRow().Scan(&r.UpdatedAt)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				continue // replaced meanwhile: the newer response stays
			case err != nil:
				br.Close()
				return err
			}
			written = append(written, r)
		}
		return br.Close()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("store: re-signing OCSP responses: %w", mapErr(err))
	}
	return written, selected, nil
}

// purgeOCSPSQL deletes responses that nobody may be told about any more.
const purgeOCSPSQL = `DELETE FROM ocsp_responses WHERE serial IN (
	SELECT o.serial FROM ocsp_responses o JOIN certificates c ON c.serial = o.serial
	WHERE o.next_update <= $1 AND c.not_after <= $1
	ORDER BY o.next_update LIMIT $2
	FOR UPDATE OF o SKIP LOCKED)`

// PurgeOCSP deletes up to limit responses that are past their nextUpdate
// and whose certificate has expired, at now, and returns how many it
// deleted. OCSPResponse treats them as absent already; deleting them keeps
// the re-signing queries, which walk ocsp_responses_next_update_idx from the
// oldest nextUpdate, from scanning an ever longer history.
func (db *DB) PurgeOCSP(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	tag, err := db.pool.Exec(ctx, purgeOCSPSQL, now, limit)
	if err != nil {
		return 0, fmt.Errorf("store: purging expired OCSP responses: %w", mapErr(err))
	}
	return int(tag.RowsAffected()), nil
}

// listenPing is how long ListenOCSP waits for a notification before it
// checks that the connection still answers: a database that vanished
// without closing the connection would otherwise leave it waiting forever.
const listenPing = 15 * time.Second

// ListenOCSP opens a connection of its own (with the pool's settings),
// listens on OCSPChannel, calls listening once the LISTEN is in place, then
// calls notify with the payload (a serial, as the writer sent it) of each
// notification, in order, from the calling goroutine. Between
// notifications it pings the server every 15 seconds. It returns when ctx
// ends (ctx's error) or the connection fails (an error wrapping
// pki.ErrUnavailable); the caller reconnects, and should then catch up on
// what it may have missed.
func (db *DB) ListenOCSP(ctx context.Context, listening func(), notify func(pki.Serial)) error {
	return db.listen(ctx, OCSPChannel, "OCSP changes", listening, func(payload string) { notify(pki.Serial(payload)) })
}

// ListenSuffix ends the application_name of the connections that LISTEN
// (one per notification channel, besides the pool): "pkid-listen" unless
// DATABASE_URL names the application otherwise.
const ListenSuffix = "-listen"

// listen is ListenOCSP and ListenCRL: LISTEN on channel over a connection of
// its own, call listening once it is in place, then notify with the payload
// of each notification; ping every listenPing; return on ctx's end or a
// failed connection. what names the notifications in errors.
func (db *DB) listen(ctx context.Context, channel, what string, listening func(), notify func(payload string)) error {
	cfg := db.pool.Config().ConnConfig.Copy()
	// Named apart from the pool's connections (pkid → pkid-listen), so that
	// pg_stat_activity tells the two apart when sizing max_connections.
	cfg.RuntimeParams["application_name"] += ListenSuffix
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("store: connecting to listen for %s: %w", what, mapErr(err))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return fmt.Errorf("store: listening for %s: %w", what, mapErr(err))
	}
	listening()
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			notify(n.Payload)
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("store: waiting for %s: %w", what, mapErr(err))
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("store: the connection listening for %s stopped answering: %w", what, mapErr(err))
		}
	}
}
