package app_test

import (
	"crypto/x509"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestCRLNextUpdateMetric: once the node serves its CRLs, /metrics says for
// each how long until its nextUpdate, the figure to alert on before nginx
// (ssl_crl) refuses every client with a stale CRL.
func TestCRLNextUpdateMetric(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	current := n.app.Hierarchy.Intermediates()[0] // the current one comes first
	label := "intermediate-" + strconv.Itoa(current.Generation)
	re := regexp.MustCompile(`(?m)^pkid_crl_next_update_seconds\{issuer="(root|intermediate-[0-9]+)"\} (\S+)$`)
	var got map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = map[string]float64{}
		for _, m := range re.FindAllSubmatch(n.do("GET", "/metrics", "", nil).body, -1) {
			v, err := strconv.ParseFloat(string(m[2]), 64)
			if err != nil {
				t.Fatalf("%s: %v", m[0], err)
			}
			got[string(m[1])] = v
		}
		if len(got) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pkid_crl_next_update_seconds series %v, want root and the intermediate", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := n.do("GET", "/crl", "", nil)
	crl, err := x509.ParseRevocationList(r.body)
	if err != nil {
		t.Fatalf("GET /crl: %d: %v", r.status, err)
	}
	if err := crl.CheckSignatureFrom(current.Issuer.Cert); err != nil {
		t.Fatalf("the served CRL is not the current intermediate's: %v", err)
	}
	inter, ok := got[label]
	if !ok {
		t.Fatalf("no series for %s: %v", label, got)
	}
	if want := time.Until(crl.NextUpdate).Seconds(); inter > want+5 || inter < want-5 {
		t.Errorf("intermediate's CRL: metric %.0f s, nextUpdate of the served CRL in %.0f s", inter, want)
	}
	if got["root"] <= 0 {
		t.Errorf("root's CRL: metric %.0f s, want its nextUpdate ahead", got["root"])
	}
}
