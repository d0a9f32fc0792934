package web_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/pkid/pkid/internal/pki"
)

// The account page's expiry-notice card: a refused URL is a 400 page with
// the form refilled and nothing saved; a new webhook's secret is on the
// creating answer only; rotation shows a new one; removal removes it.
func TestWebhookCard(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	c := s.login(adminUser, adminPassword, nil)
	acct, err := s.app.Accounts.CreateAccount(context.Background(), pki.Principal{Kind: pki.PrincipalSystem}, "Hooks Co", pki.PlanEnterprise, "")
	if err != nil {
		t.Fatal(err)
	}
	path := "/admin/accounts/" + acct.ID
	p := s.get(path, c)
	if p.status != http.StatusOK || !strings.Contains(p.body, "Expiry notices") || !strings.Contains(p.body, "Create webhook") {
		t.Fatalf("account page: %d, no webhook card", p.status)
	}
	token := p.csrf(t)

	for _, tc := range []struct{ name, url, days string }{
		{"plain http", "http://hooks.example.com/", ""},
		{"userinfo", "https://u:p@hooks.example.com/", ""},
		{"private address", "https://10.0.0.1/", ""},
		{"bad period", "https://hooks.example.com/", "0"},
		{"period not a number", "https://hooks.example.com/", "two"},
	} {
		p := s.post(path+"/webhook", c, url.Values{"csrf": {token}, "url": {tc.url}, "notify_days": {tc.days}})
		if p.status != http.StatusBadRequest || !strings.Contains(p.body, `value="`+html.EscapeString(tc.url)+`"`) {
			t.Errorf("%s: %d, want 400 with the form refilled: %.300s", tc.name, p.status, p.body)
		}
	}
	if _, err := s.app.Webhooks.Webhook(context.Background(), acct.ID); err == nil {
		t.Fatal("a refused form saved a webhook")
	}

	secretRe := regexp.MustCompile(`whsec_[A-Za-z0-9_-]{43}`)
	p = s.post(path+"/webhook", c, url.Values{"csrf": {token}, "url": {"https://hooks.example.com/pkid"}, "notify_days": {"21"}})
	secret := secretRe.FindString(p.body)
	if p.status != http.StatusCreated || secret == "" {
		t.Fatalf("create: %d, secret %q", p.status, secret)
	}
	p = s.get(path, c)
	if secretRe.MatchString(p.body) || !strings.Contains(p.body, `value="https://hooks.example.com/pkid"`) || !strings.Contains(p.body, `value="21"`) {
		t.Fatalf("the page after creation shows the secret or lacks the webhook: %.500s", p.body)
	}
	p = s.post(path+"/webhook", c, url.Values{"csrf": {token}, "url": {"https://hooks.example.com/v2"}, "notify_days": {""}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("update: %d", p.status)
	}
	if w, err := s.app.Webhooks.Webhook(context.Background(), acct.ID); err != nil || w.URL != "https://hooks.example.com/v2" || w.NotifyDays != 0 {
		t.Fatalf("after update: %+v, %v", w, err)
	}
	p = s.post(path+"/webhook/rotate", c, url.Values{"csrf": {token}})
	if rotated := secretRe.FindString(p.body); p.status != http.StatusCreated || rotated == "" || rotated == secret {
		t.Fatalf("rotate: %d, secret %q", p.status, rotated)
	}
	if p := s.post(path+"/webhook/remove", c, url.Values{"csrf": {token}}); p.status != http.StatusSeeOther {
		t.Fatalf("remove: %d", p.status)
	}
	if p := s.post(path+"/webhook/remove", c, url.Values{"csrf": {token}}); p.status != http.StatusNotFound {
		t.Fatalf("second remove: %d", p.status)
	}
	if p := s.post(path+"/webhook", c, url.Values{"url": {"https://hooks.example.com/"}}); p.status != http.StatusForbidden {
		t.Fatalf("without the CSRF token: %d, want 403", p.status)
	}
	if n := len(s.events("webhook.configured")); n != 2 {
		t.Fatalf("%d webhook.configured events, want 2", n)
	}
}
