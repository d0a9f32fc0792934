package edge

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	encasn1 "encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// newCRLSource is a CRL source for fake's CRL whose bundle holds issuer.
func newCRLSource(t *testing.T, fake *fakeCRL, clock *fakeClock, issuer *x509.Certificate) *crlSource {
	t.Helper()
	s := &crlSource{
		url: fake.url(), client: &http.Client{Timeout: 5 * time.Second}, maxBytes: DefaultCRLMaxBytes,
		skew: DefaultClockSkew, now: clock.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		m: newMetrics(prometheus.NewRegistry()),
	}
	if issuer != nil {
		s.setBundle([]*x509.Certificate{issuer})
	}
	return s
}

func (s *crlSource) number() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cur == nil {
		return 0
	}
	return s.cur.list.Number.Int64()
}

// TestCRLConditionalGet: 200, then 304 while nothing changes, the new CRL
// when one is published, a rollback refused, and an unconditional GET once
// the CRL held has expired.
func TestCRLConditionalGet(t *testing.T) {
	clock := newFakeClock(time.Now().Truncate(time.Second))
	inter := newRoot(t, "Test Root", clock.Now()).intermediate(t, "Test Intermediate", clock.Now())
	fake := newFakeCRL(t, inter, clock.Now)
	s := newCRLSource(t, fake, clock, inter.cert)
	ctx := t.Context()

	refresh := func(wantErr error, wantNumber, wantFull, want304 int64) {
		t.Helper()
		if err := s.refresh(ctx); !errors.Is(err, wantErr) {
			t.Fatalf("refresh: %v, want %v", err, wantErr)
		}
		if n := s.number(); n != wantNumber {
			t.Fatalf("CRL number %d, want %d", n, wantNumber)
		}
		if f, nm := fake.full.Load(), fake.notModified.Load(); f != wantFull || nm != want304 {
			t.Fatalf("%d full answers and %d 304s, want %d and %d", f, nm, wantFull, want304)
		}
	}
	refresh(nil, 1, 1, 0)
	refresh(nil, 1, 1, 1)
	refresh(nil, 1, 1, 2)
	fake.publish(t)
	refresh(nil, 2, 2, 2)
	refresh(nil, 2, 2, 3)

	// A rollback: a replica serves CRL 1 again (another ETag).
	fake.mu.Lock()
	fake.number = 0
	fake.mu.Unlock()
	fake.publish(t)
	refresh(errCRLRejected, 2, 3, 3)
	refresh(errCRLRejected, 2, 4, 3) // refused, so asked for in full again
	fake.mu.Lock()
	fake.number = 2
	fake.mu.Unlock()
	fake.publish(t)
	refresh(nil, 3, 5, 3)
	if got := testutil.ToFloat64(s.m.crlNumber); got != 3 {
		t.Errorf("crl_number gauge %v", got)
	}

	// Past nextUpdate, the validators are not sent: the expired CRL comes
	// back in full (and is refused as expired) rather than as a 304.
	clock.Advance(25 * time.Hour)
	refresh(errCRLRejected, 3, 6, 3)
	if _, ok := s.lookup(inter.leaf(t, account, clock.Now(), "").leaf, inter.cert, clock.Now()); ok {
		t.Fatal("an expired CRL answered")
	}
}

// TestCRLAccept: what may replace the CRL held.
func TestCRLAccept(t *testing.T) {
	clock := newFakeClock(time.Now().Truncate(time.Second))
	now := clock.Now()
	root := newRoot(t, "Test Root", now)
	inter := root.intermediate(t, "Test Intermediate", now)
	twin := root.intermediate(t, "Test Intermediate", now) // same name, other key
	noCRLSign := sign(t, &x509.Certificate{
		Subject: inter.cert.Subject, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, root, &inter.key.PublicKey, nil)

	mk := func(issuer *ca, n int64, thisUpdate, nextUpdate time.Time) *fetched {
		t.Helper()
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(n), ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
		}, issuer.cert, issuer.key)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parseCRL(der)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	current := mk(inter, 10, now.Add(-time.Hour), now.Add(23*time.Hour))
	cases := []struct {
		name   string
		offer  *fetched
		issuer *x509.Certificate
		ok     bool
		number int64
	}{
		{"higher number", mk(inter, 11, now, now.Add(24*time.Hour)), inter.cert, true, 11},
		{"the same CRL again", current, inter.cert, true, 10},
		{"lower number", mk(inter, 9, now, now.Add(24*time.Hour)), inter.cert, false, 10},
		{"same number, other content", mk(inter, 10, now, now.Add(24*time.Hour)), inter.cert, false, 10},
		{"thisUpdate goes back", mk(inter, 11, now.Add(-2*time.Hour), now.Add(24*time.Hour)), inter.cert, false, 10},
		{"thisUpdate in the future", mk(inter, 11, now.Add(time.Hour), now.Add(24*time.Hour)), inter.cert, false, 10},
		{"expired", mk(inter, 11, now.Add(-time.Hour), now.Add(-time.Second)), inter.cert, false, 10},
		{"signed by a same-name CA with another key", mk(twin, 11, now, now.Add(24*time.Hour)), inter.cert, false, 10},
		{"issuer without cRLSign", mk(inter, 11, now, now.Add(24*time.Hour)), noCRLSign, false, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newCRLSource(t, newFakeCRL(t, inter, clock.Now), clock, nil)
			s.mu.Lock()
			if err := s.acceptLocked(current, inter.cert); err != nil {
				t.Fatal(err)
			}
			err := s.acceptLocked(tc.offer, tc.issuer)
			s.mu.Unlock()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, errCRLRejected)) {
				t.Fatalf("accept: %v, want ok=%v", err, tc.ok)
			}
			if n := s.number(); n != tc.number {
				t.Fatalf("CRL number %d, want %d", n, tc.number)
			}
		})
	}

	t.Run("PEM", func(t *testing.T) {
		der := current.list.Raw
		f, err := parseCRL(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
		if err != nil || f.list.Number.Int64() != 10 {
			t.Fatalf("%v", err)
		}
		if _, err := parseCRL(append(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), "junk"...)); !errors.Is(err, errCRLRejected) {
			t.Fatalf("trailing junk: %v", err)
		}
	})
}

// idpDER builds an IssuingDistributionPoint.
func idpDER(body func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, body)
	return b.BytesOrPanic()
}

func fullName(uris ...string) func(b *cryptobyte.Builder) {
	return func(b *cryptobyte.Builder) {
		b.AddASN1(asn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(asn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				for _, u := range uris {
					b.AddASN1(asn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
				}
			})
		})
	}
}

func flag(tag int, v byte) func(b *cryptobyte.Builder) {
	return func(b *cryptobyte.Builder) {
		b.AddASN1(asn1.Tag(tag).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(v) })
	}
}

func all(fs ...func(b *cryptobyte.Builder)) func(b *cryptobyte.Builder) {
	return func(b *cryptobyte.Builder) {
		for _, f := range fs {
			f(b)
		}
	}
}

// TestCRLScope: what a CRL must cover to be relied on for a client
// certificate, and that no malformed IDP crashes the parser.
func TestCRLScope(t *testing.T) {
	now := time.Now()
	inter := newRoot(t, "Test Root", now).intermediate(t, "Test Intermediate", now)
	const cdp = "http://pkid.example/crl"
	leaf := inter.leaf(t, account, now, "", func(c *x509.Certificate) {
		c.CRLDistributionPoints = []string{"http://mirror.example/crl", cdp}
	}).leaf
	idp := func(body func(b *cryptobyte.Builder)) pkix.Extension {
		return pkix.Extension{Id: oidIssuingDP, Critical: true, Value: idpDER(body)}
	}
	unknownOID := encasn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
	cases := []struct {
		name    string
		exts    []pkix.Extension
		entry   []pkix.Extension
		ok      bool
		covered bool
	}{
		{name: "full CRL", ok: true, covered: true},
		{name: "IDP naming the certificate's second CDP", exts: []pkix.Extension{idp(fullName(cdp))}, ok: true, covered: true},
		{name: "IDP naming another distribution point", exts: []pkix.Extension{idp(fullName("http://other.example/crl"))}, ok: true},
		{name: "pkid's IDP: fullName and onlyContainsUserCerts", exts: []pkix.Extension{idp(all(fullName(cdp), flag(1, 0xff)))}, ok: true, covered: true},
		{name: "IDP without a distribution point", exts: []pkix.Extension{idp(flag(1, 0xff))}, ok: true, covered: true},
		{name: "IDP onlyContainsCACerts", exts: []pkix.Extension{idp(flag(2, 0xff))}},
		{name: "IDP onlySomeReasons", exts: []pkix.Extension{idp(func(b *cryptobyte.Builder) {
			b.AddASN1(asn1.Tag(3).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte{0x07, 0x80}) })
		})}},
		{name: "IDP empty onlySomeReasons", exts: []pkix.Extension{idp(func(b *cryptobyte.Builder) {
			b.AddASN1(asn1.Tag(3).ContextSpecific(), func(*cryptobyte.Builder) {})
		})}},
		{name: "IDP indirectCRL", exts: []pkix.Extension{idp(flag(4, 0xff))}},
		{name: "IDP onlyContainsAttributeCerts", exts: []pkix.Extension{idp(flag(5, 0xff))}},
		{name: "IDP nameRelativeToCRLIssuer", exts: []pkix.Extension{idp(func(b *cryptobyte.Builder) {
			b.AddASN1(asn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(asn1.Tag(1).Constructed().ContextSpecific(), func(*cryptobyte.Builder) {})
			})
		})}},
		{name: "IDP with trailing data", exts: []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: append(idpDER(flag(1, 0xff)), 0)}}},
		{name: "IDP with a BOOLEAN of two octets", exts: []pkix.Extension{idp(func(b *cryptobyte.Builder) {
			b.AddASN1(asn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte{0xff, 0xff}) })
		})}},
		{name: "IDP fields out of order", exts: []pkix.Extension{idp(all(flag(2, 0), flag(1, 0xff)))}},
		{name: "two IDPs", exts: []pkix.Extension{idp(flag(1, 0xff)), idp(flag(1, 0xff))}},
		{name: "delta CRL", exts: []pkix.Extension{{Id: oidDeltaCRL, Critical: true, Value: []byte{2, 1, 5}}}},
		{name: "unknown critical extension", exts: []pkix.Extension{{Id: unknownOID, Critical: true, Value: []byte{5, 0}}}},
		{name: "unknown non-critical extension", exts: []pkix.Extension{{Id: unknownOID, Value: []byte{5, 0}}}, ok: true, covered: true},
		{name: "entry with certificateIssuer", entry: []pkix.Extension{{Id: oidCertificateIssue, Critical: true, Value: []byte{0x30, 0}}}},
		{name: "entry with unknown critical extension", entry: []pkix.Extension{{Id: unknownOID, Critical: true, Value: []byte{5, 0}}}},
		{name: "entry with invalidityDate", entry: []pkix.Extension{{Id: oidInvalidityDate, Value: []byte{0x18, 0x0f, '2', '0', '2', '6', '0', '1', '0', '1', '0', '0', '0', '0', '0', '0', 'Z'}}}, ok: true, covered: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
				Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour), ExtraExtensions: tc.exts,
				RevokedCertificateEntries: []x509.RevocationListEntry{{
					SerialNumber: big.NewInt(42), RevocationTime: now, ExtraExtensions: tc.entry,
				}},
			}, inter.cert, inter.key)
			if err != nil {
				t.Fatal(err)
			}
			f, err := parseCRL(der)
			if (err == nil) != tc.ok {
				t.Fatalf("parseCRL: %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, errCRLScope) {
					t.Fatalf("%v is not errCRLScope", err)
				}
				return
			}
			if got := f.scope.covers(leaf); got != tc.covered {
				t.Fatalf("covers = %v, want %v", got, tc.covered)
			}
		})
	}
}

// TestCRLRefreshBeforeNextUpdate: the background refresher asks again well
// before nextUpdate, even with a long interval.
func TestCRLRefreshBeforeNextUpdate(t *testing.T) {
	clock := newFakeClock(time.Now())
	inter := newRoot(t, "Test Root", clock.Now()).intermediate(t, "Test Intermediate", clock.Now())
	fake := newFakeCRL(t, inter, clock.Now)
	fake.validity = 3 * time.Second
	fake.publish(t)
	// A clock that follows real time, so that the refresher's timers and the
	// CRL's nextUpdate agree.
	s := newCRLSource(t, fake, clock, inter.cert)
	base := time.Now()
	s.now = func() time.Time { return clock.Now().Add(time.Since(base)) }
	if err := s.refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.run(t.Context(), time.Hour, nil); close(done) }()
	t.Cleanup(func() { <-done })
	deadline := time.Now().Add(5 * time.Second)
	for fake.notModified.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no refresh within 5 s of a CRL that expires in 3 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
