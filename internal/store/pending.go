package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// Group commit of CreatePending (see group.go). Each batch is one
// transaction of two statements: the first takes the advisory lock of every
// public key in the batch, the second checks the keys and inserts the rows.
//
// The lock serialises every CreatePending for one public key until its
// transaction ends, so that two accounts cannot both claim a key. Its key is
// the first 64 bits of the SPKI hash: two different keys sharing it only
// wait for each other. The check must run in a later statement than the
// lock: in READ COMMITTED each statement reads a snapshot taken when it
// starts, so only a statement that starts after the lock is granted sees
// what the previous holder committed. For the same reason one batch never
// holds two rows of one key (the second would not see the first): those wait
// for the next round (pendingRounds).
//
// Locks are taken in ascending key order, by every batch of every node, so
// two batches that share keys cannot deadlock on them.

// pendingRow is one CreatePending call, checked.
type pendingRow struct {
	cert        *pki.Certificate
	profile     pki.Profile // cert's, client when it names none
	account     any         // the account id, or nil for a server certificate
	renewedFrom any         // the serial renewed, or nil
	audit       []any
	lockKey     int64
	createdAt   *time.Time // set when the row is written
}

// newPendingRow checks what CreatePending was given.
func newPendingRow(c *pki.Certificate, ev pki.AuditEvent) (pendingRow, error) {
	if len(c.SPKISHA256) != 32 {
		return pendingRow{}, fmt.Errorf("store: certificate %s: SPKI hash must be 32 bytes, got %d", c.Serial, len(c.SPKISHA256))
	}
	if len(c.LintDER) == 0 {
		return pendingRow{}, fmt.Errorf("store: certificate %s: no lint certificate to record", c.Serial)
	}
	profile := c.Profile
	if profile == "" {
		profile = pki.ProfileClient
	}
	row := pendingRow{cert: c, profile: profile, lockKey: int64(binary.BigEndian.Uint64(c.SPKISHA256)), createdAt: new(time.Time)}
	switch {
	case profile == pki.ProfileServer && c.AccountID == "":
	case profile == pki.ProfileClient && validUUID(c.AccountID):
		row.account = c.AccountID
	default:
		return pendingRow{}, fmt.Errorf("store: %s certificate %s: account %q: %w", profile, c.Serial, c.AccountID, pki.ErrNotFound)
	}
	if c.RenewedFrom != nil {
		row.renewedFrom = string(*c.RenewedFrom)
	}
	audit, err := auditArgs(&ev)
	if err != nil {
		return pendingRow{}, err
	}
	row.audit = audit
	return row, nil
}

// pendingColumns are the columns of one pending row in
// createPendingSQL's arrays, before the audit event's, with their types.
var pendingColumns = []struct{ name, arrayType string }{
	{"serial", "text[]"}, {"issuer_id", "text[]"}, {"spki", "bytea[]"}, {"account_id", "text[]"},
	{"lint_der", "bytea[]"}, {"subject_cn", "text[]"}, {"not_before", "timestamptz[]"},
	{"not_after", "timestamptz[]"}, {"renewed_from", "text[]"}, {"created_at", "timestamptz[]"},
	{"profile", "text[]"},
}

// values returns r's values in pendingColumns' order.
func (r pendingRow) values() []any {
	c := r.cert
	return []any{
		string(c.Serial), c.IssuerID, c.SPKISHA256, r.account, c.LintDER, storable(c.SubjectCN),
		c.NotBefore, c.NotAfter, r.renewedFrom, nullTime(c.CreatedAt), string(r.profile),
	}
}

// createPendingSQL checks the keys of the rows in its arrays (one per
// column: pendingColumns, then the audit event's) and inserts each row whose
// key may be certified, with its audit event.
// It answers, per input row and in their order, whether the key is blocked,
// whether another account holds it, and the row's created_at (NULL when it
// was not written).
var createPendingSQL = func() string {
	names := make([]string, len(pendingColumns))
	types := make([]string, len(pendingColumns))
	for i, c := range pendingColumns {
		names[i], types[i] = c.name, c.arrayType
	}
	return `WITH input AS (
	SELECT * FROM unnest(` + unnestParams(1, append(types, auditUnnestTypes...)...) + `)
		WITH ORDINALITY AS i(` + strings.Join(names, ", ") + `, ` + auditUnnestColumns + `, ord)
), chk AS (
	SELECT i.ord,
	       EXISTS (SELECT 1 FROM blocked_keys WHERE spki_sha256 = i.spki) AS blocked,
	       EXISTS (SELECT 1 FROM certificates c WHERE c.spki_sha256 = i.spki AND c.account_id <> i.account_id::uuid) AS in_use
	FROM input i
), cert AS (
	INSERT INTO certificates (serial, issuer_id, account_id, state, lint_der, spki_sha256, subject_cn,
	                          not_before, not_after, renewed_from, created_at, profile)
	SELECT serial, issuer_id, account_id::uuid, 'pending', lint_der, spki, subject_cn,
	       not_before, not_after, renewed_from, COALESCE(created_at, now()), profile
	FROM input JOIN chk USING (ord) WHERE NOT chk.blocked AND NOT chk.in_use ORDER BY ord
	RETURNING serial, created_at
), audit AS (
	` + auditInsertFrom("input JOIN cert USING (serial)") + `
)
SELECT input.serial, chk.blocked, chk.in_use, cert.created_at
FROM input JOIN chk USING (ord) LEFT JOIN cert USING (serial) ORDER BY ord`
}()

// lockKeysSQL takes the advisory locks of a batch's keys, in the order given
// (ascending: see the top of this file).
const lockKeysSQL = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS k"

// flushPending writes batch, round by round, and sets every call's err.
func (db *DB) flushPending(ctx context.Context, batch []*groupCall[pendingRow]) {
	for rest := batch; len(rest) > 0; {
		var round []*groupCall[pendingRow]
		round, rest = pendingRounds(rest)
		db.writePendingRound(ctx, round)
	}
}

// pendingRounds splits batch into the first call of each key (round), in
// their order, and the others (rest), which must wait until round has
// committed.
func pendingRounds(batch []*groupCall[pendingRow]) (round, rest []*groupCall[pendingRow]) {
	seen := make(map[int64]bool, len(batch))
	for _, c := range batch {
		if seen[c.in.lockKey] {
			rest = append(rest, c)
			continue
		}
		seen[c.in.lockKey] = true
		round = append(round, c)
	}
	return round, rest
}

// writePendingRound writes calls whose keys differ, in one transaction when
// it can.
func (db *DB) writePendingRound(ctx context.Context, round []*groupCall[pendingRow]) {
	if len(round) == 1 {
		round[0].err = db.createPending(ctx, []pendingRow{round[0].in})[0]
		return
	}
	rows := make([]pendingRow, len(round))
	for i, c := range round {
		rows[i] = c.in
	}
	errs := db.createPending(ctx, rows)
	if err := errs[len(errs)-1]; len(errs) > len(rows) {
		// The statement itself failed and nothing was written.
		if errors.Is(err, pki.ErrUnavailable) || ctx.Err() != nil {
			for _, c := range round {
				c.err = err
			}
			return
		}
		// The batch rolled back as a whole (a serial that exists, an
		// account deleted meanwhile): write each row on its own, so that
		// only the row the database refuses fails.
		for _, c := range round {
			c.err = db.createPending(ctx, []pendingRow{c.in})[0]
		}
		return
	}
	for i, c := range round {
		c.err = errs[i]
	}
}

// createPending writes rows, whose keys differ, in one transaction and
// returns each row's outcome. When the transaction fails as a whole it
// returns one error more than there are rows, the last, which says why.
func (db *DB) createPending(ctx context.Context, rows []pendingRow) []error {
	keys := make([]int64, len(rows))
	for i, r := range rows {
		keys[i] = r.lockKey
	}
	slices.Sort(keys)
	b := &pgx.Batch{}
	b.Queue(lockKeysSQL, keys)
	b.Queue(createPendingSQL, pendingArrays(rows)...)
	// The two statements go to the server as one pipeline, which Postgres
	// runs as one implicit transaction, committed at the pipeline's Sync.
	br := db.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	errs := make([]error, len(rows))
	if err == nil {
		err = scanPending(br, rows, errs)
	}
	// Close reads the Sync's answer: only then is the implicit transaction
	// known to be committed.
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if len(rows) == 1 {
			return []error{fmt.Errorf("store: recording pending certificate %s: %w", rows[0].cert.Serial, mapErr(err))}
		}
		return append(errs, fmt.Errorf("store: recording %d pending certificates: %w", len(rows), mapErr(err)))
	}
	return errs
}

// scanPending reads the insert statement's answer, one line per row in
// rows' order, into errs.
func scanPending(br pgx.BatchResults, rows []pendingRow, errs []error) error {
	res, err := br.Query()
	if err != nil {
		return err
	}
	defer res.Close()
	i := 0
	for res.Next() {
		var serial string
		var blocked, inUse bool
		var createdAt *time.Time
		if err := res.Scan(&serial, &blocked, &inUse, &createdAt); err != nil {
			return err
		}
		if i >= len(rows) || serial != string(rows[i].cert.Serial) {
			return fmt.Errorf("store: the pending rows' answer is out of order at %s", serial)
		}
		s := rows[i].cert.Serial
		switch {
		case blocked:
			errs[i] = fmt.Errorf("store: certificate %s: %w", s, pki.ErrKeyBlocked)
		case inUse:
			errs[i] = fmt.Errorf("store: certificate %s: %w", s, pki.ErrKeyInUse)
		case createdAt == nil:
			errs[i] = fmt.Errorf("store: certificate %s: pending row was not written", s)
		default:
			*rows[i].createdAt = *createdAt
		}
		i++
	}
	if err := res.Err(); err != nil {
		return err
	}
	if i != len(rows) {
		return fmt.Errorf("store: %d pending rows answered for %d", i, len(rows))
	}
	return nil
}

// pendingArrays turns rows into createPendingSQL's parameters: one
// array per column.
func pendingArrays(rows []pendingRow) []any {
	cols := make([][]any, len(pendingColumns))
	for j := range cols {
		cols[j] = make([]any, 0, len(rows))
	}
	audit := newAuditArrays(len(rows))
	for _, r := range rows {
		for j, v := range r.values() {
			cols[j] = append(cols[j], v)
		}
		audit.add(r.audit)
	}
	params := make([]any, 0, len(cols)+8)
	for _, c := range cols {
		params = append(params, c)
	}
	return append(params, audit.params()...)
}
