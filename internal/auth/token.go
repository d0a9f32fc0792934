package auth

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pkid/pkid/internal/pki"
)

// Issuer is the iss of every token pkid mints and the only one it accepts.
const Issuer = "pkid"

// Audiences, one per token kind, so that a token minted for one API is
// refused by the other (RFC 8725 §3.9, §3.12).
const (
	AudienceAccountAPI = "pkid-account-api"
	AudienceAdminAPI   = "pkid-admin-api"
)

// MaxTokenLength is the longest token Parse looks at. pkid's tokens are
// about 500 bytes; anything much longer is refused before any splitting or
// decoding, so hostile input costs no more than a length check
// (CVE-2025-30204).
const MaxTokenLength = 4096

// Leeway is the clock skew tolerated on exp, nbf and iat.
const Leeway = 30 * time.Second

// Claims is what a pkid token says.
type Claims struct {
	TokenID   string        // jti: the ID of the token's database record
	Kind      pki.TokenKind // which API the token is for
	Subject   string        // sub: the account ID (account tokens) or admin ID (admin tokens)
	Username  string        // admin tokens only: the administrator's canonical username, for audit
	ExpiresAt time.Time     // exp
}

// audience returns the aud that tokens of kind carry.
func audience(kind pki.TokenKind) (string, bool) {
	switch kind {
	case pki.TokenAccount:
		return AudienceAccountAPI, true
	case pki.TokenAdmin:
		return AudienceAdminAPI, true
	default:
		return "", false
	}
}

// Tokens mints and parses pkid's JWTs with one key set and one clock.
type Tokens struct {
	keys     *Keys
	now      func() time.Time
	parsers  map[pki.TokenKind]*jwt.Parser
	verified verifiedCache
}

// NewTokens returns a Tokens that signs with keys' signing key, trusts every
// key in keys, and reads the time from now.
func NewTokens(keys *Keys, now func() time.Time) *Tokens {
	t := &Tokens{keys: keys, now: now, parsers: make(map[pki.TokenKind]*jwt.Parser)}
	for _, kind := range []pki.TokenKind{pki.TokenAccount, pki.TokenAdmin} {
		aud, _ := audience(kind)
		t.parsers[kind] = jwt.NewParser(
			jwt.WithValidMethods([]string{Algorithm}),
			jwt.WithIssuer(Issuer),
			jwt.WithAudience(aud),
			jwt.WithExpirationRequired(),
			jwt.WithNotBeforeRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(Leeway),
			jwt.WithTimeFunc(now),
			// Refuse non-canonical base64 (stray low bits, padding), so a
			// token has exactly one spelling.
			jwt.WithStrictDecoding(),
		)
	}
	return t
}

// Mint signs a token for c. iat and nbf are the current time; c.ExpiresAt must
// be later. The caller has stored the token's record under c.TokenID first, or
// the token will be refused.
func (t *Tokens) Mint(c Claims) (string, error) {
	aud, ok := audience(c.Kind)
	if !ok {
		return "", fmt.Errorf("auth: unknown token kind %q", c.Kind)
	}
	if c.TokenID == "" || c.Subject == "" {
		return "", errors.New("auth: a token needs an ID and a subject")
	}
	if c.Kind == pki.TokenAdmin && (c.Username == "" || c.Username != CanonicalUsername(c.Username)) {
		return "", errors.New("auth: an admin token needs the administrator's canonical username")
	}
	if c.Kind != pki.TokenAdmin && c.Username != "" {
		return "", errors.New("auth: only admin tokens carry a username")
	}
	now := t.now()
	if !c.ExpiresAt.After(now) {
		return "", errors.New("auth: a token must expire after it is minted")
	}
	claims := &tokenClaims{
		Issuer:    Issuer,
		Subject:   c.Subject,
		Audience:  jwt.ClaimStrings{aud},
		ExpiresAt: newNumericDate(c.ExpiresAt),
		NotBefore: newNumericDate(now),
		IssuedAt:  newNumericDate(now),
		ID:        c.TokenID,
		Kind:      c.Kind,
		Username:  c.Username,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = t.keys.signerKID
	// NewWithClaims already sets typ "JWT"; say so here because Parse
	// insists on it.
	tok.Header["typ"] = "JWT"
	signing, err := tok.SigningString()
	if err != nil {
		return "", fmt.Errorf("auth: encoding token: %w", err)
	}
	sig, err := signES256(t.keys.signer, signing)
	if err != nil {
		return "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// signES256 signs with any crypto.Signer holding a P-256 key (a key in
// memory, in an HSM or in a KMS) and returns the JWS form of the signature:
// r and s, 32 bytes each (RFC 7518 §3.4), rather than the ASN.1 that
// crypto.Signer produces.
func signES256(s crypto.Signer, signing string) ([]byte, error) {
	digest := sha256.Sum256([]byte(signing))
	der, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("auth: signing token: %w", err)
	}
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 || sig.R.BitLen() > 256 || sig.S.BitLen() > 256 {
		return nil, errors.New("auth: the token key returned a malformed ECDSA signature")
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}

// Parse verifies raw as a token of the given kind and returns its claims. The
// signature must be ES256 by a key in the loaded set, named by kid; iss, aud,
// exp, nbf and iat must all be present and hold, with Leeway for clock skew.
// Headers that would let the token choose its own key (jku, x5u, x5c, jwk)
// or demand unknown processing (crit) make it refused. Every failure is an
// error wrapping pki.ErrUnauthenticated whose text says why, for logs.
//
// Parse only checks the token itself: whether it has been revoked is the
// Authenticator's business.
func (t *Tokens) Parse(raw string, kind pki.TokenKind) (*Claims, error) {
	if len(raw) > MaxTokenLength {
		return nil, unauthenticated("token longer than %d bytes", MaxTokenLength)
	}
	p, ok := t.parsers[kind]
	if !ok {
		return nil, unauthenticated("unknown token kind %q", kind)
	}
	if claims, ok := t.verified.get(raw, kind, t.now()); ok {
		return claims, nil
	}
	c := &tokenClaims{expect: kind}
	if _, err := p.ParseWithClaims(raw, c, t.keyfunc); err != nil {
		return nil, unauthenticated("%v", err)
	}
	claims := &Claims{
		TokenID:   c.ID,
		Kind:      c.Kind,
		Subject:   c.Subject,
		Username:  c.Username,
		ExpiresAt: c.ExpiresAt.Time,
	}
	t.verified.put(raw, kind, claims)
	return claims, nil
}

// claimsAudienceOf reports whether raw, read without verifying anything,
// names kind's audience. It costs a base64 and a JSON decode, no signature
// check: a hint for choosing which error to answer, never a reason to trust.
func claimsAudienceOf(raw string, kind pki.TokenKind) bool {
	aud, ok := audience(kind)
	if !ok || len(raw) > MaxTokenLength {
		return false
	}
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return false
	}
	for _, a := range c.Audience {
		if a == aud {
			return true
		}
	}
	return false
}

// keyfunc returns the key that must have signed tok. It consults nothing but
// the fixed key set: never a URL or key carried in the token (RFC 8725
// §3.10).
func (t *Tokens) keyfunc(tok *jwt.Token) (any, error) {
	if _, ok := tok.Method.(*jwt.SigningMethodECDSA); !ok || tok.Method.Alg() != Algorithm {
		return nil, fmt.Errorf("signing method %v is not %s", tok.Header["alg"], Algorithm)
	}
	if typ, ok := tok.Header["typ"].(string); !ok || typ != "JWT" {
		return nil, errors.New(`header typ is not "JWT"`)
	}
	for _, h := range []string{"jku", "x5u", "x5c", "x5t", "x5t#S256", "jwk", "crit"} {
		if _, ok := tok.Header[h]; ok {
			return nil, fmt.Errorf("header %q is not accepted", h)
		}
	}
	kid, ok := tok.Header["kid"].(string)
	if !ok {
		return nil, errors.New("no kid in header")
	}
	key, ok := t.keys.verify[kid]
	if !ok {
		return nil, fmt.Errorf("unknown kid %.40q", kid)
	}
	return key, nil
}

// unauthenticated returns an error wrapping pki.ErrUnauthenticated with a
// reason for logs.
func unauthenticated(format string, args ...any) error {
	return fmt.Errorf("auth: %w: %s", pki.ErrUnauthenticated, fmt.Sprintf(format, args...))
}

// tokenClaims is the JWT payload pkid writes and reads. Its dates use
// numericDate rather than jwt.NumericDate so that a date written as a string
// ("exp": "1700000000"), which jwt.NumericDate quietly accepts, is refused.
type tokenClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt *numericDate     `json:"exp"`
	NotBefore *numericDate     `json:"nbf"`
	IssuedAt  *numericDate     `json:"iat"`
	ID        string           `json:"jti"`
	Kind      pki.TokenKind    `json:"kind"`
	Username  string           `json:"preferred_username,omitempty"`

	expect pki.TokenKind // the kind Parse was asked for; not serialised
}

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.jwt(), nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.jwt(), nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.jwt(), nil }
func (c *tokenClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *tokenClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// Validate checks what the jwt package does not: the claims pkid needs are
// present, and the private kind claim agrees with the audience. The jwt
// parser calls it after its own checks.
func (c *tokenClaims) Validate() error {
	switch {
	case c.IssuedAt == nil:
		return errors.New("iat missing")
	case c.ID == "":
		return errors.New("jti missing")
	case c.Subject == "":
		return errors.New("sub missing")
	case c.Kind != c.expect:
		return fmt.Errorf("kind %.20q where %q is expected", c.Kind, c.expect)
	case c.Kind == pki.TokenAdmin && (c.Username == "" || c.Username != CanonicalUsername(c.Username)):
		return errors.New("admin token without a canonical username")
	case c.Kind != pki.TokenAdmin && c.Username != "":
		return errors.New("username in a non-admin token")
	}
	return nil
}

// numericDate is an RFC 7519 NumericDate that pkid writes and reads as a
// whole number of seconds since the epoch, and nothing else: no string, no
// fraction, no exponent, no sign.
type numericDate struct{ time.Time }

func newNumericDate(t time.Time) *numericDate {
	return &numericDate{time.Unix(t.Unix(), 0)}
}

func (d *numericDate) jwt() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return jwt.NewNumericDate(d.Time)
}

func (d numericDate) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, d.Unix(), 10), nil
}

func (d *numericDate) UnmarshalJSON(b []byte) error {
	// At most 12 digits: enough for the year 33658, and no overflow.
	if len(b) == 0 || len(b) > 12 || len(b) > 1 && b[0] == '0' {
		return errors.New("NumericDate is not a whole number of seconds")
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return errors.New("NumericDate is not a whole number of seconds")
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return err
	}
	d.Time = time.Unix(n, 0)
	return nil
}

// tokenClaims must be validated by the jwt parser, and numericDate must do
// its own decoding; a refactoring that loses either breaks the build.
var (
	_ jwt.ClaimsValidator = (*tokenClaims)(nil)
	_ json.Unmarshaler    = (*numericDate)(nil)
)
