package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/sealedkey"
)

var testPassphrase = []byte("token key passphrase for tests")

func TestKeyID(t *testing.T) {
	k := mustP256(t)
	kid, err := KeyID(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	if want := base64.RawURLEncoding.EncodeToString(sum[:16]); kid != want {
		t.Errorf("KeyID = %s, want %s", kid, want)
	}
	if len(kid) != 22 {
		t.Errorf("kid %q is %d characters, want 22", kid, len(kid))
	}
}

func TestEnsureKeyIdempotent(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	created, err := EnsureKey(ctx, st, testPassphrase, testNow)
	if err != nil || !created {
		t.Fatalf("first EnsureKey = %v, %v; want true, nil", created, err)
	}
	created, err = EnsureKey(ctx, st, testPassphrase, testNow.Add(time.Minute))
	if err != nil || created {
		t.Fatalf("second EnsureKey = %v, %v; want false, nil", created, err)
	}
	if len(st.keys) != 1 {
		t.Fatalf("%d keys stored, want 1", len(st.keys))
	}
	rec := st.keys[0]
	if rec.Algorithm != "ES256" || !rec.CreatedAt.Equal(testNow) || len(rec.KID) != 22 {
		t.Errorf("stored record %+v", rec)
	}
	if len(st.audit) != 1 || st.audit[0].Action != "token_key.create" || st.audit[0].Actor != "system" ||
		st.audit[0].Outcome != pki.OutcomeSuccess || st.audit[0].Detail["kid"] != rec.KID {
		t.Errorf("audit events %+v", st.audit)
	}

	keys, err := LoadKeys(ctx, st, testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	if keys.KID() != rec.KID {
		t.Errorf("loaded kid %s, stored %s", keys.KID(), rec.KID)
	}
	// The loaded key mints tokens that it then accepts.
	tokens := NewTokens(keys, testClock)
	tok, err := tokens.Mint(Claims{TokenID: testTokenID, Kind: pki.TokenAccount, Subject: testAccountID, ExpiresAt: testNow.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Parse(tok, pki.TokenAccount); err != nil {
		t.Error(err)
	}
}

// TestEnsureKeyLostRace is two pkid init runs at once: the other process
// stores its key between our read and our insert.
func TestEnsureKeyLostRace(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	st.beforeInsert = func(m *memStore) {
		m.beforeInsert = nil
		if _, err := EnsureKey(ctx, m, testPassphrase, testNow); err != nil {
			t.Errorf("the other process: %v", err)
		}
	}
	created, err := EnsureKey(ctx, st, testPassphrase, testNow)
	if err != nil || created {
		t.Fatalf("EnsureKey = %v, %v; want false, nil after losing the race", created, err)
	}
	if len(st.keys) != 1 {
		t.Errorf("%d keys stored, want 1", len(st.keys))
	}
}

func TestEnsureKeyStoreErrors(t *testing.T) {
	ctx := context.Background()
	down := fmt.Errorf("store: %w", pki.ErrUnavailable)

	st := newMemStore()
	st.keysErr = down
	if _, err := EnsureKey(ctx, st, testPassphrase, testNow); !errors.Is(err, pki.ErrUnavailable) {
		t.Errorf("EnsureKey with the database down = %v, want ErrUnavailable", err)
	}
	if _, err := EnsureKey(ctx, newMemStore(), nil, testNow); err == nil {
		t.Error("EnsureKey sealed a key with an empty passphrase")
	}
	// The other process won the race, but the database fails on re-reading.
	st = newMemStore()
	st.beforeInsert = func(m *memStore) {
		m.beforeInsert = nil
		m.keys = append(m.keys, &pki.TokenKeyRecord{KID: "other"})
		m.keysErr = down
	}
	if _, err := EnsureKey(ctx, st, testPassphrase, testNow); !errors.Is(err, pki.ErrUnavailable) {
		t.Errorf("EnsureKey when the re-read fails = %v, want ErrUnavailable", err)
	}
	// ErrAlreadyExists, yet no current key to be found: not a success.
	st = newMemStore()
	st.insertErr = fmt.Errorf("store: %w", pki.ErrAlreadyExists)
	if created, err := EnsureKey(ctx, st, testPassphrase, testNow); err == nil {
		t.Errorf("EnsureKey = %v, nil with no key stored", created)
	}
	st.insertErr = down
	if _, err := EnsureKey(ctx, st, testPassphrase, testNow); !errors.Is(err, pki.ErrUnavailable) {
		t.Errorf("EnsureKey with the insert failing = %v, want ErrUnavailable", err)
	}
}

func TestLoadKeys(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	if _, err := EnsureKey(ctx, st, testPassphrase, testNow); err != nil {
		t.Fatal(err)
	}

	t.Run("wrong passphrase", func(t *testing.T) {
		_, err := LoadKeys(ctx, st, []byte("not the passphrase"))
		if !errors.Is(err, sealedkey.ErrWrongPassphrase) {
			t.Errorf("LoadKeys = %v, want sealedkey.ErrWrongPassphrase", err)
		}
	})
	t.Run("no key", func(t *testing.T) {
		if _, err := LoadKeys(ctx, newMemStore(), testPassphrase); !errors.Is(err, ErrNoTokenKey) {
			t.Errorf("LoadKeys = %v, want ErrNoTokenKey", err)
		}
	})
	t.Run("database down", func(t *testing.T) {
		down := newMemStore()
		down.keysErr = fmt.Errorf("store: %w", pki.ErrUnavailable)
		if _, err := LoadKeys(ctx, down, testPassphrase); !errors.Is(err, pki.ErrUnavailable) {
			t.Errorf("LoadKeys = %v, want ErrUnavailable", err)
		}
	})

	tampered := func(change func(*pki.TokenKeyRecord)) *memStore {
		c := *st.keys[0]
		change(&c)
		m := newMemStore()
		m.keys = []*pki.TokenKeyRecord{&c}
		return m
	}
	t.Run("kid does not name the key", func(t *testing.T) {
		m := tampered(func(r *pki.TokenKeyRecord) { r.KID = "AAAAAAAAAAAAAAAAAAAAAA" })
		if _, err := LoadKeys(ctx, m, testPassphrase); err == nil {
			t.Error("LoadKeys accepted a key stored under another kid")
		}
	})
	t.Run("other algorithm", func(t *testing.T) {
		m := tampered(func(r *pki.TokenKeyRecord) { r.Algorithm = "HS256" })
		if _, err := LoadKeys(ctx, m, testPassphrase); err == nil {
			t.Error("LoadKeys accepted an HS256 key record")
		}
	})
	t.Run("newest key signs, every key verifies", func(t *testing.T) {
		older := newFixture(t)
		sealed, err := sealedkey.Seal(older.key, testPassphrase)
		if err != nil {
			t.Fatal(err)
		}
		m := newMemStore()
		m.keys = []*pki.TokenKeyRecord{
			st.keys[0],
			{KID: older.kid, Algorithm: "ES256", EncryptedKey: sealed, CreatedAt: testNow.Add(-24 * time.Hour)},
		}
		keys, err := LoadKeys(ctx, m, testPassphrase)
		if err != nil {
			t.Fatal(err)
		}
		if keys.KID() != st.keys[0].KID {
			t.Errorf("signing kid %s, want the newest %s", keys.KID(), st.keys[0].KID)
		}
		if len(keys.PublicKeys()) != 2 {
			t.Errorf("%d public keys, want 2", len(keys.PublicKeys()))
		}
		if _, err := NewTokens(keys, testClock).Parse(older.mint(t, pki.TokenAccount), pki.TokenAccount); err != nil {
			t.Errorf("token of the older key: %v", err)
		}
	})
}
