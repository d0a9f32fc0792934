package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pkid/pkid/internal/audit"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// linkAll runs linker passes until the chain covers every committed event,
// failing t after ten seconds.
func linkAll(t testing.TB, l *audit.Linker, db *store.DB) pki.AuditChainHead {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := l.Link(ctx)
		if err != nil {
			t.Fatalf("Link: %v", err)
		}
		if !res.More && !res.Waiting && !res.Busy {
			h, err := db.AuditChainHead(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if h.Unlinked == 0 {
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chain did not catch up: last pass %+v", res)
		}
		if res.Waiting || res.Busy {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// verifyChain runs audit.Verify on one snapshot of db.
func verifyChain(db *store.DB, opts audit.VerifyOptions) (audit.Report, error) {
	var rep audit.Report
	err := db.AuditSnapshot(context.Background(), func(r audit.Reader) error {
		var err error
		rep, err = audit.Verify(context.Background(), r, opts)
		return err
	})
	return rep, err
}

var errRollback = errors.New("roll back")

// insertAudit inserts one event in tx the way a bare INSERT does and
// returns its id.
func insertAudit(ctx context.Context, tx pgx.Tx, action string) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO audit_events (actor, action, outcome, detail)
		VALUES ('system', $1, 'success', '{"cn": "client.example"}') RETURNING id`, action).Scan(&id)
	return id, err
}

// rolledBackID spends one id in a transaction that rolls back.
func rolledBackID(t *testing.T, db *store.DB) int64 {
	t.Helper()
	var id int64
	err := db.InTx(context.Background(), func(tx pgx.Tx) error {
		var err error
		if id, err = insertAudit(context.Background(), tx, "test.rolled.back"); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("InTx: %v", err)
	}
	return id
}

// tamper runs sql as the tables' owner with their insert-only triggers
// disabled for the moment, as someone who controls the database could.
func tamper(t *testing.T, db *store.DB, sql string, args ...any) {
	t.Helper()
	err := db.InTx(context.Background(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), "ALTER TABLE audit_events DISABLE TRIGGER USER; ALTER TABLE audit_chain DISABLE TRIGGER USER"); err != nil {
			return err
		}
		tag, err := tx.Exec(context.Background(), sql, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%s changed %d rows", sql, tag.RowsAffected())
		}
		_, err = tx.Exec(context.Background(), "ALTER TABLE audit_events ENABLE TRIGGER USER; ALTER TABLE audit_chain ENABLE TRIGGER USER")
		return err
	})
	if err != nil {
		t.Fatalf("tampering: %v", err)
	}
}

// chainedTrail fills db with events of several kinds, one id that never
// committed among them, links them and returns the ids worth tampering with.
func chainedTrail(t *testing.T, db *store.DB) (target, gap, last int64, head pki.AuditChainHead) {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t, db) // account and CA events, detail with nested values
	f.issue(t, f.pending(f.account.ID, nil))
	gap = rolledBackID(t, db)
	for i := range 3 {
		ev := event("test.event")
		ev.Detail = map[string]any{"cn": "client.example", "n": i}
		if err := db.RecordAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	target = int64(count(t, db, "SELECT min(id) FROM audit_events WHERE action = 'test.event'"))
	last = int64(count(t, db, "SELECT max(id) FROM audit_events"))
	head = linkAll(t, audit.NewLinker(db, audit.LinkerOptions{}), db)
	if head.ID != last {
		t.Fatalf("head %d, want %d", head.ID, last)
	}
	return target, gap, last, head
}

func TestAuditChainTamperEvident(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		tamper    func(t *testing.T, db *store.DB, target, gap, last int64)
		anchor    bool
		breakAt   func(target, gap, last int64) int64 // nil: verifies
		wantGapID int64
	}{
		{name: "untouched", tamper: func(*testing.T, *store.DB, int64, int64, int64) {}},
		{name: "untouched, with its anchor", anchor: true, tamper: func(*testing.T, *store.DB, int64, int64, int64) {}},
		{name: "one byte of detail", breakAt: atTarget, tamper: func(t *testing.T, db *store.DB, target, _, _ int64) {
			tamper(t, db, `UPDATE audit_events SET detail = replace(detail::text, 'client.example', 'client.exampla')::jsonb WHERE id = $1`, target)
		}},
		{name: "a number in detail", breakAt: atTarget, tamper: func(t *testing.T, db *store.DB, target, _, _ int64) {
			tamper(t, db, `UPDATE audit_events SET detail = jsonb_set(detail, '{n}', '1') WHERE id = $1`, target)
		}},
		{name: "time by a microsecond", breakAt: atTarget, tamper: func(t *testing.T, db *store.DB, target, _, _ int64) {
			tamper(t, db, `UPDATE audit_events SET occurred_at = occurred_at + interval '1 microsecond' WHERE id = $1`, target)
		}},
		{name: "NULL serial made empty", breakAt: atTarget, tamper: func(t *testing.T, db *store.DB, target, _, _ int64) {
			tamper(t, db, `UPDATE audit_events SET serial = '' WHERE id = $1 AND serial IS NULL`, target)
		}},
		{name: "event deleted", breakAt: atTarget, tamper: func(t *testing.T, db *store.DB, target, _, _ int64) {
			tamper(t, db, `DELETE FROM audit_events WHERE id = $1`, target)
		}},
		{name: "event inserted where an id never committed", breakAt: func(_, gap, _ int64) int64 { return gap },
			tamper: func(t *testing.T, db *store.DB, _, gap, _ int64) {
				// No trigger stands in the way: inserting is allowed.
				_, err := db.Pool().Exec(context.Background(), `INSERT INTO audit_events (id, actor, action, outcome)
					OVERRIDING SYSTEM VALUE VALUES ($1, 'system', 'certificate.issued', 'success')`, gap)
				if err != nil {
					t.Fatal(err)
				}
			}},
		{name: "link rewritten", breakAt: atTarget, tamper: func(t *testing.T, db *store.DB, target, _, _ int64) {
			tamper(t, db, `UPDATE audit_chain SET chain_hash = sha256(chain_hash) WHERE id = $1`, target)
		}},
		{name: "newest event and its link removed: verifies alone", tamper: removeLast},
		{name: "newest event and its link removed: the anchor shows it", anchor: true, tamper: removeLast,
			breakAt: func(_, _, last int64) int64 { return last }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := testdb.Open(t)
			target, gap, last, head := chainedTrail(t, db)
			tt.tamper(t, db, target, gap, last)
			var opts audit.VerifyOptions
			if tt.anchor {
				opts.Anchor = &audit.Anchor{ID: head.ID, Hash: head.Hash}
			}
			rep, err := verifyChain(db, opts)
			if tt.breakAt == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if rep.GapIDs != 1 || rep.Unlinked != 0 {
					t.Errorf("report %+v: want one id never committed, nothing unlinked", rep)
				}
				return
			}
			var be *audit.BreakError
			if !errors.As(err, &be) {
				t.Fatalf("Verify = %+v, %v; want a break", rep, err)
			}
			if want := tt.breakAt(target, gap, last); be.ID != want {
				t.Errorf("break at %d (%v), want %d", be.ID, be, want)
			}
		})
	}
}

func atTarget(target, _, _ int64) int64 { return target }

func removeLast(t *testing.T, db *store.DB, _, _, last int64) {
	tamper(t, db, `DELETE FROM audit_events WHERE id = $1`, last)
	tamper(t, db, `DELETE FROM audit_chain WHERE id = $1`, last)
}

// The trail and its chain refuse every change but an insert, from anyone,
// the owner included.
func TestAuditTrailInsertOnly(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t)
	chainedTrail(t, db)
	for _, sql := range []string{
		"UPDATE audit_events SET actor = 'admin:mallory'",
		"UPDATE audit_events SET detail = '{}' WHERE false",
		"DELETE FROM audit_events",
		"TRUNCATE audit_events",
		"UPDATE audit_chain SET chain_hash = content_hash",
		"DELETE FROM audit_chain",
		"TRUNCATE audit_chain",
	} {
		t.Run(sql, func(t *testing.T) {
			_, err := db.Pool().Exec(context.Background(), sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Fatalf("%s: %v, want insufficient_privilege", sql, err)
			}
		})
	}
	// Rows the chain could not cover are refused on insert.
	for _, sql := range []string{
		"INSERT INTO audit_events (id, actor, action, outcome) OVERRIDING SYSTEM VALUE VALUES (0, 'system', 'x', 'success')",
		"INSERT INTO audit_events (occurred_at, actor, action, outcome) VALUES ('infinity', 'system', 'x', 'success')",
	} {
		_, err := db.Pool().Exec(context.Background(), sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
			t.Errorf("%s: %v, want check_violation", sql, err)
		}
	}
	if _, err := verifyChain(db, audit.VerifyOptions{}); err != nil {
		t.Errorf("Verify after the refusals: %v", err)
	}
}

// A missing id below a visible one is waited for while its transaction
// runs, then linked when it commits or recorded as a gap when it rolls back;
// events after it are never linked first.
func TestAuditLinkerWaitsForOpenTransaction(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := testdb.Open(t)
			l := audit.NewLinker(db, audit.LinkerOptions{})
			before := linkAll(t, l, db) // what migrations and fixtures wrote: nothing here

			started, finish := make(chan int64), make(chan error)
			done := make(chan error, 1)
			go func() {
				done <- db.InTx(ctx, func(tx pgx.Tx) error {
					id, err := insertAudit(ctx, tx, "test.slow")
					if err != nil {
						return err
					}
					started <- id
					return <-finish
				})
			}()
			open := <-started
			for range 3 { // later events commit first, from transactions that come and go
				if err := db.RecordAudit(ctx, event("test.fast")); err != nil {
					t.Fatal(err)
				}
				res, err := l.Link(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !res.Waiting || res.Linked != 0 || res.Gaps != 0 {
					t.Fatalf("pass with id %d open: %+v, want waiting with nothing linked", open, res)
				}
			}
			if h, _ := db.AuditChainHead(ctx); h.ID != before.ID || h.Unlinked != 3 {
				t.Fatalf("head %+v moved past the open id %d", h, open)
			}
			if commit {
				finish <- nil
			} else {
				finish <- errRollback
			}
			if err := <-done; (err == nil) != commit {
				t.Fatalf("InTx: %v", err)
			}
			head := linkAll(t, l, db)
			rep, err := verifyChain(db, audit.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wantGaps := int64(0)
			if !commit {
				wantGaps = 1
			}
			if head.ID != open+3 || rep.GapIDs != wantGaps || rep.Events != open+3-wantGaps {
				t.Errorf("head %+v, report %+v; open id %d", head, rep, open)
			}
		})
	}
}

// The chain stays valid with writers on two nodes (two pools) whose
// transactions commit out of id order and sometimes roll back, and a linker
// on each node; verifications taken while they run pass too.
func TestAuditChainConcurrentNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	var nodes []*store.DB
	for range 2 {
		db, err := store.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		nodes = append(nodes, db)
	}
	linkCtx, stopLinkers := context.WithCancel(ctx)
	var linkers sync.WaitGroup
	for _, db := range nodes {
		l := audit.NewLinker(db, audit.LinkerOptions{Interval: 5 * time.Millisecond, Batch: 50})
		linkers.Go(func() { l.Run(linkCtx) })
	}
	defer func() { stopLinkers(); linkers.Wait() }()

	var committed, rolledBack atomic.Int64
	var writers sync.WaitGroup
	for w := range 6 {
		db := nodes[w%2]
		writers.Go(func() {
			for range 30 {
				err := db.InTx(ctx, func(tx pgx.Tx) error {
					if _, err := insertAudit(ctx, tx, "test.concurrent"); err != nil {
						return err
					}
					time.Sleep(time.Duration(rand.IntN(15)) * time.Millisecond)
					if rand.IntN(5) == 0 {
						return errRollback
					}
					return nil
				})
				switch {
				case err == nil:
					committed.Add(1)
				case errors.Is(err, errRollback):
					rolledBack.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	verifying := make(chan struct{})
	var midway atomic.Int64
	go func() {
		defer close(verifying)
		for committed.Load()+rolledBack.Load() < 180 {
			rep, err := verifyChain(nodes[1], audit.VerifyOptions{})
			if err != nil {
				t.Errorf("Verify while writing: %v", err)
				return
			}
			midway.Store(rep.HeadID)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	writers.Wait()
	<-verifying
	// A last committed event, so that every rolled-back id lies below a
	// visible one and becomes a gap.
	if err := nodes[0].RecordAudit(ctx, event("test.last")); err != nil {
		t.Fatal(err)
	}
	committed.Add(1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := nodes[0].AuditChainHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h.Unlinked == 0 && h.ID == committed.Load()+rolledBack.Load() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chain did not catch up: head %+v, %d committed, %d rolled back", h, committed.Load(), rolledBack.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	rep, err := verifyChain(nodes[0], audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != committed.Load() || rep.GapIDs != rolledBack.Load() {
		t.Errorf("report %+v: want %d events and %d ids never committed", rep, committed.Load(), rolledBack.Load())
	}
	if midway.Load() == 0 {
		t.Error("no verification saw a linked chain while the writers ran")
	}
}

// The linker refuses to decide about missing ids when the sequence hands
// out cached blocks, since ids then no longer come in order.
func TestAuditLinkerRefusesCachedSequence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	if _, err := db.Pool().Exec(ctx, "ALTER TABLE audit_events ALTER COLUMN id SET CACHE 20"); err != nil {
		t.Fatal(err)
	}
	rolledBackID(t, db)
	if err := db.RecordAudit(ctx, event("test.after")); err != nil {
		t.Fatal(err)
	}
	_, err := audit.NewLinker(db, audit.LinkerOptions{}).Link(ctx)
	if !errors.Is(err, audit.ErrSequenceCached) {
		t.Errorf("Link: %v, want ErrSequenceCached", err)
	}
}

// Only one linker links at a time; the other finds the lock taken.
func TestAuditLinkerLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := db.LinkAudit(ctx, func(audit.Tx) error {
			close(inside)
			<-release
			return nil
		})
		done <- err
	}()
	<-inside
	res, err := audit.NewLinker(db, audit.LinkerOptions{}).Link(ctx)
	if err != nil || !res.Busy {
		t.Errorf("Link while another links: %+v, %v", res, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSearchAuditChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	var times []time.Time
	for i := range 4 {
		ev := event("test.listed")
		ev.OccurredAt = time.Date(2025, 6, 1, 12, i, 0, 0, time.UTC)
		times = append(times, ev.OccurredAt)
		if err := db.RecordAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	unlinked, err := db.SearchAudit(ctx, pki.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range unlinked {
		if e.ContentHash != nil || e.ChainHash != nil {
			t.Errorf("event %d has hashes before the linker ran", e.ID)
		}
	}
	if h, err := db.AuditChainHead(ctx); err != nil || h.ID != 0 || h.Hash != nil || h.Unlinked != 4 {
		t.Errorf("head before linking: %+v, %v", h, err)
	}
	head := linkAll(t, audit.NewLinker(db, audit.LinkerOptions{}), db)
	all, err := db.SearchAudit(ctx, pki.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 || all[0].ID != head.ID || string(all[0].ChainHash) != string(head.Hash) {
		t.Fatalf("newest event %+v, head %+v", all[0], head)
	}
	for _, e := range all {
		if len(e.ContentHash) != audit.HashSize || len(e.ChainHash) != audit.HashSize {
			t.Errorf("event %d: hashes %x %x", e.ID, e.ContentHash, e.ChainHash)
		}
	}
	ids := func(f pki.AuditFilter) []int64 {
		t.Helper()
		evs, err := db.SearchAudit(ctx, f)
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		out := []int64{}
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	first := all[3].ID
	tests := []struct {
		name   string
		filter pki.AuditFilter
		want   []int64
	}{
		{"since, inclusive", pki.AuditFilter{Since: times[2]}, []int64{first + 3, first + 2}},
		{"until, exclusive", pki.AuditFilter{Until: times[1]}, []int64{first}},
		{"a window", pki.AuditFilter{Since: times[1], Until: times[3]}, []int64{first + 2, first + 1}},
		{"oldest first", pki.AuditFilter{Ascending: true, Limit: 2}, []int64{first, first + 1}},
		{"the next page, oldest first", pki.AuditFilter{Ascending: true, AfterID: first + 1}, []int64{first + 2, first + 3}},
		{"between two ids", pki.AuditFilter{AfterID: first, BeforeID: first + 3}, []int64{first + 2, first + 1}},
	}
	for _, tt := range tests {
		if got := ids(tt.filter); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	var re *pki.RequestError
	if _, err := db.SearchAudit(ctx, pki.AuditFilter{AfterID: -1}); !errors.As(err, &re) {
		t.Errorf("negative after: %v", err)
	}
}

// The role set-up of docs/AUDIT.md works: a service role with SELECT and
// INSERT on the trail records, links and verifies, and can neither change
// the trail nor switch its triggers off.
func TestAuditDedicatedRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ownerURL := testdb.New(t)
	owner, err := store.Open(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	role := "pkid_service_" + newUUID()[:8]
	if _, err := owner.Pool().Exec(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Before the database goes: the role's privileges live in it.
		_, _ = owner.Pool().Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	grants := `GRANT USAGE ON SCHEMA public TO ROLE;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ROLE;
		GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ROLE;
		REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_chain FROM ROLE;`
	if _, err := owner.Pool().Exec(ctx, strings.ReplaceAll(grants, "ROLE", role)); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	svc, err := store.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)

	if err := svc.RecordAudit(ctx, event("test.first")); err != nil {
		t.Fatalf("RecordAudit as %s: %v", role, err)
	}
	rolledBackID(t, svc)
	if err := svc.RecordAudit(ctx, event("test.after.gap")); err != nil {
		t.Fatal(err)
	}
	linkAll(t, audit.NewLinker(svc, audit.LinkerOptions{}), svc)
	if rep, err := verifyChain(svc, audit.VerifyOptions{}); err != nil || rep.Events != 2 || rep.GapIDs != 1 {
		t.Fatalf("Verify as %s: %+v, %v", role, rep, err)
	}
	for _, sql := range []string{
		"UPDATE audit_events SET actor = 'admin:mallory'",
		"DELETE FROM audit_events",
		"TRUNCATE audit_events",
		"DELETE FROM audit_chain",
		"ALTER TABLE audit_events DISABLE TRIGGER USER",
	} {
		_, err := svc.Pool().Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as %s: %v, want permission denied", sql, role, err)
		}
	}
}
