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

// CreatePending records c, a certificate about to be signed: state pending,
// c.LintDER the certificate as linted, no DER yet, and ev with it. From the
// moment the row is committed, before a signature can exist, the OCSP
// responder answers "good" for it: it signs the first response when it is
// first asked (FirstOCSPResponse).
//
// It fails with pki.ErrKeyBlocked when c.SPKISHA256 is on the block list,
// pki.ErrKeyInUse when a certificate of another account has that key,
// pki.ErrSerialCollision when the serial exists, pki.ErrNotFound when the
// account or issuer does not exist; nothing is written then. Calls for one key
// are serialised by a transaction-scoped advisory lock, so two accounts cannot
// both claim a key.
//
// This is on the issuance hot path: concurrent calls share one statement and
// one commit (group commit, see group.go and pending.go), and it returns
// only once the row is committed.
//
// On success c.State is pending and c.CreatedAt is set (the database's time
// unless the caller set it).
func (db *DB) CreatePending(ctx context.Context, c *pki.Certificate, ev pki.AuditEvent) error {
	row, err := newPendingRow(c, ev)
	if err != nil {
		return err
	}
	if err := db.pending.do(ctx, row); err != nil {
		return err
	}
	c.State = pki.StatePending
	c.CreatedAt = *row.createdAt
	return nil
}

// markIssuedSQL moves a pending row to issued, records its fingerprint for
// lookups and writes the audit event, in one statement. None of the columns
// it sets is indexed, so Postgres can make the update HOT (migration 14). cur reads the row as it was when the statement began, so that
// a serial that does not exist can be told from one that is issued already.
var markIssuedSQL = `WITH cur AS (
	SELECT state FROM certificates WHERE serial = $1
), upd AS (
	UPDATE certificates SET state = 'issued', der = $2, fingerprint_sha256 = $3
	WHERE serial = $1 AND state = 'pending'
	RETURNING serial
), fp AS (
	INSERT INTO certificate_fingerprints (fingerprint_sha256, serial) SELECT $3, serial FROM upd
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT ` + auditValues(4, "") + ` FROM upd
)
SELECT (SELECT state FROM cur), EXISTS (SELECT 1 FROM upd)`

// MarkIssued stores der, the signed certificate, and its SHA-256 fingerprint
// for the pending row serial, moves it to issued and writes ev, and returns
// once that is committed. It fails with pki.ErrNotFound for an unknown
// serial, and with an error (writing nothing) when the row is not pending: a
// serial is signed once. Concurrent calls share one statement and one commit
// (group commit, see issued.go).
func (db *DB) MarkIssued(ctx context.Context, serial pki.Serial, der, fingerprint []byte, ev pki.AuditEvent) error {
	if len(der) == 0 || len(fingerprint) != 32 {
		return fmt.Errorf("store: certificate %s: need the DER and a 32-byte fingerprint", serial)
	}
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	return db.issued.do(ctx, issuedRow{serial: serial, der: der, fp: fingerprint, audit: audit})
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

// Certificates returns one page of issued certificates matching every field
// of f that is set, in f.Sort order (newest first by default), and the cursor
// of the next page, "" on the last. f.Limit defaults to 50 and is capped at
// 500. Status and ExpiringBefore are evaluated at f.Now (the current time
// when zero). Pending rows are never listed, and listings leave LintDER out.
// A cursor that this method did not produce for the same order, a serial
// prefix that is not canonical hex, a hash that is not 32 bytes or an
// unknown status or order is a *pki.RequestError of kind malformed; an
// account id that is not a UUID has no certificates.
//
// CommonName matches a case-insensitive substring through the trigram index
// certificates_cn_trgm_idx; on a database where migration 9 could not
// install pg_trgm (there is no such index) it matches a prefix instead,
// through certificates_cn_prefix_idx. Callers make sure it holds three ASCII
// letters or digits in a row (ca.Service.Certificates does): text without
// such a run has no trigram to look up, and the search would read every row.
//
// Pages are found by keyset: each query starts after the last row of the
// previous page in the listing's order, so a page costs the same however
// deep it is, and rows inserted meanwhile do not shift later pages. Every
// filter has an index (migrations 1, 2, 3 and 9); which one serves a query
// depends on how selective each condition is, so the statement is planned
// for its actual values every time (an unnamed statement, never a cached
// generic plan): a generic plan chosen for "ILIKE $1" cannot know whether
// the text matches three rows or all of them, and a LIKE prefix becomes an
// index range only when the planner sees the pattern.
func (db *DB) Certificates(ctx context.Context, f pki.CertificateFilter) ([]*pki.Certificate, string, error) {
	substring := true
	if f.CommonName != "" {
		var err error
		if substring, err = db.cnSubstringSearch(ctx); err != nil {
			return nil, "", err
		}
	}
	q, err := certificatesQuery(f, substring)
	if err != nil {
		return nil, "", err
	}
	if q.none {
		return []*pki.Certificate{}, "", nil
	}
	rows, err := db.pool.Query(ctx, q.sql, append([]any{pgx.QueryExecModeCacheDescribe}, q.args...)...)
	if err != nil {
		return nil, "", fmt.Errorf("store: listing certificates: %w", mapErr(err))
	}
	certs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pki.Certificate, error) {
		return scanCertificate(row)
	})
	if err != nil {
		return nil, "", fmt.Errorf("store: listing certificates: %w", mapErr(err))
	}
	if len(certs) <= q.limit {
		return certs, "", nil
	}
	certs = certs[:q.limit]
	last := certs[q.limit-1]
	key := last.CreatedAt
	if q.sort == pki.SortNotAfter {
		key = last.NotAfter
	}
	return certs, encodeListCursor(q.sort, key, last.Serial), nil
}

// cnSubstringSearch reports whether the database has the trigram index that
// common-name substring search needs (migration 9 creates it when pg_trgm
// can be installed). It is asked on every search by name, so that an
// operator who installs pg_trgm and creates the index later gets substring
// search without a restart.
func (db *DB) cnSubstringSearch(ctx context.Context) (bool, error) {
	var ok bool
	if err := db.pool.QueryRow(ctx, "SELECT to_regclass('certificates_cn_trgm_idx') IS NOT NULL").Scan(&ok); err != nil {
		return false, fmt.Errorf("store: looking for the common-name index: %w", mapErr(err))
	}
	return ok, nil
}

// certQuery is a listing statement with its arguments.
type certQuery struct {
	sql   string
	args  []any
	limit int // rows per page; the statement asks for one more
	sort  pki.CertificateSort
	none  bool // the filter can match nothing (an account id that is not a UUID)
}

// certificatesQuery builds the statement that Certificates runs for f.
// substring says whether CommonName is a substring (the trigram index
// exists) or a prefix.
func certificatesQuery(f pki.CertificateFilter, substring bool) (certQuery, error) {
	q := certQuery{limit: f.Limit, sort: f.Sort}
	if q.limit <= 0 {
		q.limit = defaultCertificateLimit
	}
	q.limit = min(q.limit, maxCertificateLimit)
	if q.sort == "" {
		q.sort = pki.SortNewest
	}
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	arg := func(v any) string {
		q.args = append(q.args, v)
		return "$" + strconv.Itoa(len(q.args))
	}
	where := []string{"state = 'issued'"}
	if f.AccountID != "" {
		if !validUUID(f.AccountID) {
			q.none = true
			return q, nil
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
		return q, pki.Malformed("status %q is not one of active, revoked, expired", f.Status)
	}
	if !f.ExpiringBefore.IsZero() {
		// Active at now and gone by ExpiringBefore. Without a status filter
		// this is the whole of "active"; with one, the two must agree.
		if f.Status != "" && f.Status != pki.StatusActive {
			return q, pki.Malformed("expiring_before selects active certificates; it cannot be combined with status %s", f.Status)
		}
		if f.Status == "" {
			where = append(where, "revoked_at IS NULL AND not_after > "+arg(now))
		}
		where = append(where, "not_after < "+arg(f.ExpiringBefore))
	}
	if f.CommonName != "" {
		pattern := escapeLike(storable(f.CommonName))
		if substring {
			where = append(where, "subject_cn ILIKE "+arg("%"+pattern+"%")+` ESCAPE '\'`)
		} else {
			where = append(where, "lower(subject_cn) LIKE lower("+arg(pattern+"%")+`) ESCAPE '\'`)
		}
	}
	if f.SerialPrefix != "" {
		if s, err := pki.ParseSerial(f.SerialPrefix); err != nil || string(s) != f.SerialPrefix {
			return q, pki.Malformed("serial_prefix must be lowercase hexadecimal without leading zeros, at most 40 digits")
		}
		// Hex digits are not LIKE wildcards: the pattern is the prefix itself.
		where = append(where, "serial LIKE "+arg(f.SerialPrefix+"%"))
	}
	if f.FingerprintSHA256 != nil {
		if len(f.FingerprintSHA256) != 32 {
			return q, pki.Malformed("fingerprint_sha256 must be 32 bytes (64 hexadecimal digits)")
		}
		// The fingerprint's index is on a table of its own (migration 14).
		where = append(where, "serial IN (SELECT serial FROM certificate_fingerprints WHERE fingerprint_sha256 = "+arg(f.FingerprintSHA256)+")")
	}
	if f.SPKISHA256 != nil {
		if len(f.SPKISHA256) != 32 {
			return q, pki.Malformed("spki_sha256 must be 32 bytes (64 hexadecimal digits)")
		}
		where = append(where, "spki_sha256 = "+arg(f.SPKISHA256))
	}

	var order string
	switch q.sort {
	case pki.SortNewest:
		order = "created_at DESC, serial DESC"
	case pki.SortNotAfter:
		order = "not_after, serial"
	default:
		return q, pki.Malformed("sort %q is not one of created_at, not_after", f.Sort)
	}
	if f.Cursor != "" {
		at, serial, err := decodeListCursor(f.Cursor, q.sort)
		if err != nil {
			return q, err
		}
		if q.sort == pki.SortNotAfter {
			where = append(where, "(not_after, serial) > ("+arg(at)+"::timestamptz, "+arg(string(serial))+"::text)")
		} else {
			where = append(where, "(created_at, serial) < ("+arg(at)+"::timestamptz, "+arg(string(serial))+"::text)")
		}
	}
	q.sql = "SELECT " + certListColumns + " FROM certificates WHERE " + strings.Join(where, " AND ") +
		" ORDER BY " + order + " LIMIT " + arg(q.limit+1)
	return q, nil
}

// Cursor versions: the first byte of every cursor, so that the format can
// change without misreading old cursors. Version 1 is a position in one
// order that the cursor does not name: Certificates made them for its
// newest-first listing before it had other orders (it still reads them so),
// and ExpiringCertificates makes them for its notAfter order. Version 2 names
// its order.
const (
	cursorVersion     = 1
	listCursorVersion = 2
)

// The order byte of a version 2 cursor.
var cursorSorts = map[pki.CertificateSort]byte{pki.SortNewest: 'c', pki.SortNotAfter: 'n'}

// encodeCursor returns the opaque version 1 position after a row:
// base64url of the version byte, the row's sort time in microseconds since
// the Unix epoch (Postgres's precision) and its serial.
func encodeCursor(at time.Time, serial pki.Serial) string {
	b := make([]byte, 9, 9+len(serial))
	b[0] = cursorVersion
	binary.BigEndian.PutUint64(b[1:], uint64(at.UnixMicro()))
	b = append(b, serial...)
	return cursorEncoding.EncodeToString(b)
}

// encodeListCursor returns the position after a row in order sort: a
// version 2 cursor, which is a version 1 cursor with the order's byte after
// the version. at is the row's sort key, CreatedAt or NotAfter.
func encodeListCursor(sort pki.CertificateSort, at time.Time, serial pki.Serial) string {
	b := make([]byte, 10, 10+len(serial))
	b[0], b[1] = listCursorVersion, cursorSorts[sort]
	binary.BigEndian.PutUint64(b[2:], uint64(at.UnixMicro()))
	b = append(b, serial...)
	return cursorEncoding.EncodeToString(b)
}

// cursorEncoding is strict so that each position has exactly one cursor.
var cursorEncoding = base64.RawURLEncoding.Strict()

// maxCursorMicros is the end of year 9999 in microseconds since the epoch:
// past it Postgres cannot compare the time, and no row has a time there.
const maxCursorMicros = 253402300799999999

// errBadCursor is what a client gets for a cursor that this service did not
// make: it made it up or mangled it.
var errBadCursor = pki.Malformed("cursor is not one that this service returned")

// decodeCursor reverses encodeCursor. Anything it did not produce is a
// malformed request.
func decodeCursor(s string) (time.Time, pki.Serial, error) {
	b, ok := cursorBytes(s)
	if !ok || b[0] != cursorVersion {
		return time.Time{}, "", errBadCursor
	}
	return cursorPosition(b[1:])
}

// decodeListCursor reverses encodeListCursor for a listing in order sort. A
// cursor of another order is a malformed request: its position means
// nothing in this one. A version 1 cursor is read as newest first.
func decodeListCursor(s string, sort pki.CertificateSort) (time.Time, pki.Serial, error) {
	b, ok := cursorBytes(s)
	switch {
	case !ok:
		return time.Time{}, "", errBadCursor
	case b[0] == cursorVersion && sort == pki.SortNewest:
		return cursorPosition(b[1:])
	case b[0] != listCursorVersion || len(b) < 11:
		return time.Time{}, "", errBadCursor
	case b[1] != cursorSorts[sort]:
		return time.Time{}, "", pki.Malformed("cursor belongs to a listing in another order (sort)")
	}
	return cursorPosition(b[2:])
}

// cursorBytes decodes a cursor of either version, of plausible length.
func cursorBytes(s string) ([]byte, bool) {
	if len(s) > 128 {
		return nil, false
	}
	// encoding/base64 skips CR and LF even in strict mode, which would give
	// one position several spellings: only the alphabet itself is a cursor.
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, false
		}
	}
	b, err := cursorEncoding.DecodeString(s)
	if err != nil || len(b) < 10 {
		return nil, false
	}
	return b, true
}

// cursorPosition reads the time and serial of a cursor, after its header.
func cursorPosition(b []byte) (time.Time, pki.Serial, error) {
	if len(b) < 9 {
		return time.Time{}, "", errBadCursor
	}
	serial, err := pki.ParseSerial(string(b[8:]))
	if err != nil || string(serial) != string(b[8:]) {
		return time.Time{}, "", errBadCursor
	}
	micros := binary.BigEndian.Uint64(b[:8])
	if micros > maxCursorMicros {
		return time.Time{}, "", errBadCursor
	}
	return time.UnixMicro(int64(micros)).UTC(), serial, nil
}
