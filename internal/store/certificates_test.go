package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/testdb"
)

func TestCreatePending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	other := f.newAccount(t, "Other")

	existing := f.issue(t, f.pending(f.account.ID, nil))
	blockedKey := f.blockedKey(t)

	tests := []struct {
		name string
		cert func() *pki.Certificate
		want error // nil: success
	}{
		{"new key", func() *pki.Certificate { return f.pending(f.account.ID, nil) }, nil},
		{"same key, same account (renewal)", func() *pki.Certificate { return f.pending(f.account.ID, existing.SPKISHA256) }, nil},
		{"same key, another account", func() *pki.Certificate { return f.pending(other.ID, existing.SPKISHA256) }, pki.ErrKeyInUse},
		{"blocked key", func() *pki.Certificate { return f.pending(f.account.ID, blockedKey) }, pki.ErrKeyBlocked},
		{"duplicate serial", func() *pki.Certificate {
			c := f.pending(f.account.ID, nil)
			c.Serial = existing.Serial
			return c
		}, pki.ErrSerialCollision},
		{"unknown account", func() *pki.Certificate { return f.pending(newUUID(), nil) }, pki.ErrNotFound},
		{"account id not a uuid", func() *pki.Certificate { return f.pending("acme", nil) }, pki.ErrNotFound},
		{"unknown issuer", func() *pki.Certificate {
			c := f.pending(f.account.ID, nil)
			c.IssuerID = "00"
			return c
		}, pki.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cert()
			before := count(t, f.db, "SELECT count(*) FROM audit_events")
			err := f.db.CreatePending(ctx, c, event("certificate.signing"))
			after := count(t, f.db, "SELECT count(*) FROM audit_events")
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CreatePending: %v", err)
				}
				got, err := f.db.Certificate(ctx, c.Serial)
				if err != nil {
					t.Fatalf("Certificate: %v", err)
				}
				if got.State != pki.StatePending || got.DER != nil || string(got.LintDER) != string(c.LintDER) || got.CreatedAt.IsZero() {
					t.Errorf("stored row = %+v, want pending with the lint DER", got)
				}
				if after != before+1 {
					t.Errorf("audit events %d → %d, want one more", before, after)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreatePending = %v, want %v", err, tt.want)
			}
			if after != before {
				t.Errorf("a refused CreatePending wrote %d audit events", after-before)
			}
			if tt.want != pki.ErrSerialCollision {
				if _, err := f.db.Certificate(ctx, c.Serial); !errors.Is(err, pki.ErrNotFound) {
					t.Errorf("refused certificate stored (Certificate = %v)", err)
				}
			}
		})
	}
}

// TestCreatePendingRace claims one key from two accounts at once, many times:
// exactly one account may end up holding it.
func TestCreatePendingRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	accounts := []*pki.Account{f.account, f.newAccount(t, "Rival")}
	for round := range 20 {
		key := randomBytes(32)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				errs[i] = createPending(ctx, f, f.pending(accounts[i%2].ID, key), event("certificate.signing"))
			})
		}
		wg.Wait()
		owners := count(t, f.db, "SELECT count(DISTINCT account_id) FROM certificates WHERE spki_sha256 = $1", key)
		if owners != 1 {
			t.Fatalf("round %d: key held by %d accounts (errors %v)", round, owners, errs)
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, pki.ErrKeyInUse) {
				t.Fatalf("round %d: CreatePending = %v", round, err)
			}
		}
	}
}

func TestMarkIssued(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	c := f.pending(f.account.ID, nil)
	if err := f.db.CreatePending(ctx, c, event("certificate.signing")); err != nil {
		t.Fatal(err)
	}
	der := randomBytes(400)
	fp := sha256.Sum256(der)

	tests := []struct {
		name     string
		serial   pki.Serial
		wantErr  bool
		notFound bool
	}{
		{"pending", c.Serial, false, false},
		{"issued already", c.Serial, true, false},
		{"unknown serial", pki.MustNewSerial(), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := count(t, f.db, "SELECT count(*) FROM audit_events")
			err := f.db.MarkIssued(ctx, tt.serial, der, fp[:], event("certificate.issued"))
			after := count(t, f.db, "SELECT count(*) FROM audit_events")
			if (err != nil) != tt.wantErr || errors.Is(err, pki.ErrNotFound) != tt.notFound {
				t.Fatalf("MarkIssued = %v, want error %v (not found %v)", err, tt.wantErr, tt.notFound)
			}
			if wantAfter := before + map[bool]int{false: 1, true: 0}[tt.wantErr]; after != wantAfter {
				t.Errorf("audit events %d → %d, want %d", before, after, wantAfter)
			}
		})
	}
	got, err := f.db.Certificate(ctx, c.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != pki.StateIssued || string(got.DER) != string(der) || string(got.FingerprintSHA256) != string(fp[:]) {
		t.Errorf("after MarkIssued: %+v", got)
	}
	if got.AccountID != f.account.ID || got.IssuerID != f.issuer.ID || got.SubjectCN != c.SubjectCN ||
		!got.NotAfter.Equal(c.NotAfter) || !got.NotBefore.Equal(c.NotBefore) || got.RevokedAt != nil {
		t.Errorf("Certificate = %+v, want the fields written by CreatePending %+v", got, c)
	}
}

func TestCertificateRenewedFromAndRevocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	first := f.issue(t, f.pending(f.account.ID, nil))
	second := f.pending(f.account.ID, first.SPKISHA256)
	second.RenewedFrom = &first.Serial
	f.issue(t, second)
	if _, err := f.db.Pool().Exec(ctx, "UPDATE certificates SET revoked_at = now(), revocation_reason = 1 WHERE serial = $1", string(first.Serial)); err != nil {
		t.Fatal(err)
	}
	got, err := f.db.Certificate(ctx, second.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.RenewedFrom == nil || *got.RenewedFrom != first.Serial {
		t.Errorf("RenewedFrom = %v, want %s", got.RenewedFrom, first.Serial)
	}
	got, err = f.db.Certificate(ctx, first.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.RevokedAt == nil || got.RevocationReason == nil || *got.RevocationReason != pki.ReasonKeyCompromise {
		t.Errorf("revocation = %v %v, want keyCompromise", got.RevokedAt, got.RevocationReason)
	}
}

func TestCertificates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, testdb.Open(t))
	other := f.newAccount(t, "Other")
	now := time.Now().UTC().Truncate(time.Second)
	base := now.Add(-time.Hour)

	// Seven certificates of the account; three share a creation time so that
	// the serial must break the tie. Two are revoked, one expired.
	var mine []*pki.Certificate
	for i := range 7 {
		c := f.pending(f.account.ID, nil)
		c.CreatedAt = base.Add(time.Duration(min(i, 4)) * time.Minute)
		mine = append(mine, f.issue(t, c))
	}
	setRow := func(c *pki.Certificate, set string) {
		if _, err := f.db.Pool().Exec(ctx, "UPDATE certificates SET "+set+" WHERE serial = $1", string(c.Serial)); err != nil {
			t.Fatal(err)
		}
	}
	setRow(mine[1], "revoked_at = now(), revocation_reason = 0")
	setRow(mine[5], "revoked_at = now(), revocation_reason = 4, not_after = now() - interval '1 minute', not_before = now() - interval '2 days'")
	setRow(mine[2], "not_after = now() - interval '1 minute', not_before = now() - interval '2 days'")
	f.issue(t, f.pending(other.ID, nil))
	// Pending rows are never listed.
	if err := createPending(ctx, f, f.pending(f.account.ID, nil), event("certificate.signing")); err != nil {
		t.Fatal(err)
	}

	// Expected order: created_at DESC, serial DESC.
	order := func(cs []*pki.Certificate) []pki.Serial {
		out := make([]pki.Serial, 0, len(cs))
		for _, c := range cs {
			out = append(out, c.Serial)
		}
		return out
	}
	sorted := append([]*pki.Certificate(nil), mine...)
	for i := range sorted {
		for j := i + 1; j < len(sorted); j++ {
			a, b := sorted[i], sorted[j]
			if b.CreatedAt.After(a.CreatedAt) || b.CreatedAt.Equal(a.CreatedAt) && b.Serial > a.Serial {
				sorted[i], sorted[j] = b, a
			}
		}
	}
	pick := func(keep func(i int) bool) []pki.Serial {
		var out []pki.Serial
		for _, c := range sorted {
			for i, m := range mine {
				if m == c && keep(i) {
					out = append(out, c.Serial)
				}
			}
		}
		return out
	}

	t.Run("three pages", func(t *testing.T) {
		var got []pki.Serial
		cursor := ""
		pages := 0
		for {
			page, next, err := f.db.Certificates(ctx, pki.CertificateFilter{AccountID: f.account.ID, Cursor: cursor, Limit: 3, Now: now})
			if err != nil {
				t.Fatalf("page %d: %v", pages+1, err)
			}
			pages++
			got = append(got, order(page)...)
			if next == "" {
				break
			}
			cursor = next
		}
		if pages != 3 {
			t.Errorf("pages = %d, want 3", pages)
		}
		if fmt.Sprint(got) != fmt.Sprint(order(sorted)) {
			t.Errorf("serials =\n%v\nwant\n%v", got, order(sorted))
		}
	})

	tests := []struct {
		name   string
		filter pki.CertificateFilter
		want   []pki.Serial
	}{
		{"all of account", pki.CertificateFilter{AccountID: f.account.ID, Now: now}, order(sorted)},
		{"active", pki.CertificateFilter{AccountID: f.account.ID, Status: pki.StatusActive, Now: now},
			pick(func(i int) bool { return i != 1 && i != 2 && i != 5 })},
		{"revoked (expired or not)", pki.CertificateFilter{AccountID: f.account.ID, Status: pki.StatusRevoked, Now: now},
			pick(func(i int) bool { return i == 1 || i == 5 })},
		{"expired, not revoked", pki.CertificateFilter{AccountID: f.account.ID, Status: pki.StatusExpired, Now: now},
			pick(func(i int) bool { return i == 2 })},
		{"active evaluated a year on", pki.CertificateFilter{AccountID: f.account.ID, Status: pki.StatusActive, Now: now.AddDate(1, 0, 0)}, nil},
		{"account id not a uuid", pki.CertificateFilter{AccountID: "x"}, nil},
		{"unknown account", pki.CertificateFilter{AccountID: newUUID()}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, err := f.db.Certificates(ctx, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if next != "" {
				t.Errorf("next cursor %q on a single page", next)
			}
			if fmt.Sprint(order(got)) != fmt.Sprint(tt.want) {
				t.Errorf("serials =\n%v\nwant\n%v", order(got), tt.want)
			}
			for _, c := range got {
				if c.DER == nil || c.LintDER != nil || c.State != pki.StateIssued {
					t.Errorf("listed %s: DER %d bytes, LintDER %d bytes, state %s", c.Serial, len(c.DER), len(c.LintDER), c.State)
				}
			}
		})
	}

	t.Run("every account", func(t *testing.T) {
		got, _, err := f.db.Certificates(ctx, pki.CertificateFilter{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 8 {
			t.Errorf("listed %d certificates, want 8", len(got))
		}
	})

	t.Run("limit capped", func(t *testing.T) {
		got, next, err := f.db.Certificates(ctx, pki.CertificateFilter{AccountID: f.account.ID, Limit: 100000})
		if err != nil || len(got) != 7 || next != "" {
			t.Errorf("Certificates(limit 100000) = %d, %q, %v", len(got), next, err)
		}
	})

	malformed := []struct {
		name   string
		filter pki.CertificateFilter
	}{
		{"cursor not base64", pki.CertificateFilter{Cursor: "!!!"}},
		{"cursor too short", pki.CertificateFilter{Cursor: "AQ"}},
		{"cursor of another version", pki.CertificateFilter{Cursor: cursor(2, 0, "70")}},
		{"cursor with a bad serial", pki.CertificateFilter{Cursor: cursor(1, 0, "xyz")}},
		{"cursor with a non-canonical serial", pki.CertificateFilter{Cursor: cursor(1, 0, "070")}},
		{"cursor beyond year 9999", pki.CertificateFilter{Cursor: cursor(1, math.MaxUint64, "70")}},
		{"cursor too long", pki.CertificateFilter{Cursor: string(make([]byte, 200))}},
		{"unknown status", pki.CertificateFilter{Status: "valid"}},
	}
	for _, tt := range malformed {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.db.Certificates(ctx, tt.filter)
			var re *pki.RequestError
			if !errors.As(err, &re) || re.Kind != pki.KindMalformed {
				t.Fatalf("Certificates = %v, want a malformed RequestError", err)
			}
		})
	}
}

// cursor builds a cursor as Certificates encodes one, with any content.
func cursor(version byte, micros uint64, serial string) string {
	b := binary.BigEndian.AppendUint64([]byte{version}, micros)
	return base64.RawURLEncoding.EncodeToString(append(b, serial...))
}

func TestCertificateNotFound(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t)
	for _, serial := range []pki.Serial{pki.MustNewSerial(), "zz", ""} {
		if _, err := db.Certificate(context.Background(), serial); !errors.Is(err, pki.ErrNotFound) {
			t.Errorf("Certificate(%q) = %v, want ErrNotFound", serial, err)
		}
	}
}

// BenchmarkCreatePendingMarkIssued measures the two database transactions of
// one issuance, from parallel goroutines as the API runs them.
func BenchmarkCreatePendingMarkIssued(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, testdb.Open(b))
	der := randomBytes(700)
	fp := sha256.Sum256(der)
	b.ReportAllocs()
	// Many requests in flight per core, as under load: each spends most of
	// its time waiting for a commit.
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := f.pending(f.account.ID, nil)
			if err := f.db.CreatePending(ctx, c, event("certificate.signing")); err != nil {
				b.Error(err)
				return
			}
			if err := f.db.MarkIssued(ctx, c.Serial, der, fp[:], event("certificate.issued")); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "issuances/s")
}
