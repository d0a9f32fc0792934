package web_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testnode"
	"github.com/pkid/pkid/internal/web"
)

const (
	testPassphrase = "correct horse battery staple"
	adminUser      = "alice"
	adminPassword  = "a long enough password"
)

// clock is the site's clock: the real time plus an offset that tests move
// forward to reach timeouts.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// site is a pkid node built as `pkid serve` builds it (app.New over a fresh,
// initialised database), with an administrator, served over plain HTTP or
// TLS by httptest.
type site struct {
	t     *testing.T
	app   *app.App
	db    *store.DB
	srv   *httptest.Server
	clock *clock
}

// newSite serves a fresh pkid node; over TLS when useTLS is set.
func newSite(t *testing.T, useTLS bool) *site {
	t.Helper()
	ctx := context.Background()
	db, cfg := testnode.Init(t, []byte(testPassphrase))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c := &clock{}
	a, err := app.New(ctx, cfg, log, app.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	srv := httptest.NewUnstartedServer(a.Handler)
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	if _, err := a.Accounts.CreateAdmin(ctx, pki.Principal{Kind: pki.PrincipalSystem}, adminUser, adminPassword); err != nil {
		t.Fatal(err)
	}
	return &site{t: t, app: a, db: db, srv: srv, clock: c}
}

// on returns the site as seen from test t, so that its helpers fail t (a
// subtest) and not the test that built the site.
func (s *site) on(t *testing.T) *site {
	c := *s
	c.t = t
	return &c
}

// page is an HTTP answer with its body read.
type page struct {
	status int
	header http.Header
	body   string
}

// cookie returns the cookie named name that the answer sets.
func (p page) cookie(name string) *http.Cookie {
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([A-Za-z0-9_-]+)"`)

// csrf returns the CSRF token in the page's forms.
func (p page) csrf(t *testing.T) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF token in the page: %.300s", p.body)
	}
	return m[1]
}

// request sends one request without following redirects. cookie may be
// nil; hdr adds headers (Origin, Sec-Fetch-Site, ...).
func (s *site) request(method, path string, cookie *http.Cookie, form url.Values, hdr map[string]string) page {
	s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.srv.URL+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != nil {
		req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{
		Transport:     s.srv.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (s *site) get(path string, cookie *http.Cookie) page {
	s.t.Helper()
	return s.request(http.MethodGet, path, cookie, nil, nil)
}

func (s *site) post(path string, cookie *http.Cookie, form url.Values) page {
	s.t.Helper()
	return s.request(http.MethodPost, path, cookie, form, nil)
}

// cookieName is the session cookie's name on this site.
func (s *site) cookieName() string {
	if s.srv.TLS != nil {
		return "__Host-pkid_session"
	}
	return "pkid_session"
}

// login signs in and returns the session cookie. presented, when not nil,
// is sent along (a cookie the browser had before).
func (s *site) login(user, password string, presented *http.Cookie) *http.Cookie {
	s.t.Helper()
	p := s.post("/admin/login", presented, url.Values{"username": {user}, "password": {password}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/admin/" {
		s.t.Fatalf("sign-in: %d %s, want 303 to /admin/: %.500s", p.status, p.header.Get("Location"), p.body)
	}
	c := p.cookie(s.cookieName())
	if c == nil || c.Value == "" {
		s.t.Fatalf("sign-in set no %s cookie: %v", s.cookieName(), p.header.Values("Set-Cookie"))
	}
	return c
}

// signedIn reports whether cookie opens the dashboard.
func (s *site) signedIn(cookie *http.Cookie) bool {
	s.t.Helper()
	p := s.get("/admin/", cookie)
	switch {
	case p.status == http.StatusOK:
		return true
	case p.status == http.StatusSeeOther && p.header.Get("Location") == "/admin/login":
		return false
	}
	s.t.Fatalf("dashboard: %d %s", p.status, p.header.Get("Location"))
	return false
}

// accountsNamed counts the accounts whose name contains text.
func (s *site) accountsNamed(text string) int {
	s.t.Helper()
	_, n, err := s.db.SearchAccounts(context.Background(), pki.AccountFilter{Text: text})
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}

// events returns the audit events with this action, newest first.
func (s *site) events(action string) []pki.AuditEvent {
	s.t.Helper()
	evs, err := s.db.SearchAudit(context.Background(), pki.AuditFilter{Action: action})
	if err != nil {
		s.t.Fatal(err)
	}
	return evs
}

// adminHandler is an admin page built apart from the app, with options the
// app does not set, over the site's use cases and database.
type adminHandler struct {
	t   *testing.T
	srv *httptest.Server
}

func newAdminHandler(s *site, opts web.Options) *adminHandler {
	opts.Now = s.clock.Now
	a := web.New(s.app.Certs, s.app.Accounts, s.db, opts)
	r := chi.NewRouter()
	a.Mount(r)
	srv := httptest.NewServer(r)
	s.t.Cleanup(srv.Close)
	return &adminHandler{t: s.t, srv: srv}
}

func (h *adminHandler) post(path string, form url.Values) page {
	h.t.Helper()
	resp, err := h.srv.Client().PostForm(h.srv.URL+path, form)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(b)}
}
