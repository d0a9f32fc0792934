package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// withResponse issues a certificate expiring at notAfter and gives it a
// response valid from this to next.
func (f *fixture) withResponse(t testing.TB, notAfter, this, next time.Time) *pki.OCSPResponse {
	t.Helper()
	c := f.pending(f.account.ID, nil)
	c.NotBefore, c.NotAfter = notAfter.Add(-90*24*time.Hour), notAfter
	f.issue(t, c)
	r := &pki.OCSPResponse{Serial: c.Serial, IssuerID: c.IssuerID, DER: randomBytes(300), ThisUpdate: this, NextUpdate: next}
	if err := f.db.PutOCSPResponse(context.Background(), r); err != nil {
		t.Fatalf("PutOCSPResponse: %v", err)
	}
	return r
}

func TestOCSPResponse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	now := time.Now().UTC().Truncate(time.Microsecond)
	day := 24 * time.Hour
	tests := []struct {
		name       string
		notAfter   time.Time
		this, next time.Time
		want       error
	}{
		{"fresh, certificate valid", now.Add(30 * day), now.Add(-time.Hour), now.Add(day), nil},
		{"stale, certificate valid: returned, for the caller to refuse", now.Add(30 * day), now.Add(-3 * day), now.Add(-2 * day), nil},
		{"fresh, certificate expired", now.Add(-time.Hour), now.Add(-2 * time.Hour), now.Add(day), nil},
		{"stale, certificate expired: forgotten", now.Add(-time.Hour), now.Add(-3 * day), now.Add(-2 * day), pki.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.withResponse(t, tt.notAfter, tt.this, tt.next)
			got, err := f.db.OCSPResponse(ctx, r.Serial, now)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("OCSPResponse = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Serial != r.Serial || got.IssuerID != r.IssuerID || string(got.DER) != string(r.DER) ||
				!got.ThisUpdate.Equal(r.ThisUpdate) || !got.NextUpdate.Equal(r.NextUpdate) || !got.UpdatedAt.Equal(r.UpdatedAt) {
				t.Errorf("OCSPResponse = %+v, stored %+v", got, r)
			}
		})
	}
	if _, err := f.db.OCSPResponse(ctx, pki.MustNewSerial(), now); !errors.Is(err, pki.ErrNotFound) {
		t.Errorf("unknown serial: %v, want ErrNotFound", err)
	}
}

func TestPutOCSPResponse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	now := time.Now().UTC()
	r := f.withResponse(t, now.Add(time.Hour), now, now.Add(time.Hour))
	first := r.UpdatedAt
	r.DER = randomBytes(100)
	if err := f.db.PutOCSPResponse(ctx, r); err != nil {
		t.Fatal(err)
	}
	if !r.UpdatedAt.After(first) {
		t.Errorf("UpdatedAt %s after a replacement, was %s", r.UpdatedAt, first)
	}
	if got, _ := f.db.OCSPResponse(ctx, r.Serial, now); got == nil || string(got.DER) != string(r.DER) {
		t.Error("the replacement was not stored")
	}
	for name, bad := range map[string]*pki.OCSPResponse{
		"unknown certificate": {Serial: pki.MustNewSerial(), IssuerID: f.issuer.ID, DER: []byte{1}, ThisUpdate: now, NextUpdate: now.Add(time.Hour)},
		"unknown issuer":      {Serial: r.Serial, IssuerID: "00", DER: []byte{1}, ThisUpdate: now, NextUpdate: now.Add(time.Hour)},
	} {
		if err := f.db.PutOCSPResponse(ctx, bad); !errors.Is(err, pki.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if err := f.db.PutOCSPResponse(ctx, &pki.OCSPResponse{Serial: r.Serial, IssuerID: f.issuer.ID, DER: []byte{1}, ThisUpdate: now, NextUpdate: now}); err == nil {
		t.Error("an empty validity interval was stored")
	}
}

func TestEachOCSPResponse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	now := time.Now().UTC()
	var want []pki.Serial
	for range 5 {
		want = append(want, f.withResponse(t, now.Add(time.Hour), now.Add(-time.Hour), now.Add(time.Hour)).Serial)
	}
	f.withResponse(t, now.Add(time.Hour), now.Add(-2*time.Hour), now.Add(-time.Minute)) // expired
	var got []pki.Serial
	if err := f.db.EachOCSPResponse(ctx, now, func(r *pki.OCSPResponse) error {
		got = append(got, r.Serial)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("EachOCSPResponse gave %v, want the unexpired %v", got, want)
	}
	stop := errors.New("stop")
	calls := 0
	err := f.db.EachOCSPResponse(ctx, now, func(*pki.OCSPResponse) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("EachOCSPResponse = %v after %d calls, want fn's error after 1", err, calls)
	}
}

// TestOCSPResponsesSince pages through rows stamped alike without skipping
// or repeating any.
func TestOCSPResponsesSince(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	now := time.Now().UTC()
	var all []pki.Serial
	for range 7 {
		all = append(all, f.withResponse(t, now.Add(time.Hour), now, now.Add(time.Hour)).Serial)
	}
	// Five rows share one stamp, two are later.
	stamp := now.Add(time.Minute).Truncate(time.Microsecond)
	if _, err := f.db.Pool().Exec(ctx, "UPDATE ocsp_responses SET updated_at = $2 WHERE serial = ANY($1)", all[:5], stamp); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Pool().Exec(ctx, "UPDATE ocsp_responses SET updated_at = $2 WHERE serial = ANY($1)", all[5:], stamp.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 2, 3, 7, 100} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []pki.Serial
			since, after := stamp.Add(-time.Second), pki.Serial("")
			for {
				page, err := f.db.OCSPResponsesSince(ctx, since, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range page {
					got = append(got, r.Serial)
				}
				if len(page) < limit {
					break
				}
				since, after = page[len(page)-1].UpdatedAt, page[len(page)-1].Serial
			}
			want := slices.Clone(all[:5])
			slices.Sort(want)
			tail := slices.Clone(all[5:])
			slices.Sort(tail)
			want = append(want, tail...)
			if !slices.Equal(got, want) {
				t.Errorf("pages gave %v, want %v", got, want)
			}
		})
	}
	page, err := f.db.OCSPResponsesSince(ctx, stamp.Add(time.Hour), "", 10)
	if err != nil || len(page) != 0 {
		t.Errorf("nothing written since: %d rows, %v", len(page), err)
	}
}

func TestResignOCSP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	now := time.Now().UTC()
	due := now.Add(12 * time.Hour)
	old := f.withResponse(t, now.Add(30*24*time.Hour), now.Add(-20*time.Hour), now.Add(4*time.Hour))
	older := f.withResponse(t, now.Add(30*24*time.Hour), now.Add(-22*time.Hour), now.Add(2*time.Hour))
	f.withResponse(t, now.Add(30*24*time.Hour), now, now.Add(24*time.Hour))              // not due
	f.withResponse(t, now.Add(-time.Minute), now.Add(-20*time.Hour), now.Add(time.Hour)) // certificate expired
	revokedAt := now.Add(-time.Hour).Truncate(time.Second)
	if _, err := f.db.Pool().Exec(ctx, "UPDATE certificates SET revoked_at = $2, revocation_reason = 1 WHERE serial = $1",
		string(old.Serial), revokedAt); err != nil {
		t.Fatal(err)
	}

	t.Run("another issuer's responses are not selected", func(t *testing.T) {
		_, selected, err := f.db.ResignOCSP(ctx, due, now, []string{"00"}, 10, func(*pki.Certificate, *pki.OCSPResponse) (*pki.OCSPResponse, error) {
			t.Error("sign called")
			return nil, nil
		})
		if err != nil || selected != 0 {
			t.Errorf("selected %d, %v", selected, err)
		}
	})
	t.Run("an error from sign writes nothing", func(t *testing.T) {
		boom := errors.New("HSM down")
		_, _, err := f.db.ResignOCSP(ctx, due, now, []string{f.issuer.ID}, 10, func(c *pki.Certificate, o *pki.OCSPResponse) (*pki.OCSPResponse, error) {
			return &pki.OCSPResponse{Serial: c.Serial, IssuerID: o.IssuerID, DER: []byte{1}, ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour)}, boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("ResignOCSP = %v, want the signing error", err)
		}
		if got, _ := f.db.OCSPResponse(ctx, old.Serial, now); got == nil || !got.UpdatedAt.Equal(old.UpdatedAt) {
			t.Error("a batch whose signing failed changed a row")
		}
	})
	t.Run("due rows, oldest first, with the certificate's status", func(t *testing.T) {
		var seen []pki.Serial
		written, selected, err := f.db.ResignOCSP(ctx, due, now, []string{f.issuer.ID}, 1, func(c *pki.Certificate, o *pki.OCSPResponse) (*pki.OCSPResponse, error) {
			seen = append(seen, c.Serial)
			return &pki.OCSPResponse{Serial: c.Serial, IssuerID: o.IssuerID, DER: []byte("new"), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour)}, nil
		})
		if err != nil || selected != 1 || len(written) != 1 || !slices.Equal(seen, []pki.Serial{older.Serial}) {
			t.Fatalf("limit 1: selected %d, written %d, saw %v, %v; want the oldest, %s", selected, len(written), seen, err, older.Serial)
		}
		if !written[0].UpdatedAt.After(older.UpdatedAt) {
			t.Error("UpdatedAt of the written response not set")
		}
		var certs []*pki.Certificate
		written, selected, err = f.db.ResignOCSP(ctx, due, now, []string{f.issuer.ID}, 10, func(c *pki.Certificate, o *pki.OCSPResponse) (*pki.OCSPResponse, error) {
			certs = append(certs, c)
			if o.Serial != c.Serial || !o.UpdatedAt.Equal(old.UpdatedAt) {
				t.Errorf("stored response %+v for %s", o, c.Serial)
			}
			return nil, nil
		})
		if err != nil || selected != 1 || len(written) != 0 {
			t.Fatalf("selected %d, written %d, %v", selected, len(written), err)
		}
		c := certs[0]
		if c.Serial != old.Serial || c.RevokedAt == nil || !c.RevokedAt.Equal(revokedAt) ||
			c.RevocationReason == nil || *c.RevocationReason != pki.ReasonKeyCompromise || c.NotAfter.IsZero() {
			t.Errorf("certificate as sign saw it: %+v", c)
		}
	})
}

func TestPurgeOCSP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	now := time.Now().UTC()
	gone := f.withResponse(t, now.Add(-time.Hour), now.Add(-3*time.Hour), now.Add(-2*time.Hour))
	keep := []*pki.OCSPResponse{
		f.withResponse(t, now.Add(-time.Hour), now.Add(-3*time.Hour), now.Add(time.Hour)),   // still valid
		f.withResponse(t, now.Add(time.Hour), now.Add(-3*time.Hour), now.Add(-2*time.Hour)), // certificate valid: re-sign it
		f.withResponse(t, now.Add(time.Hour), now.Add(-time.Hour), now.Add(time.Hour)),
	}
	n, err := f.db.PurgeOCSP(ctx, now, 10)
	if err != nil || n != 1 {
		t.Fatalf("PurgeOCSP = %d, %v; want 1", n, err)
	}
	if count(t, f.db, "SELECT count(*) FROM ocsp_responses WHERE serial = $1", string(gone.Serial)) != 0 {
		t.Error("the expired response of an expired certificate is still there")
	}
	for _, r := range keep {
		if count(t, f.db, "SELECT count(*) FROM ocsp_responses WHERE serial = $1", string(r.Serial)) != 1 {
			t.Errorf("%s was purged", r.Serial)
		}
	}
}

func TestListenOCSP(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testdb.Open(t))
	now := time.Now().UTC()
	r := f.withResponse(t, now.Add(time.Hour), now, now.Add(time.Hour))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listening := make(chan struct{})
	got := make(chan pki.Serial, 10)
	done := make(chan error, 1)
	go func() {
		done <- f.db.ListenOCSP(ctx, func() { close(listening) }, func(s pki.Serial) { got <- s })
	}()
	select {
	case <-listening:
	case err := <-done:
		t.Fatalf("ListenOCSP: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("not listening after 5s")
	}
	// The listening session is named apart from the pool's.
	var app string
	if err := f.db.Pool().QueryRow(ctx, `SELECT application_name FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+store.OCSPChannel+`'`).Scan(&app); err != nil || app != "pkid"+store.ListenSuffix {
		t.Errorf("the LISTEN session's application_name: %q %v, want %q", app, err, "pkid"+store.ListenSuffix)
	}
	if err := f.db.PutOCSPResponse(ctx, r); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != r.Serial {
			t.Errorf("notified %q, want %q", s, r.Serial)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
	}

	// The listening session dies: ListenOCSP says the database is gone.
	if _, err := f.db.Pool().Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+store.OCSPChannel+`'`); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, pki.ErrUnavailable) {
			t.Errorf("after the session was killed: %v, want ErrUnavailable", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ListenOCSP did not notice that its session was killed")
	}

	// It returns when its context ends.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() {
		done <- f.db.ListenOCSP(ctx2, cancel2, func(pki.Serial) {})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenOCSP did not return when its context ended")
	}
}

func TestListenOCSPDatabaseDown(t *testing.T) {
	t.Parallel()
	db, err := store.Open(context.Background(), "postgres://postgres@127.0.0.1:1/pkid?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.ListenOCSP(context.Background(), func() { t.Error("listening") }, func(pki.Serial) {})
	if !errors.Is(err, pki.ErrUnavailable) {
		t.Errorf("ListenOCSP = %v, want ErrUnavailable", err)
	}
}

// TestFirstOCSPResponse: a certificate without a stored response gets the
// one sign makes from its row, stored; a response stored meanwhile (another
// node's, a revocation's) wins over it; a certificate that is unknown or
// expired gets none.
func TestFirstOCSPResponse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	now := time.Now().UTC().Truncate(time.Microsecond)
	signed := 0
	// signWith returns a sign function that runs during, before it signs,
	// as a concurrent writer would.
	signWith := func(during func(c *pki.Certificate)) func(c *pki.Certificate) (*pki.OCSPResponse, error) {
		return func(c *pki.Certificate) (*pki.OCSPResponse, error) {
			signed++
			if during != nil {
				during(c)
			}
			r := standInResponse(c)
			if c.RevokedAt != nil {
				r.DER = []byte("revoked " + c.Serial)
			}
			return r, nil
		}
	}
	stored := func(t *testing.T, serial pki.Serial) *pki.OCSPResponse {
		t.Helper()
		r, err := f.db.OCSPResponse(ctx, serial, now)
		if err != nil {
			t.Fatalf("stored response: %v", err)
		}
		return r
	}

	t.Run("pending, then issued: signed once, stored, served alike", func(t *testing.T) {
		c := f.pending(f.account.ID, nil)
		if err := createPending(ctx, f, c, event("certificate.signing")); err != nil {
			t.Fatal(err)
		}
		got, err := f.db.FirstOCSPResponse(ctx, c.Serial, now, signWith(nil))
		if err != nil {
			t.Fatal(err)
		}
		if got.Serial != c.Serial || got.IssuerID != c.IssuerID || got.UpdatedAt.IsZero() {
			t.Errorf("FirstOCSPResponse = %+v", got)
		}
		if s := stored(t, c.Serial); string(s.DER) != string(got.DER) || !s.UpdatedAt.Equal(got.UpdatedAt) {
			t.Errorf("stored %+v, returned %+v", s, got)
		}
	})
	t.Run("revoked with a response: the revocation's is returned", func(t *testing.T) {
		c := f.issue(t, f.pending(f.account.ID, nil))
		rev := standInResponse(c)
		if _, err := f.db.Revoke(ctx, []*pki.Revocation{{Serial: c.Serial, RevokedAt: now, Reason: pki.ReasonKeyCompromise,
			Response: rev, Event: event("certificate.revoked")}}, nil); err != nil {
			t.Fatal(err)
		}
		got, err := f.db.FirstOCSPResponse(ctx, c.Serial, now, signWith(nil))
		if err != nil || string(got.DER) != string(rev.DER) {
			t.Errorf("FirstOCSPResponse = %+v, %v; want the revocation's response", got, err)
		}
	})
	t.Run("revoked while signing: the revocation's response wins", func(t *testing.T) {
		c := f.issue(t, f.pending(f.account.ID, nil))
		rev := standInResponse(c)
		got, err := f.db.FirstOCSPResponse(ctx, c.Serial, now, signWith(func(c *pki.Certificate) {
			if c.RevokedAt != nil {
				t.Fatal("read as revoked before the revocation")
			}
			if _, err := f.db.Revoke(ctx, []*pki.Revocation{{Serial: c.Serial, RevokedAt: now, Reason: pki.ReasonKeyCompromise,
				Response: rev, Event: event("certificate.revoked")}}, nil); err != nil {
				t.Fatal(err)
			}
		}))
		if err != nil || string(got.DER) != string(rev.DER) {
			t.Errorf("FirstOCSPResponse = %+v, %v; want the revocation's response", got, err)
		}
		if s := stored(t, c.Serial); string(s.DER) != string(rev.DER) {
			t.Errorf("stored %x, want the revocation's", s.DER)
		}
	})
	t.Run("revocation state changed while signing, no response stored: nothing stored", func(t *testing.T) {
		c := f.issue(t, f.pending(f.account.ID, nil))
		_, err := f.db.FirstOCSPResponse(ctx, c.Serial, now, signWith(func(c *pki.Certificate) {
			if _, err := f.db.Pool().Exec(ctx, "UPDATE certificates SET revoked_at = $2, revocation_reason = 1 WHERE serial = $1",
				string(c.Serial), now); err != nil {
				t.Fatal(err)
			}
		}))
		if !errors.Is(err, pki.ErrNotFound) {
			t.Errorf("FirstOCSPResponse = %v, want ErrNotFound (a good response signed before the revocation must not be stored)", err)
		}
		if n := count(t, f.db, "SELECT count(*) FROM ocsp_responses WHERE serial = $1", string(c.Serial)); n != 0 {
			t.Errorf("%d responses stored", n)
		}
	})
	t.Run("unknown or expired: not found, nothing signed", func(t *testing.T) {
		expired := f.pending(f.account.ID, nil)
		expired.NotBefore, expired.NotAfter = now.Add(-48*time.Hour), now.Add(-time.Hour)
		f.issue(t, expired)
		before := signed
		for _, serial := range []pki.Serial{pki.MustNewSerial(), expired.Serial} {
			if _, err := f.db.FirstOCSPResponse(ctx, serial, now, signWith(nil)); !errors.Is(err, pki.ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", serial, err)
			}
		}
		if signed != before {
			t.Errorf("%d signatures made", signed-before)
		}
	})
	t.Run("a signer's error is returned", func(t *testing.T) {
		c := f.issue(t, f.pending(f.account.ID, nil))
		boom := errors.New("boom")
		if _, err := f.db.FirstOCSPResponse(ctx, c.Serial, now, func(*pki.Certificate) (*pki.OCSPResponse, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Errorf("FirstOCSPResponse = %v, want boom", err)
		}
	})
}
