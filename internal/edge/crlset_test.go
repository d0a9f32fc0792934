package edge

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// routedTransport answers requests for one path from a fake CRL and sends
// the rest over the network: a second CRL on the --crl server's origin.
type routedTransport struct {
	path string
	crl  *atomic.Pointer[fakeCRL]
}

func (rt routedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if f := rt.crl.Load(); f != nil && req.URL.Path == rt.path {
		rec := httptest.NewRecorder()
		f.serve(rec, req)
		return rec.Result(), nil
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestFollowsAnotherIntermediatesCRL: after an intermediate rollover the
// new intermediate's certificates name its own CRL (pkid: /crl/2) on the
// same server as --crl. With OCSP down, the edge fetches that CRL on
// meeting the first such certificate and answers from it, while --crl's
// still answers for the old intermediate; a distribution point on another
// origin is not followed.
func TestFollowsAnotherIntermediatesCRL(t *testing.T) {
	var second atomic.Pointer[fakeCRL]
	h := newHarness(t, func(c *Config) { c.Transport = routedTransport{path: "/crl/2", crl: &second} })
	now := h.clock.Now()
	inter2 := h.root.intermediate(t, "Test Intermediate G2", now)
	crl2 := newFakeCRL(t, inter2, h.clock.Now)
	second.Store(crl2)
	dp := h.crl.srv.URL + "/crl/2"
	good2, revoked2 := inter2.leaf(t, account, now, dp), inter2.leaf(t, account, now, dp)
	crl2.mu.Lock()
	crl2.revoked[revoked2.leaf.SerialNumber.Text(16)] = now.Add(-time.Hour)
	crl2.mu.Unlock()
	crl2.publish(t)
	old := h.leaf(account)
	h.ocsp.set(func(f *fakeOCSP) { f.down = true })

	// The first handshake of the new intermediate starts the fetch; it may
	// be refused (fail closed) until the CRL is in.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _, err := h.get(good2, nil)
		if err == nil && resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a certificate of the new intermediate is still refused with OCSP down: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.mustRefuse(t, revoked2)
	h.mustGet(t, old)

	// A third intermediate whose certificates name a CRL elsewhere: not
	// followed, so with OCSP down nothing vouches for them.
	inter3 := h.root.intermediate(t, "Test Intermediate G3", now)
	h.mustRefuse(t, inter3.leaf(t, account, now, "http://crl.elsewhere.test/crl/3"))
	if n := len(h.edge.crls.list()); n != 2 {
		t.Errorf("the edge follows %d CRLs, want 2 (--crl's and /crl/2 on its origin)", n)
	}
}
