package webhook_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/webhook"
)

// The admin API's webhook routes: bad input is a 400 problem document and
// changes nothing; the secret is shown once, kept sealed, and rotatable
// with an overlap during which notices carry both signatures.
func TestWebhookAdminAPI(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Webhook.AllowHTTPLocalhost = false }, app.Options{})
	acct := e.account("Acme")
	path := "/admin/api/accounts/" + acct.ID + "/webhook"

	bad := []struct {
		name string
		body any
	}{
		{"not JSON", "{"},
		{"empty object", map[string]any{}},
		{"url not a string", map[string]any{"url": 5}},
		{"unknown field", map[string]any{"url": "https://hooks.example.com/", "secret": "mine"}},
		{"plain http", map[string]any{"url": "http://hooks.example.com/"}},
		{"http localhost without the dev setting", map[string]any{"url": "http://127.0.0.1:9/"}},
		{"other scheme", map[string]any{"url": "gopher://hooks.example.com/"}},
		{"userinfo", map[string]any{"url": "https://alice:pw@hooks.example.com/"}},
		{"fragment", map[string]any{"url": "https://hooks.example.com/#frag"}},
		{"too long", map[string]any{"url": "https://hooks.example.com/" + strings.Repeat("a", 2100)}},
		{"control character", map[string]any{"url": "https://hooks.example.com/\u0000"}},
		{"private address", map[string]any{"url": "https://10.0.0.8/hook"}},
		{"metadata address", map[string]any{"url": "https://169.254.169.254/"}},
		{"loopback", map[string]any{"url": "https://[::1]/"}},
		{"notify_days 0", map[string]any{"url": "https://hooks.example.com/", "notify_days": 0}},
		{"notify_days too large", map[string]any{"url": "https://hooks.example.com/", "notify_days": 366}},
		{"notify_days fractional", map[string]any{"url": "https://hooks.example.com/", "notify_days": 1.5}},
		{"other account in the body", map[string]any{"url": "https://hooks.example.com/", "account_id": "00000000-0000-4000-8000-000000000000"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("PUT", path, tt.body)
			if r.Status != http.StatusBadRequest || r.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %s %s, want a 400 problem", r.Status, r.Header.Get("Content-Type"), r.Body)
			}
			p := r.JSON(t)
			if p["type"] == "" || p["title"] == "" || p["detail"] == "" || p["status"] != float64(400) {
				t.Fatalf("problem %v", p)
			}
		})
	}
	if r := e.do("GET", path, nil); r.Status != http.StatusNotFound {
		t.Fatalf("after refusals GET answers %d, want 404: nothing was saved", r.Status)
	}
	if r := e.do("PUT", "/admin/api/accounts/00000000-0000-4000-8000-000000000000/webhook",
		map[string]any{"url": "https://hooks.example.com/"}); r.Status != http.StatusNotFound {
		t.Fatalf("unknown account: %d, want 404", r.Status)
	}
	if r := e.do("PUT", path, `{"url":"https://hooks.example.com/"}`[:10]); r.Status != http.StatusBadRequest {
		t.Fatalf("truncated body: %d", r.Status)
	}

	// Created: 201 with the secret, this once.
	r := e.do("PUT", path, map[string]any{"url": "https://hooks.example.com/pkid", "notify_days": 30})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	created := r.JSON(t)
	secret := created["secret"].(string)
	if created["effective_notify_days"] != float64(30) || created["url"] != "https://hooks.example.com/pkid" {
		t.Fatalf("created %v", created)
	}
	var sealed []byte
	if err := e.db.Pool().QueryRow(context.Background(), "SELECT sealed_secret FROM account_webhooks WHERE account_id = $1", acct.ID).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(secret)) || bytes.Contains(sealed, []byte(secret[6:])) {
		t.Fatal("the database holds the secret in the clear")
	}
	// Read back and changed: never the secret again.
	r = e.do("GET", path, nil)
	if r.Status != http.StatusOK || bytes.Contains(r.Body, []byte(secret)) || r.JSON(t)["secret"] != nil {
		t.Fatalf("GET: %d %s", r.Status, r.Body)
	}
	got := r.JSON(t)
	got["url"], got["notify_days"] = "https://hooks.example.com/v2", nil
	r = e.do("PUT", path, got) // a GET answer, edited, goes back as it is
	if r.Status != http.StatusOK || r.JSON(t)["secret"] != nil || r.JSON(t)["effective_notify_days"] != float64(14) {
		t.Fatalf("update: %d %s", r.Status, r.Body)
	}

	// Rotation: a new secret, the old one kept for the hours asked.
	for _, body := range []string{`{"keep_previous_hours": -1}`, `{"keep_previous_hours": 169}`, `{"keep": 1}`} {
		if r := e.do("POST", path+"/rotate-secret", body); r.Status != http.StatusBadRequest {
			t.Fatalf("rotate %s: %d", body, r.Status)
		}
	}
	r = e.do("POST", path+"/rotate-secret", map[string]any{"keep_previous_hours": 2})
	if r.Status != http.StatusOK {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	rotated := r.JSON(t)
	newSecret, _ := rotated["secret"].(string)
	if newSecret == "" || newSecret == secret || rotated["previous_secret_expires_at"] == nil {
		t.Fatalf("rotated %v", rotated)
	}

	for action, want := range map[string]int{webhook.ActionConfigured: 2, webhook.ActionSecretRotated: 1} {
		var n int
		var leaked bool
		err := e.db.Pool().QueryRow(context.Background(), `SELECT count(*), bool_or(detail::text LIKE '%whsec_%')
			FROM audit_events WHERE action = $1 AND account_id = $2 AND actor = 'admin:root'`, action, acct.ID).Scan(&n, &leaked)
		if err != nil {
			t.Fatal(err)
		}
		if n != want || leaked {
			t.Errorf("%s: %d events (want %d), secret in detail: %v", action, n, want, leaked)
		}
	}

	if r := e.do("GET", path+"/deliveries?limit=0", nil); r.Status != http.StatusBadRequest {
		t.Fatalf("deliveries limit=0: %d", r.Status)
	}
	if r := e.do("GET", path+"/deliveries", nil); r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(`"deliveries":[]`)) {
		t.Fatalf("deliveries: %d %s", r.Status, r.Body)
	}
	if r := e.do("DELETE", path, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := e.do("DELETE", path, nil); r.Status != http.StatusNotFound {
		t.Fatalf("second delete: %d", r.Status)
	}
	if r := e.do("POST", path+"/rotate-secret", nil); r.Status != http.StatusNotFound {
		t.Fatalf("rotate without a webhook: %d", r.Status)
	}
}

// After a rotation, notices carry a signature by each secret until the old
// one expires, then by the new one only.
func TestRotationOverlap(t *testing.T) {
	e := newEnv(t, nil, app.Options{})
	rc, srv := newReceiver(t, http.StatusOK, false)
	acct := e.account("Rotating")
	oldSecret := e.configure(acct, srv.URL, nil)
	r := e.do("POST", "/admin/api/accounts/"+acct.ID+"/webhook/rotate-secret", map[string]any{"keep_previous_hours": 1})
	if r.Status != http.StatusOK {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	newSecret := []byte(r.JSON(t)["secret"].(string))

	e.issue(acct, 5)
	e.run(e.app)
	first := e.clock.Now()
	e.clock.Advance(time.Hour)
	e.issue(acct, 5)
	e.run(e.app)
	got := rc.notices()
	if len(got) != 2 {
		t.Fatalf("%d notices, want 2", len(got))
	}
	for _, s := range [][]byte{oldSecret, newSecret} {
		verify(t, got[0], s, first)
	}
	verify(t, got[1], newSecret, e.clock.Now())
	if err := webhook.Verify(got[1].header.Get("Pkid-Signature"), got[1].body, oldSecret, e.clock.Now(), 0); err == nil {
		t.Fatal("the old secret still signs after it expired")
	}
}
