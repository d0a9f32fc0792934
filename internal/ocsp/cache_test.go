package ocsp_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/ocsp"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
)

// countingStore counts the single-serial reads that reach the database.
type countingStore struct {
	ocsp.Store
	reads atomic.Int64
}

func (c *countingStore) OCSPResponse(ctx context.Context, serial pki.Serial, now time.Time) (*pki.OCSPResponse, error) {
	c.reads.Add(1)
	return c.Store.OCSPResponse(ctx, serial, now)
}

func TestInstallKeepsTheNewest(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	c := ocsp.NewCache(memoryStore{}, ocsp.CacheOptions{})
	ctx := context.Background()
	serial := pki.MustNewSerial()
	t0 := time.Now()
	atIssuance := h.response(t, serial, status{}) // not read back: UpdatedAt zero
	stored := *atIssuance
	stored.UpdatedAt = t0
	revoked := h.response(t, serial, status{revokedAt: t0, reason: pki.ReasonSuperseded})
	revoked.UpdatedAt = t0.Add(time.Second)
	resigned := h.response(t, serial, status{revokedAt: t0, reason: pki.ReasonSuperseded, thisUpdate: revoked.ThisUpdate.Add(time.Hour)})
	resigned.UpdatedAt = t0.Add(time.Hour)

	steps := []struct {
		name    string
		install *pki.OCSPResponse
		want    *pki.OCSPResponse
	}{
		{"first response", atIssuance, atIssuance},
		{"the same, read back", &stored, &stored},
		{"the issuance's again, late", atIssuance, &stored},
		{"revocation", revoked, revoked},
		{"the good one, late", &stored, revoked},
		{"re-signed", resigned, resigned},
		{"the revocation again", revoked, resigned},
	}
	for _, s := range steps {
		c.Install(s.install)
		got, err := c.Lookup(ctx, serial)
		if err != nil {
			t.Fatalf("%s: Lookup: %v", s.name, err)
		}
		if !bytes.Equal(got.DER, s.want.DER) {
			t.Errorf("%s: the cache serves another response than the newest", s.name)
		}
	}
}

// TestInstallStoredReadBack follows one serial's responses as catch-ups
// read them back, again and again within the margin: a response the cache
// holds already is restamped with the database's UpdatedAt, never made
// older, and a newer one replaces it.
func TestInstallStoredReadBack(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	c := ocsp.NewCache(memoryStore{}, ocsp.CacheOptions{})
	ctx := context.Background()
	serial := pki.MustNewSerial()
	t0 := time.Now().Truncate(time.Microsecond)
	atIssuance := h.response(t, serial, status{}) // installed before its write is read back
	stored := *atIssuance
	stored.DER = bytes.Clone(atIssuance.DER)
	stored.UpdatedAt = t0
	earlier := stored
	earlier.UpdatedAt = t0.Add(-time.Second)
	revoked := h.response(t, serial, status{revokedAt: t0, reason: pki.ReasonSuperseded})
	revoked.UpdatedAt = t0.Add(time.Second)

	c.Install(atIssuance)
	steps := []struct {
		name      string
		read      *pki.OCSPResponse
		want      *pki.OCSPResponse
		updatedAt time.Time
	}{
		{"the issuance's, read back", &stored, atIssuance, t0},
		{"read back again", &stored, atIssuance, t0},
		{"stamped earlier", &earlier, atIssuance, t0},
		{"revocation", revoked, revoked, revoked.UpdatedAt},
		{"the good one, late", &stored, revoked, revoked.UpdatedAt},
	}
	for _, s := range steps {
		if !c.InstallStored(s.read) {
			t.Fatalf("%s: not installed", s.name)
		}
		got, err := c.Lookup(ctx, serial)
		if err != nil {
			t.Fatalf("%s: Lookup: %v", s.name, err)
		}
		if !bytes.Equal(got.DER, s.want.DER) || !got.UpdatedAt.Equal(s.updatedAt) ||
			!got.ThisUpdate.Equal(s.want.ThisUpdate) || !got.NextUpdate.Equal(s.want.NextUpdate) || got.IssuerID != s.want.IssuerID {
			t.Errorf("%s: Lookup = %+v, want the response of %+v stamped %v", s.name, got, s.want, s.updatedAt)
		}
	}
}

func TestInstallRefusesWhatCannotBeServed(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	c := ocsp.NewCache(memoryStore{}, ocsp.CacheOptions{})
	serial := pki.MustNewSerial()
	good := h.response(t, serial, status{})
	otherSerial := *h.response(t, pki.MustNewSerial(), status{})
	otherSerial.Serial = serial
	sha256, err := h.signer.SignOCSP(h.inter.Cert, issuanceStatus(serial, good), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		r    *pki.OCSPResponse
	}{
		{"about another serial", &otherSerial},
		{"SHA-256 CertID", &pki.OCSPResponse{Serial: serial, IssuerID: good.IssuerID, DER: sha256, ThisUpdate: good.ThisUpdate, NextUpdate: good.NextUpdate}},
		{"an error response", &pki.OCSPResponse{Serial: serial, IssuerID: good.IssuerID, DER: unauthorized, ThisUpdate: good.ThisUpdate, NextUpdate: good.NextUpdate}},
		{"garbage", &pki.OCSPResponse{Serial: serial, IssuerID: good.IssuerID, DER: []byte("x"), ThisUpdate: good.ThisUpdate, NextUpdate: good.NextUpdate}},
		{"no issuer", &pki.OCSPResponse{Serial: serial, DER: good.DER, ThisUpdate: good.ThisUpdate, NextUpdate: good.NextUpdate}},
		{"not a pkid serial", &pki.OCSPResponse{Serial: "1234", IssuerID: good.IssuerID, DER: good.DER, ThisUpdate: good.ThisUpdate, NextUpdate: good.NextUpdate}},
		{"uppercase serial", &pki.OCSPResponse{Serial: pki.Serial(bytes.ToUpper([]byte(serial))), IssuerID: good.IssuerID, DER: good.DER, ThisUpdate: good.ThisUpdate, NextUpdate: good.NextUpdate}},
		{"empty interval", &pki.OCSPResponse{Serial: serial, IssuerID: good.IssuerID, DER: good.DER, ThisUpdate: good.ThisUpdate, NextUpdate: good.ThisUpdate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Install(tt.r)
			if _, err := c.Lookup(context.Background(), serial); !errors.Is(err, pki.ErrNotFound) {
				t.Fatalf("Lookup after installing it = %v, want ErrNotFound", err)
			}
		})
	}
}

// TestMisses: a serial the cache does not hold is read from the database
// once, then served from memory; unknown serials are remembered briefly,
// and serials that cannot be pkid's never reach the database.
func TestMisses(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := newDatabase(t, h)
	serial := pki.MustNewSerial()
	db.certificate(t, h, serial, time.Now().Add(30*24*time.Hour), h.response(t, serial, status{}))
	st := &countingStore{Store: db}
	s := newServer(t, h, st, ocsp.CacheOptions{NegativeTTL: time.Hour})

	der := request(t, h.inter.Cert, serial, crypto.SHA1)
	for range 3 {
		checkSuccess(t, h, post(t, s.URL, der), serial, crypto.SHA1)
	}
	if n := st.reads.Load(); n != 1 {
		t.Errorf("%d database reads for one serial, want 1", n)
	}
	if s.metrics.count(ocsp.StatusGood, ocsp.SourceDB) != 1 || s.metrics.count(ocsp.StatusGood, ocsp.SourceMemory) != 2 {
		t.Errorf("metrics: %v", s.metrics.counts)
	}

	unknown := request(t, h.inter.Cert, pki.MustNewSerial(), crypto.SHA1)
	for range 20 {
		checkError(t, post(t, s.URL, unknown), http.StatusOK, unauthorized)
	}
	if n := st.reads.Load(); n != 2 {
		t.Errorf("%d database reads after 20 requests for one unknown serial, want 2 in all", n)
	}
	notPkid := buildRequest(t, []certID{idFor(t, h.inter.Cert, serial.Big().Lsh(serial.Big(), 8), crypto.SHA1)}, reqOpts{})
	checkError(t, post(t, s.URL, notPkid), http.StatusOK, unauthorized)
	if n := st.reads.Load(); n != 2 {
		t.Errorf("a serial that cannot be pkid's was read from the database")
	}

	// An unknown serial that is then issued is answered at once: installing
	// it forgets that it was unknown.
	later := pki.MustNewSerial()
	laterReq := request(t, h.inter.Cert, later, crypto.SHA1)
	checkError(t, post(t, s.URL, laterReq), http.StatusOK, unauthorized)
	s.cache.Install(h.response(t, later, status{}))
	checkSuccess(t, h, post(t, s.URL, laterReq), later, crypto.SHA1)
}

// TestExpiry: a response past its nextUpdate is never served (SECURITY.md
// O-19); once the certificate has expired too, the serial is unknown (O-09).
func TestExpiry(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := newDatabase(t, h)
	now := time.Now()
	stale := status{thisUpdate: now.Add(-50 * time.Hour).Truncate(time.Minute)}
	tests := []struct {
		name     string
		notAfter time.Time
		st       status
		code     int
		want     []byte // nil: a good response
	}{
		{"stale response, valid certificate", now.Add(24 * time.Hour), stale, http.StatusServiceUnavailable, tryLater},
		{"stale response, expired certificate", now.Add(-time.Hour), stale, http.StatusOK, unauthorized},
		{"fresh response, certificate expired an hour ago", now.Add(-time.Hour), status{}, http.StatusOK, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serial := pki.MustNewSerial()
			resp := h.response(t, serial, tt.st)
			db.certificate(t, h, serial, tt.notAfter, resp)
			der := request(t, h.inter.Cert, serial, crypto.SHA1)

			// Read from the database on a miss ...
			s := newServer(t, h, db, ocsp.CacheOptions{})
			a := post(t, s.URL, der)
			if tt.want == nil {
				checkSuccess(t, h, a, serial, crypto.SHA1)
			} else {
				checkError(t, a, tt.code, tt.want)
			}
			// ... and held in memory: a stale entry is dropped, not served.
			s = newServer(t, h, db, ocsp.CacheOptions{})
			s.cache.Install(resp)
			a = post(t, s.URL, der)
			if tt.want == nil {
				checkSuccess(t, h, a, serial, crypto.SHA1)
			} else {
				checkError(t, a, tt.code, tt.want)
			}
		})
	}
}

// closedStore is a store whose database cannot be reached: nothing listens
// on port 1.
func closedStore(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), "postgres://postgres@127.0.0.1:1/pkid?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// TestDatabaseDown: what the cache holds is served; a miss is tryLater with
// HTTP 503, never good (SECURITY.md O-18, P5).
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := closedStore(t)
	s := newServer(t, h, db, ocsp.CacheOptions{CatchUpInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.cache.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	held := pki.MustNewSerial()
	s.cache.Install(h.response(t, held, status{}))
	for _, hash := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		resp := checkSuccess(t, h, post(t, s.URL, request(t, h.inter.Cert, held, hash)), held, hash)
		if resp.Status != xocsp.Good {
			t.Fatalf("status %d", resp.Status)
		}
	}
	for range 3 {
		checkError(t, post(t, s.URL, request(t, h.inter.Cert, pki.MustNewSerial(), crypto.SHA1)), http.StatusServiceUnavailable, tryLater)
	}
	if _, err := s.cache.Lookup(context.Background(), pki.MustNewSerial()); !errors.Is(err, pki.ErrUnavailable) {
		t.Errorf("Lookup of a miss = %v, want ErrUnavailable", err)
	}
	if s.cache.Loaded() {
		t.Error("Loaded with the database down")
	}
}

// TestLoadAtStart: Run loads every unexpired response, and only those.
func TestLoadAtStart(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := newDatabase(t, h)
	var serials []pki.Serial
	for range 30 {
		s := pki.MustNewSerial()
		db.certificate(t, h, s, time.Now().Add(30*24*time.Hour), h.response(t, s, status{}))
		serials = append(serials, s)
	}
	stale := pki.MustNewSerial()
	db.certificate(t, h, stale, time.Now().Add(30*24*time.Hour), h.response(t, stale, status{thisUpdate: time.Now().Add(-48 * time.Hour)}))

	st := &countingStore{Store: db}
	c := ocsp.NewCache(st, ocsp.CacheOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, 5*time.Second, c.Loaded)
	if c.Len() != len(serials) {
		t.Errorf("cache holds %d responses, want %d", c.Len(), len(serials))
	}
	for _, s := range serials {
		if _, err := c.Lookup(ctx, s); err != nil {
			t.Fatalf("Lookup(%s): %v", s, err)
		}
	}
	if n := st.reads.Load(); n != 0 {
		t.Errorf("%d database reads for responses that were loaded", n)
	}
}

// TestSyncAcrossNodes: two caches on one database, as two pkid nodes. A
// response written on one node (revocation: stored and announced in one
// statement) is served by the other within a second through LISTEN/NOTIFY;
// one written without a notification arrives with the next catch-up; and
// after the listening connection is killed the node listens again and
// still hears of changes within a second.
func TestSyncAcrossNodes(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := newDatabase(t, h)
	var serials []pki.Serial
	for range 10 {
		s := pki.MustNewSerial()
		db.certificate(t, h, s, time.Now().Add(30*24*time.Hour), h.response(t, s, status{}))
		serials = append(serials, s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	start := func(opts ocsp.CacheOptions) *ocsp.Cache {
		c := ocsp.NewCache(db, opts)
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		waitFor(t, 5*time.Second, c.Loaded)
		return c
	}
	// b only ever hears of changes by notification: its catch-up is an
	// hour away. c catches up every 200ms.
	b := start(ocsp.CacheOptions{CatchUpInterval: time.Hour})
	c := start(ocsp.CacheOptions{CatchUpInterval: 200 * time.Millisecond})
	waitFor(t, 5*time.Second, func() bool { return listeners(t, db) == 2 })

	// serves reports whether cache serves exactly this response for its
	// serial now.
	serves := func(cache *ocsp.Cache, r *pki.OCSPResponse) func() bool {
		return func() bool {
			got, err := cache.Lookup(ctx, r.Serial)
			return err == nil && bytes.Equal(got.DER, r.DER)
		}
	}

	var delays []time.Duration
	for _, s := range serials[:5] {
		revoked := h.response(t, s, status{revokedAt: time.Now(), reason: pki.ReasonKeyCompromise})
		t0 := time.Now()
		if err := db.PutOCSPResponse(ctx, revoked); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Second, serves(b, revoked))
		delays = append(delays, time.Since(t0))
	}
	slices.Sort(delays)
	t.Logf("revocation visible on the other node after %v (sorted)", delays)

	// A change that no one announces reaches c at its next catch-up.
	silent := h.response(t, serials[5], status{revokedAt: time.Now(), reason: pki.ReasonSuperseded})
	if _, err := db.Pool().Exec(ctx, `UPDATE ocsp_responses SET der = $2, this_update = $3, next_update = $4,
		updated_at = clock_timestamp() WHERE serial = $1`, string(silent.Serial), silent.DER, silent.ThisUpdate, silent.NextUpdate); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, serves(c, silent))

	// Kill both listening connections; the nodes listen again and hear.
	if _, err := db.Pool().Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+store.OCSPChannel+`'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return listeners(t, db) == 2 })
	again := h.response(t, serials[6], status{revokedAt: time.Now(), reason: pki.ReasonCessationOfOperation})
	if err := db.PutOCSPResponse(ctx, again); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, serves(b, again))
}

// listeners counts the sessions listening on the OCSP channel.
func listeners(t testing.TB, db *database) int {
	t.Helper()
	var n int
	if err := db.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+store.OCSPChannel+`'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds, failing t after d.
func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFirstResponse: issuance stores no response, so the first request for
// a certificate finds only its row; a cache that can sign answers from it
// (good, or revoked as the row says), stores the response, and serves it
// from memory afterwards; another node reads it from the database. A cache
// that cannot sign answers unauthorized, as for any serial without a
// response.
func TestFirstResponse(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	db := newDatabase(t, h)
	signing := ocsp.CacheOptions{Issuers: h.issuers, Signer: h.current, Validity: 12 * time.Hour}
	s := newServer(t, h, db, signing)
	notAfter := time.Now().Add(30 * 24 * time.Hour)

	good := pki.MustNewSerial()
	db.certificate(t, h, good, notAfter, nil)
	der := request(t, h.inter.Cert, good, crypto.SHA1)
	first := checkSuccess(t, h, post(t, s.URL, der), good, crypto.SHA1)
	if first.Status != xocsp.Good {
		t.Errorf("status %d, want good", first.Status)
	}
	if got := first.NextUpdate.Sub(first.ThisUpdate); got < 12*time.Hour-time.Second || got > 12*time.Hour+time.Second {
		t.Errorf("validity %s, want the configured 12h", got)
	}
	again := checkSuccess(t, h, post(t, s.URL, der), good, crypto.SHA1)
	if !again.ThisUpdate.Equal(first.ThisUpdate) {
		t.Error("the second request got another response: the first was not kept")
	}
	if s.metrics.count(ocsp.StatusGood, ocsp.SourceFirst) != 1 || s.metrics.count(ocsp.StatusGood, ocsp.SourceMemory) != 1 {
		t.Errorf("metrics: %v", s.metrics.counts)
	}
	stored, err := db.OCSPResponse(context.Background(), good, time.Now())
	if err != nil {
		t.Fatalf("the first response was not stored: %v", err)
	}
	other := newServer(t, h, db, ocsp.CacheOptions{})
	if resp := checkSuccess(t, h, post(t, other.URL, der), good, crypto.SHA1); !resp.ThisUpdate.Equal(stored.ThisUpdate) {
		t.Error("another node did not serve the stored response")
	}

	revoked := pki.MustNewSerial()
	db.certificate(t, h, revoked, notAfter, nil)
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	db.revoke(t, revoked, at, pki.ReasonKeyCompromise)
	resp := checkSuccess(t, h, post(t, s.URL, request(t, h.inter.Cert, revoked, crypto.SHA1)), revoked, crypto.SHA1)
	if resp.Status != xocsp.Revoked || !resp.RevokedAt.Equal(at) || resp.RevocationReason != int(pki.ReasonKeyCompromise) {
		t.Errorf("status %d at %s reason %d, want revoked at %s for keyCompromise", resp.Status, resp.RevokedAt, resp.RevocationReason, at)
	}

	unsigned := pki.MustNewSerial()
	db.certificate(t, h, unsigned, notAfter, nil)
	checkError(t, post(t, other.URL, request(t, h.inter.Cert, unsigned, crypto.SHA1)), http.StatusOK, unauthorized)
}
