package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// createSessionSQL deletes the session the browser presented before it
// signed in (if any), inserts the new one and writes the login's audit
// event, in one statement. The delete is what makes a fixated session id
// useless: whatever cookie the browser carried is gone once it signs in.
var createSessionSQL = `WITH gone AS (
	DELETE FROM admin_sessions WHERE id_hash = $7
), ins AS (
	INSERT INTO admin_sessions (id_hash, admin_id, created_at, last_seen_at, expires_at, remote_addr, user_agent)
	VALUES ($1, $2::uuid, $3, $3, $4, $5, $6)
	RETURNING admin_id
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT ` + auditValues(8, "") + ` FROM ins
)
SELECT a.username FROM ins JOIN administrators a ON a.id = ins.admin_id`

// CreateAdminSession stores s, a session just signed in (IDHash, AdminID,
// CreatedAt and ExpiresAt set by the caller), deletes the session whose id
// hash is replaced (the one the browser presented before signing in; nil for
// none) and writes ev, in one transaction. It fills in s.Username and
// s.LastSeenAt, and fails with pki.ErrNotFound when the administrator does
// not exist.
func (db *DB) CreateAdminSession(ctx context.Context, s *pki.Session, replaced []byte, ev pki.AuditEvent) error {
	if len(s.IDHash) != 32 {
		return fmt.Errorf("store: session id hash must be 32 bytes, got %d", len(s.IDHash))
	}
	if !validUUID(s.AdminID) {
		return fmt.Errorf("store: session for administrator %q: %w", s.AdminID, pki.ErrNotFound)
	}
	audit, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	args := append([]any{s.IDHash, s.AdminID, s.CreatedAt, s.ExpiresAt,
		truncate(storable(s.RemoteAddr), 100), truncate(storable(s.UserAgent), 300), replaced}, audit...)
	if err := db.pool.QueryRow(ctx, createSessionSQL, args...).Scan(&s.Username); err != nil {
		return fmt.Errorf("store: creating admin session: %w", mapErr(err))
	}
	s.LastSeenAt = s.CreatedAt
	return nil
}

// touchSessionSQL marks a live session as seen now and returns it with its
// administrator's username. A session past its absolute end, or not seen
// since idleSince, is not live and is left as it is (PurgeAdminSessions
// removes it).
const touchSessionSQL = `UPDATE admin_sessions s SET last_seen_at = GREATEST(s.last_seen_at, $2)
	FROM administrators a
	WHERE s.id_hash = $1 AND a.id = s.admin_id AND s.expires_at > $2 AND s.last_seen_at > $3
	RETURNING s.admin_id::text, a.username, s.created_at, s.last_seen_at, s.expires_at, s.remote_addr, s.user_agent`

// AdminSession returns the live session whose id hash is idHash and records
// that it was seen at now. A session is live until its ExpiresAt and while it
// was last seen after idleSince (now minus the idle timeout). Anything else —
// unknown, logged out, expired, idle — is pki.ErrNotFound.
func (db *DB) AdminSession(ctx context.Context, idHash []byte, now, idleSince time.Time) (*pki.Session, error) {
	if len(idHash) != 32 {
		return nil, fmt.Errorf("store: admin session: %w", pki.ErrNotFound)
	}
	s := &pki.Session{IDHash: idHash}
	err := db.pool.QueryRow(ctx, touchSessionSQL, idHash, now, idleSince).Scan(
		&s.AdminID, &s.Username, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &s.RemoteAddr, &s.UserAgent)
	if err != nil {
		return nil, fmt.Errorf("store: admin session: %w", mapErr(err))
	}
	return s, nil
}

// deleteSessionSQL deletes a session and, if there was one, writes the audit
// event (logout) in the same statement.
var deleteSessionSQL = `WITH del AS (
	DELETE FROM admin_sessions WHERE id_hash = $1 RETURNING id_hash
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT ` + auditValues(2, "") + ` FROM del
)
SELECT count(*) FROM del`

// DeleteAdminSession ends the session whose id hash is idHash and writes ev
// with it; it reports whether there was such a session (ev is written only
// then).
func (db *DB) DeleteAdminSession(ctx context.Context, idHash []byte, ev pki.AuditEvent) (bool, error) {
	audit, err := auditArgs(&ev)
	if err != nil {
		return false, err
	}
	var n int
	if err := db.pool.QueryRow(ctx, deleteSessionSQL, append([]any{idHash}, audit...)...).Scan(&n); err != nil {
		return false, fmt.Errorf("store: deleting admin session: %w", mapErr(err))
	}
	return n > 0, nil
}

// PurgeAdminSessions deletes the sessions that are no longer live at now:
// past their absolute end, or not seen since idleSince. It returns how many
// it deleted.
func (db *DB) PurgeAdminSessions(ctx context.Context, now, idleSince time.Time) (int64, error) {
	tag, err := db.pool.Exec(ctx, "DELETE FROM admin_sessions WHERE expires_at <= $1 OR last_seen_at <= $2", now, idleSince)
	if err != nil {
		return 0, fmt.Errorf("store: purging admin sessions: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

// countAttemptSQL counts one login attempt against a key. A key whose
// window started at or before $3 (now minus the window length) starts a new
// window at now. The count saturates, so that a flood cannot overflow it.
const countAttemptSQL = `INSERT INTO login_attempts AS l (key, attempts, window_start) VALUES ($1, 1, $2)
	ON CONFLICT (key) DO UPDATE SET
		attempts = CASE WHEN l.window_start <= $3 THEN 1 ELSE LEAST(l.attempts + 1, 1000000) END,
		window_start = CASE WHEN l.window_start <= $3 THEN $2 ELSE l.window_start END
	RETURNING attempts, window_start`

// CountLoginAttempt counts one login attempt against key (a canonical
// username or an address, as the caller chooses to spell them) at now, in a
// fixed window: a key whose window started at or before windowSince begins a
// new window at now. It returns the attempts counted in the key's current
// window, this one included, and when that window started. Counting before
// the password is checked makes concurrent attempts each take a place, so a
// burst cannot slip past the limit. Keys of windows that have passed are
// deleted as it goes, so the table holds only current windows.
func (db *DB) CountLoginAttempt(ctx context.Context, key string, now, windowSince time.Time) (int, time.Time, error) {
	if key == "" || len(key) > 300 {
		return 0, time.Time{}, fmt.Errorf("store: login attempt key must be 1 to 300 bytes")
	}
	b := &pgx.Batch{}
	b.Queue("DELETE FROM login_attempts WHERE window_start <= $1 AND key <> $2", windowSince, storable(key))
	b.Queue(countAttemptSQL, storable(key), now, windowSince)
	br := db.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	var n int
	var start time.Time
	if err == nil {
		err = br.QueryRow().Scan(&n, &start)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: counting login attempt: %w", mapErr(err))
	}
	return n, start, nil
}

// ClearLoginAttempts forgets the attempts counted against key (after a
// successful login).
func (db *DB) ClearLoginAttempts(ctx context.Context, key string) error {
	if _, err := db.pool.Exec(ctx, "DELETE FROM login_attempts WHERE key = $1", storable(key)); err != nil {
		return fmt.Errorf("store: clearing login attempts: %w", mapErr(err))
	}
	return nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
