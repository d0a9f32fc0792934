package crl_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/crl"
	"github.com/pkid/pkid/internal/pki"
)

// TestCacheFollowsOtherNode: a CRL that another node signs reaches this
// node's cache through LISTEN/NOTIFY, within a second.
func TestCacheFollowsOtherNode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	issuers := func() []string { return []string{e.h.inter.ID, e.h.root.ID} }
	// A poll slower than the test: only the notification can be in time.
	cache := crl.NewCache(e.db, issuers, crl.CacheOptions{Poll: time.Hour})
	if err := cache.Load(ctx); err != nil {
		t.Fatalf("Load with no CRL yet: %v", err)
	}
	go cache.Run(ctx)

	other := e.job(t, e.open(t), nil, crl.JobConfig{})
	// The LISTEN may not be in place yet; sign until one arrives in time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := other.Generate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for time.Since(start) < time.Second && !hasNumber(cache, e.h.inter.ID, c.Number) {
			time.Sleep(5 * time.Millisecond)
		}
		if hasNumber(cache, e.h.inter.ID, c.Number) {
			t.Logf("CRL %d reached the other node's cache in %s", c.Number, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the other node's CRLs never reached the cache within a second")
		}
	}
}

func hasNumber(c *crl.Cache, issuer string, n int64) bool {
	got := c.CRL(issuer)
	return got != nil && got.Number >= n
}

// deafStore cannot LISTEN: the cache must find new CRLs by polling.
type deafStore struct{ crl.CacheStore }

func (deafStore) ListenCRL(ctx context.Context, _ func(), _ func(string)) error {
	return pki.ErrUnavailable
}

func TestCachePollHeals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := crl.NewCache(deafStore{e.db}, func() []string { return []string{e.h.inter.ID} }, crl.CacheOptions{Poll: 50 * time.Millisecond})
	go cache.Run(ctx)
	c, err := e.job(t, nil, nil, crl.JobConfig{}).Generate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the CRL by polling", func() bool { return hasNumber(cache, e.h.inter.ID, c.Number) })
}

// TestCacheLoad: Load reads the newest CRL of every issuer; a database
// that cannot be read is an error.
func TestCacheLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	j := e.job(t, nil, nil, crl.JobConfig{})
	var last *pki.CRL
	for range 3 {
		c, err := j.Generate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last = c
	}
	cache := crl.NewCache(e.db, func() []string { return []string{e.h.inter.ID, e.h.root.ID} }, crl.CacheOptions{})
	if err := cache.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cache.CRL(e.h.inter.ID); got == nil || got.Number != last.Number || len(got.DER) == 0 {
		t.Fatalf("loaded %+v, want number %d", got, last.Number)
	}
	if cache.CRL(e.h.root.ID) != nil {
		t.Fatal("a root CRL appeared from nowhere")
	}
	gone := e.open(t)
	gone.Close()
	if err := crl.NewCache(gone, func() []string { return []string{e.h.inter.ID} }, crl.CacheOptions{}).Load(ctx); err == nil {
		t.Fatal("Load from a closed database succeeded")
	}
}

func TestCacheInstallKeepsNewest(t *testing.T) {
	t.Parallel()
	cache := crl.NewCache(nil, func() []string { return nil }, crl.CacheOptions{})
	mk := func(n int64) *pki.CRL {
		return &pki.CRL{IssuerID: "i", Number: n, DER: []byte{byte(n)}, ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}
	}
	steps := []struct {
		crl  *pki.CRL
		want bool
	}{{mk(5), true}, {mk(4), false}, {mk(5), false}, {mk(6), true}, {nil, false}, {&pki.CRL{IssuerID: "i", Number: 9}, false}}
	for _, s := range steps {
		if got := cache.Install(s.crl); got != s.want {
			t.Fatalf("Install(%+v) = %v, want %v", s.crl, got, s.want)
		}
	}
	if cache.CRL("i").Number != 6 {
		t.Fatalf("holds %d, want 6", cache.CRL("i").Number)
	}
}

// TestDatabaseDown: with the database gone, the node keeps serving the CRL
// it holds until its nextUpdate, and then answers 503 rather than serve an
// expired CRL.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := e.open(t)
	cache := crl.NewCache(db, func() []string { return []string{e.h.inter.ID} }, crl.CacheOptions{Poll: 20 * time.Millisecond})
	c, err := e.job(t, nil, nil, crl.JobConfig{}).Generate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.Load(ctx); err != nil {
		t.Fatal(err)
	}
	go cache.Run(ctx)
	db.Close() // every read now fails
	var now time.Time
	h := crl.NewHandler(cache, func() string { return e.h.root.ID }, func() string { return e.h.inter.ID }, func() time.Time { return now })
	r := chi.NewRouter()
	h.Routes(r)
	get := func() int {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/crl", nil))
		return w.Code
	}
	now = c.NextUpdate.Add(-time.Second)
	time.Sleep(100 * time.Millisecond) // several failed polls
	if code := get(); code != http.StatusOK {
		t.Fatalf("with the database down, before nextUpdate: %d", code)
	}
	now = c.NextUpdate
	if code := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("at nextUpdate: %d, want 503", code)
	}
	if _, err := db.LatestCRL(ctx, e.h.inter.ID); err == nil {
		t.Fatal("the database was not down")
	}
}
