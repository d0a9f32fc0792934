package ocsp_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/ocsp"
	"github.com/pkid/pkid/internal/pki"
)

// stored reads serial's row as it is in the database.
func stored(t testing.TB, db *database, serial pki.Serial) *pki.OCSPResponse {
	t.Helper()
	r := &pki.OCSPResponse{Serial: serial}
	err := db.Pool().QueryRow(context.Background(), `SELECT issuer_id, der, this_update, next_update, updated_at
		FROM ocsp_responses WHERE serial = $1`, string(serial)).Scan(&r.IssuerID, &r.DER, &r.ThisUpdate, &r.NextUpdate, &r.UpdatedAt)
	if err != nil {
		t.Fatalf("reading the response of %s: %v", serial, err)
	}
	return r
}

func parse(t testing.TB, h *hierarchy, r *pki.OCSPResponse) *xocsp.Response {
	t.Helper()
	resp, err := xocsp.ParseResponse(r.DER, h.inter.Cert)
	if err != nil {
		t.Fatalf("stored response of %s: %v", r.Serial, err)
	}
	if pki.SerialFromBig(resp.SerialNumber) != r.Serial || !resp.ThisUpdate.Equal(r.ThisUpdate) || !resp.NextUpdate.Equal(r.NextUpdate) {
		t.Errorf("the row of %s does not describe its DER", r.Serial)
	}
	return resp
}

func TestResignDue(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := newDatabase(t, h)
	now := time.Now()
	later := now.Add(30 * 24 * time.Hour)
	old := status{thisUpdate: now.Add(-20 * time.Hour).Truncate(time.Minute)} // 4h left of 24h: due
	mk := func(notAfter time.Time, st status) pki.Serial {
		s := pki.MustNewSerial()
		db.certificate(t, h, s, notAfter, h.response(t, s, st))
		return s
	}
	due := mk(later, old)
	fresh := mk(later, status{})
	stale := mk(later, status{thisUpdate: now.Add(-30 * time.Hour).Truncate(time.Minute)}) // expired already: due all the more
	revokedAt := now.Add(-time.Hour).Truncate(time.Second)
	revoked := mk(later, old)
	db.revoke(t, revoked, revokedAt, pki.ReasonKeyCompromise) // the row says revoked; the response still good
	expiredCert := mk(now.Add(-time.Hour), old)               // certificate expired, response still valid
	gone := mk(now.Add(-48*time.Hour), status{thisUpdate: now.Add(-40 * time.Hour).Truncate(time.Minute)})

	before := map[pki.Serial]*pki.OCSPResponse{}
	for _, s := range []pki.Serial{due, fresh, stale, revoked, expiredCert} {
		before[s] = stored(t, db, s)
	}
	cache := ocsp.NewCache(db, ocsp.CacheOptions{})
	r, err := ocsp.NewResigner(db, cache, h.issuers, h.current, ocsp.ResignerOptions{BatchSize: 2, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.ResignDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("re-signed %d responses, want 3 (due, stale, revoked)", n)
	}
	for _, s := range []pki.Serial{due, stale, revoked} {
		after := stored(t, db, s)
		if !after.UpdatedAt.After(before[s].UpdatedAt) {
			t.Errorf("%s was not re-signed", s)
			continue
		}
		resp := parse(t, h, after)
		wantThis, wantNext := issuance.OCSPWindow(now, 24*time.Hour)
		if !after.ThisUpdate.Equal(wantThis) || !after.NextUpdate.Equal(wantNext) {
			t.Errorf("%s re-signed for %s..%s, want %s..%s", s, after.ThisUpdate, after.NextUpdate, wantThis, wantNext)
		}
		if s == revoked {
			if resp.Status != xocsp.Revoked || !resp.RevokedAt.Equal(revokedAt) || resp.RevocationReason != xocsp.KeyCompromise {
				t.Errorf("re-signed %s states %d at %s for %d, want the certificate's revocation", s, resp.Status, resp.RevokedAt, resp.RevocationReason)
			}
		} else if resp.Status != xocsp.Good {
			t.Errorf("re-signed %s states %d, want good", s, resp.Status)
		}
		if got, err := cache.Lookup(context.Background(), s); err != nil || string(got.DER) != string(after.DER) {
			t.Errorf("the re-signed response of %s is not in this node's cache (%v)", s, err)
		}
	}
	for _, s := range []pki.Serial{fresh, expiredCert} {
		if after := stored(t, db, s); !after.UpdatedAt.Equal(before[s].UpdatedAt) {
			t.Errorf("%s was re-signed; it was not due or its certificate has expired", s)
		}
	}
	var left int
	if err := db.Pool().QueryRow(context.Background(), "SELECT count(*) FROM ocsp_responses WHERE serial = $1", string(gone)).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Error("the response of a certificate that expired with its response was kept")
	}
	if n, err := r.ResignDue(context.Background()); err != nil || n != 0 {
		t.Errorf("second pass re-signed %d (%v), want 0", n, err)
	}
}

// TestResignNeverOverwritesNewer: a revocation racing a re-signing batch
// wins whichever commits first.
func TestResignNeverOverwritesNewer(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := newDatabase(t, h)
	ctx := context.Background()
	now := time.Now()
	old := status{thisUpdate: now.Add(-20 * time.Hour).Truncate(time.Minute)}

	t.Run("revocation commits during the batch", func(t *testing.T) {
		s := pki.MustNewSerial()
		db.certificate(t, h, s, now.Add(24*time.Hour), h.response(t, s, old))
		revoked := h.response(t, s, status{revokedAt: now, reason: pki.ReasonKeyCompromise})
		var wg sync.WaitGroup
		var putErr error
		_, _, err := db.ResignOCSP(ctx, now.Add(12*time.Hour), now, []string{h.inter.ID}, 10,
			func(c *pki.Certificate, o *pki.OCSPResponse) (*pki.OCSPResponse, error) {
				// The revoking statement starts now and waits for the
				// batch's lock on the row.
				wg.Add(1)
				go func() { defer wg.Done(); putErr = db.PutOCSPResponse(ctx, revoked) }()
				time.Sleep(100 * time.Millisecond)
				r := h.response(t, c.Serial, status{})
				return r, nil
			})
		if err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if putErr != nil {
			t.Fatal(putErr)
		}
		if got := stored(t, db, s); string(got.DER) != string(revoked.DER) {
			t.Fatal("the re-signed good response overwrote the revocation")
		}
	})

	t.Run("revocation holds the row", func(t *testing.T) {
		s := pki.MustNewSerial()
		db.certificate(t, h, s, now.Add(24*time.Hour), h.response(t, s, old))
		tx, err := db.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "UPDATE ocsp_responses SET updated_at = clock_timestamp() WHERE serial = $1", string(s)); err != nil {
			t.Fatal(err)
		}
		written, selected, err := db.ResignOCSP(ctx, now.Add(12*time.Hour), now, []string{h.inter.ID}, 10,
			func(c *pki.Certificate, _ *pki.OCSPResponse) (*pki.OCSPResponse, error) {
				if c.Serial == s {
					t.Error("the batch was handed a row that another transaction holds")
				}
				return nil, nil
			})
		if err != nil || len(written) != 0 {
			t.Fatalf("ResignOCSP = %d written, %d selected, %v", len(written), selected, err)
		}
	})
}

// TestResignersShareTheWork: two nodes re-signing at once re-sign every
// due response exactly once.
func TestResignersShareTheWork(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := newDatabase(t, h)
	now := time.Now()
	const n = 120
	for range n {
		s := pki.MustNewSerial()
		db.certificate(t, h, s, now.Add(24*time.Hour), h.response(t, s, status{thisUpdate: now.Add(-20 * time.Hour).Truncate(time.Minute)}))
	}
	counts := make([]int, 2)
	var wg sync.WaitGroup
	for i := range counts {
		r, err := ocsp.NewResigner(db, nil, h.issuers, h.current, ocsp.ResignerOptions{BatchSize: 10, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			counts[i], err = r.ResignDue(context.Background())
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if counts[0]+counts[1] != n {
		t.Errorf("nodes re-signed %v, want %d in all", counts, n)
	}
	var left int
	if err := db.Pool().QueryRow(context.Background(), "SELECT count(*) FROM ocsp_responses WHERE next_update < $1",
		now.Add(12*time.Hour)).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d responses still due", left)
	}
}

func TestResignerRefusals(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := newDatabase(t, h)
	for _, o := range []ocsp.ResignerOptions{
		{Validity: 11 * 24 * time.Hour},
		{Validity: time.Second},
		{BatchSize: 100000},
	} {
		if _, err := ocsp.NewResigner(db, nil, h.issuers, h.current, o); err == nil {
			t.Errorf("NewResigner(%+v) accepted", o)
		}
	}
	// A responder that the issuer did not certify cannot re-sign for it.
	r, err := ocsp.NewResigner(db, nil, h.issuers, func(string) *issuance.Issuer { return h.otherSigner }, ocsp.ResignerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ResignDue(context.Background()); !errors.Is(err, ocsp.ErrNoResponder) {
		t.Errorf("ResignDue with a foreign responder = %v, want ErrNoResponder", err)
	}
}
