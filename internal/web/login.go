package web

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/clientip"
	"github.com/pkid/pkid/internal/pki"
)

// Audit actions of signing in and out.
const (
	ActionLogin          = "admin.login"
	ActionLoginFailed    = "admin.login.failed"
	ActionLoginThrottled = "admin.login.throttled"
	ActionLogout         = "admin.logout"
)

// errBadLogin is the one answer to a wrong password and to an unknown
// username alike, so that the page does not tell which usernames exist.
const errBadLogin = "The username or password is incorrect."

// maxUsernameBytes bounds the username field; stored usernames have at most
// 64 characters.
const maxUsernameBytes = 256

type loginData struct {
	Username string
}

func (a *Admin) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok, err := a.authenticate(r); ok && err == nil {
		seeOther(w, r, "/admin/")
		return
	}
	v := view{Title: "Sign in", Data: loginData{}}
	if r.URL.Query().Get("done") == "signed-out" {
		v.Flash = "You have signed out."
	}
	a.render(w, r, http.StatusOK, "login.html", v)
}

// login checks a username and password. Before the password is looked at,
// the attempt is counted against the canonical username and against the
// client's address; past either limit the answer is 429 with Retry-After and
// the password is not checked at all, so a locked-out attacker learns
// nothing and costs no argon2 time. An unknown username costs the same
// argon2 time as a known one (auth.DummyVerify) and gets the same answer.
// On success a brand-new session replaces any the browser presented.
//
// The sign-in form carries no CSRF token, since there is no session yet to
// tie one to; CrossOriginProtection, in front of every route, refuses a
// sign-in posted from another origin (login CSRF).
func (a *Admin) login(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		a.fail(w, r, err)
		return
	}
	ctx := r.Context()
	raw := r.PostForm.Get("username")
	password := r.PostForm.Get("password")
	username := auth.CanonicalUsername(raw)
	shown := loginData{Username: raw}
	if len(raw) > maxUsernameBytes {
		shown.Username = ""
	}
	addr := a.clientAddress(r)

	now := a.opts.Now()
	since := now.Add(-a.opts.AttemptWindow)
	userKey, addrKey := "user:"+hashHex(username), "addr:"+addr
	var until time.Time
	for _, k := range []struct {
		key   string
		limit int
	}{{userKey, a.opts.UserAttempts}, {addrKey, a.opts.AddressAttempts}} {
		n, start, err := a.store.CountLoginAttempt(ctx, k.key, now, since)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if n > k.limit {
			if end := start.Add(a.opts.AttemptWindow); end.After(until) {
				until = end
			}
			if n == k.limit+1 {
				// Audit the lockout once, not every attempt it refuses.
				a.audit(r, pki.AuditEvent{Actor: "anonymous", Action: ActionLoginThrottled, Outcome: pki.OutcomeFailure,
					Detail: map[string]any{"remote_addr": addr, "key": keyKind(k.key), "attempts": n, "until": start.Add(a.opts.AttemptWindow)}})
			}
		}
	}
	if !until.IsZero() {
		a.opts.Throttled()
		wait := until.Sub(now)
		w.Header().Set("Retry-After", fmt.Sprint(retrySeconds(wait)))
		a.render(w, r, http.StatusTooManyRequests, "login.html", view{Title: "Sign in", Data: shown,
			Error: fmt.Sprintf("Too many sign-in attempts. Try again in %d minutes.", max(1, int(wait.Round(time.Minute)/time.Minute)))})
		return
	}

	admin, err := a.checkPassword(r, username, password)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if admin == nil {
		a.render(w, r, http.StatusOK, "login.html", view{Title: "Sign in", Data: shown, Error: errBadLogin})
		return
	}
	for _, k := range []string{userKey, addrKey} {
		if err := a.store.ClearLoginAttempts(ctx, k); err != nil {
			a.fail(w, r, err)
			return
		}
	}

	id, value := newSessionID()
	s := &pki.Session{IDHash: idHash(id), AdminID: admin.ID, CreatedAt: now, ExpiresAt: now.Add(a.opts.AbsoluteTimeout),
		RemoteAddr: addr, UserAgent: r.UserAgent()}
	var replaced []byte
	if old, ok := presentedID(r); ok {
		replaced = idHash(old)
	}
	ev := pki.AuditEvent{Actor: "admin:" + admin.Username, Action: ActionLogin, Outcome: pki.OutcomeSuccess,
		RequestID: requestID(r), Detail: map[string]any{"remote_addr": addr, "session": hex.EncodeToString(s.IDHash[:8])}}
	if err := a.store.CreateAdminSession(ctx, s, replaced, ev); err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.store.PurgeAdminSessions(ctx, now, now.Add(-a.opts.IdleTimeout)); err != nil {
		a.opts.Log.WarnContext(ctx, "purging stale admin sessions", "error", err)
	}
	setSessionCookie(w, r, value)
	seeOther(w, r, "/admin/")
}

// checkPassword returns the administrator if password is theirs, nil if the
// username or the password is wrong (audited), or an error when pkid cannot
// tell.
func (a *Admin) checkPassword(r *http.Request, username, password string) (*pki.Admin, error) {
	fail := func(actor, reason string) {
		a.audit(r, pki.AuditEvent{Actor: actor, Action: ActionLoginFailed, Outcome: pki.OutcomeFailure,
			Detail: map[string]any{"remote_addr": a.clientAddress(r), "reason": reason}})
	}
	if username == "" || len(username) > maxUsernameBytes || len(password) > auth.MaxPasswordLength*4 {
		auth.DummyVerify(password)
		fail("anonymous", "unknown username")
		return nil, nil
	}
	admin, err := a.store.AdminByUsername(r.Context(), username)
	switch {
	case errors.Is(err, pki.ErrNotFound):
		auth.DummyVerify(password)
		// The attempted name is not recorded: it may be a mistyped password.
		fail("anonymous", "unknown username")
		return nil, nil
	case err != nil:
		return nil, err
	}
	ok, err := auth.VerifyPassword(admin.PasswordHash, password)
	if err != nil {
		return nil, fmt.Errorf("web: administrator %s: %w", admin.Username, err)
	}
	if !ok {
		fail("admin:"+admin.Username, "wrong password")
		return nil, nil
	}
	return admin, nil
}

// logout ends the session on the server, so that a copy of the cookie is
// worthless from now on, and clears the cookie in the browser.
func (a *Admin) logout(w http.ResponseWriter, r *http.Request) {
	s, _ := sessionFrom(r.Context())
	p := principal(r)
	ev := pki.AuditEvent{Actor: p.Actor(), Action: ActionLogout, Outcome: pki.OutcomeSuccess, RequestID: requestID(r),
		Detail: map[string]any{"session": hex.EncodeToString(s.hash[:8])}}
	if _, err := a.store.DeleteAdminSession(r.Context(), s.hash, ev); err != nil {
		a.fail(w, r, err)
		return
	}
	clearSessionCookie(w, r)
	seeOther(w, r, "/admin/login?done=signed-out")
}

// audit records an event that changes nothing else. A failure is logged: the
// sign-in answer does not depend on it.
func (a *Admin) audit(r *http.Request, ev pki.AuditEvent) {
	ev.RequestID = requestID(r)
	if err := a.store.RecordAudit(r.Context(), ev); err != nil {
		a.opts.Log.ErrorContext(r.Context(), "recording audit event", "action", ev.Action, "error", err)
	}
}

// clientAddress is the address sign-in attempts are counted against: the
// client's IP (the connection's, or the one a trusted proxy forwarded), an
// IPv6 client by its /64 (one host usually holds the whole prefix).
func (a *Admin) clientAddress(r *http.Request) string {
	p := clientip.Prefix(a.opts.ClientAddr(r))
	switch {
	case !p.IsValid():
		return "unknown"
	case p.Addr().Is4():
		return p.Addr().String()
	}
	return p.String()
}

// hashHex keys a username's attempts by a hash, so that the throttle table
// does not collect what people typed into the username field.
func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:16])
}

func keyKind(key string) string {
	if len(key) > 5 && key[:5] == "user:" {
		return "username"
	}
	return "address"
}
