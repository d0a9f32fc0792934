package app_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// TestInitRecoversAnExpiredOCSPSigner: serve refuses an expired OCSP signer;
// a second init replaces it and serve loads again. Init is otherwise
// idempotent: the root and intermediate stay.
func TestInitRecoversAnExpiredOCSPSigner(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, err := store.Open(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	l, err := lint.New()
	if err != nil {
		t.Fatal(err)
	}
	pass := []byte(testPassphrase)
	past := time.Now().Add(-48 * time.Hour)
	cfg := ca.InitConfig{Hierarchy: issuance.HierarchyConfig{PublicURL: "http://pkid.test", OCSPValidity: 24 * time.Hour}}
	created, fp1, err := ca.Init(ctx, db, cfg, keystore.Sealed(pass), l, past)
	if err != nil || !created {
		t.Fatalf("first init: %v %v", created, err)
	}
	if _, err := ca.LoadHierarchy(ctx, db, keystore.Sealed(pass), time.Now()); !errors.Is(err, ca.ErrExpired) {
		t.Fatalf("loading with an expired OCSP signer: %v, want ErrExpired", err)
	}
	created, fp2, err := ca.Init(ctx, db, cfg, keystore.Sealed(pass), l, time.Now())
	if err != nil || created || fp2 != fp1 {
		t.Fatalf("second init: created %v, fingerprint %s vs %s, %v", created, fp2, fp1, err)
	}
	h, err := ca.LoadHierarchy(ctx, db, keystore.Sealed(pass), time.Now())
	if err != nil {
		t.Fatalf("loading after the second init: %v", err)
	}
	if !h.OCSPSigner().Cert.NotAfter.After(time.Now()) {
		t.Errorf("the OCSP signer was not replaced")
	}
	recs, err := db.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[pki.IssuerKind]int{}
	for _, r := range recs {
		kinds[r.Kind]++
	}
	if kinds[pki.IssuerRoot] != 1 || kinds[pki.IssuerIntermediate] != 1 || kinds[pki.IssuerOCSP] != 1 {
		t.Errorf("current issuers after re-init: %v", kinds)
	}
}
