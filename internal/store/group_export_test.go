package store

import (
	"context"

	"github.com/pkid/pkid/internal/pki"
)

// IssuedRow is one row for FlushIssued.
type IssuedRow struct {
	Serial  pki.Serial
	DER, FP []byte
	Event   pki.AuditEvent
}

// FlushIssued writes rows as one batch of MarkIssued's group commit, however
// many calls are in flight, and returns each row's outcome.
func FlushIssued(ctx context.Context, db *DB, rows []IssuedRow) []error {
	ins := make([]issuedRow, len(rows))
	for i, r := range rows {
		audit, err := auditArgs(&r.Event)
		if err != nil {
			panic(err)
		}
		ins[i] = issuedRow{serial: r.Serial, der: r.DER, fp: r.FP, audit: audit}
	}
	return flushAsOneBatch(ctx, ins, db.flushIssued)
}

// flushAsOneBatch runs flush on ins as one batch and returns each call's
// outcome.
func flushAsOneBatch[T any](ctx context.Context, ins []T, flush func(context.Context, []*groupCall[T])) []error {
	batch := make([]*groupCall[T], len(ins))
	for i, in := range ins {
		batch[i] = &groupCall[T]{in: in}
	}
	flush(ctx, batch)
	errs := make([]error, len(batch))
	for i, c := range batch {
		errs[i] = c.err
	}
	return errs
}

// PendingRow is one row for FlushPending.
type PendingRow struct {
	Cert  *pki.Certificate
	Event pki.AuditEvent
}

// FlushPending writes rows as one batch of CreatePending's group commit,
// however many calls are in flight, and returns each row's outcome.
func FlushPending(ctx context.Context, db *DB, rows []PendingRow) []error {
	ins := make([]pendingRow, len(rows))
	for i, r := range rows {
		row, err := newPendingRow(r.Cert, r.Event)
		if err != nil {
			panic(err)
		}
		ins[i] = row
	}
	return flushAsOneBatch(ctx, ins, db.flushPending)
}

// TokenRead is one TokenAndAccount call for ReadTokens, and its results.
type TokenRead struct {
	TokenID, AccountID string
	Token              *pki.Token
	Account            *pki.Account
	Err                error
}

// ReadTokens reads reads as one batch of TokenAndAccount's group read.
func ReadTokens(ctx context.Context, db *DB, reads []TokenRead) {
	batch := make([]*groupCall[tokenRead], len(reads))
	for i, r := range reads {
		in := tokenRead{tokenID: r.TokenID, token: new(*pki.Token), account: new(*pki.Account)}
		if r.AccountID != "" {
			in.accountID = r.AccountID
		}
		batch[i] = &groupCall[tokenRead]{in: in}
	}
	db.readTokens(ctx, batch)
	for i, c := range batch {
		reads[i].Token, reads[i].Account, reads[i].Err = *c.in.token, *c.in.account, c.err
	}
}
