package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/audit"
	"github.com/pkid/pkid/internal/pki"
)

// The audit trail's hash chain (internal/audit, docs/AUDIT.md): the rows of
// audit_chain, the linker's transaction and the verifier's snapshot. Audit
// events themselves are written as before, by the statements that record
// what they audit; nothing here is on that path.

// auditLockClass is the first key of the transaction-scoped advisory lock
// that one linker at a time holds (the second key is 0). Two-key locks are
// kept apart from the one-key locks CreatePending takes on SPKI hashes.
const auditLockClass = 0x617564 // "aud"

const tryLockAuditSQL = "SELECT pg_try_advisory_xact_lock($1::int4, 0)"

// auditSeqSQL is the sequence behind audit_events.id, and auditDBSQL this
// database's oid: pg_locks lists the locks of every database of the
// server, whose sequences may share an oid (test databases are copies).
const (
	auditSeqSQL = "pg_get_serial_sequence('audit_events', 'id')::regclass"
	auditDBSQL  = "(SELECT oid FROM pg_database WHERE datname = current_database())"
)

// idHoldersSQL returns the id sequence's cache size and the virtual
// transaction ids of every transaction that holds or awaits a lock on it.
// nextval takes RowExclusiveLock before it hands out a value and keeps it
// to the end of the transaction (sequence.c, lock_and_open_sequence).
const idHoldersSQL = `SELECT s.seqcache,
	COALESCE((SELECT array_agg(l.virtualtransaction) FROM pg_locks l
		WHERE l.locktype = 'relation' AND l.database = ` + auditDBSQL + `
		AND l.relation = s.seqrelid AND l.mode = 'RowExclusiveLock'), '{}')
	FROM pg_sequence s WHERE s.seqrelid = ` + auditSeqSQL

const runningSQL = `SELECT EXISTS (SELECT 1 FROM pg_locks
	WHERE locktype = 'relation' AND database = ` + auditDBSQL + `
	AND relation = ` + auditSeqSQL + ` AND virtualtransaction = ANY ($1::text[]))`

const linkColumns = "id, last_id, gap, content_hash, chain_hash"

const recordSelect = `SELECT id, occurred_at, actor, action, outcome, account_id::text,
	serial, request_id, detail::text FROM audit_events`

// maxUnlinkedCount bounds the count of unlinked events, so that reading the
// head stays cheap even when the linker has been stopped for a long time.
const maxUnlinkedCount = 1_000_000

const chainHeadSQL = `SELECT COALESCE(h.last_id, 0), h.chain_hash,
	(SELECT count(*) FROM (SELECT 1 FROM audit_events e WHERE e.id > COALESCE(h.last_id, 0) LIMIT $1) u)
	FROM (SELECT 1) one LEFT JOIN LATERAL (
		SELECT last_id, chain_hash FROM audit_chain ORDER BY id DESC LIMIT 1) h ON true`

// LinkAudit implements audit.Store: it runs fn in a READ COMMITTED
// transaction that holds the chain's advisory lock, or returns false when
// another node's linker holds it.
func (db *DB) LinkAudit(ctx context.Context, fn func(audit.Tx) error) (bool, error) {
	locked := false
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, tryLockAuditSQL, auditLockClass).Scan(&locked); err != nil {
			return fmt.Errorf("store: taking the audit chain lock: %w", mapErr(err))
		}
		if !locked {
			return nil
		}
		return fn(auditTx{q: tx})
	})
	if err != nil {
		return false, err
	}
	return locked, nil
}

// AuditChainHead implements audit.Store and account.Store: the newest link
// of the chain and the number of events above it (counted up to a million).
func (db *DB) AuditChainHead(ctx context.Context) (pki.AuditChainHead, error) {
	var h pki.AuditChainHead
	if err := db.pool.QueryRow(ctx, chainHeadSQL, maxUnlinkedCount).Scan(&h.ID, &h.Hash, &h.Unlinked); err != nil {
		return h, fmt.Errorf("store: reading the audit chain head: %w", mapErr(err))
	}
	return h, nil
}

// AuditSnapshot runs fn with a reader of the chain and the events that sees
// one snapshot of the database (a READ ONLY, REPEATABLE READ transaction),
// as audit.Verify needs: read piecemeal, a link committed during the walk
// could be seen without the event it links.
func (db *DB) AuditSnapshot(ctx context.Context, fn func(audit.Reader) error) error {
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error { return fn(auditTx{q: tx}) })
	return mapErr(err)
}

// auditTx implements audit.Tx and audit.Reader on one transaction.
type auditTx struct {
	q pgx.Tx
}

// Head implements audit.Tx.
func (t auditTx) Head(ctx context.Context) (audit.Link, bool, error) {
	links, err := t.links(ctx, "SELECT "+linkColumns+" FROM audit_chain ORDER BY id DESC LIMIT 1")
	if err != nil || len(links) == 0 {
		return audit.Link{}, false, err
	}
	return links[0], true, nil
}

// Records implements audit.Tx.
func (t auditTx) Records(ctx context.Context, after int64, limit int) ([]audit.Record, error) {
	return t.AuditRecords(ctx, after, limit)
}

// IDHolders implements audit.Tx.
func (t auditTx) IDHolders(ctx context.Context) ([]string, error) {
	var cache int64
	var holders []string
	if err := t.q.QueryRow(ctx, idHoldersSQL).Scan(&cache, &holders); err != nil {
		return nil, fmt.Errorf("store: reading the audit id sequence's lock holders: %w", mapErr(err))
	}
	if cache != 1 {
		return nil, fmt.Errorf("%w (it caches %d)", audit.ErrSequenceCached, cache)
	}
	return holders, nil
}

// Running implements audit.Tx.
func (t auditTx) Running(ctx context.Context, holders []string) (bool, error) {
	if len(holders) == 0 {
		return false, nil
	}
	var running bool
	if err := t.q.QueryRow(ctx, runningSQL, holders).Scan(&running); err != nil {
		return false, fmt.Errorf("store: checking the audit id sequence's lock holders: %w", mapErr(err))
	}
	return running, nil
}

// Append implements audit.Tx with one INSERT for the whole batch.
func (t auditTx) Append(ctx context.Context, links []audit.Link) error {
	ids, lasts := make([]int64, len(links)), make([]int64, len(links))
	gaps := make([]bool, len(links))
	contents, chains := make([][]byte, len(links)), make([][]byte, len(links))
	for i, k := range links {
		ids[i], lasts[i], gaps[i], contents[i], chains[i] = k.ID, k.LastID, k.Gap, k.ContentHash, k.ChainHash
	}
	_, err := t.q.Exec(ctx, `INSERT INTO audit_chain (`+linkColumns+`)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::boolean[], $4::bytea[], $5::bytea[])`,
		ids, lasts, gaps, contents, chains)
	if err != nil {
		return fmt.Errorf("store: appending %d audit chain links: %w", len(links), mapErr(err))
	}
	return nil
}

// AuditLinks implements audit.Reader.
func (t auditTx) AuditLinks(ctx context.Context, after int64, limit int) ([]audit.Link, error) {
	return t.links(ctx, "SELECT "+linkColumns+" FROM audit_chain WHERE id > $1 ORDER BY id LIMIT $2", after, limit)
}

func (t auditTx) links(ctx context.Context, query string, args ...any) ([]audit.Link, error) {
	rows, err := t.q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: reading the audit chain: %w", mapErr(err))
	}
	links, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (audit.Link, error) {
		var k audit.Link
		err := row.Scan(&k.ID, &k.LastID, &k.Gap, &k.ContentHash, &k.ChainHash)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading the audit chain: %w", mapErr(err))
	}
	return links, nil
}

// AuditRecords implements audit.Reader: the events with ids above after,
// in id order, every column as stored (NULL kept apart from "", detail as
// the jsonb's text).
func (t auditTx) AuditRecords(ctx context.Context, after int64, limit int) ([]audit.Record, error) {
	rows, err := t.q.Query(ctx, recordSelect+" WHERE id > $1 ORDER BY id LIMIT $2", after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: reading audit events: %w", mapErr(err))
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (audit.Record, error) {
		var r audit.Record
		var detail string
		err := row.Scan(&r.ID, &r.OccurredAt, &r.Actor, &r.Action, &r.Outcome, &r.AccountID,
			&r.Serial, &r.RequestID, &detail)
		r.Detail = []byte(detail)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading audit events: %w", mapErr(err))
	}
	return recs, nil
}

// auditListSelect is what the audit listings read: every column of the
// event and, once it is linked, its hashes. Conditions refer to the event
// as e.
const auditListSelect = `SELECT e.id, e.occurred_at, e.actor, e.action, e.outcome, COALESCE(e.account_id::text, ''),
	COALESCE(e.serial, ''), COALESCE(e.request_id, ''), e.detail, c.content_hash, c.chain_hash
	FROM audit_events e LEFT JOIN audit_chain c ON c.id = e.id AND NOT c.gap`

// scanAuditListRow reads one row of auditListSelect.
func scanAuditListRow(row pgx.CollectableRow) (pki.AuditEvent, error) {
	var ev pki.AuditEvent
	var serial string
	err := row.Scan(&ev.ID, &ev.OccurredAt, &ev.Actor, &ev.Action, &ev.Outcome, &ev.AccountID,
		&serial, &ev.RequestID, &ev.Detail, &ev.ContentHash, &ev.ChainHash)
	ev.Serial = pki.Serial(serial)
	return ev, err
}

// Compile-time checks that the store offers what the audit package asks.
var (
	_ audit.Store  = (*DB)(nil)
	_ audit.Tx     = auditTx{}
	_ audit.Reader = auditTx{}
)
