package store_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
)

// fixture is a database with an account and a CA hierarchy in it, the
// minimum that certificates refer to.
type fixture struct {
	db      *store.DB
	account *pki.Account
	issuer  *pki.IssuerRecord // the intermediate
}

func newFixture(t testing.TB, db *store.DB) *fixture {
	t.Helper()
	f := &fixture{db: db}
	f.account = f.newAccount(t, "Acme")
	root := issuerRecord(pki.IssuerRoot, "")
	inter := issuerRecord(pki.IssuerIntermediate, root.ID)
	if err := db.InsertIssuers(context.Background(), []*pki.IssuerRecord{root, inter}, event("ca.init")); err != nil {
		t.Fatalf("InsertIssuers: %v", err)
	}
	f.issuer = inter
	return f
}

func (f *fixture) newAccount(t testing.TB, name string) *pki.Account {
	t.Helper()
	a := &pki.Account{Name: name, Plan: pki.PlanEnterprise}
	if err := f.db.CreateAccount(context.Background(), a, event("account.create")); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	return a
}

// blockedKey puts a random SPKI hash on the block list and returns it.
func (f *fixture) blockedKey(t testing.TB) []byte {
	t.Helper()
	key := randomBytes(32)
	if _, err := f.db.Pool().Exec(context.Background(), "INSERT INTO blocked_keys (spki_sha256, source) VALUES ($1, 'test')", key); err != nil {
		t.Fatal(err)
	}
	return key
}

// pending returns a certificate record ready for CreatePending: a fresh
// serial and a fresh key unless spki is given.
func (f *fixture) pending(accountID string, spki []byte) *pki.Certificate {
	if spki == nil {
		spki = randomBytes(32)
	}
	now := time.Now().UTC().Truncate(time.Second)
	return &pki.Certificate{
		Serial:     pki.MustNewSerial(),
		IssuerID:   f.issuer.ID,
		AccountID:  accountID,
		State:      pki.StatePending,
		LintDER:    randomBytes(300),
		SubjectCN:  "client.example",
		SPKISHA256: spki,
		NotBefore:  now.Add(-time.Hour),
		NotAfter:   now.Add(90 * 24 * time.Hour),
	}
}

// issue records c as pending and marks it issued.
func (f *fixture) issue(t testing.TB, c *pki.Certificate) *pki.Certificate {
	t.Helper()
	ctx := context.Background()
	if err := f.db.CreatePending(ctx, c, event("certificate.signing")); err != nil {
		t.Fatalf("CreatePending: %v", err)
	}
	der := randomBytes(400)
	fp := sha256.Sum256(der)
	if err := f.db.MarkIssued(ctx, c.Serial, der, fp[:], event("certificate.issued")); err != nil {
		t.Fatalf("MarkIssued: %v", err)
	}
	c.State, c.DER, c.FingerprintSHA256 = pki.StateIssued, der, fp[:]
	return c
}

// standInResponse returns a stand-in for an OCSP response about c: the
// store keeps the bytes and never parses them.
func standInResponse(c *pki.Certificate) *pki.OCSPResponse {
	now := time.Now().UTC().Truncate(time.Second)
	return &pki.OCSPResponse{Serial: c.Serial, IssuerID: c.IssuerID, DER: randomBytes(200),
		ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour)}
}

func issuerRecord(kind pki.IssuerKind, parent string) *pki.IssuerRecord {
	der := randomBytes(500)
	sum := sha256.Sum256(der)
	now := time.Now().UTC().Truncate(time.Second)
	return &pki.IssuerRecord{
		ID:           hex.EncodeToString(sum[:]),
		Kind:         kind,
		ParentID:     parent,
		Certificate:  der,
		EncryptedKey: []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\n...\n-----END ENCRYPTED PRIVATE KEY-----\n"),
		Subject:      "CN=pkid " + string(kind),
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
	}
}

func event(action string) pki.AuditEvent {
	return pki.AuditEvent{Actor: "system", Action: action, Outcome: pki.OutcomeSuccess, RequestID: "req-1"}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newUUID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
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

// createPending calls CreatePending for c with a stand-in first response.
func createPending(ctx context.Context, f *fixture, c *pki.Certificate, ev pki.AuditEvent) error {
	return f.db.CreatePending(ctx, c, ev)
}

// validUUIDString reports whether s looks like the UUIDs newUUID makes.
func validUUIDString(s string) bool {
	return len(s) == 36 && strings.Count(s, "-") == 4
}
