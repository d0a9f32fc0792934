package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/testdb"
)

func TestIssuers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)

	if got, err := db.Issuers(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Issuers on an empty database = %v, %v", got, err)
	}
	root := issuerRecord(pki.IssuerRoot, "")
	inter := issuerRecord(pki.IssuerIntermediate, root.ID)
	signer := issuerRecord(pki.IssuerOCSP, inter.ID)
	signer.EncryptedKey, signer.KeyURI = nil, "pkcs11:token=pkid;object=ocsp"
	if err := db.InsertIssuers(ctx, []*pki.IssuerRecord{root, inter, signer}, event("ca.init")); err != nil {
		t.Fatal(err)
	}
	if root.CreatedAt.IsZero() {
		t.Error("InsertIssuers did not fill in CreatedAt")
	}

	t.Run("second init", func(t *testing.T) {
		root2 := issuerRecord(pki.IssuerRoot, "")
		signer2 := issuerRecord(pki.IssuerOCSP, inter.ID)
		before := count(t, db, "SELECT count(*) FROM audit_events")
		err := db.InsertIssuers(ctx, []*pki.IssuerRecord{signer2, root2}, event("ca.init"))
		if !errors.Is(err, pki.ErrAlreadyExists) {
			t.Fatalf("InsertIssuers = %v, want ErrAlreadyExists", err)
		}
		if n := count(t, db, "SELECT count(*) FROM issuers"); n != 3 {
			t.Errorf("%d issuers after a refused insert, want 3 (nothing stored)", n)
		}
		if after := count(t, db, "SELECT count(*) FROM audit_events"); after != before {
			t.Error("a refused insert wrote an audit event")
		}
	})

	got, err := db.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != root.ID || got[1].ID != inter.ID || got[2].ID != signer.ID {
		t.Fatalf("Issuers = %v, want root, intermediate, OCSP signer", got)
	}
	if got[0].ParentID != "" || got[1].ParentID != root.ID || string(got[1].EncryptedKey) != string(inter.EncryptedKey) ||
		got[1].KeyURI != "" || got[2].EncryptedKey != nil || got[2].KeyURI != signer.KeyURI ||
		string(got[1].Certificate) != string(inter.Certificate) || got[1].Subject != inter.Subject ||
		!got[1].NotAfter.Equal(inter.NotAfter) || got[1].RetiredAt != nil {
		t.Errorf("Issuers read back %+v", got)
	}

	successor := issuerRecord(pki.IssuerOCSP, inter.ID)
	retiredAt := time.Now().UTC().Truncate(time.Microsecond)
	replace := []struct {
		name string
		old  string
		rec  *pki.IssuerRecord
		want error
	}{
		{"renew the OCSP signer", signer.ID, successor, nil},
		{"the old signer again (lost race)", signer.ID, issuerRecord(pki.IssuerOCSP, inter.ID), pki.ErrNotFound},
		{"unknown issuer", "ffff", issuerRecord(pki.IssuerOCSP, inter.ID), pki.ErrNotFound},
		{"successor id taken", successor.ID, successor, pki.ErrAlreadyExists},
	}
	for _, tt := range replace {
		t.Run("replace/"+tt.name, func(t *testing.T) {
			before := count(t, db, "SELECT count(*) FROM issuers")
			ev := event("ca.rotate")
			ev.OccurredAt = retiredAt
			err := db.ReplaceIssuer(ctx, tt.old, tt.rec, ev)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReplaceIssuer = %v, want %v", err, tt.want)
			}
			after := count(t, db, "SELECT count(*) FROM issuers")
			if tt.want == nil && after != before+1 || tt.want != nil && after != before {
				t.Errorf("issuers %d → %d", before, after)
			}
		})
	}
	got, err = db.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].ID != successor.ID {
		t.Errorf("after renewal Issuers = %v, want the successor as OCSP signer", got)
	}
	var retired time.Time
	if err := db.Pool().QueryRow(ctx, "SELECT retired_at FROM issuers WHERE id = $1", signer.ID).Scan(&retired); err != nil || !retired.Equal(retiredAt) {
		t.Errorf("old signer retired at %v (%v), want %v", retired, err, retiredAt)
	}
}

func TestTokenKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	key := &pki.TokenKeyRecord{KID: "k1", Algorithm: "ES256", EncryptedKey: []byte("sealed")}
	if err := db.InsertTokenKey(ctx, key, event("token_key.create")); err != nil {
		t.Fatal(err)
	}
	if key.CreatedAt.IsZero() {
		t.Error("InsertTokenKey did not fill in CreatedAt")
	}
	tests := []struct {
		name string
		key  *pki.TokenKeyRecord
	}{
		{"a second current key", &pki.TokenKeyRecord{KID: "k2", Algorithm: "ES256", EncryptedKey: []byte("x")}},
		{"the same kid", &pki.TokenKeyRecord{KID: "k1", Algorithm: "ES256", EncryptedKey: []byte("x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := db.InsertTokenKey(ctx, tt.key, event("token_key.create")); !errors.Is(err, pki.ErrAlreadyExists) {
				t.Fatalf("InsertTokenKey = %v, want ErrAlreadyExists", err)
			}
		})
	}
	keys, err := db.TokenKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].KID != "k1" || keys[0].Algorithm != "ES256" || string(keys[0].EncryptedKey) != "sealed" || keys[0].RetiredAt != nil {
		t.Errorf("TokenKeys = %+v", keys)
	}
}

// TestInitRace runs the writes of pkid init from several processes at once:
// one wins, the others get ErrAlreadyExists and store nothing.
func TestInitRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	const n = 4
	errs := make(chan error, 2*n)
	done := make(chan struct{})
	for i := range n {
		go func() {
			root := issuerRecord(pki.IssuerRoot, "")
			errs <- db.InsertIssuers(ctx, []*pki.IssuerRecord{root, issuerRecord(pki.IssuerIntermediate, root.ID)}, event("ca.init"))
			errs <- db.InsertTokenKey(ctx, &pki.TokenKeyRecord{KID: string(rune('a' + i)), Algorithm: "ES256", EncryptedKey: []byte("x")}, event("token_key.create"))
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
	}
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, pki.ErrAlreadyExists):
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 2 {
		t.Errorf("%d writes succeeded, want one hierarchy and one token key", ok)
	}
	if n := count(t, db, "SELECT count(*) FROM issuers"); n != 2 {
		t.Errorf("%d issuers stored, want 2", n)
	}
	if n := count(t, db, "SELECT count(*) FROM token_keys"); n != 1 {
		t.Errorf("%d token keys stored, want 1", n)
	}
}
