package crl_test

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/crl"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
	"github.com/pkid/pkid/internal/testnode"
)

// The store implements what the job and the cache declare.
var (
	_ crl.Store      = (*store.DB)(nil)
	_ crl.CacheStore = (*store.DB)(nil)
)

const publicURL = "http://127.0.0.1:8080"

var crlURL = publicURL + "/crl"

// hierarchy is a root and an intermediate made for the whole test binary,
// with the wall clock: openssl checks validity against its own.
type hierarchy struct {
	root, inter *issuance.Issuer
	linter      *lint.Linter
}

var (
	hierOnce sync.Once
	hier     *hierarchy
	hierErr  error
)

func testHierarchy(t testing.TB) *hierarchy {
	t.Helper()
	hierOnce.Do(func() { hier, hierErr = makeHierarchy() })
	if hierErr != nil {
		t.Fatalf("making the CA hierarchy: %v", hierErr)
	}
	return hier
}

func makeHierarchy() (*hierarchy, error) {
	l, err := lint.New()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	cfg := issuance.HierarchyConfig{PublicURL: publicURL}
	key := func(c elliptic.Curve) crypto.Signer {
		k, err := issuance.GenerateKey(c)
		if err != nil {
			panic(err)
		}
		return k
	}
	h := &hierarchy{linter: l}
	if h.root, err = issuance.NewRoot(cfg, key(elliptic.P384()), now, l); err != nil {
		return nil, err
	}
	if h.inter, err = issuance.NewIntermediate(h.root, cfg, key(elliptic.P256()), now, l); err != nil {
		return nil, err
	}
	return h, nil
}

// leaf issues a real client certificate under the intermediate.
func (h *hierarchy) leaf(t testing.TB) *x509.Certificate {
	t.Helper()
	key, err := issuance.GenerateKey(elliptic.P256())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p, err := h.inter.Prepare(issuance.ClientProfile{PublicURL: publicURL}, issuance.ClientRequest{
		Serial:     pki.MustNewSerial(),
		PublicKey:  key.Public(),
		CommonName: "svc.acme.example",
		AccountID:  "7d5c0a52-8f3e-4b8e-9d0b-4c1e6c2f9a10",
		NotBefore:  now.Add(-5 * time.Minute).Truncate(time.Second),
		NotAfter:   now.Add(30 * 24 * time.Hour).Truncate(time.Second),
	}, h.linter)
	if err != nil {
		t.Fatal(err)
	}
	der, err := h.inter.Issue(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// env is a database holding the hierarchy and an account, and a clock.
type env struct {
	url     string
	db      *store.DB
	h       *hierarchy
	account string
	clock   *testnode.Clock
}

func newEnv(t testing.TB) *env {
	t.Helper()
	h := testHierarchy(t)
	e := &env{url: testdb.New(t), h: h, clock: testnode.NewClock(time.Now().UTC().Truncate(time.Second))}
	e.db = e.open(t)
	ctx := context.Background()
	var recs []*pki.IssuerRecord
	for _, x := range []struct {
		kind   pki.IssuerKind
		is     *issuance.Issuer
		parent string
	}{{pki.IssuerRoot, h.root, ""}, {pki.IssuerIntermediate, h.inter, h.root.ID}} {
		recs = append(recs, &pki.IssuerRecord{
			ID: x.is.ID, Kind: x.kind, ParentID: x.parent, Certificate: x.is.Cert.Raw,
			EncryptedKey: []byte("sealed elsewhere"), Subject: x.is.Cert.Subject.String(),
			NotBefore: x.is.Cert.NotBefore, NotAfter: x.is.Cert.NotAfter,
		})
	}
	ev := pki.AuditEvent{Actor: "system", Action: "ca.hierarchy.created", Outcome: pki.OutcomeSuccess}
	if err := e.db.InsertIssuers(ctx, recs, ev); err != nil {
		t.Fatal(err)
	}
	acct := &pki.Account{Name: "Acme", Plan: pki.PlanEnterprise}
	if err := e.db.CreateAccount(ctx, acct, pki.AuditEvent{Actor: "system", Action: "account.created", Outcome: pki.OutcomeSuccess}); err != nil {
		t.Fatal(err)
	}
	e.account = acct.ID
	return e
}

// open returns another connection pool on the env's database: another
// node.
func (e *env) open(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// revoke writes a revoked (pending) certificate row of the intermediate
// directly, as the revocation use case leaves it, and returns its serial.
func (e *env) revoke(t testing.TB, serial pki.Serial, notAfter, revokedAt time.Time, reason pki.RevocationReason) pki.Serial {
	t.Helper()
	if serial == "" {
		serial = pki.MustNewSerial()
	}
	_, err := e.db.Pool().Exec(context.Background(), `INSERT INTO certificates
		(serial, issuer_id, account_id, state, lint_der, spki_sha256, subject_cn, not_before, not_after,
		 revoked_at, revocation_reason)
		VALUES ($1, $2, $3, 'pending', '\x00', sha256(convert_to($1, 'UTF8')), 'x', $4, $5, $6, $7)`,
		string(serial), e.h.inter.ID, e.account, notAfter.Add(-90*24*time.Hour), notAfter, revokedAt, int16(reason))
	if err != nil {
		t.Fatalf("writing a revoked certificate: %v", err)
	}
	return serial
}

func (e *env) intermediate() *issuance.Issuer { return e.h.inter }

// job returns a job for the intermediate on db (the env's own when nil),
// on the env's clock unless cfg has one.
func (e *env) job(t testing.TB, db *store.DB, cache *crl.Cache, cfg crl.JobConfig) *crl.Job {
	t.Helper()
	if db == nil {
		db = e.db
	}
	if cfg.Now == nil {
		cfg.Now = e.clock.Now
	}
	if cfg.IDPURL == "" && !cfg.CA {
		cfg.IDPURL = crlURL
	}
	j, err := crl.NewJob(db, e.intermediate, cache, e.h.linter, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// parse parses and verifies a CRL of the intermediate.
func (h *hierarchy) parse(t testing.TB, der []byte) *x509.RevocationList {
	t.Helper()
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(h.inter.Cert); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	return rl
}

// serials lists the serials of a CRL.
func serials(rl *x509.RevocationList) map[pki.Serial]int {
	out := map[pki.Serial]int{}
	for _, e := range rl.RevokedCertificateEntries {
		out[pki.SerialFromBig(e.SerialNumber)] = e.ReasonCode
	}
	return out
}

// openssl runs the real openssl binary and returns its combined output.
func openssl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	return string(out), err
}

// writePEM writes blocks of one type to a file in dir.
func writePEM(t testing.TB, dir, name, typ string, ders ...[]byte) string {
	t.Helper()
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// count returns the result of a COUNT(*) query.
func count(t testing.TB, db *store.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool().QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
