package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pkid/pkid/internal/pki"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testClock() time.Time { return testNow }

const (
	testAccountID = "0b7f3c4e-9a61-4f2d-8c55-3e2a1d9b7c10"
	testAdminID   = "5d0c8a2e-1f3b-4a7c-9e64-b2f1a0c3d8e9"
	testTokenID   = "8e1f6a3b-2c4d-4e5f-a6b7-c8d9e0f1a2b3"
)

// fixture is a key set with one P-256 key and Tokens on a pinned clock.
type fixture struct {
	key    *ecdsa.PrivateKey
	kid    string
	keys   *Keys
	tokens *Tokens
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{key: key, kid: keys.KID(), keys: keys, tokens: NewTokens(keys, testClock)}
}

// mint mints a token for kind that expires in an hour.
func (f *fixture) mint(t testing.TB, kind pki.TokenKind) string {
	t.Helper()
	c := Claims{TokenID: testTokenID, Kind: kind, Subject: testAccountID, ExpiresAt: testNow.Add(time.Hour)}
	if kind == pki.TokenAdmin {
		c.Subject, c.Username = testAdminID, "alice"
	}
	tok, err := f.tokens.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// header and claims return what Mint would write, as maps that a test can
// spoil before signing them with forge.
func (f *fixture) header() map[string]any {
	return map[string]any{"alg": "ES256", "typ": "JWT", "kid": f.kid}
}

func claimsFor(kind pki.TokenKind) map[string]any {
	c := map[string]any{
		"iss":  Issuer,
		"sub":  testAccountID,
		"aud":  []string{AudienceAccountAPI},
		"exp":  testNow.Add(time.Hour).Unix(),
		"nbf":  testNow.Unix(),
		"iat":  testNow.Unix(),
		"jti":  testTokenID,
		"kind": string(kind),
	}
	if kind == pki.TokenAdmin {
		c["sub"], c["aud"], c["preferred_username"] = testAdminID, []string{AudienceAdminAPI}, "alice"
	}
	return c
}

func segment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// forge builds a compact JWS from header and claims and signs it with method
// and key, as an attacker (or a buggy minter) would.
func forge(t testing.TB, method jwt.SigningMethod, key any, header, claims map[string]any) string {
	t.Helper()
	signing := segment(t, header) + "." + segment(t, claims)
	sig, err := method.Sign(signing, key)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// with returns a copy of m with the given keys set, or deleted when the value
// is the deleted marker.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == deleted {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

var deleted = &struct{ name string }{"deleted"}

var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func mustP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// attackerJWK returns the public JWK (RFC 7518 §6.2) of an attacker's key.
func attackerJWK(t testing.TB, k *ecdsa.PrivateKey) map[string]any {
	t.Helper()
	pt, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"kty": "EC", "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(pt[1:33]),
		"y": base64.RawURLEncoding.EncodeToString(pt[33:]),
	}
}

func attackerCert(t testing.TB, k *ecdsa.PrivateKey) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pkid"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TestParseRefusesAttacks is SECURITY.md §1.6 (J-01 to J-12, J-15) as a table:
// each token must be refused with pki.ErrUnauthenticated.
func TestParseRefusesAttacks(t *testing.T) {
	f := newFixture(t)
	attacker := mustP256(t)
	attackerKID, err := KeyID(attacker.Public())
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(f.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	acct := claimsFor(pki.TokenAccount)
	es256 := jwt.SigningMethodES256
	ours := func(h, c map[string]any) string { return forge(t, es256, f.key, h, c) }
	unsigned := func(alg string) string {
		return segment(t, with(f.header(), "alg", alg)) + "." + segment(t, acct) + "."
	}
	valid := f.mint(t, pki.TokenAccount)
	parts := strings.Split(valid, ".")

	tests := []struct {
		name  string
		token string
		kind  pki.TokenKind // default account
	}{
		// J-01
		{name: "alg none", token: unsigned("none")},
		{name: "alg None", token: unsigned("None")},
		{name: "alg NONE", token: unsigned("NONE")},
		{name: "alg missing", token: segment(t, with(f.header(), "alg", deleted)) + "." + parts[1] + "." + parts[2]},
		// J-02
		{name: "HS256 keyed with the public key PEM", token: forge(t, jwt.SigningMethodHS256, pubPEM, with(f.header(), "alg", "HS256"), acct)},
		{name: "HS256 keyed with the public key DER", token: forge(t, jwt.SigningMethodHS256, spki, with(f.header(), "alg", "HS256"), acct)},
		// J-03
		{name: "RS256", token: forge(t, jwt.SigningMethodRS256, rsaKey(), with(f.header(), "alg", "RS256"), acct)},
		{name: "PS256", token: forge(t, jwt.SigningMethodPS256, rsaKey(), with(f.header(), "alg", "PS256"), acct)},
		{name: "ES384", token: forge(t, jwt.SigningMethodES384, p384, with(f.header(), "alg", "ES384"), acct)},
		{name: "ES256 by another key under our kid", token: forge(t, es256, attacker, f.header(), acct)},
		// J-04
		{name: "aud missing", token: ours(f.header(), with(acct, "aud", deleted))},
		{name: "aud wrong", token: ours(f.header(), with(acct, "aud", "other-service"))},
		{name: "aud empty list", token: ours(f.header(), with(acct, "aud", []string{}))},
		// J-05
		{name: "iss missing", token: ours(f.header(), with(acct, "iss", deleted))},
		{name: "iss wrong", token: ours(f.header(), with(acct, "iss", "https://evil.example"))},
		{name: "iss other case", token: ours(f.header(), with(acct, "iss", "PKID"))},
		// J-06
		{name: "exp past beyond leeway", token: ours(f.header(), with(acct, "exp", testNow.Add(-Leeway-time.Second).Unix()))},
		{name: "exp missing", token: ours(f.header(), with(acct, "exp", deleted))},
		{name: "exp null", token: ours(f.header(), with(acct, "exp", nil))},
		{name: "exp as a string", token: ours(f.header(), with(acct, "exp", "4102444800"))},
		{name: "exp fractional", token: ours(f.header(), with(acct, "exp", 4102444800.5))},
		{name: "exp negative", token: ours(f.header(), with(acct, "exp", -1))},
		{name: "exp in exponent form", token: ours(f.header(), with(acct, "exp", json.RawMessage("4.1e9")))},
		// J-07
		{name: "nbf future", token: ours(f.header(), with(acct, "nbf", testNow.Add(Leeway+time.Second).Unix()))},
		{name: "nbf missing", token: ours(f.header(), with(acct, "nbf", deleted))},
		{name: "iat future", token: ours(f.header(), with(acct, "iat", testNow.Add(Leeway+time.Second).Unix()))},
		{name: "iat missing", token: ours(f.header(), with(acct, "iat", deleted))},
		{name: "iat as a string", token: ours(f.header(), with(acct, "iat", "1772366400"))},
		// J-09
		{name: "kid unknown", token: ours(with(f.header(), "kid", "no-such-key"), acct)},
		{name: "kid path traversal", token: ours(with(f.header(), "kid", "../../dev/null"), acct)},
		{name: "kid SQL injection", token: ours(with(f.header(), "kid", "' OR '1'='1"), acct)},
		{name: "kid 10 KB", token: ours(with(f.header(), "kid", strings.Repeat("A", 10<<10)), acct)},
		{name: "kid 2 KB", token: ours(with(f.header(), "kid", strings.Repeat("A", 2<<10)), acct)},
		{name: "kid missing", token: ours(with(f.header(), "kid", deleted), acct)},
		{name: "kid a number", token: ours(with(f.header(), "kid", 1), acct)},
		{name: "kid empty", token: ours(with(f.header(), "kid", ""), acct)},
		{name: "jku to attacker key", token: forge(t, es256, attacker, with(f.header(), "kid", attackerKID, "jku", "https://evil.example/jwks.json"), acct)},
		{name: "x5u to attacker key", token: forge(t, es256, attacker, with(f.header(), "kid", attackerKID, "x5u", "https://evil.example/cert.pem"), acct)},
		{name: "jwk of attacker key", token: forge(t, es256, attacker, with(f.header(), "kid", deleted, "jwk", attackerJWK(t, attacker)), acct)},
		{name: "jwk of attacker key under our kid", token: forge(t, es256, attacker, with(f.header(), "jwk", attackerJWK(t, attacker)), acct)},
		{name: "x5c of attacker certificate", token: forge(t, es256, attacker, with(f.header(), "kid", deleted, "x5c", []string{attackerCert(t, attacker)}), acct)},
		{name: "jwk header on a token our key signed", token: ours(with(f.header(), "jwk", attackerJWK(t, attacker)), acct)},
		{name: "crit header", token: ours(with(f.header(), "crit", []string{"exp"}), acct)},
		// RFC 8725 §3.11: explicit typing.
		{name: "typ missing", token: ours(with(f.header(), "typ", deleted), acct)},
		{name: "typ at+jwt", token: ours(with(f.header(), "typ", "at+jwt"), acct)},
		// J-10: tokens for the other API, or claims that disagree.
		{name: "admin token used as account token", token: f.mint(t, pki.TokenAdmin), kind: pki.TokenAccount},
		{name: "account token used as admin token", token: valid, kind: pki.TokenAdmin},
		{name: "kind admin under the account audience", token: ours(f.header(), with(acct, "kind", "admin"))},
		{name: "kind missing", token: ours(f.header(), with(acct, "kind", deleted))},
		{name: "both audiences", token: ours(f.header(), with(acct, "aud", []string{AudienceAccountAPI, AudienceAdminAPI}, "kind", "admin")), kind: pki.TokenAdmin},
		{name: "jti missing", token: ours(f.header(), with(acct, "jti", deleted))},
		{name: "sub missing", token: ours(f.header(), with(acct, "sub", deleted))},
		{name: "admin token without username", token: ours(f.header(), with(claimsFor(pki.TokenAdmin), "preferred_username", deleted)), kind: pki.TokenAdmin},
		{name: "admin token with non-canonical username", token: ours(f.header(), with(claimsFor(pki.TokenAdmin), "preferred_username", "Alice")), kind: pki.TokenAdmin},
		{name: "account token with username", token: ours(f.header(), with(acct, "preferred_username", "alice"))},
		{name: "unknown token kind", token: valid, kind: "service"},
		// J-15
		{name: "payload modified, original signature", token: parts[0] + "." + segment(t, with(acct, "sub", "11111111-2222-3333-4444-555555555555")) + "." + parts[2]},
		{name: "signature stripped", token: parts[0] + "." + parts[1] + "."},
		{name: "signature of another token", token: parts[0] + "." + parts[1] + "." + strings.Split(f.mint(t, pki.TokenAdmin), ".")[2]},
		{name: "two segments", token: parts[0] + "." + parts[1]},
		{name: "signature truncated", token: valid[:len(valid)-4]},
		{name: "signature with stray low bits", token: flipLastBit(valid)},
		{name: "padded signature", token: valid + "=="},
		// J-12 and other malformed input.
		{name: "four segments", token: valid + ".e30"},
		{name: "five segments", token: valid + ".e30.e30"},
		{name: "1 MB of dots", token: strings.Repeat(".", 1<<20)},
		{name: "empty", token: ""},
		{name: "not base64url", token: "!!!.@@@.###"},
		{name: "header not JSON", token: base64.RawURLEncoding.EncodeToString([]byte("nope")) + "." + parts[1] + "." + parts[2]},
		{name: "header a JSON array", token: segment(t, []string{"ES256"}) + "." + parts[1] + "." + parts[2]},
		{name: "token with surrounding space", token: " " + valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind := tt.kind
			if kind == "" {
				kind = pki.TokenAccount
			}
			c, err := f.tokens.Parse(tt.token, kind)
			if !errors.Is(err, pki.ErrUnauthenticated) {
				t.Fatalf("Parse = %+v, %v; want an error wrapping pki.ErrUnauthenticated", c, err)
			}
			if c != nil {
				t.Errorf("Parse returned claims %+v with its error", c)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error message is %d bytes long: reasons must not echo hostile input", len(err.Error()))
			}
		})
	}
}

// flipLastBit changes one of the unused low bits of the last base64url
// character of tok: the same signature bytes, spelled differently.
func flipLastBit(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[i^1])
}

// TestParseHugeInputIsFast is J-12: a megabyte of dots, or of anything, costs
// a length check.
func TestParseHugeInputIsFast(t *testing.T) {
	f := newFixture(t)
	for _, in := range []string{strings.Repeat(".", 1<<20), strings.Repeat("A", 1<<20), strings.Repeat("A.", 1<<19)} {
		start := time.Now()
		_, err := f.tokens.Parse(in, pki.TokenAccount)
		if el := time.Since(start); el > 500*time.Millisecond { // J-12 asks for under 1 s; it is a length check
			t.Errorf("Parse of 1 MB took %s", el)
		}
		if !errors.Is(err, pki.ErrUnauthenticated) {
			t.Errorf("Parse of 1 MB = %v", err)
		}
	}
}

func TestMintParseRoundTrip(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		in   Claims
	}{
		{"account", Claims{TokenID: testTokenID, Kind: pki.TokenAccount, Subject: testAccountID, ExpiresAt: testNow.Add(720 * time.Hour)}},
		{"admin", Claims{TokenID: testTokenID, Kind: pki.TokenAdmin, Subject: testAdminID, Username: "alice", ExpiresAt: testNow.Add(time.Hour)}},
		{"sub-second expiry truncated", Claims{TokenID: testTokenID, Kind: pki.TokenAccount, Subject: testAccountID, ExpiresAt: testNow.Add(time.Hour + 700*time.Millisecond)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := f.tokens.Mint(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(tok) > MaxTokenLength/4 {
				t.Errorf("token is %d bytes long", len(tok))
			}
			got, err := f.tokens.Parse(tok, tt.in.Kind)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.in
			want.ExpiresAt = time.Unix(tt.in.ExpiresAt.Unix(), 0)
			if got.TokenID != want.TokenID || got.Kind != want.Kind || got.Subject != want.Subject ||
				got.Username != want.Username || !got.ExpiresAt.Equal(want.ExpiresAt) {
				t.Errorf("Parse(Mint(%+v)) = %+v", want, got)
			}
		})
	}
}

// TestMintWritesWhatParseDemands checks the header and claims on the wire,
// which other JWT libraries (and pkictl users) see.
func TestMintWritesWhatParseDemands(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, pki.TokenAdmin)
	parts := strings.Split(tok, ".")
	var header, claims map[string]any
	for i, v := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	wantHeader := map[string]any{"alg": "ES256", "typ": "JWT", "kid": f.kid}
	if len(header) != len(wantHeader) {
		t.Errorf("header = %v, want %v", header, wantHeader)
	}
	for k, v := range wantHeader {
		if header[k] != v {
			t.Errorf("header %s = %v, want %v", k, header[k], v)
		}
	}
	for k, v := range map[string]any{
		"iss": "pkid", "sub": testAdminID, "jti": testTokenID, "kind": "admin", "preferred_username": "alice",
		"iat": float64(testNow.Unix()), "nbf": float64(testNow.Unix()), "exp": float64(testNow.Add(time.Hour).Unix()),
	} {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != AudienceAdminAPI {
		t.Errorf("aud = %v", claims["aud"])
	}
	// An independent verifier (the jwt package with only the public key)
	// accepts it.
	_, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return &f.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(testClock))
	if err != nil {
		t.Errorf("jwt.Parse: %v", err)
	}
}

func TestParseLeeway(t *testing.T) {
	f := newFixture(t)
	acct := claimsFor(pki.TokenAccount)
	es := jwt.SigningMethodES256
	tests := []struct {
		name   string
		claims map[string]any
	}{
		{"exp just past, within leeway", with(acct, "exp", testNow.Add(-Leeway+time.Second).Unix())},
		{"nbf just ahead, within leeway", with(acct, "nbf", testNow.Add(Leeway-time.Second).Unix())},
		{"iat just ahead, within leeway", with(acct, "iat", testNow.Add(Leeway-time.Second).Unix())},
		{"aud as a single string", with(acct, "aud", AudienceAccountAPI)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.tokens.Parse(forge(t, es, f.key, f.header(), tt.claims), pki.TokenAccount); err != nil {
				t.Errorf("Parse: %v", err)
			}
		})
	}
}

func TestMintRefusesBadClaims(t *testing.T) {
	f := newFixture(t)
	ok := Claims{TokenID: testTokenID, Kind: pki.TokenAccount, Subject: testAccountID, ExpiresAt: testNow.Add(time.Hour)}
	tests := []struct {
		name   string
		change func(*Claims)
	}{
		{"unknown kind", func(c *Claims) { c.Kind = "service" }},
		{"no token ID", func(c *Claims) { c.TokenID = "" }},
		{"no subject", func(c *Claims) { c.Subject = "" }},
		{"expires now", func(c *Claims) { c.ExpiresAt = testNow }},
		{"expired", func(c *Claims) { c.ExpiresAt = testNow.Add(-time.Second) }},
		{"admin without username", func(c *Claims) { c.Kind = pki.TokenAdmin }},
		{"admin with non-canonical username", func(c *Claims) { c.Kind, c.Username = pki.TokenAdmin, " Alice" }},
		{"account with username", func(c *Claims) { c.Username = "alice" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			if tok, err := f.tokens.Mint(c); err == nil {
				t.Errorf("Mint(%+v) = %q, want an error", c, tok)
			}
		})
	}
}

// TestKeyRotation checks that a token signed by an older key still verifies
// while that key is loaded, and new tokens use the first key.
func TestKeyRotation(t *testing.T) {
	old := newFixture(t)
	oldTok := old.mint(t, pki.TokenAccount)
	next := mustP256(t)
	keys, err := NewKeys(next, old.key)
	if err != nil {
		t.Fatal(err)
	}
	tokens := NewTokens(keys, testClock)
	if _, err := tokens.Parse(oldTok, pki.TokenAccount); err != nil {
		t.Errorf("token of the older key: %v", err)
	}
	newKID, _ := KeyID(next.Public())
	if keys.KID() != newKID {
		t.Errorf("signing kid = %s, want the first key's %s", keys.KID(), newKID)
	}
	tok, err := tokens.Mint(Claims{TokenID: testTokenID, Kind: pki.TokenAccount, Subject: testAccountID, ExpiresAt: testNow.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.tokens.Parse(tok, pki.TokenAccount); !errors.Is(err, pki.ErrUnauthenticated) {
		t.Errorf("a set without the new key accepted its token: %v", err)
	}
}

func TestNewKeysRefusesOtherKeys(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := mustP256(t)
	tests := []struct {
		name    string
		signers []crypto.Signer
	}{
		{"none", nil},
		{"P-384", []crypto.Signer{p384}},
		{"RSA", []crypto.Signer{rsaKey()}},
		{"same key twice", []crypto.Signer{k, k}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewKeys(tt.signers...); err == nil {
				t.Error("NewKeys succeeded")
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	f := newFixture(b)
	tok := f.mint(b, pki.TokenAccount)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.tokens.Parse(tok, pki.TokenAccount); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMint(b *testing.B) {
	f := newFixture(b)
	c := Claims{TokenID: testTokenID, Kind: pki.TokenAccount, Subject: testAccountID, ExpiresAt: testNow.Add(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.tokens.Mint(c); err != nil {
			b.Fatal(err)
		}
	}
}
