package edge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/ocsp"
)

const account = "7d5c0a52-8f3e-4b8e-9d0b-4c1e6c2f9a10"

// TestAcceptedClientIdentity: a valid certificate gets through, and the
// upstream sees the edge's X-Client-* headers, never the client's.
func TestAcceptedClientIdentity(t *testing.T) {
	h := newHarness(t)
	c := h.leaf(account)
	forged := http.Header{
		"X-Client-Account": {"someone-else"},
		"x-client-account": {"someone-else"}, // a non-canonical key, as a map can hold it
		"X-CLIENT-SERIAL":  {"01"},
		"X_Client_Subject": {"CN=admin"},
		"X-Client-Extra":   {"1"},
		"X-Forwarded-For":  {"203.0.113.9"},
	}
	for _, tc := range []struct {
		name string
		h2   bool
	}{{"HTTP/1.1", false}, {"HTTP/2", true}} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.upstream.requests())
			hdr := forged.Clone()
			if !tc.h2 {
				// HTTP/1.1 hop-by-hop trick: ask the edge to strip its own header.
				hdr.Set("Connection", "X-Client-Account")
			}
			hc := &http.Client{Transport: h.transport(c, false, tc.h2), Timeout: 10 * time.Second}
			resp, body, err := h.do(hc, hdr)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || string(body) != "hello "+account {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			if tc.h2 != (resp.ProtoMajor == 2) {
				t.Fatalf("protocol %s", resp.Proto)
			}
			seen := h.upstream.requests()
			if len(seen) != before+1 {
				t.Fatalf("upstream got %d requests", len(seen)-before)
			}
			got := seen[len(seen)-1]
			want := map[string]string{
				HeaderAccount:       account,
				HeaderSerial:        c.leaf.SerialNumber.Text(16),
				HeaderSubject:       `CN=payments-client,O=Acme\, Inc.`,
				"X-Forwarded-Proto": "https",
				"X-Forwarded-For":   "127.0.0.1",
			}
			for k, v := range want {
				if vs := got.Values(k); len(vs) != 1 || vs[0] != v {
					t.Errorf("%s = %q, want exactly %q", k, vs, v)
				}
			}
			for k := range got {
				n := strings.ReplaceAll(strings.ToLower(k), "_", "-")
				if strings.HasPrefix(n, "x-client-") && want[k] == "" {
					t.Errorf("client header %s reached the upstream", k)
				}
			}
		})
	}
	if got := testutil.ToFloat64(h.edge.m.handshakes.WithLabelValues("ok")); got < 2 {
		t.Errorf("handshakes{result=ok} = %v", got)
	}
}

// TestDropClientHeaders covers the header filter itself, trailers included.
func TestDropClientHeaders(t *testing.T) {
	h := http.Header{
		"X-Client-Account": {"a"}, "x-client-serial": {"b"}, "X_CLIENT_SUBJECT": {"c"}, "X-Client_Other": {"d"},
		"X-Clientele": {"keep"}, "Accept": {"keep"},
	}
	dropClientHeaders(h)
	if len(h) != 2 || h.Get("X-Clientele") != "keep" || h.Get("Accept") != "keep" {
		t.Fatalf("after the filter: %v", h)
	}
	dropClientHeaders(nil) // a request without trailers
}

// TestRefusals: each kind of bad client is refused at the handshake, counted
// under its reason, and never reaches the upstream.
func TestRefusals(t *testing.T) {
	h := newHarness(t)
	other := newRoot(t, "Other Root", h.clock.Now()).intermediate(t, "Other Intermediate", h.clock.Now())

	revoked := h.leaf(account)
	unknown := h.leaf(account)
	h.ocsp.set(func(f *fakeOCSP) {
		f.revoked[revoked.leaf.SerialNumber.Text(16)] = h.clock.Now().Add(-time.Minute)
		f.unknown[unknown.leaf.SerialNumber.Text(16)] = true
	})

	cases := []struct {
		name   string
		client *client
		setup  func()
		reason string
	}{
		{"no client certificate", nil, nil, ReasonNoCertificate},
		{"certificate from another CA", other.leaf(t, account, h.clock.Now(), ""), nil, ReasonUntrusted},
		{"expired certificate", h.leaf(account, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = h.clock.Now().AddDate(0, -2, 0), h.clock.Now().Add(-time.Minute)
		}), nil, ReasonExpired},
		{"not for client authentication", h.leaf(account, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}), nil, ReasonInvalid},
		{"no account URI SAN", h.leaf(""), nil, ReasonNoAccount},
		{"two account URI SANs", h.leaf(account, func(c *x509.Certificate) {
			c.URIs = append(c.URIs, c.URIs[0].JoinPath("x"))
		}), nil, ReasonNoAccount},
		{"revoked (OCSP)", revoked, nil, ReasonRevoked},
		{"OCSP status unknown", unknown, nil, ReasonUnknown},
		{"OCSP unauthorized", h.leaf(account), func() { h.ocsp.set(func(f *fakeOCSP) { f.status = ocsp.Unauthorized }) }, ReasonUnknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			before := testutil.ToFloat64(h.edge.m.handshakes.WithLabelValues(tc.reason))
			h.mustRefuse(t, tc.client)
			if after := testutil.ToFloat64(h.edge.m.handshakes.WithLabelValues(tc.reason)); after != before+1 {
				t.Errorf("handshakes{result=%s} went from %v to %v", tc.reason, before, after)
			}
		})
	}
}

// TestRevokedByCRLWhenOCSPDown: with the responder down, the CRL answers,
// both ways.
func TestRevokedByCRLWhenOCSPDown(t *testing.T) {
	h := newHarness(t)
	good, revoked := h.leaf(account), h.leaf(account)
	h.crl.mu.Lock()
	h.crl.revoked[revoked.leaf.SerialNumber.Text(16)] = h.clock.Now().Add(-time.Hour)
	h.crl.mu.Unlock()
	h.crl.publish(t)
	if err := h.edge.crl.refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.ocsp.set(func(f *fakeOCSP) { f.down = true })

	h.mustRefuse(t, revoked)
	h.mustGet(t, good)
	if got := testutil.ToFloat64(h.edge.m.checks.WithLabelValues("crl", "revoked")); got != 1 {
		t.Errorf("checks{crl,revoked} = %v", got)
	}
	if got := testutil.ToFloat64(h.edge.m.checks.WithLabelValues("crl", "good")); got < 1 {
		t.Errorf("checks{crl,good} = %v", got)
	}
	// The revocation is final and cached: the responder coming back with a
	// "good" (a stale replica, say) does not undo it.
	h.ocsp.set(func(f *fakeOCSP) { f.down = false })
	h.mustRefuse(t, revoked)
}

// TestFailClosedPastGrace: once OCSP and the CRL are both unreachable, the
// edge keeps accepting on the answers it has while they are fresh within
// the grace, and refuses every certificate after that.
func TestFailClosedPastGrace(t *testing.T) {
	const grace = 10 * time.Minute
	h := newHarness(t, func(c *Config) { c.Grace = grace })
	c := h.leaf(account)
	h.mustGet(t, c) // OCSP good, valid 4 h; the CRL (valid 24 h) is loaded
	h.ocsp.set(func(f *fakeOCSP) { f.down = true })
	h.crl.mu.Lock()
	h.crl.down = true
	h.crl.mu.Unlock()
	if err := h.edge.crl.refresh(t.Context()); err == nil {
		t.Fatal("CRL refresh succeeded against a dead server")
	}

	h.crl.mu.Lock()
	published, err := x509.ParseRevocationList(h.crl.der)
	h.crl.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	crlNext := published.NextUpdate
	steps := []struct {
		name   string
		at     time.Time
		accept bool
	}{
		{"cached OCSP answer still valid", h.clock.Now().Add(time.Hour), true},
		{"OCSP expired, CRL fresh", h.clock.Now().Add(5 * time.Hour), true},
		{"CRL expired, within the grace", crlNext.Add(grace - time.Minute), true},
		{"CRL expired beyond the grace", crlNext.Add(grace + time.Second), false},
		{"a new certificate too", crlNext.Add(grace + time.Hour), false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			h.clock.Advance(s.at.Sub(h.clock.Now()))
			cl := c
			if strings.HasPrefix(s.name, "a new") {
				cl = h.leaf(account, func(x *x509.Certificate) { x.NotBefore = h.clock.Now().Add(-time.Hour) })
			}
			if s.accept {
				h.mustGet(t, cl)
			} else {
				h.mustRefuse(t, cl)
			}
		})
	}
	if got := testutil.ToFloat64(h.edge.m.handshakes.WithLabelValues(ReasonUnavailable)); got != 2 {
		t.Errorf("handshakes{unavailable} = %v, want 2", got)
	}
}

// TestRevokedDuringConnection: a keep-alive connection opened before the
// revocation gets 403 once the edge learns of it.
func TestRevokedDuringConnection(t *testing.T) {
	h := newHarness(t)
	c := h.leaf(account)
	hc := &http.Client{Transport: h.transport(c, true, false), Timeout: 10 * time.Second}
	if resp, _, err := h.do(hc, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %v %v", resp, err)
	}
	h.ocsp.set(func(f *fakeOCSP) { f.revoked[c.leaf.SerialNumber.Text(16)] = h.clock.Now() })
	if resp, _, err := h.do(hc, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("within the cache period: %v %v", resp, err)
	}
	h.clock.Advance(DefaultOCSPCacheMax + time.Second)
	before := len(h.upstream.requests())
	resp, body, err := h.do(hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), ProblemTypePrefix+"certificateRevoked") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if len(h.upstream.requests()) != before {
		t.Fatal("a revoked client's request reached the upstream")
	}
	if resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
}

// TestSingleFlight: 50 concurrent handshakes of one certificate cost one
// OCSP request.
func TestSingleFlight(t *testing.T) {
	h := newHarness(t)
	h.ocsp.set(func(f *fakeOCSP) { f.delay = 300 * time.Millisecond })
	c := h.leaf(account)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			resp, _, err := h.get(c, nil)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := h.ocsp.requests.Load(); n != 1 {
		t.Fatalf("%d OCSP requests for one certificate, want 1", n)
	}
	if hits := testutil.ToFloat64(h.edge.m.cacheHits); hits < 50 {
		// 50 handshakes and 50 requests; those that arrived while the first
		// exchange ran waited for it instead of hitting the cache.
		t.Logf("cache hits: %v", hits)
	}
}

// TestIntermediateInBundle: with the intermediate in --ca, a client that
// sends only its leaf is accepted, and the CRL verifies at once.
func TestIntermediateInBundle(t *testing.T) {
	h := newHarness(t)
	writePEM(t, h.path("ca.pem"), "CERTIFICATE", h.root.cert.Raw, h.inter.cert.Raw)
	if err := h.edge.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := h.edge.crl.refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.crl.publish(t)
	if err := h.edge.crl.refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.edge.crl.nextUpdate(); !ok {
		t.Fatal("the CRL was not accepted with its issuer in the bundle")
	}
	c := h.leaf(account)
	c.tls.Certificate = c.tls.Certificate[:1]
	h.mustGet(t, c)
}

// TestPendingCRLNeverAnswersForOthers: a CRL from a CA the edge does not
// know is held, never used for another issuer's certificates.
func TestPendingCRLNeverAnswersForOthers(t *testing.T) {
	h := newHarness(t)
	other := newRoot(t, "Other Root", h.clock.Now()).intermediate(t, "Other Intermediate", h.clock.Now())
	f, err := parseCRL(newFakeCRL(t, other, h.clock.Now).der)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.edge.crl.offer(f, "", ""); err != nil {
		t.Fatal(err)
	}
	// Our own intermediate's client: the pending CRL (another issuer) does
	// not answer for it, and the one held is unchanged.
	h.ocsp.set(func(f *fakeOCSP) { f.down = true })
	c := h.leaf(account)
	h.mustRefuse(t, c) // no CRL for our issuer yet: fail closed
	if err := h.edge.crl.refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.mustGet(t, c) // our CRL arrives; it is verified with the issuer learnt from the chain
}

// TestResumedSessionIsChecked: a resumed TLS session is verified like a
// new one, so a revoked certificate cannot come back through a ticket.
func TestResumedSessionIsChecked(t *testing.T) {
	h := newHarness(t)
	c := h.leaf(account)
	sessions := tls.NewLRUClientSessionCache(4)
	get := func() (*http.Response, error) {
		tr := h.transport(c, false, false)
		tr.TLSClientConfig.ClientSessionCache = sessions
		resp, _, err := h.do(&http.Client{Transport: tr, Timeout: 10 * time.Second}, nil)
		return resp, err
	}
	if resp, err := get(); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first connection: %v", err)
	}
	resp, err := get()
	if err != nil || resp.StatusCode != http.StatusOK || !resp.TLS.DidResume {
		t.Fatalf("second connection: %v (resumed: %v)", err, resp != nil && resp.TLS.DidResume)
	}
	h.ocsp.set(func(f *fakeOCSP) { f.revoked[c.leaf.SerialNumber.Text(16)] = h.clock.Now() })
	h.clock.Advance(DefaultOCSPCacheMax + time.Second)
	if resp, err := get(); err == nil {
		t.Fatalf("a resumed session of a revoked certificate got %d", resp.StatusCode)
	}
	if got := testutil.ToFloat64(h.edge.m.handshakes.WithLabelValues(ReasonRevoked)); got != 1 {
		t.Fatalf("handshakes{revoked} = %v", got)
	}
}

// TestBlackholedResponder: while the responder fails, the CRL answers first
// and the responder is probed in the background, so only the handshake that
// found it failing waits for the timeout.
func TestBlackholedResponder(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.OCSPTimeout = time.Second })
	h.ocsp.set(func(f *fakeOCSP) { f.delay = 3 * time.Second })
	first := time.Now()
	h.mustGet(t, h.leaf(account))
	if waited := time.Since(first); waited < time.Second {
		t.Fatalf("the first handshake took %v, less than the OCSP timeout", waited)
	}
	for _, step := range []time.Duration{time.Second, DefaultOCSPRetry} {
		h.clock.Advance(step)
		began := time.Now()
		h.mustGet(t, h.leaf(account))
		if waited := time.Since(began); waited > 500*time.Millisecond {
			t.Fatalf("after %v, a handshake waited %v for the failing responder", step, waited)
		}
	}
	h.edge.checker.flight.wg.Wait()
	if n := h.ocsp.requests.Load(); n != 2 {
		t.Fatalf("%d OCSP requests, want 2 (the first, then one probe)", n)
	}
}
