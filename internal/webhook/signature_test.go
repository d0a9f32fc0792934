package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestSignatureVerifies(t *testing.T) {
	secret := []byte("whsec_test")
	body := []byte(`{"id":"d1","type":"certificate.expiring"}`)
	at := time.Unix(1_700_000_000, 0)
	header := SignatureHeader(at, body, secret)

	// The scheme, computed independently of Sign: HMAC-SHA256 over
	// "<unix>.<body>", hex.
	mac := hmac.New(sha256.New, secret)
	fmt.Fprintf(mac, "%d.%s", at.Unix(), body)
	if want := "t=1700000000,v1=" + hex.EncodeToString(mac.Sum(nil)); header != want {
		t.Fatalf("header = %q, want %q", header, want)
	}
	if err := Verify(header, body, secret, at.Add(time.Minute), 0); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	other := []byte("whsec_other")
	tests := []struct {
		name   string
		header string
		body   []byte
		secret []byte
		now    time.Time
		want   error
	}{
		{"tampered body", header, []byte(`{"id":"d2","type":"certificate.expiring"}`), secret, at, ErrNoSignature},
		{"wrong secret", header, body, other, at, ErrNoSignature},
		{"replayed too late", header, body, secret, at.Add(DefaultTolerance + time.Second), ErrBadTimestamp},
		{"from the future", header, body, secret, at.Add(-DefaultTolerance - time.Second), ErrBadTimestamp},
		{"timestamp changed", strings.Replace(header, "t=1700000000", "t=1700000001", 1), body, secret, at, ErrNoSignature},
		{"no timestamp", header[strings.Index(header, ",")+1:], body, secret, at, ErrBadHeader},
		{"two timestamps", "t=1,t=2", body, secret, at, ErrBadHeader},
		{"garbage", "hello", body, secret, at, ErrBadHeader},
		{"empty", "", body, secret, at, ErrBadHeader},
		{"only another scheme", "t=1700000000,v0=" + strings.Repeat("ab", 32), body, secret, at, ErrNoSignature},
		{"oversized", "t=1700000000,v1=" + strings.Repeat("a", 2000), body, secret, at, ErrBadHeader},
		{"the signature in capitals", "t=1700000000,v1=" + strings.ToUpper(header[len("t=1700000000,v1="):]), body, secret, at, ErrNoSignature},
		{"the timestamp with a sign", strings.Replace(header, "t=", "t=+", 1), body, secret, at, ErrBadHeader},
		{"the timestamp with a leading zero", strings.Replace(header, "t=", "t=0", 1), body, secret, at, ErrBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Verify(tt.header, tt.body, tt.secret, tt.now, 0); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// After a rotation a notice carries a signature by each secret, and a
// receiver holding either accepts it.
func TestSignatureDuringRotation(t *testing.T) {
	oldSecret, newSecret := []byte("whsec_old"), []byte("whsec_new")
	body := []byte(`{}`)
	at := time.Unix(1_700_000_000, 0)
	header := SignatureHeader(at, body, newSecret, oldSecret)
	if n := strings.Count(header, "v1="); n != 2 {
		t.Fatalf("header %q has %d v1 signatures, want 2", header, n)
	}
	for _, s := range [][]byte{oldSecret, newSecret} {
		if err := Verify(header, body, s, at, 0); err != nil {
			t.Errorf("Verify with %s: %v", s, err)
		}
	}
	if err := Verify(header, body, []byte("whsec_third"), at, 0); !errors.Is(err, ErrNoSignature) {
		t.Errorf("a third secret: %v", err)
	}
}

func TestNewSecret(t *testing.T) {
	a, b := newSecret(), newSecret()
	if !strings.HasPrefix(string(a), secretPrefix) || len(a) != len(secretPrefix)+43 {
		t.Fatalf("secret %q: want whsec_ and 43 base64url characters (32 bytes)", a)
	}
	if string(a) == string(b) {
		t.Fatal("two secrets are equal")
	}
}
