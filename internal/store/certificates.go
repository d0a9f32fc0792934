package store

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// lockSPKISQL serialises every CreatePending for one public key until its
// transaction ends. The key is the first 64 bits of the SPKI hash: two
// different keys sharing it only wait for each other.
const lockSPKISQL = "SELECT pg_advisory_xact_lock($1)"

// createPendingSQL checks the key and, when it may be certified, inserts the
// pending row and its audit event, all in one statement. It must run after
// lockSPKISQL and in a later statement of the same transaction: in READ
// COMMITTED each statement reads a snapshot taken when it starts, so only a
// statement that starts after the lock is granted sees what the previous
// holder committed.
var createPendingSQL = `WITH chk AS (
	SELECT EXISTS (SELECT 1 FROM blocked_keys WHERE spki_sha256 = $3) AS blocked,
	       EXISTS (SELECT 1 FROM certificates WHERE spki_sha256 = $3 AND account_id <> $4::uuid) AS in_use
), cert AS (
	INSERT INTO certificates (serial, issuer_id, account_id, state, lint_der, spki_sha256, subject_cn,
	                          not_before, not_after, renewed_from, created_at, profile)
	SELECT $1, $2, $4::uuid, 'pending', $5, $3, $6, $7, $8, $9, COALESCE($10::timestamptz, now()), $22
	FROM chk WHERE NOT chk.blocked AND NOT chk.in_use
	RETURNING created_at
), ocsp AS (
	INSERT INTO ocsp_responses (serial, issuer_id, der, this_update, next_update)
	SELECT $1, $2, $19, $20, $21 FROM cert
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT ` + auditValues(11, "") + ` FROM cert
)
SELECT chk.blocked, chk.in_use, (SELECT created_at FROM cert) FROM chk`

// CreatePending records c, a certificate about to be signed: state pending,
// c.LintDER the certificate as linted, no DER yet. It writes resp, the
// certificate's first (good) OCSP response, and ev with it, so that from the
// moment a signature can exist the responder answers for it.
//
// It fails with pki.ErrKeyBlocked when c.SPKISHA256 is on the block list,
// pki.ErrKeyInUse when a certificate of another account has that key,
// pki.ErrSerialCollision when the serial exists, pki.ErrNotFound when the
// account or issuer does not exist; nothing is written then. Calls for one key
// are serialised by a transaction-scoped advisory lock, so two accounts cannot
// both claim a key.
//
// This is on the issuance hot path: the lock and the statement go to the
// server as one batch, which Postgres runs as one implicit transaction (one
// round trip, committed at the batch's Sync).
//
// On success c.State is pending and c.CreatedAt is set (the database's time
// unless the caller set it).
func (db *DB) CreatePending(ctx context.Context, c *pki.Certificate, resp *pki.OCSPResponse, ev pki.AuditEvent) error {
	if len(c.SPKISHA256) != 32 {
		return fmt.Errorf("store: certificate %s: SPKI hash must be 32 bytes, got %d", c.Serial, len(c.SPKISHA256))
	}
	if len(c.LintDER) == 0 {
		return fmt.Errorf("store: certificate %s: no lint certificate to record", c.Serial)
	}
	profile := c.Profile
	if profile == "" {
		profile = pki.ProfileClient
	}
	var account any
	switch {
	case profile == pki.ProfileServer && c.AccountID == "":
	case profile == pki.ProfileClient && validUUID(c.AccountID):
		account = c.AccountID
	default:
		return fmt.Errorf("store: %s certificate %s: account %q: %w", profile, c.Serial, c.AccountID, pki.ErrNotFound)
	}
	if resp == nil || resp.Serial != c.Serial || resp.IssuerID != c.IssuerID || len(resp.DER) == 0 {
		return fmt.Errorf("store: certificate %s: its first OCSP response is missing or is another certificate's", c.Serial)
	}
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	var renewedFrom any
	if c.RenewedFrom != nil {
		renewedFrom = string(*c.RenewedFrom)
	}
	args := append([]any{
		string(c.Serial), c.IssuerID, c.SPKISHA256, account, c.LintDER, storable(c.SubjectCN),
		c.NotBefore, c.NotAfter, renewedFrom, nullTime(c.CreatedAt),
	}, audit...)
	args = append(args, resp.DER, resp.ThisUpdate, resp.NextUpdate, string(profile))

	b := &pgx.Batch{}
	b.Queue(lockSPKISQL, int64(binary.BigEndian.Uint64(c.SPKISHA256)))
	b.Queue(createPendingSQL, args...)
	br := db.pool.SendBatch(ctx, b)
	_, err = br.Exec()
	var blocked, inUse bool
	var createdAt *time.Time
	if err == nil {
		err = br.QueryRow().Scan(&blocked, &inUse, &createdAt)
	}
	// Close reads the Sync's answer: only then is the implicit transaction
	// known to be committed.
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return fmt.Errorf("store: recording pending certificate %s: %w", c.Serial, mapErr(err))
	case blocked:
		return fmt.Errorf("store: certificate %s: %w", c.Serial, pki.ErrKeyBlocked)
	case inUse:
		return fmt.Errorf("store: certificate %s: %w", c.Serial, pki.ErrKeyInUse)
	case createdAt == nil:
		return fmt.Errorf("store: certificate %s: pending row was not written", c.Serial)
	}
	c.State = pki.StatePending
	c.CreatedAt = *createdAt
	return nil
}

// markIssuedSQL moves a pending row to issued and writes the audit event, in
// one statement. cur reads the row as it was when the statement began, so that
// a serial that does not exist can be told from one that is issued already.
var markIssuedSQL = `WITH cur AS (
	SELECT state FROM certificates WHERE serial = $1
), upd AS (
	UPDATE certificates SET state = 'issued', der = $2, fingerprint_sha256 = $3
	WHERE serial = $1 AND state = 'pending'
	RETURNING serial
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT ` + auditValues(4, "") + ` FROM upd
)
SELECT (SELECT state FROM cur), EXISTS (SELECT 1 FROM upd)`

// MarkIssued stores der, the signed certificate, and its SHA-256 fingerprint
// for the pending row serial, moves it to issued and writes ev, in one
// statement (one round trip). It fails with pki.ErrNotFound for an unknown
// serial, and with an error (writing nothing) when the row is not pending: a
// serial is signed once.
func (db *DB) MarkIssued(ctx context.Context, serial pki.Serial, der, fingerprint []byte, ev pki.AuditEvent) error {
	if len(der) == 0 || len(fingerprint) != 32 {
		return fmt.Errorf("store: certificate %s: need the DER and a 32-byte fingerprint", serial)
	}
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	args := append([]any{string(serial), der, fingerprint}, audit...)
	var state *string
	var updated bool
	if err := db.pool.QueryRow(ctx, markIssuedSQL, args...).Scan(&state, &updated); err != nil {
		return fmt.Errorf("store: marking certificate %s issued: %w", serial, mapErr(err))
	}
	switch {
	case state == nil:
		return fmt.Errorf("store: certificate %s: %w", serial, pki.ErrNotFound)
	case !updated:
		return fmt.Errorf("%w: %s is %s", errNotPending, serial, *state)
	}
	return nil
}

// certColumns are read by scanCertificate, in its order. lintColumn is the
// lint certificate, which listings leave out (NULL) to keep pages small.
const (
	certColumnsHead = `serial, issuer_id, profile, COALESCE(account_id::text, ''), state, `
	certColumnsTail = `, der, subject_cn, spki_sha256, fingerprint_sha256, not_before, not_after,
	revoked_at, revocation_reason, renewed_from, created_at`
	certColumns     = certColumnsHead + "lint_der" + certColumnsTail
	certListColumns = certColumnsHead + "NULL::bytea" + certColumnsTail
)

func scanCertificate(row pgx.Row) (*pki.Certificate, error) {
	var c pki.Certificate
	var serial, state, profile string
	var reason *int16
	var renewedFrom *string
	err := row.Scan(&serial, &c.IssuerID, &profile, &c.AccountID, &state, &c.LintDER, &c.DER, &c.SubjectCN,
		&c.SPKISHA256, &c.FingerprintSHA256, &c.NotBefore, &c.NotAfter, &c.RevokedAt, &reason,
		&renewedFrom, &c.CreatedAt)
	if err != nil {
		return nil, err
	}
	c.Serial, c.State, c.Profile = pki.Serial(serial), pki.CertificateState(state), pki.Profile(profile)
	if reason != nil {
		r := pki.RevocationReason(*reason)
		c.RevocationReason = &r
	}
	if renewedFrom != nil {
		s := pki.Serial(*renewedFrom)
		c.RenewedFrom = &s
	}
	return &c, nil
}

// Certificate returns the certificate with this serial, pending or issued, or
// pki.ErrNotFound.
func (db *DB) Certificate(ctx context.Context, serial pki.Serial) (*pki.Certificate, error) {
	c, err := scanCertificate(db.pool.QueryRow(ctx, "SELECT "+certColumns+" FROM certificates WHERE serial = $1", string(serial)))
	if err != nil {
		return nil, fmt.Errorf("store: certificate %s: %w", serial, mapErr(err))
	}
	return c, nil
}

// Listing limits for Certificates.
const (
	defaultCertificateLimit = 50
	maxCertificateLimit     = 500
)

// Certificates returns one page of issued certificates matching f, newest
// first (created_at, then serial, descending), and the cursor of the next
// page, "" on the last. f.Limit defaults to 50 and is capped at 500. The
// status filter is evaluated at f.Now (the current time when zero). Pending
// rows are never listed, and listings leave LintDER out. A cursor that this
// method did not produce is a *pki.RequestError of kind malformed; an
// account id that is not a UUID has no certificates.
//
// Pages are found by keyset: each query starts below the last row of the
// previous page, so a page costs the same however deep it is, and rows
// inserted meanwhile do not shift later pages. With an account the query
// walks certificates_account_idx, without one certificates_created_idx.
func (db *DB) Certificates(ctx context.Context, f pki.CertificateFilter) ([]*pki.Certificate, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultCertificateLimit
	}
	limit = min(limit, maxCertificateLimit)
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}

	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where = append(where, "state = 'issued'")
	if f.AccountID != "" {
		if !validUUID(f.AccountID) {
			return []*pki.Certificate{}, "", nil
		}
		where = append(where, "account_id = "+arg(f.AccountID)+"::uuid")
	}
	switch f.Status {
	case "":
	case pki.StatusActive:
		where = append(where, "revoked_at IS NULL AND not_after > "+arg(now))
	case pki.StatusRevoked:
		where = append(where, "revoked_at IS NOT NULL")
	case pki.StatusExpired:
		where = append(where, "revoked_at IS NULL AND not_after <= "+arg(now))
	default:
		return nil, "", pki.Malformed("status %q is not one of active, revoked, expired", f.Status)
	}
	if f.Cursor != "" {
		createdAt, serial, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "(created_at, serial) < ("+arg(createdAt)+"::timestamptz, "+arg(string(serial))+"::text)")
	}
	query := "SELECT " + certListColumns + " FROM certificates WHERE " + strings.Join(where, " AND ") +
		" ORDER BY created_at DESC, serial DESC LIMIT " + arg(limit+1)

	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: listing certificates: %w", mapErr(err))
	}
	certs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.Certificate, error) {
		return scanCertificate(row)
	})
	if err != nil {
		return nil, "", fmt.Errorf("store: listing certificates: %w", mapErr(err))
	}
	if len(certs) <= limit {
		return certs, "", nil
	}
	certs = certs[:limit]
	last := certs[limit-1]
	return certs, encodeCursor(last.CreatedAt, last.Serial), nil
}

// cursorVersion is the first byte of every cursor, so that the format can
// change without misreading old cursors.
const cursorVersion = 1

// encodeCursor returns the opaque position after a row: base64url of a
// version byte, created_at in microseconds since the Unix epoch (Postgres's
// precision) and the serial.
func encodeCursor(createdAt time.Time, serial pki.Serial) string {
	b := make([]byte, 9, 9+len(serial))
	b[0] = cursorVersion
	binary.BigEndian.PutUint64(b[1:], uint64(createdAt.UnixMicro()))
	b = append(b, serial...)
	return cursorEncoding.EncodeToString(b)
}

// cursorEncoding is strict so that each position has exactly one cursor.
var cursorEncoding = base64.RawURLEncoding.Strict()

// maxCursorMicros is the end of year 9999 in microseconds since the epoch:
// past it Postgres cannot compare the time, and no row was created there.
const maxCursorMicros = 253402300799999999

// decodeCursor reverses encodeCursor. Anything it did not produce is a
// malformed request: a client made it up or mangled it.
func decodeCursor(s string) (time.Time, pki.Serial, error) {
	bad := func() (time.Time, pki.Serial, error) {
		return time.Time{}, "", pki.Malformed("cursor is not one that this service returned")
	}
	if len(s) > 128 {
		return bad()
	}
	b, err := cursorEncoding.DecodeString(s)
	if err != nil || len(b) < 10 || b[0] != cursorVersion {
		return bad()
	}
	serial, err := pki.ParseSerial(string(b[9:]))
	if err != nil || string(serial) != string(b[9:]) {
		return bad()
	}
	micros := binary.BigEndian.Uint64(b[1:9])
	if micros > maxCursorMicros {
		return bad()
	}
	return time.UnixMicro(int64(micros)).UTC(), serial, nil
}
