package store_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// insertRevocable writes a certificate row directly, revoked when
// revokedAt is set, pending unless issued.
func (f *fixture) insertRevocable(t testing.TB, issuerID string, notAfter time.Time, revokedAt *time.Time, reason pki.RevocationReason, issued bool) pki.Serial {
	t.Helper()
	c := f.pending(f.account.ID, nil)
	var r any
	if revokedAt != nil {
		r = int16(reason)
	}
	var der, fp any
	state := "pending"
	if issued {
		state, der, fp = "issued", randomBytes(100), randomBytes(32)
	}
	_, err := f.db.Pool().Exec(context.Background(), `INSERT INTO certificates
		(serial, issuer_id, account_id, state, lint_der, der, fingerprint_sha256, spki_sha256, subject_cn,
		 not_before, not_after, revoked_at, revocation_reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'x', $9, $10, $11, $12)`,
		string(c.Serial), issuerID, f.account.ID, state, c.LintDER, der, fp, c.SPKISHA256,
		notAfter.Add(-48*time.Hour), notAfter, revokedAt, r)
	if err != nil {
		t.Fatalf("inserting certificate: %v", err)
	}
	return c.Serial
}

// buildRecord is what a build function was given.
type buildRecord struct {
	prev    *pki.CRL
	number  int64
	entries []pki.RevokedEntry
}

// stubBuild returns a build function that makes a stand-in CRL of the
// entries revoked from from, recording what it was given in rec.
func stubBuild(issuerID string, from time.Time, rec *buildRecord) func(*pki.CRL, int64, func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
	return func(prev *pki.CRL, number int64, revoked func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
		entries, err := revoked(from)
		if err != nil {
			return nil, pki.AuditEvent{}, err
		}
		if rec != nil {
			*rec = buildRecord{prev: prev, number: number, entries: entries}
		}
		now := time.Now().UTC().Truncate(time.Second)
		c := &pki.CRL{IssuerID: issuerID, Number: number, DER: randomBytes(64), ThisUpdate: now,
			NextUpdate: now.Add(24 * time.Hour), Entries: len(entries)}
		ev := pki.AuditEvent{Actor: "system", Action: "crl.signed", Outcome: pki.OutcomeSuccess,
			Detail: map[string]any{"issuer": issuerID, "number": number, "entries": len(entries)}}
		return c, ev, nil
	}
}

func TestGenerateCRL(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t)
	f := newFixture(t, db)
	ctx := context.Background()
	issuer := f.issuer.ID

	if _, err := db.LatestCRL(ctx, issuer); !errors.Is(err, pki.ErrNotFound) {
		t.Fatalf("LatestCRL before any = %v, want ErrNotFound", err)
	}
	var first, second buildRecord
	if err := db.GenerateCRL(ctx, issuer, 0, stubBuild(issuer, time.Time{}, &first)); err != nil {
		t.Fatal(err)
	}
	if first.prev != nil || first.number <= 0 {
		t.Fatalf("first generation: prev %v, number %d", first.prev, first.number)
	}
	if err := db.GenerateCRL(ctx, issuer, 0, stubBuild(issuer, time.Time{}, &second)); err != nil {
		t.Fatal(err)
	}
	if second.prev == nil || second.prev.Number != first.number || second.prev.DER != nil || second.number <= first.number {
		t.Fatalf("second generation: prev %+v, number %d after %d", second.prev, second.number, first.number)
	}
	latest, err := db.LatestCRL(ctx, issuer)
	if err != nil || latest.Number != second.number || len(latest.DER) != 64 {
		t.Fatalf("LatestCRL = %+v, %v", latest, err)
	}
	info, err := db.LatestCRLInfo(ctx, issuer)
	if err != nil || info.Number != second.number || info.DER != nil || !info.ThisUpdate.Equal(latest.ThisUpdate) {
		t.Fatalf("LatestCRLInfo = %+v, %v", info, err)
	}
	if n := count(t, db, "SELECT count(*) FROM audit_events WHERE action = 'crl.signed' AND detail->>'issuer' = $1", issuer); n != 2 {
		t.Fatalf("%d audit events, want 2", n)
	}
}

// TestGenerateCRLRevoked: revoked lists the issuer's revoked certificates,
// pending or issued, that expire at or after from, and nothing else.
func TestGenerateCRLRevoked(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t)
	f := newFixture(t, db)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	at := now.Add(-time.Hour)
	cutoff := now.Add(-24 * time.Hour)

	want := []pki.Serial{
		f.insertRevocable(t, f.issuer.ID, now.Add(time.Hour), &at, pki.ReasonKeyCompromise, false), // pending
		f.insertRevocable(t, f.issuer.ID, now.Add(time.Hour), &at, pki.ReasonUnspecified, true),    // issued
		f.insertRevocable(t, f.issuer.ID, cutoff, &at, pki.ReasonSuperseded, true),                 // expires exactly at from
	}
	f.insertRevocable(t, f.issuer.ID, cutoff.Add(-time.Second), &at, pki.ReasonSuperseded, true) // expired before from
	f.insertRevocable(t, f.issuer.ID, now.Add(time.Hour), nil, 0, true)                          // not revoked
	other := issuerRecord(pki.IssuerOCSP, f.issuer.ID)
	if err := db.InsertIssuers(ctx, []*pki.IssuerRecord{other}, event("ca.init")); err != nil {
		t.Fatal(err)
	}
	f.insertRevocable(t, other.ID, now.Add(time.Hour), &at, pki.ReasonKeyCompromise, true) // another issuer

	var rec buildRecord
	if err := db.GenerateCRL(ctx, f.issuer.ID, 0, stubBuild(f.issuer.ID, cutoff, &rec)); err != nil {
		t.Fatal(err)
	}
	var got []pki.Serial
	for _, e := range rec.entries {
		got = append(got, e.Serial)
		if !e.RevokedAt.Equal(at) {
			t.Errorf("%s revoked at %s, want %s", e.Serial, e.RevokedAt, at)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("revoked = %v, want %v", got, want)
	}
	if got, err := db.LatestRevocation(ctx, f.issuer.ID); err != nil || !got.Equal(at) {
		t.Fatalf("LatestRevocation = %v, %v", got, err)
	}
	if got, err := db.LatestRevocation(ctx, f.issuer.ParentID); err != nil || !got.IsZero() {
		t.Fatalf("LatestRevocation of an issuer without revocations = %v, %v", got, err)
	}
}

// TestGenerateCRLRefused: a failing or inconsistent build writes nothing.
func TestGenerateCRLRefused(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t)
	f := newFixture(t, db)
	ctx := context.Background()
	issuer := f.issuer.ID
	boom := errors.New("lint refused")
	tests := []struct {
		name  string
		build func(*pki.CRL, int64, func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error)
		want  error
	}{
		{"build fails", func(*pki.CRL, int64, func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
			return nil, pki.AuditEvent{}, boom
		}, boom},
		{"wrong number", func(prev *pki.CRL, n int64, r func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
			c, ev, err := stubBuild(issuer, time.Time{}, nil)(prev, n, r)
			c.Number++
			return c, ev, err
		}, nil},
		{"wrong issuer", func(prev *pki.CRL, n int64, r func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
			return stubBuild(f.issuer.ParentID, time.Time{}, nil)(prev, n, r)
		}, nil},
		{"no audit actor", func(prev *pki.CRL, n int64, r func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
			c, _, err := stubBuild(issuer, time.Time{}, nil)(prev, n, r)
			return c, pki.AuditEvent{}, err
		}, nil},
	}
	for _, tc := range tests {
		err := db.GenerateCRL(ctx, issuer, 0, tc.build)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM crls"); n != 0 {
		t.Fatalf("%d CRLs written", n)
	}
	if n := count(t, db, "SELECT count(*) FROM audit_events WHERE action = 'crl.signed'"); n != 0 {
		t.Fatalf("%d audit events written", n)
	}
}

// TestGenerateCRLKeep: all but the newest keep CRLs of the issuer go.
func TestGenerateCRLKeep(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t)
	f := newFixture(t, db)
	ctx := context.Background()
	var numbers []int64
	for range 5 {
		var rec buildRecord
		if err := db.GenerateCRL(ctx, f.issuer.ID, 2, stubBuild(f.issuer.ID, time.Time{}, &rec)); err != nil {
			t.Fatal(err)
		}
		numbers = append(numbers, rec.number)
	}
	rows, err := db.Pool().Query(ctx, "SELECT number FROM crls ORDER BY number")
	if err != nil {
		t.Fatal(err)
	}
	var kept []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, n)
	}
	if !slices.Equal(kept, numbers[3:]) {
		t.Fatalf("kept %v, want %v", kept, numbers[3:])
	}
}

// TestGenerateCRLSerialised: two nodes generating at once take turns: the
// second sees the first's CRL as prev and draws a higher number.
func TestGenerateCRLSerialised(t *testing.T) {
	t.Parallel()
	u := testdb.New(t)
	ctx := context.Background()
	open := func() *store.DB {
		db, err := store.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	nodes := []*store.DB{open(), open()}
	f := newFixture(t, nodes[0])
	issuer := f.issuer.ID

	var mu sync.Mutex
	var order []buildRecord
	inside := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for _, db := range nodes {
		wg.Go(func() {
			err := db.GenerateCRL(ctx, issuer, 0, func(prev *pki.CRL, n int64, r func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
				inside <- struct{}{}
				time.Sleep(200 * time.Millisecond) // the other node would overtake here without the lock
				mu.Lock()
				order = append(order, buildRecord{prev: prev, number: n})
				mu.Unlock()
				return stubBuild(issuer, time.Time{}, nil)(prev, n, r)
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(order) != 2 {
		t.Fatalf("%d generations", len(order))
	}
	if order[0].prev != nil || order[1].prev == nil || order[1].prev.Number != order[0].number || order[1].number <= order[0].number {
		t.Fatalf("generations overlapped: first prev %v number %d; second prev %v number %d",
			order[0].prev, order[0].number, order[1].prev, order[1].number)
	}
}

func TestInsertCRL(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t)
	f := newFixture(t, db)
	ctx := context.Background()
	root := f.issuer.ParentID
	now := time.Now().UTC().Truncate(time.Second)
	crl := func(issuer string, n int64) *pki.CRL {
		return &pki.CRL{IssuerID: issuer, Number: n, DER: randomBytes(32), ThisUpdate: now, NextUpdate: now.AddDate(1, 0, 0)}
	}
	n1, err := db.NextCRLNumber(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n2, err := db.NextCRLNumber(ctx)
	if err != nil || n2 <= n1 {
		t.Fatalf("NextCRLNumber = %d after %d (%v)", n2, n1, err)
	}
	if err := db.InsertCRL(ctx, crl(root, n2), event("crl.signed")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		crl  *pki.CRL
		want error
	}{
		{"same number", crl(root, n2), pki.ErrAlreadyExists},
		{"lower number", crl(root, n1), pki.ErrAlreadyExists},
		{"unknown issuer", crl("no-such-issuer", n2+1), pki.ErrNotFound},
	}
	for _, tc := range tests {
		if err := db.InsertCRL(ctx, tc.crl, event("crl.signed")); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	for name, c := range map[string]*pki.CRL{
		"no DER":         {IssuerID: root, Number: n2 + 1, ThisUpdate: now, NextUpdate: now.Add(time.Hour)},
		"number zero":    {IssuerID: root, DER: []byte{1}, ThisUpdate: now, NextUpdate: now.Add(time.Hour)},
		"nextUpdate old": {IssuerID: root, Number: n2 + 1, DER: []byte{1}, ThisUpdate: now, NextUpdate: now},
	} {
		if err := db.InsertCRL(ctx, c, event("crl.signed")); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	latest, err := db.LatestCRL(ctx, root)
	if err != nil || latest.Number != n2 {
		t.Fatalf("LatestCRL = %+v, %v", latest, err)
	}
	if n := count(t, db, "SELECT count(*) FROM audit_events WHERE action = 'crl.signed'"); n != 1 {
		t.Fatalf("%d audit events, want 1", n)
	}
}

// TestListenCRL: a committed CRL is announced with its issuer's id; one
// that is not committed is not.
func TestListenCRL(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t)
	f := newFixture(t, db)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	notes := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- db.ListenCRL(ctx, func() { close(ready) }, func(id string) { notes <- id })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	failed := errors.New("refused")
	_ = db.GenerateCRL(ctx, f.issuer.ID, 0, func(*pki.CRL, int64, func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
		return nil, pki.AuditEvent{}, failed
	})
	if err := db.GenerateCRL(ctx, f.issuer.ID, 0, stubBuild(f.issuer.ID, time.Time{}, nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-notes:
		if id != f.issuer.ID {
			t.Fatalf("notified %q, want %q", id, f.issuer.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
	}
	select {
	case id := <-notes:
		t.Fatalf("a second notification, %q", id)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ListenCRL returned %v after cancel", err)
	}
}

// TestCRLUnavailable: every CRL method reports a database that cannot be
// reached as ErrUnavailable.
func TestCRLUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := store.Open(ctx, closedPortURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	tests := []struct {
		name string
		call func() error
	}{
		{"LatestCRL", func() error { _, err := db.LatestCRL(ctx, "x"); return err }},
		{"LatestCRLInfo", func() error { _, err := db.LatestCRLInfo(ctx, "x"); return err }},
		{"LatestRevocation", func() error { _, err := db.LatestRevocation(ctx, "x"); return err }},
		{"NextCRLNumber", func() error { _, err := db.NextCRLNumber(ctx); return err }},
		{"InsertCRL", func() error {
			return db.InsertCRL(ctx, &pki.CRL{IssuerID: "x", Number: 1, DER: []byte{1}, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, event("crl.signed"))
		}},
		{"GenerateCRL", func() error { return db.GenerateCRL(ctx, "x", 0, stubBuild("x", time.Time{}, nil)) }},
		{"ListenCRL", func() error { return db.ListenCRL(ctx, func() {}, func(string) {}) }},
	}
	for _, tc := range tests {
		if err := tc.call(); !errors.Is(err, pki.ErrUnavailable) {
			t.Errorf("%s: err = %v, want ErrUnavailable", tc.name, err)
		}
	}
}

// TestCRLCompressedWithLZ4: a large CRL is TOASTed with lz4, which is
// several times faster than pglz for CRLs of millions of entries.
func TestCRLCompressedWithLZ4(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t)
	f := newFixture(t, db)
	ctx := context.Background()
	var lz4 bool
	if err := db.Pool().QueryRow(ctx, "SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'").Scan(&lz4); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i % 251)
	}
	err := db.GenerateCRL(ctx, f.issuer.ID, 0, func(prev *pki.CRL, n int64, r func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
		c, ev, err := stubBuild(f.issuer.ID, time.Time{}, nil)(prev, n, r)
		c.DER = big
		return c, ev, err
	})
	if err != nil {
		t.Fatal(err)
	}
	var method *string
	if err := db.Pool().QueryRow(ctx, "SELECT pg_column_compression(der) FROM crls").Scan(&method); err != nil {
		t.Fatal(err)
	}
	want := "pglz"
	if lz4 {
		want = "lz4"
	}
	if method == nil || *method != want {
		t.Fatalf("compression %v, want %s", method, want)
	}
	if got, err := db.LatestCRL(ctx, f.issuer.ID); err != nil || !bytes.Equal(got.DER, big) {
		t.Fatalf("LatestCRL: %v", err)
	}
}
