package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pkid/pkid/internal/pki"
)

// Group commit of MarkIssued (see group.go): every issuance ends with it, so
// concurrent calls share one statement and one commit.

// issuedRow is one MarkIssued call.
type issuedRow struct {
	serial  pki.Serial
	der, fp []byte
	audit   []any // auditArgs of the event
}

// markIssuedBatchSQL is markIssuedSQL for many rows: the arrays $1..$3 are
// the serials, DERs and fingerprints, $4..$11 the audit events' columns.
// Each input row gets one output row: the state before the statement (NULL
// for an unknown serial) and whether this statement moved it to issued.
// Audit events are inserted in input order.
var markIssuedBatchSQL = `WITH input AS (
	SELECT * FROM unnest(` + unnestParams(1, append([]string{"text[]", "bytea[]", "bytea[]"}, auditUnnestTypes...)...) + `)
		WITH ORDINALITY AS i(serial, der, fp, ` + auditUnnestColumns + `, ord)
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
	` + auditInsertFrom("input JOIN upd USING (serial)") + `
)
SELECT input.serial, cur.state, upd.serial IS NOT NULL
FROM input LEFT JOIN cur USING (serial) LEFT JOIN upd USING (serial)`

// unnestParams returns the parameters $start, $start+1, ... cast to types,
// comma-separated, for unnest.
func unnestParams(start int, types ...string) string {
	ps := make([]string, len(types))
	for i, t := range types {
		ps[i] = fmt.Sprintf("$%d::%s", start+i, t)
	}
	return strings.Join(ps, ", ")
}

// flushIssued writes batch and sets every call's err.
func (db *DB) flushIssued(ctx context.Context, batch []*groupCall[issuedRow]) {
	if len(batch) == 1 {
		batch[0].err = db.markIssuedOne(ctx, batch[0].in)
		return
	}
	err := db.markIssuedBatch(ctx, batch)
	if err == nil {
		return
	}
	if errors.Is(err, pki.ErrUnavailable) || ctx.Err() != nil {
		for _, c := range batch {
			c.err = err
		}
		return
	}
	// The batch rolled back as a whole: write each row on its own, so that
	// only the row the database refuses fails.
	for _, c := range batch {
		c.err = db.markIssuedOne(ctx, c.in)
	}
}

// markIssuedOne writes one row with markIssuedSQL.
func (db *DB) markIssuedOne(ctx context.Context, r issuedRow) error {
	args := append([]any{string(r.serial), r.der, r.fp}, r.audit...)
	var state *string
	var updated bool
	if err := db.pool.QueryRow(ctx, markIssuedSQL, args...).Scan(&state, &updated); err != nil {
		return fmt.Errorf("store: marking certificate %s issued: %w", r.serial, mapErr(err))
	}
	return issuedOutcome(r.serial, state, updated)
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
// in the calls.
func (db *DB) markIssuedBatch(ctx context.Context, batch []*groupCall[issuedRow]) error {
	n := len(batch)
	serials := make([]string, n)
	ders, fps := make([][]byte, n), make([][]byte, n)
	audit := newAuditArrays(n)
	index, err := serialIndex(batch, func(r issuedRow) pki.Serial { return r.serial })
	if err != nil {
		return err
	}
	for i, c := range batch {
		serials[i], ders[i], fps[i] = string(c.in.serial), c.in.der, c.in.fp
		audit.add(c.in.audit)
	}
	rows, err := db.pool.Query(ctx, markIssuedBatchSQL, append([]any{serials, ders, fps}, audit.params()...)...)
	if err != nil {
		return fmt.Errorf("store: marking %d certificates issued: %w", n, mapErr(err))
	}
	for _, c := range batch {
		c.err = errNoAnswer
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
			batch[i].err = issuedOutcome(batch[i].in.serial, state, updated)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: marking %d certificates issued: %w", n, mapErr(err))
	}
	return nil
}

// serialIndex maps each call's serial to its position in batch. One serial
// twice in a batch cannot be told apart in a batch statement's answer, so
// that is an error, which sends the batch to the row-by-row fallback.
func serialIndex[T any](batch []*groupCall[T], serial func(T) pki.Serial) (map[string]int, error) {
	index := make(map[string]int, len(batch))
	for i, c := range batch {
		s := string(serial(c.in))
		if _, dup := index[s]; dup {
			return nil, fmt.Errorf("store: serial %s twice in one batch", s)
		}
		index[s] = i
	}
	return index, nil
}

// errNoAnswer is the outcome of a row that a batch statement did not report
// on, which it always does; the row may have been written.
var errNoAnswer = errors.New("store: the batch statement gave no answer for this certificate")
