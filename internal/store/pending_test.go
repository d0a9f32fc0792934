package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// TestCreatePendingBatch writes rows of every kind in one batch of
// CreatePending's group commit: each gets its own outcome, including the
// second claim of a key within the batch (written in a later round, so it
// sees the first), and rows the database refuses fail alone.
func TestCreatePendingBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	other := f.newAccount(t, "Other")
	existing := f.issue(t, f.pending(f.account.ID, nil))
	blockedKey := f.blockedKey(t)
	sharedKey := randomBytes(32)
	collision := f.pending(f.account.ID, nil)
	collision.Serial = existing.Serial

	certs := []*pki.Certificate{
		f.pending(f.account.ID, nil),                 // a new key
		f.pending(f.account.ID, existing.SPKISHA256), // a renewal's key
		f.pending(other.ID, sharedKey),               // claims sharedKey first
		f.pending(f.account.ID, sharedKey),           // then another account: in use
		f.pending(other.ID, sharedKey),               // the holder again: fine
		f.pending(f.account.ID, blockedKey),          // blocked
		f.pending(other.ID, existing.SPKISHA256),     // another account's key
		f.pending(f.account.ID, nil),                 // a new key
	}
	want := []error{nil, nil, nil, pki.ErrKeyInUse, nil, pki.ErrKeyBlocked, pki.ErrKeyInUse, nil}
	check := func(t *testing.T, certs []*pki.Certificate, want []error) {
		t.Helper()
		rows := make([]store.PendingRow, len(certs))
		for i, c := range certs {
			rows[i] = store.PendingRow{Cert: c, Event: event("certificate.signing")}
		}
		before := count(t, f.db, "SELECT count(*) FROM audit_events")
		errs := store.FlushPending(ctx, f.db, rows)
		written := 0
		for i, c := range certs {
			if !errors.Is(errs[i], want[i]) || (want[i] == nil) != (errs[i] == nil) {
				t.Errorf("row %d: %v, want %v", i, errs[i], want[i])
				continue
			}
			got, err := f.db.Certificate(ctx, c.Serial)
			switch {
			case want[i] == nil:
				written++
				if err != nil || got.State != pki.StatePending || string(got.LintDER) != string(c.LintDER) || got.AccountID != c.AccountID {
					t.Errorf("row %d: stored %+v, %v; want it pending as given", i, got, err)
				}
				if n := count(t, f.db, "SELECT count(*) FROM ocsp_responses WHERE serial = $1", string(c.Serial)); n != 0 {
					t.Errorf("row %d: %d OCSP responses; the responder signs the first, issuance none", i, n)
				}
			case want[i] != pki.ErrSerialCollision && !errors.Is(err, pki.ErrNotFound):
				t.Errorf("row %d was refused but stored (Certificate = %v)", i, err)
			}
		}
		if after := count(t, f.db, "SELECT count(*) FROM audit_events"); after != before+written {
			t.Errorf("audit events %d → %d, want %d more", before, after, written)
		}
	}
	t.Run("outcomes", func(t *testing.T) { check(t, certs, want) })
	t.Run("a row the database refuses fails alone", func(t *testing.T) {
		check(t, []*pki.Certificate{f.pending(f.account.ID, nil), collision, f.pending(newUUID(), nil), f.pending(other.ID, nil)},
			[]error{nil, pki.ErrSerialCollision, pki.ErrNotFound, nil})
	})
}

// TestCreatePendingNodesRace claims a few keys from two accounts through two
// pools (two nodes), many calls at once: each node's calls are batched, the
// batches of both nodes lock overlapping keys, and still no key ends up with
// two accounts and no call fails for another reason (a deadlock would).
func TestCreatePendingNodesRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := newFixture(t, db)
	second, err := store.Open(ctx, db.Pool().Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	nodes := []*store.DB{f.db, second}
	accounts := []*pki.Account{f.account, f.newAccount(t, "Rival")}
	keys := make([][]byte, 6)
	for i := range keys {
		keys[i] = randomBytes(32)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64*8)
	for g := range 64 {
		wg.Go(func() {
			for i := range 8 {
				c := f.pending(accounts[(g+i)%2].ID, keys[(g*7+i)%len(keys)])
				err := nodes[g%2].CreatePending(ctx, c, event("certificate.signing"))
				if err != nil && !errors.Is(err, pki.ErrKeyInUse) {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("CreatePending: %v", err)
	}
	for i, k := range keys {
		if n := count(t, f.db, "SELECT count(DISTINCT account_id) FROM certificates WHERE spki_sha256 = $1", k); n != 1 {
			t.Errorf("key %d held by %d accounts", i, n)
		}
	}
}
