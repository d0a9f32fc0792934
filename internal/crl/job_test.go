package crl_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/crl"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
)

// TestGenerate: the job lists exactly the issuer's revoked certificates,
// with their reasons (none for unspecified), in a CRL that zlint and
// openssl accept, audited and installed in the cache.
func TestGenerate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	now := e.clock.Now()
	want := map[pki.Serial]int{}
	for _, r := range []pki.RevocationReason{pki.ReasonUnspecified, pki.ReasonKeyCompromise, pki.ReasonAffiliationChanged,
		pki.ReasonSuperseded, pki.ReasonCessationOfOperation, pki.ReasonPrivilegeWithdrawn} {
		want[e.revoke(t, "", now.Add(24*time.Hour), now.Add(-time.Minute), r)] = int(r)
	}
	cache := crl.NewCache(e.db, func() []string { return []string{e.h.inter.ID} }, crl.CacheOptions{})
	c, err := e.job(t, nil, cache, crl.JobConfig{}).Generate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rl := e.h.parse(t, c.DER)
	if got := serials(rl); !maps.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	if !rl.ThisUpdate.Equal(now) || !rl.NextUpdate.Equal(now.Add(crl.DefaultValidity)) || rl.Number.Int64() != c.Number {
		t.Fatalf("thisUpdate %s nextUpdate %s number %d", rl.ThisUpdate, rl.NextUpdate, rl.Number)
	}
	if err := e.h.linter.CRL(c.DER); err != nil {
		t.Fatalf("zlint: %v", err)
	}
	if got := cache.CRL(e.h.inter.ID); got != c {
		t.Fatal("the CRL was not installed in the cache")
	}
	if n := count(t, e.db, `SELECT count(*) FROM audit_events WHERE action = $1 AND detail->>'issuer' = $2
		AND (detail->>'number')::bigint = $3 AND (detail->>'entries')::int = 6`, crl.ActionSigned, e.h.inter.ID, c.Number); n != 1 {
		t.Fatalf("%d audit events", n)
	}

	dir := t.TempDir()
	derFile := dir + "/crl.der"
	if err := os.WriteFile(derFile, c.DER, 0o600); err != nil {
		t.Fatal(err)
	}
	chain := writePEM(t, dir, "chain.pem", "CERTIFICATE", e.h.inter.Cert.Raw, e.h.root.Cert.Raw)
	if out, err := openssl(t, "crl", "-inform", "DER", "-in", derFile, "-CAfile", chain, "-noout"); err != nil || !strings.Contains(out, "verify OK") {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
}

// TestEntriesLeaveAfterExpiryListed: an entry stays until a CRL issued
// after its certificate's notAfter has listed it (RFC 5280 §3.3, L-07), and
// leaves with the next one.
func TestEntriesLeaveAfterExpiryListed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	t0 := e.clock.Now()
	a := e.revoke(t, "", t0.Add(90*time.Minute), t0.Add(-time.Hour), pki.ReasonKeyCompromise)
	b := e.revoke(t, "", t0.Add(2*time.Hour), t0.Add(-time.Hour), pki.ReasonSuperseded) // notAfter = CRL 3's thisUpdate
	j := e.job(t, nil, nil, crl.JobConfig{})
	steps := []struct {
		at   time.Duration
		want []pki.Serial
		why  string
	}{
		{0, []pki.Serial{a, b}, "first CRL: every revoked certificate"},
		{time.Hour, []pki.Serial{a, b}, "both valid"},
		{2 * time.Hour, []pki.Serial{a, b}, "a expired at +90m: this CRL, the first after, lists it"},
		{3 * time.Hour, []pki.Serial{b}, "a was listed by the +2h CRL, issued after its expiry; b expired at exactly +2h, the previous thisUpdate, so that CRL was not after it"},
		{4 * time.Hour, nil, "b was listed by the +3h CRL"},
	}
	for _, s := range steps {
		e.clock.Set(t0.Add(s.at))
		c, err := j.Generate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := slices.Sorted(maps.Keys(serials(e.h.parse(t, c.DER))))
		want := slices.Sorted(slices.Values(s.want))
		if !slices.Equal(got, want) {
			t.Fatalf("at +%s: entries %v, want %v (%s)", s.at, got, want, s.why)
		}
	}
}

// TestThisUpdateNeverGoesBack: a node whose clock is behind signs a CRL
// with the previous thisUpdate and a higher number (L-08).
func TestThisUpdateNeverGoesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	j := e.job(t, nil, nil, crl.JobConfig{})
	first, err := j.Generate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Set(first.ThisUpdate.Add(-time.Hour))
	second, err := j.Generate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !second.ThisUpdate.Equal(first.ThisUpdate) || second.Number <= first.Number {
		t.Fatalf("second CRL: thisUpdate %s number %d after %s number %d", second.ThisUpdate, second.Number, first.ThisUpdate, first.Number)
	}
}

// TestEntryAdjustments: a revocation stamped after thisUpdate (a clock
// ahead) is dated thisUpdate; a leaf revoked for cACompromise is listed for
// keyCompromise; both pass lint.
func TestEntryAdjustments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := e.clock.Now()
	ahead := e.revoke(t, "", now.Add(time.Hour), now.Add(30*time.Second), pki.ReasonKeyCompromise)
	ca := e.revoke(t, "", now.Add(time.Hour), now.Add(-time.Second), pki.ReasonCACompromise)
	c, err := e.job(t, nil, nil, crl.JobConfig{}).Generate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range e.h.parse(t, c.DER).RevokedCertificateEntries {
		switch pki.SerialFromBig(entry.SerialNumber) {
		case ahead:
			if !entry.RevocationTime.Equal(now) {
				t.Errorf("revocation from the future dated %s, want thisUpdate %s", entry.RevocationTime, now)
			}
		case ca:
			if entry.ReasonCode != int(pki.ReasonKeyCompromise) {
				t.Errorf("cACompromise listed with reason %d", entry.ReasonCode)
			}
		}
	}
}

// TestRefusedCRL: a CRL that lint refuses is audited and publishes nothing.
func TestRefusedCRL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.job(t, nil, nil, crl.JobConfig{Validity: 11 * 24 * time.Hour})
	_, err := j.Generate(context.Background())
	var lerr *issuance.CRLLintError
	if !errors.As(err, &lerr) {
		t.Fatalf("err = %v, want *issuance.CRLLintError", err)
	}
	if n := count(t, e.db, "SELECT count(*) FROM crls"); n != 0 {
		t.Fatalf("%d CRLs stored", n)
	}
	if n := count(t, e.db, "SELECT count(*) FROM audit_events WHERE action = $1 AND detail->>'error' LIKE '%e_crl_next_update_invalid%'", crl.ActionRefused); n != 1 {
		t.Fatalf("%d refusal audit events", n)
	}
}

func TestNewJobConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name string
		cfg  crl.JobConfig
	}{
		{"interval over half the validity", crl.JobConfig{IDPURL: crlURL, Interval: 13 * time.Hour}},
		{"intermediate without IDP", crl.JobConfig{}},
		{"CA CRL with IDP", crl.JobConfig{CA: true, IDPURL: crlURL, Validity: 365 * 24 * time.Hour}},
	}
	for _, tc := range tests {
		if _, err := crl.NewJob(e.db, e.intermediate, nil, e.h.linter, tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := crl.NewJob(e.db, e.intermediate, nil, nil, crl.JobConfig{IDPURL: crlURL}); err == nil {
		t.Error("a job without a linter was accepted")
	}
}

// TestTwoNodes: jobs on two nodes generating at once sign CRLs whose
// numbers strictly increase in the order they were committed, with
// thisUpdate never going back.
func TestTwoNodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	now := e.clock.Now()
	for range 20 {
		e.revoke(t, "", now.Add(time.Hour), now.Add(-time.Minute), pki.ReasonKeyCompromise)
	}
	jobs := []*crl.Job{
		e.job(t, e.open(t), nil, crl.JobConfig{Now: time.Now}),
		e.job(t, e.open(t), nil, crl.JobConfig{Now: time.Now}),
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		for range 4 {
			wg.Go(func() {
				if _, err := j.Generate(ctx); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	rows, err := e.db.Pool().Query(ctx, "SELECT number, this_update, der FROM crls ORDER BY created_at")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var prevNumber int64
	var prevThis time.Time
	n := 0
	for rows.Next() {
		var number int64
		var this time.Time
		var der []byte
		if err := rows.Scan(&number, &this, &der); err != nil {
			t.Fatal(err)
		}
		if number <= prevNumber || this.Before(prevThis) {
			t.Fatalf("CRL %d (%s) committed after %d (%s)", number, this, prevNumber, prevThis)
		}
		if rl := e.h.parse(t, der); rl.Number.Int64() != number || len(rl.RevokedCertificateEntries) != 20 {
			t.Fatalf("CRL %d has number %d and %d entries", number, rl.Number, len(rl.RevokedCertificateEntries))
		}
		prevNumber, prevThis = number, this
		n++
	}
	if n != 8 {
		t.Fatalf("%d CRLs, want 8", n)
	}
}

// TestGenerateIfDue: a CRL is due when there is none, when a revocation is
// newer than it, and when it is Interval old; not otherwise.
func TestGenerateIfDue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	j := e.job(t, nil, nil, crl.JobConfig{})
	t0 := e.clock.Now()
	due := func(when string, want bool) {
		t.Helper()
		c, err := j.GenerateIfDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if (c != nil) != want {
			t.Fatalf("%s: signed %v, want %v", when, c != nil, want)
		}
	}
	due("no CRL yet", true)
	due("just signed", false)
	e.clock.Set(t0.Add(10 * time.Minute))
	e.revoke(t, "", t0.Add(time.Hour), t0.Add(5*time.Minute), pki.ReasonKeyCompromise)
	due("revoked after thisUpdate", true)
	due("signed again", false)
	e.clock.Set(t0.Add(10*time.Minute + crl.DefaultInterval))
	due("interval passed", true)
}

// TestNudge: a running job publishes a revocation within seconds of the
// nudge, and a burst of nudges makes one CRL.
func TestNudge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := crl.NewCache(e.db, func() []string { return []string{e.h.inter.ID} }, crl.CacheOptions{})
	j := e.job(t, nil, cache, crl.JobConfig{Now: time.Now, Debounce: 200 * time.Millisecond, Poll: time.Hour})
	done := make(chan struct{})
	go func() { j.Run(ctx); close(done) }()
	waitFor(t, 5*time.Second, "the first CRL", func() bool { return cache.CRL(e.h.inter.ID) != nil })

	now := time.Now()
	serial := e.revoke(t, "", now.Add(time.Hour), now, pki.ReasonKeyCompromise)
	start := time.Now()
	for range 5 {
		j.Nudge()
	}
	waitFor(t, 5*time.Second, "the revocation on the CRL", func() bool {
		c := cache.CRL(e.h.inter.ID)
		_, ok := serials(e.h.parse(t, c.DER))[serial]
		return ok
	})
	t.Logf("revocation published %s after the nudge", time.Since(start).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	if n := count(t, e.db, "SELECT count(*) FROM crls"); n != 2 {
		t.Fatalf("%d CRLs, want 2: the first and one for the burst of nudges", n)
	}
	cancel()
	<-done
}

// failingStore fails GenerateCRL a number of times, as a database that
// comes back would.
type failingStore struct {
	crl.Store
	mu    sync.Mutex
	fails int
}

func (f *failingStore) GenerateCRL(ctx context.Context, issuerID string, keep int,
	build func(*pki.CRL, int64, func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error)) error {
	f.mu.Lock()
	fail := f.fails > 0
	f.fails--
	f.mu.Unlock()
	if fail {
		return pki.ErrUnavailable
	}
	return f.Store.GenerateCRL(ctx, issuerID, keep, build)
}

// TestRunRetries: a nudged generation that fails is retried until it
// succeeds.
func TestRunRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &failingStore{Store: e.db, fails: 2}
	j, err := crl.NewJob(st, e.intermediate, nil, e.h.linter, crl.JobConfig{IDPURL: crlURL, Debounce: 10 * time.Millisecond, Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	go j.Run(ctx)
	j.Nudge()
	waitFor(t, 10*time.Second, "a CRL after two failures", func() bool { return count(t, e.db, "SELECT count(*) FROM crls") > 0 })
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
