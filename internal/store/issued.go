package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// Group commit of MarkIssued.
//
// Every issuance ends with MarkIssued: store the signed DER, move the row to
// issued, write the audit event, commit. Under load most of that is per
// statement and per commit rather than per row (a round trip that wakes a
// backend, executor start-up, a WAL flush), so concurrent MarkIssued calls
// are gathered into one statement and one commit: while one batch is being
// written the calls that arrive queue up, and the next batch takes them all.
// Nothing waits on a timer, so a lone call is written at once, exactly as
// before.
//
// What the caller is promised does not change: MarkIssued returns nil only
// after the transaction holding its row and its audit event has committed,
// so no certificate is handed out before its issued row is durable (the
// order of internal/ca/doc.go, SECURITY.md P1). The rows of one batch commit
// or roll back together; each still gets its own answer (not found, not
// pending). When the batch statement fails for any other reason than the
// database being unreachable, each row of it is written again on its own, so
// one row that the database refuses (a trigger, a constraint) cannot fail the
// others.

// maxIssuedBatch bounds the rows of one statement: enough to absorb the
// concurrency of a busy node, small enough to keep one statement short.
const maxIssuedBatch = 64

// issuedFlushTimeout bounds how long one batch may take. A batch is written
// on behalf of several requests, so it does not run under any one request's
// context: a client that hangs up must not fail the others (and a signed
// certificate is better recorded than abandoned).
const issuedFlushTimeout = 30 * time.Second

// issuedItem is one MarkIssued call waiting for its batch.
type issuedItem struct {
	serial  pki.Serial
	der, fp []byte
	audit   []any // auditArgs of the event
	err     error
	wake    chan struct{} // closed when err is set, or when this caller is to lead
	lead    bool          // set before wake is closed: write the next batch
}

// issuedGroup gathers MarkIssued calls. One caller at a time, the leader,
// writes a batch; when it is done it hands the lead to the first caller
// that queued meanwhile, so no caller writes more than one batch.
type issuedGroup struct {
	mu    sync.Mutex
	busy  bool
	queue []*issuedItem
}

// markIssuedBatchSQL is markIssuedSQL for many rows: the arrays $1..$3 are
// the serials, DERs and fingerprints, $4..$11 the audit events' columns.
// Each input row gets one output row: the state before the statement (NULL
// for an unknown serial) and whether this statement moved it to issued.
// Audit events are inserted in input order.
var markIssuedBatchSQL = `WITH input AS (
	SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::timestamptz[], $5::text[], $6::text[],
	                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
		WITH ORDINALITY AS i(serial, der, fp, occurred_at, actor, action, outcome, account_id, ev_serial,
		                     request_id, detail, ord)
), cur AS (
	SELECT c.serial, c.state FROM certificates c JOIN input USING (serial)
), upd AS (
	UPDATE certificates c SET state = 'issued', der = input.der, fingerprint_sha256 = input.fp
	FROM input WHERE c.serial = input.serial AND c.state = 'pending'
	RETURNING c.serial
), fp AS (
	INSERT INTO certificate_fingerprints (fingerprint_sha256, serial)
	SELECT input.fp, serial FROM input JOIN upd USING (serial)
), audit AS (
	INSERT INTO audit_events (` + auditColumns + `)
	SELECT COALESCE(occurred_at, clock_timestamp()), actor, action, outcome, account_id::uuid, ev_serial,
	       request_id, detail::jsonb
	FROM input JOIN upd USING (serial) ORDER BY ord
)
SELECT input.serial, cur.state, upd.serial IS NOT NULL
FROM input LEFT JOIN cur USING (serial) LEFT JOIN upd USING (serial)`

// markIssued queues one row and returns when its batch has committed or
// failed.
func (g *issuedGroup) markIssued(ctx context.Context, db *DB, it *issuedItem) error {
	it.wake = make(chan struct{})
	g.mu.Lock()
	g.queue = append(g.queue, it)
	if g.busy {
		g.mu.Unlock()
		// Waiting is not bounded by ctx: the row is in a batch that another
		// caller may be writing, and whoever is woken to lead must lead.
		// The batch itself is bounded by issuedFlushTimeout.
		<-it.wake
		if !it.lead {
			return it.err
		}
	} else {
		g.busy = true
		g.mu.Unlock()
	}

	// This caller leads: write what has queued, itself included.
	g.mu.Lock()
	n := min(len(g.queue), maxIssuedBatch)
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()

	// Whatever happens while writing, even a panic, the batch's callers are
	// answered and the lead passes on: a group left busy would hold every
	// later issuance forever.
	defer func() {
		if v := recover(); v != nil {
			err := fmt.Errorf("store: marking certificates issued: panic: %v", v)
			for _, o := range batch {
				o.err = err
			}
			g.handOff(batch, it)
			panic(v)
		}
		g.handOff(batch, it)
	}()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), issuedFlushTimeout)
	defer cancel()
	db.flushIssued(fctx, batch)
	return it.err
}

// handOff passes the lead to the first caller that queued while batch was
// written, or leaves the group idle, and wakes batch's other callers.
func (g *issuedGroup) handOff(batch []*issuedItem, leader *issuedItem) {
	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		next.lead = true
		close(next.wake)
	} else {
		g.busy = false
		g.queue = nil
	}
	g.mu.Unlock()
	for _, o := range batch {
		if o != leader {
			close(o.wake)
		}
	}
}

// flushIssued writes batch and sets every item's err.
func (db *DB) flushIssued(ctx context.Context, batch []*issuedItem) {
	if len(batch) == 1 {
		batch[0].err = db.markIssuedOne(ctx, batch[0])
		return
	}
	err := db.markIssuedBatch(ctx, batch)
	if err == nil {
		return
	}
	if errors.Is(err, pki.ErrUnavailable) || ctx.Err() != nil {
		for _, it := range batch {
			it.err = err
		}
		return
	}
	// The batch rolled back as a whole: write each row on its own, so that
	// only the row the database refuses fails.
	for _, it := range batch {
		it.err = db.markIssuedOne(ctx, it)
	}
}

// markIssuedOne writes one row with markIssuedSQL.
func (db *DB) markIssuedOne(ctx context.Context, it *issuedItem) error {
	args := append([]any{string(it.serial), it.der, it.fp}, it.audit...)
	var state *string
	var updated bool
	if err := db.pool.QueryRow(ctx, markIssuedSQL, args...).Scan(&state, &updated); err != nil {
		return fmt.Errorf("store: marking certificate %s issued: %w", it.serial, mapErr(err))
	}
	return issuedOutcome(it.serial, state, updated)
}

func issuedOutcome(serial pki.Serial, state *string, updated bool) error {
	switch {
	case state == nil:
		return fmt.Errorf("store: certificate %s: %w", serial, pki.ErrNotFound)
	case !updated:
		return fmt.Errorf("%w: %s is %s", errNotPending, serial, *state)
	}
	return nil
}

// markIssuedBatch writes batch in one statement. It returns an error only
// when the statement failed (nothing was written); per-row outcomes are set
// in the items.
func (db *DB) markIssuedBatch(ctx context.Context, batch []*issuedItem) error {
	n := len(batch)
	serials := make([]string, n)
	ders, fps := make([][]byte, n), make([][]byte, n)
	occurred := make([]*time.Time, n)
	actors, actions, outcomes := make([]string, n), make([]string, n), make([]string, n)
	accounts, evSerials, requests := make([]*string, n), make([]*string, n), make([]*string, n)
	details := make([]string, n)
	index := make(map[string]int, n)
	for i, it := range batch {
		s := string(it.serial)
		if _, dup := index[s]; dup {
			// One serial twice in a batch cannot be told apart in the
			// statement's answer; the row-by-row fallback handles it.
			return fmt.Errorf("store: serial %s twice in one batch", s)
		}
		index[s] = i
		serials[i], ders[i], fps[i] = s, it.der, it.fp
		a := it.audit // see auditArgs for the order and types
		if t, ok := a[0].(time.Time); ok {
			occurred[i] = &t
		}
		actors[i], actions[i], outcomes[i] = a[1].(string), a[2].(string), a[3].(string)
		accounts[i], evSerials[i], requests[i] = optString(a[4]), optString(a[5]), optString(a[6])
		details[i] = string(a[7].([]byte))
	}
	rows, err := db.pool.Query(ctx, markIssuedBatchSQL, serials, ders, fps, occurred, actors, actions, outcomes,
		accounts, evSerials, requests, details)
	if err != nil {
		return fmt.Errorf("store: marking %d certificates issued: %w", n, mapErr(err))
	}
	for _, it := range batch {
		it.err = errNoAnswer
	}
	for rows.Next() {
		var serial string
		var state *string
		var updated bool
		if err := rows.Scan(&serial, &state, &updated); err != nil {
			rows.Close()
			return fmt.Errorf("store: marking %d certificates issued: %w", n, mapErr(err))
		}
		if i, ok := index[serial]; ok {
			batch[i].err = issuedOutcome(batch[i].serial, state, updated)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: marking %d certificates issued: %w", n, mapErr(err))
	}
	return nil
}

// errNoAnswer is the outcome of a row that a batch statement did not report
// on, which it always does; the row may have been written.
var errNoAnswer = errors.New("store: the batch statement gave no answer for this certificate")

// optString turns one of auditArgs' nullable text values into a pointer.
func optString(v any) *string {
	if s, ok := v.(string); ok {
		return &s
	}
	return nil
}
