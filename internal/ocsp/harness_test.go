package ocsp_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/ocsp"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// The store implements what the responder and the re-signing job declare.
var (
	_ ocsp.Store       = (*store.DB)(nil)
	_ ocsp.ResignStore = (*store.DB)(nil)
)

const publicURL = "http://127.0.0.1:8080"

// hierarchy is a CA hierarchy made for the whole test binary, with the wall
// clock: openssl checks validity against its own.
type hierarchy struct {
	root, inter, signer *issuance.Issuer
	// twin has the intermediate's name and another key: a CertID with the
	// right name hash and its key hash names another CA (SECURITY.md O-11).
	twin *issuance.Issuer
	// otherSigner is a delegated responder certified by twin, which may not
	// sign for inter.
	otherSigner *issuance.Issuer
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
	if h.signer, err = issuance.NewOCSPSigner(h.inter, cfg, key(elliptic.P256()), now, l); err != nil {
		return nil, err
	}
	if h.twin, err = issuance.NewIntermediate(h.root, cfg, key(elliptic.P256()), now, l); err != nil {
		return nil, err
	}
	if h.otherSigner, err = issuance.NewOCSPSigner(h.twin, cfg, key(elliptic.P256()), now, l); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *hierarchy) issuers() []*x509.Certificate    { return []*x509.Certificate{h.inter.Cert} }
func (h *hierarchy) current(string) *issuance.Issuer { return h.signer }

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
		DNSNames:   []string{"svc.acme.example"},
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

// status describes a response to sign in tests.
type status struct {
	revokedAt time.Time // zero: good
	reason    pki.RevocationReason
	// thisUpdate and validity default to issuance.OCSPWindow(now, 24h).
	thisUpdate time.Time
	validity   time.Duration
}

// response signs a stored-form (SHA-1) response about serial, as the CA does.
func (h *hierarchy) response(t testing.TB, serial pki.Serial, st status) *pki.OCSPResponse {
	t.Helper()
	validity := st.validity
	if validity == 0 {
		validity = 24 * time.Hour
	}
	this, next := issuance.OCSPWindow(time.Now(), validity)
	if !st.thisUpdate.IsZero() {
		this, next = st.thisUpdate, st.thisUpdate.Add(validity-time.Second)
	}
	s := issuance.OCSPStatus{Serial: serial, ThisUpdate: this, NextUpdate: next}
	if !st.revokedAt.IsZero() {
		s.Revoked, s.RevokedAt, s.Reason = true, st.revokedAt, st.reason
	}
	der, err := h.signer.SignOCSP(h.inter.Cert, s, crypto.SHA1)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.OCSPResponse{Serial: serial, IssuerID: h.inter.ID, DER: der, ThisUpdate: this, NextUpdate: next}
}

// database is a fresh database with the hierarchy and an account in it.
type database struct {
	*store.DB
	account *pki.Account
}

func newDatabase(t testing.TB, h *hierarchy) *database {
	t.Helper()
	ctx := context.Background()
	db := testdb.Open(t)
	ev := pki.AuditEvent{Actor: "system", Action: "test.setup", Outcome: pki.OutcomeSuccess}
	acct := &pki.Account{Name: "Acme", Plan: pki.PlanEnterprise}
	if err := db.CreateAccount(ctx, acct, ev); err != nil {
		t.Fatal(err)
	}
	rec := func(kind pki.IssuerKind, is, parent *issuance.Issuer) *pki.IssuerRecord {
		r := &pki.IssuerRecord{ID: is.ID, Kind: kind, Certificate: is.Cert.Raw, EncryptedKey: []byte("sealed"),
			Subject: is.Cert.Subject.String(), NotBefore: is.Cert.NotBefore, NotAfter: is.Cert.NotAfter}
		if parent != nil {
			r.ParentID = parent.ID
		}
		return r
	}
	if err := db.InsertIssuers(ctx, []*pki.IssuerRecord{
		rec(pki.IssuerRoot, h.root, nil), rec(pki.IssuerIntermediate, h.inter, h.root), rec(pki.IssuerOCSP, h.signer, h.inter),
	}, ev); err != nil {
		t.Fatal(err)
	}
	return &database{DB: db, account: acct}
}

// certificate records a certificate with serial, expiring at notAfter, the
// way the CA does (pending, then issued), and stores resp as its response
// unless it is nil.
func (d *database) certificate(t testing.TB, h *hierarchy, serial pki.Serial, notAfter time.Time, resp *pki.OCSPResponse) {
	t.Helper()
	ctx := context.Background()
	spki := make([]byte, 32)
	rand.Read(spki)
	c := &pki.Certificate{
		Serial: serial, IssuerID: h.inter.ID, AccountID: d.account.ID, State: pki.StatePending,
		LintDER: []byte("lint"), SubjectCN: "svc.acme.example", SPKISHA256: spki,
		NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter,
	}
	ev := pki.AuditEvent{Actor: "system", Action: "certificate.signing", Outcome: pki.OutcomeSuccess, Serial: serial}
	if err := d.CreatePending(ctx, c, ev); err != nil {
		t.Fatal(err)
	}
	der := []byte("certificate " + serial)
	fp := sha256.Sum256(der)
	ev.Action = "certificate.issued"
	if err := d.MarkIssued(ctx, serial, der, fp[:], ev); err != nil {
		t.Fatal(err)
	}
	if resp != nil {
		if err := d.PutOCSPResponse(ctx, resp); err != nil {
			t.Fatal(err)
		}
	}
}

// revoke marks serial revoked in the certificates table, as a revocation
// does, without touching its response.
func (d *database) revoke(t testing.TB, serial pki.Serial, at time.Time, reason pki.RevocationReason) {
	t.Helper()
	if _, err := d.Pool().Exec(context.Background(),
		"UPDATE certificates SET revoked_at = $2, revocation_reason = $3 WHERE serial = $1",
		string(serial), at, int16(reason)); err != nil {
		t.Fatal(err)
	}
}

// server is a responder over HTTP.
type server struct {
	*httptest.Server
	cache   *ocsp.Cache
	metrics *countingMetrics
}

func newServer(t testing.TB, h *hierarchy, st ocsp.Store, opts ocsp.CacheOptions) *server {
	t.Helper()
	return newServerWith(t, ocsp.NewCache(st, opts), h.issuers, h.current)
}

// newServerWith serves c for the issuers given, signing with signer.
func newServerWith(t testing.TB, c *ocsp.Cache, issuers func() []*x509.Certificate, signer func(string) *issuance.Issuer) *server {
	t.Helper()
	m := &countingMetrics{counts: map[[2]string]int{}}
	r := ocsp.NewResponder(c, issuers, signer, nil, m)
	router := chi.NewRouter()
	r.Routes(router)
	s := &server{Server: httptest.NewServer(router), cache: c, metrics: m}
	t.Cleanup(s.Close)
	return s
}

// countingMetrics records OCSPAnswered calls.
type countingMetrics struct {
	mu     sync.Mutex
	counts map[[2]string]int
}

func (m *countingMetrics) OCSPAnswered(status, source string) {
	m.mu.Lock()
	m.counts[[2]string{status, source}]++
	m.mu.Unlock()
}

func (m *countingMetrics) count(status, source string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[[2]string{status, source}]
}

// answer is an HTTP response from the responder.
type answer struct {
	code   int
	header http.Header
	body   []byte
	sent   time.Time // when the request left: the server answered after it
}

func do(t testing.TB, req *http.Request) answer {
	t.Helper()
	sent := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{code: resp.StatusCode, header: resp.Header, body: body, sent: sent}
}

func post(t testing.TB, url string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/ocsp", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	return do(t, req)
}

// get sends path (already escaped) as it is: the http package would
// re-escape a path it parsed.
func get(t testing.TB, base, path string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = path
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

// writePEM writes certificates to a file in dir and returns its path.
func writePEM(t testing.TB, dir, name string, ders ...[]byte) string {
	t.Helper()
	var out []byte
	for _, der := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issuanceStatus is the status that r states, for signing it again.
func issuanceStatus(serial pki.Serial, r *pki.OCSPResponse) issuance.OCSPStatus {
	return issuance.OCSPStatus{Serial: serial, ThisUpdate: r.ThisUpdate, NextUpdate: r.NextUpdate}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
