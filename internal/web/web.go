// Package web is pkid's admin web page, served under /admin/: sign-in with a
// username and password, sessions kept in Postgres, and pages for accounts,
// their tokens, certificates, the audit trail and the CA hierarchy. Pages are
// rendered on the server with html/template (contextual escaping) from the
// templates and assets embedded by the top-level web package; the one script
// only adds a copy button, and every page works without it.
//
// Every change the page makes goes through the same use cases as the JSON
// admin API (account.Service, ca.Service), so no rule is written twice; the
// package's own store interface only signs in and out and reads.
//
// The defences (SECURITY.md §1.7): the session cookie is HttpOnly,
// SameSite=Strict and, over TLS, Secure with the __Host- prefix; a new
// session id is issued at every sign-in and the one presented before is
// deleted (fixation); sessions end server-side at logout, after an idle
// timeout and after an absolute timeout. Every state change must pass
// net/http's CrossOriginProtection and carry the session's CSRF token; GET
// never changes anything. Every response carries a CSP without
// 'unsafe-inline', frame-ancestors 'none', nosniff and a Referrer-Policy.
// Sign-in attempts are counted per canonical username and per address in the
// database, so the limit holds across nodes.
package web

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/pkid/pkid/internal/account"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/clientip"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/webhook"
	assets "github.com/pkid/pkid/web"
)

// Options adjust the admin page. Zero values take the defaults named.
type Options struct {
	// IdleTimeout ends a session not used for this long (30 minutes).
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after sign-in, however busy
	// (12 hours).
	AbsoluteTimeout time.Duration
	// AttemptWindow is the window in which sign-in attempts are counted
	// (15 minutes).
	AttemptWindow time.Duration
	// UserAttempts is how many attempts one username gets per window (5).
	UserAttempts int
	// AddressAttempts is how many attempts one client address (an IPv4
	// address or an IPv6 /64) gets per window (50): enough for an office
	// behind one NAT, too few to spray passwords over many usernames.
	AddressAttempts int
	// ClientAddr returns a request's client address, which sign-in
	// attempts are counted against and sessions record; the connection's
	// peer when nil. It is where trusted proxies' X-Forwarded-For is
	// honoured (internal/clientip).
	ClientAddr func(*http.Request) netip.Addr
	// Throttled, when set, is called for each sign-in refused for too many
	// attempts, for a metric.
	Throttled func()
	// Webhooks, when set, puts the account's expiry-notice webhook on its
	// page.
	Webhooks *webhook.Service
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Log receives errors that pages do not show; discarded when nil.
	Log *slog.Logger
}

func (o *Options) defaults() {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Minute
	}
	if o.AbsoluteTimeout <= 0 {
		o.AbsoluteTimeout = 12 * time.Hour
	}
	if o.AttemptWindow <= 0 {
		o.AttemptWindow = 15 * time.Minute
	}
	if o.UserAttempts <= 0 {
		o.UserAttempts = 5
	}
	if o.AddressAttempts <= 0 {
		o.AddressAttempts = 50
	}
	if o.ClientAddr == nil {
		o.ClientAddr = clientip.New(nil).Addr
	}
	if o.Throttled == nil {
		o.Throttled = func() {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Admin serves the admin web page.
type Admin struct {
	certs    *ca.Service
	accounts *account.Service
	store    Store
	opts     Options
	pages    map[string]*template.Template
	static   fs.FS
	cop      *http.CrossOriginProtection
}

// New returns the admin page over the certificate and account use cases,
// keeping sessions and reading through st. It panics if the embedded
// templates do not parse, which a test catches before any release.
func New(certs *ca.Service, accounts *account.Service, st Store, opts Options) *Admin {
	opts.defaults()
	a := &Admin{certs: certs, accounts: accounts, store: st, opts: opts}
	a.pages = parsePages()
	static, err := fs.Sub(assets.FS, "static")
	if err != nil {
		panic(err)
	}
	a.static = static
	a.cop = http.NewCrossOriginProtection()
	a.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, errCrossOrigin)
	}))
	return a
}

// errCrossOrigin refuses a state change that a browser sent from another
// origin, or that lacks the session's CSRF token.
var errCrossOrigin = &pki.PolicyError{
	Kind:   pki.KindForbidden,
	Title:  "Cross-origin request refused",
	Detail: "this change did not come from a pkid admin page (cross-origin request, or the form's CSRF token is missing or stale); reload the page and try again",
}

// Mount registers the page on r at /admin and everything under /admin/
// except /admin/api/, which the JSON admin API serves.
func (a *Admin) Mount(r chi.Router) { r.Mount("/admin", a.routes()) }

func (a *Admin) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(securityHeaders, a.cop.Handler)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { a.fail(w, r, pki.ErrNotFound) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { a.fail(w, r, errMethodNotAllowed) })
	r.Get("/static/*", a.serveStatic)
	r.Get("/login", a.loginPage)
	r.Post("/login", a.login)

	r.Group(func(r chi.Router) {
		r.Use(a.requireSession)
		r.Get("/", a.dashboard)
		r.Post("/logout", a.logout)
		r.Get("/accounts", a.accountList)
		r.Post("/accounts", a.createAccount)
		r.Get("/accounts/{id}", a.accountPage)
		r.Post("/accounts/{id}", a.updateAccount)
		r.Post("/accounts/{id}/tokens", a.mintToken)
		r.Post("/accounts/{id}/tokens/{tokenID}/revoke", a.revokeToken)
		r.Post("/accounts/{id}/revoke-all", a.revokeAll)
		r.Get("/accounts/{id}/policy", a.policyPage)
		r.Post("/accounts/{id}/policy", a.updatePolicy)
		r.Post("/accounts/{id}/webhook", a.setWebhook)
		r.Post("/accounts/{id}/webhook/rotate", a.rotateWebhook)
		r.Post("/accounts/{id}/webhook/remove", a.removeWebhook)
		r.Get("/certificates", a.certificateList)
		r.Get("/certificates/{serial}", a.certificatePage)
		r.Get("/certificates/{serial}/pem", a.certificatePEM)
		r.Post("/certificates/{serial}/revoke", a.revokeCertificate)
		r.Get("/audit", a.auditPage)
		r.Get("/ca", a.caPage)
		r.Get("/ca/ocsp-signer.pem", a.ocspSignerPEM)
	})
	return r
}

// errMethodNotAllowed answers a method a route does not take: above all a
// GET of a route that changes state (SECURITY.md A-02).
var errMethodNotAllowed = errors.New("web: method not allowed")

// contentSecurityPolicy allows only the page's own script and style sheet:
// no inline script or style, no framing, forms post only to pkid itself.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"

// securityHeaders sets the headers every admin response carries
// (SECURITY.md ), before anything else can write.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !strings.HasPrefix(r.URL.Path, "/admin/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// serveStatic serves the embedded style sheet and script. They change only
// with the binary, so browsers may keep them for an hour.
func (a *Admin) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "*")
	if name == "" || strings.Contains(name, "..") || path.Clean(name) != name {
		a.fail(w, r, pki.ErrNotFound)
		return
	}
	b, err := fs.ReadFile(a.static, name)
	if err != nil {
		a.fail(w, r, pki.ErrNotFound)
		return
	}
	switch path.Ext(name) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(b)
}

// view is what every page template receives.
type view struct {
	Title string
	Nav   string // which navigation entry is current
	Admin string // the signed-in administrator's username; "" on the sign-in page
	CSRF  string // the session's CSRF token, for every form
	Flash string // a fixed confirmation message after a change
	Error string // what went wrong, shown above the content
	Data  any    // the page's own data
}

// render executes the named page into a buffer, so that a template error
// becomes a clean 500 rather than half a page.
func (a *Admin) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	if s, ok := sessionFrom(r.Context()); ok {
		v.Admin, v.CSRF = s.username, s.csrf
	}
	t := a.pages[name]
	if t == nil {
		panic("web: no page template " + name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		a.opts.Log.ErrorContext(r.Context(), "rendering admin page", "page", name, "error", err,
			"request_id", middleware.GetReqID(r.Context()))
		http.Error(w, "pkid could not render this page; it has been logged", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders err as an error page. The status follows the error's kind
// as in the JSON API; the detail shown is the domain error's own words, and
// for anything unexpected only a generic sentence (the cause is logged).
func (a *Admin) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, title, detail := describe(err)
	if status >= 500 {
		a.opts.Log.ErrorContext(r.Context(), "admin page failed", "path", r.URL.Path, "error", err,
			"request_id", middleware.GetReqID(r.Context()))
	}
	var rl *pki.RateLimitError
	if errors.As(err, &rl) {
		w.Header().Set("Retry-After", fmt.Sprint(retrySeconds(rl.RetryAfter)))
	}
	a.render(w, r, status, "error.html", view{Title: title, Error: detail, Data: status})
}

// describe returns the HTTP status, a title and a detail for err.
func describe(err error) (int, string, string) {
	var (
		re  *pki.RequestError
		pe  *pki.PolicyError
		ce  *pki.ConflictError
		rl  *pki.RateLimitError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "Request too large", "the form is larger than pkid accepts"
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed, "Method not allowed", "this address does not take that method; changes are made with the page's forms"
	case errors.Is(err, errUnsupportedForm):
		return http.StatusUnsupportedMediaType, "Unsupported form", "send the form as application/x-www-form-urlencoded"
	case errors.As(err, &re):
		return http.StatusBadRequest, "Bad request", re.Detail
	case errors.As(err, &pe):
		title := pe.Title
		if title == "" {
			title = "Forbidden"
		}
		return http.StatusForbidden, title, pe.Detail
	case errors.As(err, &ce):
		return http.StatusConflict, "Conflict", ce.Detail
	case errors.As(err, &rl):
		return http.StatusTooManyRequests, "Too many requests", rl.Detail
	case errors.Is(err, pki.ErrNotFound):
		return http.StatusNotFound, "Not found", "there is no such page, account or certificate"
	case errors.Is(err, pki.ErrUnavailable):
		return http.StatusServiceUnavailable, "Service unavailable", "a dependency of pkid is unavailable; nothing was changed, retry later"
	default:
		return http.StatusInternalServerError, "Internal error", "pkid could not complete the request; it has been logged"
	}
}

// retrySeconds rounds d up to whole seconds, at least one.
func retrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// seeOther redirects after a change (POST/redirect/GET), so that reloading
// the page does not repeat the change.
func seeOther(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// requestID returns the request's id for the audit trail.
func requestID(r *http.Request) string { return middleware.GetReqID(r.Context()) }
