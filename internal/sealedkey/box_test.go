package sealedkey

import (
	"bytes"
	"errors"
	"testing"
)

func TestBox(t *testing.T) {
	salt := bytes.Repeat([]byte{7}, MinSaltLength)
	box, err := NewBox([]byte("passphrase"), salt)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("whsec_0123456789")
	ctx := []byte("webhook-secret:acct-1")
	sealed := box.Seal(secret, ctx)
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed value holds the plaintext")
	}
	if again := box.Seal(secret, ctx); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one secret are equal: the nonce is not fresh")
	}
	got, err := box.Open(sealed, ctx)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v; want the secret", got, err)
	}

	other, err := NewBox([]byte("another passphrase"), salt)
	if err != nil {
		t.Fatal(err)
	}
	otherSalt, err := NewBox([]byte("passphrase"), bytes.Repeat([]byte{8}, MinSaltLength))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"wrong passphrase": func() ([]byte, error) { return other.Open(sealed, ctx) },
		"wrong salt":       func() ([]byte, error) { return otherSalt.Open(sealed, ctx) },
		"other context":    func() ([]byte, error) { return box.Open(sealed, []byte("webhook-secret:acct-2")) },
		"flipped byte":     func() ([]byte, error) { return box.Open(flipped, ctx) },
	} {
		if _, err := open(); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("%s: err = %v, want ErrWrongPassphrase", name, err)
		}
	}
	for name, bad := range map[string][]byte{"empty": nil, "short": sealed[:20], "version": append([]byte{9}, sealed[1:]...)} {
		if _, err := box.Open(bad, ctx); err == nil || errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("%s: err = %v, want a format error", name, err)
		}
	}
	if _, err := NewBox(nil, salt); !errors.Is(err, ErrEmptyPassphrase) {
		t.Errorf("empty passphrase: %v", err)
	}
	if _, err := NewBox([]byte("p"), salt[:8]); err == nil {
		t.Error("an 8-byte salt was accepted")
	}
}
