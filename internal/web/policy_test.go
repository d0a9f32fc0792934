package web_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/pki"
)

// TestPolicyPage covers the account's policy page: it shows the defaults,
// saves a new policy through the same use case as the admin API (audited),
// refills a refused form, and lists the active certificates that the new
// policy would not issue without changing them.
func TestPolicyPage(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ctx := context.Background()
	c := s.login(adminUser, adminPassword, nil)
	sys := pki.Principal{Kind: pki.PrincipalSystem}
	acct, err := s.app.Accounts.CreateAccount(ctx, sys, "Policy Co", pki.PlanEnterprise, "")
	if err != nil {
		t.Fatal(err)
	}
	owner := pki.Principal{Kind: pki.PrincipalAccount, AccountID: acct.ID}
	issue := func(name string) *pki.Certificate {
		t.Helper()
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, k)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := s.app.Certs.Issue(ctx, owner, acct, ca.IssueRequest{CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	kept := issue("api.policy.example")
	stray := issue("legacy.other.example")
	path := "/admin/accounts/" + acct.ID + "/policy"

	p := s.get(path, c)
	if p.status != http.StatusOK {
		t.Fatalf("policy page: %d %.300s", p.status, p.body)
	}
	for _, want := range []string{"<code>*</code>", "at most 1000", "at most 100", "Every active certificate fits the policy."} {
		if !strings.Contains(p.body, want) {
			t.Errorf("default policy page lacks %q", want)
		}
	}
	if a := s.get("/admin/accounts/"+acct.ID, c); !strings.Contains(a.body, `href="`+path+`"`) {
		t.Error("the account page does not link to the policy page")
	}
	token := p.csrf(t)

	form := func(names string, keyTypes ...string) url.Values {
		return url.Values{"csrf": {token}, "allowed_names": {names}, "allow_uri_sans": {"yes"}, "key_types": keyTypes,
			"max_validity_days": {"30"}, "max_active_certificates": {"10"}, "max_issuances_per_hour": {"5"}}
	}
	for _, tc := range []struct {
		name string
		form url.Values
		show string // the refilled form shows it
	}{
		{"a malformed rule", form("*.policy.example\nBad<b>.example", "ecdsa-p256"), "Bad&lt;b&gt;.example"},
		{"no key type", form("*.policy.example"), "key_types"},
		{"not a number", func() url.Values {
			f := form("*.policy.example", "ecdsa-p256")
			f.Set("max_active_certificates", "ten")
			return f
		}(), "ten"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := s.on(t)
			p := s.post(path, c, tc.form)
			if p.status != http.StatusBadRequest || !strings.Contains(p.body, tc.show) {
				t.Fatalf("status %d, want 400 showing %q: %.500s", p.status, tc.show, p.body)
			}
			if pol, _ := s.app.Certs.Policy(ctx, acct.ID); !slices.Equal(pol.AllowedNames, []string{"*"}) {
				t.Errorf("a refused form changed the policy: %+v", pol)
			}
		})
	}

	p = s.post(path, c, form("*.policy.example\r\n\r\n  api.policy.example  \n", "ecdsa-p256", "ecdsa-p384"))
	if p.status != http.StatusSeeOther || p.header.Get("Location") != path+"?done=saved" {
		t.Fatalf("save: %d %q %.300s", p.status, p.header.Get("Location"), p.body)
	}
	pol, err := s.app.Certs.Policy(ctx, acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pol.AllowedNames, []string{"*.policy.example", "api.policy.example"}) || !pol.AllowURISANs ||
		!slices.Equal(pol.KeyTypes, []pki.KeyType{pki.KeyECDSAP256, pki.KeyECDSAP384}) ||
		pol.MaxValidityDays != 30 || pol.MaxActiveCertificates != 10 || pol.MaxIssuancesPerHour != 5 ||
		pol.UpdatedBy != "admin:"+adminUser {
		t.Errorf("saved policy %+v", pol)
	}
	if evs := s.events(ca.ActionPolicyUpdated); len(evs) != 1 || evs[0].AccountID != acct.ID {
		t.Errorf("policy change audited %d times: %+v", len(evs), evs)
	}

	// The stray certificate no longer fits (its name, and a 90-day lifetime
	// over the new 30-day cap); it is listed, and it is still active.
	p = s.get(path+"?done=saved", c)
	if !strings.Contains(p.body, "Policy saved.") || !strings.Contains(p.body, "spiffe://pkid.test/account/"+acct.ID) {
		t.Errorf("saved page lacks the confirmation or the namespace")
	}
	misfits, _, complete, err := s.app.Certs.PolicyMisfits(ctx, pki.Principal{Kind: pki.PrincipalAdmin, Username: adminUser}, acct.ID)
	if err != nil || !complete || len(misfits) != 2 {
		t.Fatalf("misfits %d (complete %v): %v", len(misfits), complete, err)
	}
	if !strings.Contains(p.body, stray.Serial.String()) || !strings.Contains(p.body, `DNS name &#34;legacy.other.example&#34; is not in allowed_names`) {
		t.Errorf("the page does not list the stray certificate with its reason: %.2000s", p.body)
	}
	if !strings.Contains(p.body, kept.Serial.String()) || !strings.Contains(p.body, "exceeds max_validity_days") {
		t.Errorf("the page does not list the certificate whose lifetime is over the new cap")
	}
	if got, err := s.app.Certs.Certificate(ctx, owner, stray.Serial); err != nil || got.StatusAt(s.clock.Now()) != pki.StatusActive {
		t.Errorf("changing the policy changed a certificate: %v", err)
	}

	// A state change without the session's CSRF token changes nothing.
	bad := form("*", "rsa-2048")
	bad.Del("csrf")
	if p := s.post(path, c, bad); p.status != http.StatusForbidden {
		t.Errorf("without CSRF token: %d", p.status)
	}
	if p := s.get(path, nil); p.status != http.StatusSeeOther {
		t.Errorf("signed out: %d, want a redirect to sign in", p.status)
	}
}

// TestPolicyPageBrowser opens the policy page from the account page in a
// real browser, changes the policy with the form and checks that the page
// raised no console error (a Content-Security-Policy violation would).
// Screenshots go where TestBrowser's do (PKID_SCREENSHOT_DIR).
func TestPolicyPageBrowser(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no Chromium at %s (apt-get install chromium); the browser test needs it", chromiumPath)
	}
	s := newSite(t, false)
	acct, err := s.app.Accounts.CreateAccount(context.Background(), pki.Principal{Kind: pki.PrincipalSystem}, "Browser Policy Co", pki.PlanEnterprise, "")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, s)
	b.visit("policy-login", "/admin/login")
	b.do(chromedp.SendKeys(chromedp.ID("username"), adminUser), chromedp.SendKeys(chromedp.ID("password"), adminPassword))
	b.follow("policy-dashboard", http.StatusOK, chromedp.Click(chromedp.CSS(`form[action="/admin/login"] button[type=submit]`)))
	b.visit("policy-account", "/admin/accounts/"+acct.ID)
	b.follow("policy-page", http.StatusOK, chromedp.Click(chromedp.CSS(`a[href="/admin/accounts/`+acct.ID+`/policy"]`)))
	b.do(
		chromedp.SetValue(chromedp.ID("allowed-names"), "*.robots.example\napi.robots.example"),
		chromedp.SetValue(chromedp.ID("allow-uri-sans"), "yes"),
		chromedp.SetValue(chromedp.ID("max-days"), "30"),
		chromedp.SetValue(chromedp.ID("max-active"), "50"),
		chromedp.SetValue(chromedp.ID("max-hour"), "10"),
	)
	b.follow("policy-saved", http.StatusOK, chromedp.Click(chromedp.CSS(`form[action$="/policy"] button[type=submit]`)))
	if main := b.text("main"); !strings.Contains(main, "Policy saved.") || !strings.Contains(main, "at most 50") {
		t.Errorf("after saving: %s", main)
	}
	pol, err := s.app.Certs.Policy(context.Background(), acct.ID)
	if err != nil || !slices.Equal(pol.AllowedNames, []string{"*.robots.example", "api.robots.example"}) ||
		!pol.AllowURISANs || pol.MaxValidityDays != 30 || len(pol.KeyTypes) != 5 {
		t.Errorf("saved through the browser: %+v, %v", pol, err)
	}
	b.checkConsole()
}
