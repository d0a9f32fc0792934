package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/pki"
)

// Session cookie names. Over TLS the cookie carries the __Host- prefix,
// which browsers accept only with Secure, Path=/ and no Domain: a sibling
// host or a plain-HTTP page cannot plant or overwrite it. A development
// server on plain HTTP cannot set a Secure cookie, so there it has a plain
// name; the two are never read interchangeably.
const (
	cookieTLS   = "__Host-pkid_session"
	cookiePlain = "pkid_session"
)

// CSRFHeader carries the session's CSRF token on state-changing admin API
// requests authenticated by the session cookie. Signed-in pages carry the
// token in <meta name="csrf-token"> for scripts that call the API.
const CSRFHeader = "X-CSRF-Token"

// sessionIDLen is the session id's length in bytes: 256 random bits.
const sessionIDLen = 32

// maxFormBytes caps a form body; the largest form (sign-in) is far smaller.
const maxFormBytes = 16 << 10

func cookieName(r *http.Request) string {
	if r.TLS != nil {
		return cookieTLS
	}
	return cookiePlain
}

// newSessionID returns a fresh session id and its cookie form.
func newSessionID() ([]byte, string) {
	id := make([]byte, sessionIDLen)
	if _, err := rand.Read(id); err != nil {
		panic("web: crypto/rand failed: " + err.Error())
	}
	return id, base64.RawURLEncoding.EncodeToString(id)
}

// presentedID returns the session id in r's cookie, if there is one of the
// right form.
func presentedID(r *http.Request) ([]byte, bool) {
	c, err := r.Cookie(cookieName(r))
	if err != nil || len(c.Value) != base64.RawURLEncoding.EncodedLen(sessionIDLen) {
		return nil, false
	}
	id, err := base64.RawURLEncoding.Strict().DecodeString(c.Value)
	if err != nil || len(id) != sessionIDLen {
		return nil, false
	}
	return id, true
}

// idHash is what the database keeps of a session id.
func idHash(id []byte) []byte {
	h := sha256.Sum256(id)
	return h[:]
}

// csrfToken is the session's CSRF token: a hash of the session id under a
// label of its own, so it reveals nothing of the id, needs no storage, and
// is worthless without the cookie it belongs to.
func csrfToken(id []byte) string {
	h := sha256.New()
	h.Write([]byte("pkid admin csrf v1\x00"))
	h.Write(id)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// setSessionCookie sends the session cookie: HttpOnly (no script reads it),
// SameSite=Strict (no other site's page makes the browser send it), Path=/
// so that the admin API sees it too, Secure over TLS. It has no Max-Age: it
// ends with the browser, and the server ends it sooner.
func setSessionCookie(w http.ResponseWriter, r *http.Request, value string) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(r), Value: value, Path: "/",
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(r), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// current is the signed-in session of a request.
type current struct {
	hash     []byte
	username string
	csrf     string
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) (*current, bool) {
	s, ok := ctx.Value(sessionKey{}).(*current)
	return s, ok
}

// principal returns the administrator of a signed-in request.
func principal(r *http.Request) pki.Principal {
	p, _, _ := auth.PrincipalFrom(r.Context())
	return p
}

// authenticate returns the request's context carrying its session and the
// administrator as principal. ok is false when r presents no session cookie;
// an error wrapping pki.ErrUnauthenticated means the cookie names no live
// session.
func (a *Admin) authenticate(r *http.Request) (context.Context, bool, error) {
	id, ok := presentedID(r)
	if !ok {
		if _, err := r.Cookie(cookieName(r)); err == nil {
			return nil, true, fmt.Errorf("web: malformed session cookie: %w", pki.ErrUnauthenticated)
		}
		return nil, false, nil
	}
	now := a.opts.Now()
	hash := idHash(id)
	s, err := a.store.AdminSession(r.Context(), hash, now, now.Add(-a.opts.IdleTimeout))
	switch {
	case errors.Is(err, pki.ErrNotFound):
		return nil, true, fmt.Errorf("web: no live session: %w", pki.ErrUnauthenticated)
	case err != nil:
		return nil, true, err
	}
	p := pki.Principal{Kind: pki.PrincipalAdmin, AdminID: s.AdminID, Username: s.Username,
		TokenID: "session:" + hex.EncodeToString(hash[:8])}
	ctx := auth.WithPrincipal(r.Context(), p, nil)
	ctx = context.WithValue(ctx, sessionKey{}, &current{hash: hash, username: s.Username, csrf: csrfToken(id)})
	return ctx, true, nil
}

// requireSession lets a request through only with a live session; a
// request without one is sent to the sign-in page (and changes nothing).
// State-changing requests must also carry the session's CSRF token in the
// form: CrossOriginProtection has already refused cross-origin browsers;
// the token also stops a same-site page, an old browser or a proxy that
// strips Sec-Fetch-Site and Origin.
func (a *Admin) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, ok, err := a.authenticate(r)
		switch {
		case errors.Is(err, pki.ErrUnauthenticated) || !ok:
			if ok {
				clearSessionCookie(w, r)
			}
			seeOther(w, r, "/admin/login")
			return
		case err != nil:
			a.fail(w, r, err)
			return
		}
		r = r.WithContext(ctx)
		if !isSafe(r.Method) {
			if err := parseForm(w, r); err != nil {
				a.fail(w, r, err)
				return
			}
			s, _ := sessionFrom(ctx)
			if !tokenMatches(r.PostForm.Get("csrf"), s.csrf) {
				a.fail(w, r, errCrossOrigin)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// AuthenticateSession lets the JSON admin API accept the page's session in
// place of a bearer token (CONTRACT.md: "or the web page's session"). It
// returns the request's context carrying the administrator; ok is false when
// r carries no session cookie. A cookie that names no live session is an
// error wrapping pki.ErrUnauthenticated; a state-changing request that a
// browser sent from another origin, or without the session's CSRF token in
// the X-CSRF-Token header, is a *pki.PolicyError (403) and reaches no
// handler.
func (a *Admin) AuthenticateSession(r *http.Request) (context.Context, bool, error) {
	ctx, ok, err := a.authenticate(r)
	if !ok || err != nil {
		return nil, ok, err
	}
	if !isSafe(r.Method) {
		s, _ := sessionFrom(ctx)
		if a.cop.Check(r) != nil || !tokenMatches(r.Header.Get(CSRFHeader), s.csrf) {
			return nil, true, errCrossOrigin
		}
	}
	return ctx, true, nil
}

func tokenMatches(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func isSafe(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// errUnsupportedForm: a state change whose body is not a URL-encoded form.
var errUnsupportedForm = errors.New("web: form is not application/x-www-form-urlencoded")

// parseForm reads a URL-encoded form of at most maxFormBytes into
// r.PostForm. Other encodings are refused: the pages send no other, and a
// multipart body would be parsed to disk.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	if r.PostForm != nil {
		return nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return errUnsupportedForm
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return mbe
		}
		return pki.Malformed("the form could not be read")
	}
	return nil
}
