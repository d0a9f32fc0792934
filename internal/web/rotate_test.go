package web_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/testnode"
)

// TestCAPageAfterRotation: after `pkid ca rotate` the CA page shows the
// superseded intermediate and its OCSP signer, whose certificate downloads
// by generation.
func TestCAPageAfterRotation(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ctx := context.Background()
	l, err := lint.New()
	if err != nil {
		t.Fatal(err)
	}
	first := s.app.Hierarchy.Current()
	icfg := ca.InitConfig{Hierarchy: issuance.HierarchyConfig{PublicURL: testnode.PublicURL}}
	if _, err := ca.Rotate(ctx, s.db, icfg, keystore.Sealed([]byte(testPassphrase)), l, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.app.ReloadHierarchy(ctx); err != nil {
		t.Fatal(err)
	}
	c := s.login(adminUser, adminPassword, nil)
	p := s.get("/admin/ca", c)
	if p.status != 200 || !strings.Contains(p.body, "Superseded intermediate, generation 1") ||
		!strings.Contains(p.body, "OCSP signer of generation 1") || !strings.Contains(p.body, "pkid Issuing CA G2") {
		t.Fatalf("the CA page after a rotation: %d, does not show both generations:\n%s", p.status, p.body)
	}
	p = s.get("/admin/ca/ocsp-signer.pem?generation=1", c)
	block, _ := pem.Decode([]byte(p.body))
	if p.status != 200 || block == nil {
		t.Fatalf("the first generation's OCSP signer: %d %q", p.status, p.body)
	}
	signer, err := x509.ParseCertificate(block.Bytes)
	if err != nil || signer.CheckSignatureFrom(first.Issuer.Cert) != nil || !signer.Equal(first.OCSPSigner().Cert) {
		t.Errorf("the OCSP signer downloaded for generation 1 is not the one its intermediate certified (%v)", err)
	}
	for _, q := range []string{"9", "x", "-1"} {
		if p := s.get("/admin/ca/ocsp-signer.pem?generation="+q, c); p.status != 404 {
			t.Errorf("OCSP signer of generation %q: %d, want 404", q, p.status)
		}
	}
}
