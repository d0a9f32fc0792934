package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// TestMarkIssuedBatch writes several rows in one statement (MarkIssued's
// group commit): each row gets its own outcome, the pending ones are issued
// with their own DER and audit event, and a row that the database refuses
// fails alone.
func TestMarkIssuedBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	pending := func() pki.Serial {
		c := f.pending(f.account.ID, nil)
		if err := f.db.CreatePending(ctx, c, event("certificate.signing")); err != nil {
			t.Fatal(err)
		}
		return c.Serial
	}
	row := func(serial pki.Serial) store.IssuedRow {
		der := randomBytes(400)
		fp := sha256.Sum256(der)
		ev := event("certificate.issued")
		ev.Serial = serial
		return store.IssuedRow{Serial: serial, DER: der, FP: fp[:], Event: ev}
	}
	checkIssued := func(t *testing.T, r store.IssuedRow) {
		t.Helper()
		got, err := f.db.Certificate(ctx, r.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != pki.StateIssued || string(got.DER) != string(r.DER) || string(got.FingerprintSHA256) != string(r.FP) {
			t.Errorf("%s after the batch: state %s, DER or fingerprint not the row's", r.Serial, got.State)
		}
		if n := count(t, f.db, "SELECT count(*) FROM audit_events WHERE action = 'certificate.issued' AND serial = $1", string(r.Serial)); n != 1 {
			t.Errorf("%s: %d issued events, want 1", r.Serial, n)
		}
	}

	t.Run("outcomes", func(t *testing.T) {
		issued := f.issue(t, f.pending(f.account.ID, nil))
		rows := []store.IssuedRow{row(pending()), row(pki.MustNewSerial()), row(pending()), row(issued.Serial), row(pending())}
		before := count(t, f.db, "SELECT count(*) FROM audit_events")
		errs := store.FlushIssued(ctx, f.db, rows)
		for i, want := range []string{"ok", "not found", "ok", "not pending", "ok"} {
			err := errs[i]
			got := "not pending"
			switch {
			case err == nil:
				got = "ok"
			case errors.Is(err, pki.ErrNotFound):
				got = "not found"
			}
			if got != want {
				t.Errorf("row %d: %v, want %s", i, err, want)
			}
		}
		if after := count(t, f.db, "SELECT count(*) FROM audit_events"); after != before+3 {
			t.Errorf("audit events %d → %d, want 3 more", before, after)
		}
		for _, i := range []int{0, 2, 4} {
			checkIssued(t, rows[i])
		}
		// Events are written in the order of the batch.
		var ordered bool
		err := f.db.Pool().QueryRow(ctx, `SELECT array_agg(serial ORDER BY id) = $1::text[] FROM audit_events
			WHERE action = 'certificate.issued' AND serial = ANY ($1)`,
			[]string{string(rows[0].Serial), string(rows[2].Serial), string(rows[4].Serial)}).Scan(&ordered)
		if err != nil || !ordered {
			t.Errorf("issued events not in batch order (%v)", err)
		}
	})

	t.Run("one row refused", func(t *testing.T) {
		rows := []store.IssuedRow{row(pending()), row(pending()), row(pending())}
		poisoned := rows[1].Serial
		if _, err := f.db.Pool().Exec(ctx, fmt.Sprintf(`
			CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
			CREATE TRIGGER refuse_one BEFORE UPDATE ON certificates
				FOR EACH ROW WHEN (NEW.serial = '%s') EXECUTE FUNCTION refuse_one();`, poisoned)); err != nil {
			t.Fatal(err)
		}
		defer f.db.Pool().Exec(ctx, "DROP TRIGGER refuse_one ON certificates; DROP FUNCTION refuse_one()")
		errs := store.FlushIssued(ctx, f.db, rows)
		if errs[0] != nil || errs[1] == nil || errs[2] != nil {
			t.Fatalf("outcomes %v, want only the second to fail", errs)
		}
		checkIssued(t, rows[0])
		checkIssued(t, rows[2])
		if got, err := f.db.Certificate(ctx, poisoned); err != nil || got.State != pki.StatePending {
			t.Errorf("refused row: %v %v, want it still pending", got, err)
		}
	})

	t.Run("concurrent calls", func(t *testing.T) {
		rows := make([]store.IssuedRow, 100)
		for i := range rows {
			rows[i] = row(pending())
		}
		var wg sync.WaitGroup
		errs := make([]error, len(rows))
		for i, r := range rows {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = f.db.MarkIssued(ctx, r.Serial, r.DER, r.FP, r.Event)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("row %d: %v", i, err)
			}
		}
		for _, r := range rows {
			checkIssued(t, r)
		}
	})
}
