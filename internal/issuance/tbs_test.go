package issuance

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"math/big"
	mrand "math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// longCA is a self-signed CA certificate for key valid from 1990 to 2100, so
// that client certificates can be dated on both sides of 2000 and 2050.
func longCA(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	return selfSignedCA(t, key, time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
}

// TestClientTBSMatchesX509 is the differential test of encodeClientTBS: for
// randomised client requests to issuers of every key type, pkid's encoding
// of the tbsCertificate is byte for byte what x509.CreateCertificate builds
// from the profile's template (captureTBS, itself held to CreateCertificate
// by TestCaptureTBSMatchesCreateCertificate), and it is what prepareClient
// lints and Issue would sign. What x509 refuses, encodeClientTBS refuses.
func TestClientTBSMatchesX509(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, seed>>1))

	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	subjectKeys := []crypto.PublicKey{
		mustKey(t, elliptic.P256()).Public(),
		mustKey(t, elliptic.P384()).Public(),
		mustKey(t, elliptic.P521()).Public(),
		testPublicKey(t, "rsa2048.pub.pem"),
		edPub,
	}
	for name, key := range issuerKeys(t) {
		t.Run(name, func(t *testing.T) {
			is, err := NewIssuer(longCA(t, key), key)
			if err != nil {
				t.Fatal(err)
			}
			for n := range 300 {
				p, req := randomClientRequest(rng, is, subjectKeys[n%len(subjectKeys)], n)
				if !checkClientTBS(t, is, p, req) {
					t.Fatalf("request %d (seed %d): %+v", n, seed, req)
				}
			}
		})
	}
}

// TestClientTBSCorners: cases TestClientTBSMatchesX509 may draw rarely, and
// those that x509 refuses, each checked the same way.
func TestClientTBSCorners(t *testing.T) {
	key := mustKey(t, elliptic.P256())
	is, err := NewIssuer(longCA(t, key), key)
	if err != nil {
		t.Fatal(err)
	}
	sub := mustKey(t, elliptic.P256()).Public()
	at := func(now time.Time) (ClientProfile, ClientRequest) {
		p := testProfile()
		p.Now = func() time.Time { return now }
		req := testRequest(t, sub)
		req.NotBefore, req.NotAfter = now.Add(-5*time.Minute), now.Add(90*24*time.Hour)
		return p, req
	}
	y2050 := time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		edit func(*ClientProfile, *ClientRequest)
	}{
		{"typical", func(*ClientProfile, *ClientRequest) {}},
		{"empty subject", func(_ *ClientProfile, r *ClientRequest) { r.CommonName, r.Organization = "", "" }},
		{"CN only", func(_ *ClientProfile, r *ClientRequest) { r.Organization = "" }},
		{"O only", func(_ *ClientProfile, r *ClientRequest) { r.CommonName = "" }},
		{"subject is the issuer's name", func(_ *ClientProfile, r *ClientRequest) { r.CommonName, r.Organization = "Test CA", "Test" }},
		{"64-character CN", func(_ *ClientProfile, r *ClientRequest) { r.CommonName = strings.Repeat("c", 64) }},
		{"64-rune non-ASCII CN", func(_ *ClientProfile, r *ClientRequest) { r.CommonName = strings.Repeat("日", 64) }},
		{"CN with an asterisk", func(_ *ClientProfile, r *ClientRequest) { r.CommonName = "*.acme.example" }},
		{"O with an ampersand", func(_ *ClientProfile, r *ClientRequest) { r.Organization = "Smith & Sons" }},
		{"O with every PrintableString punctuation", func(_ *ClientProfile, r *ClientRequest) { r.Organization = "a '()+,-./:=? z" }},
		{"CN with an underscore", func(_ *ClientProfile, r *ClientRequest) { r.CommonName = "svc_a" }},
		{"no DNS names", func(_ *ClientProfile, r *ClientRequest) { r.DNSNames = nil }},
		{"URIs", func(_ *ClientProfile, r *ClientRequest) {
			r.URIs = []*url.URL{mustURL(t, "spiffe://acme.example/ns/a/sa/b"), mustURL(t, "spiffe://acme.example/ns/x%20y")}
		}},
		{"serial with the high bit", func(_ *ClientProfile, r *ClientRequest) { r.Serial = serialOf(bytes.Repeat([]byte{0xff}, 19)) }},
		{"9-byte serial", func(_ *ClientProfile, r *ClientRequest) { r.Serial = serialOf([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0}) }},
		{"notAfter at 2050", func(p *ClientProfile, r *ClientRequest) { *p, *r = at(y2050.Add(-time.Hour)); r.NotAfter = y2050 }},
		{"notAfter just before 2050", func(p *ClientProfile, r *ClientRequest) {
			*p, *r = at(y2050.Add(-time.Hour))
			r.NotAfter = y2050.Add(-time.Nanosecond)
		}},
		{"both after 2050", func(p *ClientProfile, r *ClientRequest) { *p, *r = at(y2050.AddDate(10, 0, 0)) }},
		{"before 2000", func(p *ClientProfile, r *ClientRequest) { *p, *r = at(time.Date(1999, 12, 1, 0, 0, 0, 0, time.UTC)) }},
		{"times not in UTC, with nanoseconds", func(p *ClientProfile, r *ClientRequest) {
			now := time.Date(2049, 12, 31, 20, 59, 59, 999999999, time.FixedZone("", -5*3600))
			*p, *r = at(now)
		}},
		{"later generation", func(p *ClientProfile, _ *ClientRequest) { p.Generation = 3 }},
		{"public URL with a path", func(p *ClientProfile, _ *ClientRequest) { p.PublicURL = "http://ca.example/pkid/" }},
		// x509 refuses these; so must the encoder.
		{"non-ASCII DNS name", func(_ *ClientProfile, r *ClientRequest) { r.DNSNames = []string{"bücher.example"} }},
		{"non-ASCII URI", func(_ *ClientProfile, r *ClientRequest) { r.URIs = []*url.URL{{Scheme: "urn", Opaque: "x:é"}} }},
		{"CN not UTF-8", func(_ *ClientProfile, r *ClientRequest) { r.CommonName = "a\xffb" }},
		{"O not UTF-8", func(_ *ClientProfile, r *ClientRequest) { r.Organization = "\xc3" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, req := testProfile(), testRequest(t, sub)
			tc.edit(&p, &req)
			checkClientTBS(t, is, p, req)
		})
	}
}

// checkClientTBS compares the tbsCertificate of req built both ways and
// reports whether they agree: the same bytes, which prepareClient lints, or
// both a refusal with ErrBadRequest.
func checkClientTBS(t *testing.T, is *Issuer, p ClientProfile, req ClientRequest) bool {
	t.Helper()
	c, err := is.clientContent(p, req)
	if err != nil {
		t.Errorf("clientContent: %v", err)
		return false
	}
	want, wantErr := is.captureTBS(c.template(), c.publicKey)
	got, gotErr := is.encodeClientTBS(c)
	prep, prepErr := is.prepareClient(p, req, noLint{})
	switch {
	case wantErr != nil:
		if !errors.Is(wantErr, ErrBadRequest) || !errors.Is(gotErr, ErrBadRequest) || !errors.Is(prepErr, ErrBadRequest) {
			t.Errorf("x509 refuses with %v; encodeClientTBS returns %v, prepareClient %v", wantErr, gotErr, prepErr)
			return false
		}
	case gotErr != nil || prepErr != nil:
		t.Errorf("x509 accepts; encodeClientTBS returns %v, prepareClient %v", gotErr, prepErr)
		return false
	case !bytes.Equal(got, want):
		t.Errorf("encodeClientTBS differs from x509:\n got %x\nwant %x", got, want)
		return false
	case !bytes.Equal(prep.tbs, want):
		t.Errorf("prepareClient did not use the same tbsCertificate:\n got %x\nwant %x", prep.tbs, want)
		return false
	case prep.Serial() != pki.SerialFromBig(c.serial):
		t.Errorf("prepared serial %s, certificate's %x", prep.Serial(), c.serial)
		return false
	}
	return true
}

// randomClientRequest draws a request that the profile accepts, to is, for
// pub. n chooses the kind of date, so that every few requests straddle 2050.
func randomClientRequest(rng *mrand.Rand, is *Issuer, pub crypto.PublicKey, n int) (ClientProfile, ClientRequest) {
	const day = 24 * time.Hour
	var now time.Time
	switch n % 3 {
	case 0: // around 2050
		now = time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Duration(rng.Int64N(int64(400 * day))))
	case 1: // around 2000
		now = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.Int64N(int64(400*day))) - 200*day)
	default: // anywhere the issuer allows
		span := is.Cert.NotAfter.Sub(is.Cert.NotBefore) - 400*day
		now = is.Cert.NotBefore.Add(2*day + time.Duration(rng.Int64N(int64(span))))
	}
	now = now.Add(time.Duration(rng.Int64N(int64(time.Second)))) // fractions of a second
	notBefore := now.Add(-time.Duration(rng.Int64N(int64(MaxBackdate))))
	if rng.IntN(4) == 0 {
		notBefore = now.Add(time.Duration(rng.Int64N(int64(time.Minute))))
	}
	notAfter := now.Add(time.Second + time.Duration(rng.Int64N(int64(MaxClientValidity-time.Second))))

	p := ClientProfile{
		PublicURL:  []string{testPublicURL, "http://ca.example/pkid/", "http://[::1]:8080"}[rng.IntN(3)],
		Generation: rng.IntN(4),
		Now:        func() time.Time { return now },
	}
	req := ClientRequest{
		Serial:       randomSerial(rng),
		PublicKey:    pub,
		CommonName:   randomName(rng, 64),
		Organization: randomName(rng, 100),
		AccountID:    randomString(rng, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~", 1+rng.IntN(64)),
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}
	if rng.IntN(10) == 0 {
		req.CommonName, req.Organization = "Test CA", "Test" // the issuer's own name
	}
	for range rng.IntN(5) {
		req.DNSNames = append(req.DNSNames, randomString(rng, "abcdefghijklmnopqrstuvwxyz0123456789-", 1+rng.IntN(20))+".example")
	}
	for range rng.IntN(4) {
		u := &url.URL{Scheme: "spiffe", Host: "acme.example", Path: "/ns/" + randomName(rng, 20)}
		if u.Path == "/ns/" {
			u.Path = "/ns/default"
		}
		req.URIs = append(req.URIs, u)
	}
	return p, req
}

// randomSerial draws a serial of 9 to 19 bytes whose first byte has its high
// bit set or not, at random.
func randomSerial(rng *mrand.Rand) pki.Serial {
	b := make([]byte, 9+rng.IntN(11))
	for n := range b {
		b[n] = byte(rng.Uint32())
	}
	if rng.IntN(2) == 0 {
		b[0] = 0x80 | b[0]
	} else {
		b[0] = 1 + b[0]%0x7f
	}
	return serialOf(b)
}

func serialOf(b []byte) pki.Serial { return pki.SerialFromBig(new(big.Int).SetBytes(b)) }

// randomName draws a subject attribute of up to max characters: empty,
// PrintableString, ASCII that is not PrintableString, or not ASCII at all.
func randomName(rng *mrand.Rand, max int) string {
	const printable = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 '()+,-./:=?"
	l := rng.IntN(max + 1)
	if rng.IntN(4) == 0 {
		l = max
	}
	switch rng.IntN(4) {
	case 0:
		return ""
	case 1:
		return randomString(rng, printable, l)
	case 2:
		return randomString(rng, printable+"*&_@!\"#", l)
	default:
		return randomString(rng, printable+"éßü日本語🔒Ω", l)
	}
}

func randomString(rng *mrand.Rand, alphabet string, l int) string {
	runes := []rune(alphabet)
	var sb strings.Builder
	for range l {
		sb.WriteRune(runes[rng.IntN(len(runes))])
	}
	return sb.String()
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
