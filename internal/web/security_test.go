package web_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/web"
)

// TestPlain runs the checks that share one site served over plain HTTP;
// each builds what it needs (its own sessions, its own accounts), so they
// run in parallel.
func TestPlain(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	for name, check := range map[string]func(*testing.T, *site){
		"SecurityHeaders":     securityHeaders,
		"SessionCookie":       sessionCookie,
		"CrossOriginRefused":  crossOriginRefused,
		"GETChangesNothing":   getChangesNothing,
		"ScriptRenderedInert": scriptRenderedInert,
		"SessionFixation":     sessionFixation,
		"Logout":              logout,
		"AdminAPIWithSession": adminAPIWithSession,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			check(t, s.on(t))
		})
	}
}

// TestTLS runs the checks whose answer differs over TLS: the cookie's
// Secure flag and __Host- prefix, and HSTS.
func TestTLS(t *testing.T) {
	t.Parallel()
	s := newSite(t, true)
	t.Run("SecurityHeaders", func(t *testing.T) { securityHeaders(t, s.on(t)) })
	t.Run("SessionCookie", func(t *testing.T) { sessionCookie(t, s.on(t)) })
}

// securityHeaders: every admin response, signed in or not, page, asset,
// redirect, refusal or 404, carries the headers of SECURITY.md;
// over TLS also HSTS.
func securityHeaders(t *testing.T, s *site) {
	useTLS := s.srv.TLS != nil
	c := s.login(adminUser, adminPassword, nil)
	tests := []struct {
		name   string
		method string
		path   string
		cookie *http.Cookie
		form   url.Values
		status int
	}{
		{"sign-in page", "GET", "/admin/login", nil, nil, 200},
		{"failed sign-in", "POST", "/admin/login", nil, url.Values{"username": {"x"}, "password": {"y"}}, 200},
		{"redirect to sign-in", "GET", "/admin/accounts", nil, nil, 303},
		{"dashboard", "GET", "/admin/", c, nil, 200},
		{"accounts", "GET", "/admin/accounts", c, nil, 200},
		{"audit", "GET", "/admin/audit", c, nil, 200},
		{"CA", "GET", "/admin/ca", c, nil, 200},
		{"style sheet", "GET", "/admin/static/admin.css", nil, nil, 200},
		{"script", "GET", "/admin/static/admin.js", nil, nil, 200},
		{"unknown page", "GET", "/admin/nowhere", c, nil, 404},
		{"unknown certificate", "GET", "/admin/certificates/70ab", c, nil, 404},
		{"refused change", "POST", "/admin/accounts", c, url.Values{"name": {"x"}}, 403},
	}
	for _, tc := range tests {
		p := s.request(tc.method, tc.path, tc.cookie, tc.form, nil)
		if p.status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, p.status, tc.status)
		}
		want := map[string]string{
			"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
				"frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
			"X-Frame-Options":        "DENY",
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
		}
		if useTLS {
			want["Strict-Transport-Security"] = "max-age=31536000"
		}
		for h, v := range want {
			if got := p.header.Get(h); got != v {
				t.Errorf("%s: %s = %q, want %q", tc.name, h, got, v)
			}
		}
		if !useTLS && p.header.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS over plain HTTP", tc.name)
		}
		if !strings.HasPrefix(tc.path, "/admin/static/") && p.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control = %q, want no-store", tc.name, p.header.Get("Cache-Control"))
		}
	}
}

// sessionCookie: HttpOnly, SameSite=Strict, Path=/, no Domain, never in a
// URL; over TLS Secure with the __Host- prefix, over plain HTTP neither.
func sessionCookie(t *testing.T, s *site) {
	useTLS := s.srv.TLS != nil
	p := s.post("/admin/login", nil, url.Values{"username": {adminUser}, "password": {adminPassword}})
	sets := p.header.Values("Set-Cookie")
	if len(sets) != 1 {
		t.Fatalf("Set-Cookie: %q, want one", sets)
	}
	c := p.cookie(s.cookieName())
	if c == nil {
		t.Fatalf("no %s cookie in %q", s.cookieName(), sets)
	}
	raw := sets[0]
	for _, attr := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(raw, attr) {
			t.Errorf("cookie %q lacks %s", raw, attr)
		}
	}
	if strings.Contains(raw, "Domain=") {
		t.Errorf("cookie %q has a Domain", raw)
	}
	if got := strings.Contains(raw, "; Secure"); got != useTLS {
		t.Errorf("cookie %q: Secure = %v, want %v", raw, got, useTLS)
	}
	if id, err := base64.RawURLEncoding.DecodeString(c.Value); err != nil || len(id) != 32 {
		t.Errorf("session id %q is not 256 bits of base64url", c.Value)
	}
	if loc := p.header.Get("Location"); strings.Contains(loc, c.Value) {
		t.Errorf("session id in the redirect %q", loc)
	}
	if !s.signedIn(c) {
		t.Error("the cookie does not open the dashboard")
	}
	// The other name is not accepted in its place.
	other := &http.Cookie{Name: "pkid_session", Value: c.Value}
	if !useTLS {
		other.Name = "__Host-pkid_session"
	}
	if s.signedIn(other) {
		t.Errorf("cookie %s accepted in place of %s", other.Name, c.Name)
	}
}

// crossOriginRefused: a state-changing request from another origin,
// or without the session's CSRF token, is refused with 403 and changes
// nothing; the same request from the page succeeds.
func crossOriginRefused(t *testing.T, s *site) {
	c := s.login(adminUser, adminPassword, nil)
	token := s.get("/admin/accounts", c).csrf(t)
	other := s.login(adminUser, adminPassword, nil)
	otherToken := s.get("/admin/accounts", other).csrf(t)

	tests := []struct {
		name  string
		token string
		hdr   map[string]string
	}{
		{"Origin of another site", token, map[string]string{"Origin": "https://evil.example"}},
		{"Sec-Fetch-Site cross-site", token, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"Sec-Fetch-Site same-site", token, map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"no CSRF token", "", nil},
		{"wrong CSRF token", "AAAA" + token[4:], nil},
		{"another session's CSRF token", otherToken, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := s.on(t)
			form := url.Values{"name": {"Forged " + tc.name}, "plan": {"enterprise"}}
			if tc.token != "" {
				form.Set("csrf", tc.token)
			}
			p := s.request("POST", "/admin/accounts", c, form, tc.hdr)
			if p.status != http.StatusForbidden {
				t.Errorf("status %d, want 403: %.300s", p.status, p.body)
			}
			if n := s.accountsNamed("Forged"); n != 0 {
				t.Errorf("%d forged accounts after a refused request", n)
			}
		})
	}
	t.Run("sign-in from another origin", func(t *testing.T) {
		s := s.on(t)
		p := s.request("POST", "/admin/login", nil, url.Values{"username": {adminUser}, "password": {adminPassword}},
			map[string]string{"Origin": "https://evil.example"})
		if p.status != http.StatusForbidden || p.cookie(s.cookieName()) != nil {
			t.Errorf("status %d, cookie %v: want 403 and no session", p.status, p.cookie(s.cookieName()))
		}
	})
	t.Run("the page itself", func(t *testing.T) {
		s := s.on(t)
		p := s.request("POST", "/admin/accounts", c, url.Values{"csrf": {token}, "name": {"Genuine same-origin"}, "plan": {"standard"}},
			map[string]string{"Origin": s.srv.URL, "Sec-Fetch-Site": "same-origin"})
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/admin/accounts/") {
			t.Fatalf("status %d to %q, want 303 to the account: %.300s", p.status, p.header.Get("Location"), p.body)
		}
		if n := s.accountsNamed("Genuine same-origin"); n != 1 {
			t.Errorf("%d accounts created, want 1", n)
		}
	})
}

// getChangesNothing: the routes that change state answer GET with
// 405, and the session survives a GET of the logout route.
func getChangesNothing(t *testing.T, s *site) {
	c := s.login(adminUser, adminPassword, nil)
	acct, err := s.app.Accounts.CreateAccount(context.Background(), pki.Principal{Kind: pki.PrincipalSystem}, "Target", pki.PlanEnterprise, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/admin/logout",
		"/admin/accounts/" + acct.ID + "/revoke-all?reason=cessationOfOperation&confirm=yes",
		"/admin/accounts/" + acct.ID + "/tokens?name=x&ttl_hours=1",
		"/admin/certificates/70ab/revoke?reason=keyCompromise&confirm=yes",
	} {
		if p := s.get(path, c); p.status != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: status %d, want 405", path, p.status)
		}
	}
	if !s.signedIn(c) {
		t.Error("a GET of /admin/logout ended the session")
	}
	toks, err := s.app.Accounts.Tokens(context.Background(), acct.ID)
	if err != nil || len(toks) != 0 {
		t.Errorf("tokens after GETs: %d, %v", len(toks), err)
	}
}

// scriptRenderedInert: markup in an account name, a token name and
// audit details is shown as text, never as markup.
func scriptRenderedInert(t *testing.T, s *site) {
	c := s.login(adminUser, adminPassword, nil)
	const evil = `<script>alert("pwned")</script><img src=x onerror=alert(1)>`
	sys := pki.Principal{Kind: pki.PrincipalSystem}
	acct, err := s.app.Accounts.CreateAccount(context.Background(), sys, evil, pki.PlanEnterprise, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.app.Accounts.MintToken(context.Background(), sys, acct.ID, evil, time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/admin/accounts", "/admin/accounts/" + acct.ID, "/admin/audit", "/admin/accounts?q=" + url.QueryEscape(evil)} {
		p := s.get(path, c)
		if p.status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, p.status)
		}
		for _, bad := range []string{"<script>alert", "<img src=x"} {
			if strings.Contains(p.body, bad) {
				t.Errorf("GET %s: the page contains %q unescaped", path, bad)
			}
		}
		if !strings.Contains(p.body, "&lt;script&gt;") && !strings.Contains(p.body, `\u003cscript\u003e`) {
			t.Errorf("GET %s: the name is not shown escaped", path)
		}
		if strings.Count(p.body, "<script") != 1 { // the page's own script tag only
			t.Errorf("GET %s: %d script tags, want only the page's own", path, strings.Count(p.body, "<script"))
		}
	}
}

// TestLoginThrottled: past the limit a username is refused with 429
// and Retry-After whatever the password, in every spelling of the name; an
// unknown username gets the same answer as a wrong password; each outcome is
// audited; the lock ends with the window. Then the per-address limit.
func TestLoginThrottled(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	attempt := func(user, password string) page {
		return s.post("/admin/login", nil, url.Values{"username": {user}, "password": {password}})
	}
	wrong := attempt(adminUser, "not the password at all")
	unknown := attempt("mallory", "not the password at all")
	if wrong.status != unknown.status || strings.ReplaceAll(wrong.body, adminUser, "X") != strings.ReplaceAll(unknown.body, "mallory", "X") {
		t.Errorf("a wrong password (%d) and an unknown user (%d) are told apart:\n%s\n---\n%s", wrong.status, unknown.status, wrong.body, unknown.body)
	}
	if !strings.Contains(wrong.body, "The username or password is incorrect.") {
		t.Errorf("failed sign-in says: %.300s", wrong.body)
	}
	for i := 2; i <= 5; i++ {
		if p := attempt(adminUser, "wrong again "+strconv.Itoa(i)); p.status != http.StatusOK {
			t.Fatalf("attempt %d: %d, want 200 (not yet throttled)", i, p.status)
		}
	}
	for _, user := range []string{adminUser, "ALICE", "  Alice  "} {
		p := attempt(user, adminPassword) // even the right password
		if p.status != http.StatusTooManyRequests {
			t.Errorf("%q after 5 failures: %d, want 429", user, p.status)
		}
		if ra, err := strconv.Atoi(p.header.Get("Retry-After")); err != nil || ra < 1 || ra > 15*60 {
			t.Errorf("%q: Retry-After %q", user, p.header.Get("Retry-After"))
		}
		if p.cookie(s.cookieName()) != nil {
			t.Errorf("%q: a throttled attempt got a session", user)
		}
	}
	if n := len(s.events(web.ActionLoginThrottled)); n != 1 {
		t.Errorf("%d lockout events, want 1 (audited once per window)", n)
	}
	if n := len(s.events(web.ActionLoginFailed)); n != 6 {
		t.Errorf("%d failure events, want 6", n)
	}
	if n := len(s.events(web.ActionLogin)); n != 0 {
		t.Errorf("%d sign-in events while locked", n)
	}
	s.clock.Advance(16 * time.Minute)
	s.login("ALICE ", adminPassword, nil)
	ev := s.events(web.ActionLogin)
	if len(ev) != 1 || ev[0].Actor != "admin:"+adminUser || ev[0].Outcome != pki.OutcomeSuccess {
		t.Errorf("sign-in events after the window: %+v", ev)
	}

	addressThrottled(t, s)
}

// addressThrottled: many usernames from one address hit the address limit.
// The page is built with a low limit so that the test spends little argon2
// time.
func addressThrottled(t *testing.T, s *site) {
	h := newAdminHandler(s, web.Options{AddressAttempts: 3})
	for i := 1; i <= 4; i++ {
		p := h.post("/admin/login", url.Values{"username": {"user" + strconv.Itoa(i)}, "password": {"whatever it is"}})
		want := http.StatusOK
		if i == 4 {
			want = http.StatusTooManyRequests
		}
		if p.status != want {
			t.Errorf("attempt %d: %d, want %d", i, p.status, want)
		}
	}
}

// sessionFixation: a session id planted before sign-in is not the
// one the sign-in issues and opens nothing; signing in again with a live
// session replaces it, and the replaced id is dead.
func sessionFixation(t *testing.T, s *site) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	planted := &http.Cookie{Name: s.cookieName(), Value: base64.RawURLEncoding.EncodeToString(b)}
	got := s.login(adminUser, adminPassword, planted)
	if got.Value == planted.Value {
		t.Fatal("the sign-in kept the planted session id")
	}
	if s.signedIn(planted) {
		t.Error("the planted session id is signed in")
	}
	if !s.signedIn(got) {
		t.Error("the issued session id is not signed in")
	}
	again := s.login(adminUser, adminPassword, got)
	if again.Value == got.Value {
		t.Fatal("a second sign-in kept the session id")
	}
	if s.signedIn(got) {
		t.Error("the session replaced at sign-in still works")
	}
	if !s.signedIn(again) {
		t.Error("the new session does not work")
	}
}

// logout: logging out ends the session on the server, so a copy of
// the cookie is refused afterwards.
func logout(t *testing.T, s *site) {
	c := s.login(adminUser, adminPassword, nil)
	copied := &http.Cookie{Name: c.Name, Value: c.Value}
	token := s.get("/admin/", c).csrf(t)
	p := s.post("/admin/logout", c, url.Values{"csrf": {token}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/admin/login?done=signed-out" {
		t.Fatalf("logout: %d %q", p.status, p.header.Get("Location"))
	}
	if cleared := p.cookie(s.cookieName()); cleared == nil || cleared.MaxAge >= 0 {
		t.Errorf("logout did not clear the cookie: %v", p.header.Values("Set-Cookie"))
	}
	if s.signedIn(copied) {
		t.Error("a copy of the cookie still works after logout")
	}
	if ev := s.events(web.ActionLogout); len(ev) != 1 || ev[0].Actor != "admin:"+adminUser {
		t.Errorf("logout events: %+v", ev)
	}
}

// TestSessionTimeouts: a session ends after 30 idle minutes, and
// after 12 hours however busy. The two share a site and run in turn: both
// move its clock.
func TestSessionTimeouts(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	t.Run("idle", func(t *testing.T) {
		s := s.on(t)
		c := s.login(adminUser, adminPassword, nil)
		s.clock.Advance(29 * time.Minute)
		if !s.signedIn(c) {
			t.Fatal("signed out after 29 idle minutes")
		}
		s.clock.Advance(30*time.Minute + time.Second)
		if s.signedIn(c) {
			t.Error("still signed in after 30 idle minutes")
		}
	})
	t.Run("absolute", func(t *testing.T) {
		s := s.on(t)
		c := s.login(adminUser, adminPassword, nil)
		for elapsed := 20 * time.Minute; elapsed < 12*time.Hour; elapsed += 20 * time.Minute {
			s.clock.Advance(20 * time.Minute)
			if !s.signedIn(c) {
				t.Fatalf("signed out after %s of activity", elapsed)
			}
		}
		s.clock.Advance(20 * time.Minute)
		if s.signedIn(c) {
			t.Error("still signed in after 12 hours")
		}
	})
}

// adminAPIWithSession: the JSON admin API accepts the page's session; its
// state changes need the CSRF token in X-CSRF-Token and a same-origin
// browser.
func adminAPIWithSession(t *testing.T, s *site) {
	c := s.login(adminUser, adminPassword, nil)
	token := s.get("/admin/", c).csrf(t)
	api := func(method, path string, hdr map[string]string) page {
		t.Helper()
		req, err := http.NewRequest(method, s.srv.URL+path, strings.NewReader(`{"name":"Via session","plan":"enterprise"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := s.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return page{status: resp.StatusCode, header: resp.Header}
	}
	if p := api("GET", "/admin/api/accounts", nil); p.status != http.StatusOK {
		t.Errorf("GET with the session: %d", p.status)
	}
	tests := []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"no CSRF header", nil, http.StatusForbidden},
		{"wrong CSRF header", map[string]string{web.CSRFHeader: "nope"}, http.StatusForbidden},
		{"cross-origin", map[string]string{web.CSRFHeader: token, "Origin": "https://evil.example"}, http.StatusForbidden},
		{"from the page", map[string]string{web.CSRFHeader: token}, http.StatusCreated},
	}
	for _, tc := range tests {
		before := s.accountsNamed("Via session")
		p := api("POST", "/admin/api/accounts", tc.hdr)
		if p.status != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, p.status, tc.status)
		}
		want := before
		if tc.status == http.StatusCreated {
			want++
		}
		if n := s.accountsNamed("Via session"); n != want {
			t.Errorf("%s: %d accounts, want %d", tc.name, n, want)
		}
	}
	dead := &http.Cookie{Name: c.Name, Value: base64.RawURLEncoding.EncodeToString(make([]byte, 32))}
	c = dead
	if p := api("GET", "/admin/api/accounts", nil); p.status != http.StatusUnauthorized {
		t.Errorf("GET with a dead session: %d, want 401", p.status)
	}
}
