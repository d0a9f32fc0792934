package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
)

// Audit event limits for AuditEvents.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// auditColumns are the columns every audit insert writes, in the order of
// auditRow.args.
const auditColumns = "occurred_at, actor, action, outcome, account_id, serial, request_id, detail"

// auditValues returns the SQL expressions for auditColumns taking their
// values from parameters $n to $n+7. An unset time becomes the database's
// clock; the account id may be overridden by fallback when the parameter is
// NULL (an account that the same statement creates).
func auditValues(n int, accountFallback string) string {
	account := fmt.Sprintf("$%d::uuid", n+4)
	if accountFallback != "" {
		account = "COALESCE(" + account + ", " + accountFallback + ")"
	}
	return fmt.Sprintf("COALESCE($%d::timestamptz, clock_timestamp()), $%d::text, $%d::text, $%d::text, %s, $%d::text, $%d::text, $%d::jsonb",
		n, n+1, n+2, n+3, account, n+5, n+6, n+7)
}

// auditArgs checks ev and returns the eight parameters that auditValues
// refers to. Text is made storable: Postgres text cannot hold NUL or invalid
// UTF-8, and an audit write that fails makes the whole request fail, so an
// attacker-chosen byte must not be able to cause that.
func auditArgs(ev *pki.AuditEvent) ([]any, error) {
	if ev.Actor == "" || ev.Action == "" {
		return nil, errors.New("store: audit event needs an actor and an action")
	}
	if ev.Outcome != pki.OutcomeSuccess && ev.Outcome != pki.OutcomeFailure {
		return nil, fmt.Errorf("store: audit event outcome %q is neither success nor failure", ev.Outcome)
	}
	detail := ev.Detail
	var account any
	if ev.AccountID != "" {
		if validUUID(ev.AccountID) {
			account = ev.AccountID
		} else {
			// Not an account pkid could have: keep what was said in the
			// detail rather than lose the event.
			detail = make(map[string]any, len(ev.Detail)+1)
			for k, v := range ev.Detail {
				detail[k] = v
			}
			detail["account_id_unparsed"] = ev.AccountID
		}
	}
	doc, err := detailJSON(detail)
	if err != nil {
		return nil, err
	}
	return []any{
		nullTime(ev.OccurredAt),
		storable(ev.Actor),
		storable(ev.Action),
		ev.Outcome,
		account,
		nullText(storable(string(ev.Serial))),
		nullText(storable(ev.RequestID)),
		doc,
	}, nil
}

// auditArrays holds the audit events of a batch statement column by column,
// in auditColumns' order: what unnest turns back into rows.
type auditArrays struct {
	occurred                    []*time.Time
	actors, actions, outcomes   []string
	accounts, serials, requests []*string
	details                     []string
}

// newAuditArrays returns auditArrays with room for n events, so that a
// batch's columns are allocated once rather than grown row by row.
func newAuditArrays(n int) *auditArrays {
	return &auditArrays{
		occurred: make([]*time.Time, 0, n),
		actors:   make([]string, 0, n),
		actions:  make([]string, 0, n),
		outcomes: make([]string, 0, n),
		accounts: make([]*string, 0, n),
		serials:  make([]*string, 0, n),
		requests: make([]*string, 0, n),
		details:  make([]string, 0, n),
	}
}

// add appends one event, given as the parameters auditArgs returns.
func (a *auditArrays) add(args []any) {
	var occurred *time.Time
	if t, ok := args[0].(time.Time); ok {
		occurred = &t
	}
	a.occurred = append(a.occurred, occurred)
	a.actors = append(a.actors, args[1].(string))
	a.actions = append(a.actions, args[2].(string))
	a.outcomes = append(a.outcomes, args[3].(string))
	a.accounts = append(a.accounts, optString(args[4]))
	a.serials = append(a.serials, optString(args[5]))
	a.requests = append(a.requests, optString(args[6]))
	a.details = append(a.details, string(args[7].([]byte)))
}

// params returns the eight arrays as statement parameters; auditUnnestTypes
// are their SQL types, in the same order.
func (a *auditArrays) params() []any {
	return []any{a.occurred, a.actors, a.actions, a.outcomes, a.accounts, a.serials, a.requests, a.details}
}

// auditUnnestTypes are the casts of auditArrays' parameters in unnest.
var auditUnnestTypes = []string{"timestamptz[]", "text[]", "text[]", "text[]", "text[]", "text[]", "text[]", "text[]"}

// auditInsertFrom is the INSERT of a batch statement's audit events from
// the rows of src, whose columns are named as auditColumns with the prefix
// ev_ (ev_occurred_at, ev_actor, ...), in the order of src's column ord.
func auditInsertFrom(src string) string {
	return `INSERT INTO audit_events (` + auditColumns + `)
	SELECT COALESCE(ev_occurred_at, clock_timestamp()), ev_actor, ev_action, ev_outcome, ev_account_id::uuid,
	       ev_serial, ev_request_id, ev_detail::jsonb
	FROM ` + src + ` ORDER BY ord`
}

// auditUnnestColumns names auditArrays' columns in unnest's alias list.
const auditUnnestColumns = "ev_occurred_at, ev_actor, ev_action, ev_outcome, ev_account_id, ev_serial, ev_request_id, ev_detail"

// optString turns one of auditArgs' nullable text values into a pointer.
func optString(v any) *string {
	if s, ok := v.(string); ok {
		return &s
	}
	return nil
}

// detailJSON encodes an event's detail for the jsonb column. Strings keep
// their newlines and quotes (JSON escapes them); a NUL, which jsonb refuses,
// becomes U+FFFD.
func detailJSON(detail map[string]any) ([]byte, error) {
	if detail == nil {
		return []byte("{}"), nil
	}
	doc, ok := appendDetail(make([]byte, 0, 512), detail)
	if !ok {
		var err error
		if doc, err = json.Marshal(detail); err != nil {
			return nil, fmt.Errorf("store: encoding audit detail: %w", err)
		}
	}
	return replaceEscapedNUL(doc), nil
}

// replaceEscapedNUL rewrites each JSON escape \u0000 in doc as \ufffd. It
// walks escapes pair by pair, so the text `\\u0000` (an escaped backslash
// followed by "u0000") is left alone.
func replaceEscapedNUL(doc []byte) []byte {
	const nul, repl = `u0000`, `ufffd`
	for i := 0; i < len(doc)-1; i++ {
		if doc[i] != '\\' {
			continue
		}
		if strings.HasPrefix(string(doc[i+1:]), nul) {
			copy(doc[i+1:], repl)
		}
		i++ // skip the escaped character
	}
	return doc
}

// storable returns s as Postgres text can hold it: valid UTF-8 without NUL.
func storable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// nullText maps "" to NULL.
func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullTime maps the zero time to NULL, so that the database's clock fills in.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

var insertAuditSQL = "INSERT INTO audit_events (" + auditColumns + ") VALUES (" + auditValues(1, "") + ")"

// RecordAudit writes ev on its own: a refusal, a login, anything that changes
// nothing else. ev.OccurredAt defaults to the database's clock.
func (db *DB) RecordAudit(ctx context.Context, ev pki.AuditEvent) error {
	args, err := auditArgs(&ev)
	if err != nil {
		return err
	}
	if _, err := db.pool.Exec(ctx, insertAuditSQL, args...); err != nil {
		return fmt.Errorf("store: recording audit event %s: %w", ev.Action, mapErr(err))
	}
	return nil
}

// queueAudit adds the insert of ev to b, for writes that send their
// statements as one batch.
func queueAudit(b *pgx.Batch, ev *pki.AuditEvent) error {
	args, err := auditArgs(ev)
	if err != nil {
		return err
	}
	b.Queue(insertAuditSQL, args...)
	return nil
}

const auditSelect = `SELECT id, occurred_at, actor, action, outcome, COALESCE(account_id::text, ''),
	COALESCE(serial, ''), COALESCE(request_id, ''), detail FROM audit_events`

// AuditEvents returns the audit events matching f, newest first: at most
// f.Limit (default 100, at most 1000), of one account when f.AccountID is
// set. An account id that is not a UUID has no events.
func (db *DB) AuditEvents(ctx context.Context, f pki.AuditFilter) ([]pki.AuditEvent, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	limit = min(limit, maxAuditLimit)
	var rows pgx.Rows
	var err error
	switch {
	case f.AccountID == "":
		rows, err = db.pool.Query(ctx, auditSelect+" ORDER BY id DESC LIMIT $1", limit)
	case !validUUID(f.AccountID):
		return []pki.AuditEvent{}, nil
	default:
		rows, err = db.pool.Query(ctx, auditSelect+" WHERE account_id = $1 ORDER BY id DESC LIMIT $2", f.AccountID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("store: listing audit events: %w", mapErr(err))
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pki.AuditEvent, error) {
		var ev pki.AuditEvent
		var serial string
		err := row.Scan(&ev.ID, &ev.OccurredAt, &ev.Actor, &ev.Action, &ev.Outcome, &ev.AccountID,
			&serial, &ev.RequestID, &ev.Detail)
		ev.Serial = pki.Serial(serial)
		return ev, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing audit events: %w", mapErr(err))
	}
	return events, nil
}
