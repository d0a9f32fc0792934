package edge

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// TestVerifyOCSP: who may sign, about what, and when.
func TestVerifyOCSP(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	root := newRoot(t, "Test Root", now)
	inter := root.intermediate(t, "Test Intermediate", now)
	other := newRoot(t, "Other Root", now).intermediate(t, "Other Intermediate", now)
	// Same name as inter, another key: the issuerKeyHash must tell them apart.
	twin := root.intermediate(t, "Test Intermediate", now)
	leaf := inter.leaf(t, account, now, "").leaf
	delegated := inter.responder(t, now, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, now.AddDate(1, 0, 0))
	noEKU := inter.responder(t, now, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, now.AddDate(1, 0, 0))
	expired := inter.responder(t, now.AddDate(0, -2, 0), []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, now.Add(-time.Hour))
	foreign := other.responder(t, now, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, now.AddDate(1, 0, 0))

	good := func() ocsp.Response {
		return ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}
	}
	cases := []struct {
		name string
		// issuer is the CA whose hashes go into the CertID; signer signs;
		// embed is the certificate put in the response.
		issuer, signer *ca
		embed          *x509.Certificate
		edit           func(*ocsp.Response)
		hash           crypto.Hash
		want           Status // 0: refused
	}{
		{name: "delegated responder", issuer: inter, signer: delegated, embed: delegated.cert, want: StatusGood},
		{name: "delegated responder, SHA-256 CertID", issuer: inter, signer: delegated, embed: delegated.cert, hash: crypto.SHA256, want: StatusGood},
		{name: "the issuer itself, no certificate", issuer: inter, signer: inter, want: StatusGood},
		{name: "the issuer itself, with its certificate", issuer: inter, signer: inter, embed: inter.cert, want: StatusGood},
		{name: "revoked", issuer: inter, signer: delegated, embed: delegated.cert, want: StatusRevoked, edit: func(r *ocsp.Response) {
			r.Status, r.RevokedAt, r.RevocationReason = ocsp.Revoked, now.Add(-time.Hour), ocsp.KeyCompromise
		}},
		{name: "unknown", issuer: inter, signer: delegated, embed: delegated.cert, want: StatusUnknown, edit: func(r *ocsp.Response) { r.Status = ocsp.Unknown }},
		{name: "thisUpdate within the clock skew", issuer: inter, signer: delegated, embed: delegated.cert, want: StatusGood, edit: func(r *ocsp.Response) {
			r.ThisUpdate = now.Add(time.Minute)
		}},
		{name: "responder without id-kp-OCSPSigning", issuer: inter, signer: noEKU, embed: noEKU.cert},
		{name: "expired responder", issuer: inter, signer: expired, embed: expired.cert},
		{name: "responder of another CA", issuer: inter, signer: foreign, embed: foreign.cert},
		{name: "the root signs for the intermediate", issuer: inter, signer: root},
		{name: "another CA, no certificate", issuer: inter, signer: other},
		// SECURITY.md O-22: a genuine response of our responder about a
		// certificate of another CA with the same serial.
		{name: "CertID of another issuer", issuer: other, signer: delegated, embed: delegated.cert},
		{name: "CertID of a same-name issuer with another key", issuer: twin, signer: delegated, embed: delegated.cert},
		{name: "another serial", issuer: inter, signer: delegated, embed: delegated.cert, edit: func(r *ocsp.Response) {
			r.SerialNumber = new(big.Int).Add(leaf.SerialNumber, big.NewInt(1))
		}},
		{name: "thisUpdate in the future", issuer: inter, signer: delegated, embed: delegated.cert, edit: func(r *ocsp.Response) {
			r.ThisUpdate = now.Add(DefaultClockSkew + time.Minute)
			r.NextUpdate = r.ThisUpdate.Add(time.Hour)
		}},
		{name: "nextUpdate passed", issuer: inter, signer: delegated, embed: delegated.cert, edit: func(r *ocsp.Response) {
			r.ThisUpdate, r.NextUpdate = now.Add(-2*time.Hour), now.Add(-time.Second)
		}},
		{name: "no nextUpdate", issuer: inter, signer: delegated, embed: delegated.cert, edit: func(r *ocsp.Response) { r.NextUpdate = time.Time{} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := good()
			tmpl.Certificate = tc.embed
			tmpl.IssuerHash = tc.hash
			if tc.edit != nil {
				tc.edit(&tmpl)
			}
			der, err := ocsp.CreateResponse(tc.issuer.cert, tc.signer.cert, tmpl, tc.signer.key)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ocsp.ParseResponse(der, nil)
			if err != nil {
				t.Fatal(err)
			}
			a, err := verifyOCSP(r, der, leaf, inter.cert, now, DefaultClockSkew)
			if tc.want == 0 {
				if err == nil {
					t.Fatalf("accepted: %+v", a)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Status != tc.want || a.Source != SourceOCSP {
				t.Fatalf("status %s from %s, want %s", a.Status, a.Source, tc.want)
			}
			if a.Status == StatusRevoked && (a.Reason != 1 || !a.RevokedAt.Equal(now.Add(-time.Hour))) {
				t.Fatalf("revocation %v at %v", a.Reason, a.RevokedAt)
			}
		})
	}

	// Why the CertID is read separately: x/crypto accepts the response
	// about another issuer's certificate.
	tmpl := good()
	tmpl.Certificate = delegated.cert
	der, err := ocsp.CreateResponse(other.cert, delegated.cert, tmpl, delegated.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ocsp.ParseResponseForCert(der, leaf, inter.cert); err != nil {
		t.Logf("x/crypto now refuses a response about another issuer (%v): the edge's check remains", err)
	}
}

// TestOCSPQuery: what the responder's HTTP answer becomes.
func TestOCSPQuery(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	inter := newRoot(t, "Test Root", now).intermediate(t, "Test Intermediate", now)
	leaf := inter.leaf(t, account, now, "").leaf
	good := newFakeOCSP(t, inter, func() time.Time { return now })

	cases := []struct {
		name    string
		handler http.HandlerFunc
		want    error
	}{
		{"good", good.serve, nil},
		{"HTTP 503", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "x", http.StatusServiceUnavailable) }, errOCSPUnavailable},
		{"tryLater", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(ocsp.TryLaterErrorResponse) }, errOCSPUnavailable},
		{"internalError with HTTP 500", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(500)
			_, _ = w.Write(ocsp.InternalErrorErrorResponse)
		}, errOCSPUnavailable},
		{"unauthorized", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(ocsp.UnauthorizedErrorResponse) }, errOCSPUnauthorized},
		{"garbage", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>hello</html>")) }, errOCSPUnavailable},
		{"too large", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(strings.Repeat("A", maxOCSPResponse+1)))
		}, errOCSPUnavailable},
		{"redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }, errOCSPUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			o := &ocspClient{url: srv.URL, client: &http.Client{CheckRedirect: noRedirects}, skew: DefaultClockSkew}
			a, err := o.query(context.Background(), leaf, inter.cert, now)
			if !errors.Is(err, tc.want) || (tc.want == nil && a.Status != StatusGood) {
				t.Fatalf("got %+v, %v; want %v", a, err, tc.want)
			}
		})
	}
}

func TestMaxAge(t *testing.T) {
	cases := []struct {
		name   string
		values []string
		want   time.Duration
		ok     bool
	}{
		{"none", nil, 0, false},
		{"RFC 5019 form", []string{"max-age=3600, public, no-transform, must-revalidate"}, time.Hour, true},
		{"quoted, upper case", []string{`Public, MAX-AGE="60"`}, time.Minute, true},
		{"no-cache", []string{"no-cache"}, 0, true},
		{"no-store wins over max-age", []string{"max-age=60", "no-store"}, 0, true},
		{"shortest of two", []string{"max-age=60, max-age=30"}, 30 * time.Second, true},
		{"malformed ignored", []string{"max-age=abc", "max-age=-5"}, 0, false},
		{"absurd capped", []string{"max-age=99999999999"}, 365 * 24 * time.Hour, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.values {
				h.Add("Cache-Control", v)
			}
			if d, ok := maxAge(h); d != tc.want || ok != tc.ok {
				t.Fatalf("maxAge = %v, %v; want %v, %v", d, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestOCSPCacheLifetime: an answer is reused until the soonest of
// nextUpdate, max-age and the cache cap, and asked for again after.
func TestOCSPCacheLifetime(t *testing.T) {
	cases := []struct {
		name     string
		maxAge   int           // seconds, -1: none
		validity time.Duration // nextUpdate - now
		cacheMax time.Duration
		life     time.Duration // expected reuse
	}{
		{"max-age soonest", 30, 4 * time.Hour, time.Hour, 30 * time.Second},
		{"nextUpdate soonest", 300, 20 * time.Second, time.Hour, 20 * time.Second},
		{"cache cap soonest", -1, 4 * time.Hour, 40 * time.Second, 40 * time.Second},
		{"max-age larger than nextUpdate", 86400, 50 * time.Second, time.Hour, 50 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.OCSPCacheMax = tc.cacheMax })
			h.ocsp.set(func(f *fakeOCSP) {
				f.maxAge, f.thisDelta, f.validity = tc.maxAge, -time.Second, tc.validity+time.Second
			})
			c := h.leaf(account)
			start := h.clock.Now()
			check := func(wantRequests int64) {
				t.Helper()
				if _, err := h.edge.checker.check(t.Context(), c.leaf, h.inter.cert); err != nil {
					t.Fatal(err)
				}
				h.edge.checker.flight.wg.Wait()
				if n := h.ocsp.requests.Load(); n != wantRequests {
					t.Fatalf("at +%v: %d OCSP requests, want %d", h.clock.Now().Sub(start), n, wantRequests)
				}
			}
			check(1)
			h.clock.Advance(tc.life / 2)
			check(1) // fresh, not yet in its last quarter
			h.clock.Advance(tc.life/2 + time.Second)
			check(2) // expired: asked again
		})
	}

	t.Run("refreshed in the background in its last quarter", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.OCSPCacheMax = 40 * time.Second })
		c := h.leaf(account)
		h.ocsp.set(func(f *fakeOCSP) { f.delay = time.Second })
		if _, err := h.edge.checker.check(t.Context(), c.leaf, h.inter.cert); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(35 * time.Second)
		began := time.Now()
		a, err := h.edge.checker.check(t.Context(), c.leaf, h.inter.cert)
		if err != nil || a.Source != SourceCache {
			t.Fatalf("%+v, %v", a, err)
		}
		if waited := time.Since(began); waited > 500*time.Millisecond {
			t.Fatalf("the caller waited %v for the background refresh", waited)
		}
		h.edge.checker.flight.wg.Wait()
		if n := h.ocsp.requests.Load(); n != 2 {
			t.Fatalf("%d OCSP requests, want 2", n)
		}
		h.clock.Advance(10 * time.Second) // past the first answer's life, within the second's
		if _, err := h.edge.checker.check(t.Context(), c.leaf, h.inter.cert); err != nil {
			t.Fatal(err)
		}
		if n := h.ocsp.requests.Load(); n != 2 {
			t.Fatalf("%d OCSP requests after the refresh, want 2", n)
		}
	})

	t.Run("no-cache: asked every time", func(t *testing.T) {
		h := newHarness(t)
		h.ocsp.set(func(f *fakeOCSP) { f.maxAge = 0 })
		c := h.leaf(account)
		for range 3 {
			if _, err := h.edge.checker.check(t.Context(), c.leaf, h.inter.cert); err != nil {
				t.Fatal(err)
			}
		}
		if n := h.ocsp.requests.Load(); n != 3 {
			t.Fatalf("%d OCSP requests, want 3", n)
		}
	})

	t.Run("a revocation is kept until the certificate expires", func(t *testing.T) {
		h := newHarness(t)
		c := h.leaf(account)
		h.ocsp.set(func(f *fakeOCSP) { f.revoked[c.leaf.SerialNumber.Text(16)] = h.clock.Now() })
		for _, step := range []time.Duration{0, 24 * time.Hour, 7 * 24 * time.Hour} {
			h.clock.Advance(step)
			if _, err := h.edge.checker.check(t.Context(), c.leaf, h.inter.cert); !errors.Is(err, ErrRevoked) {
				t.Fatalf("after %v: %v, want ErrRevoked", step, err)
			}
		}
		if n := h.ocsp.requests.Load(); n != 1 {
			t.Fatalf("%d OCSP requests, want 1", n)
		}
	})
}
