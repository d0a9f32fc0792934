package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/account"
	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/webhook"
)

// API serves the account and admin JSON APIs and the public CA endpoints.
type API struct {
	certs    *ca.Service
	accounts *account.Service
	authn    *auth.Authenticator
	log      *slog.Logger
	sessions SessionAuthenticator // nil: bearer tokens only
	// rateLimited is told of each request refused by an account's rate
	// limit; nil: nobody is.
	rateLimited func()
	webhooks    *webhook.Service // nil: the webhook routes answer 404
}

// New returns the API over the given use cases.
func New(certs *ca.Service, accounts *account.Service, authn *auth.Authenticator, log *slog.Logger) *API {
	return &API{certs: certs, accounts: accounts, authn: authn, log: log}
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var rl *pki.RateLimitError
	if a.rateLimited != nil && errors.As(err, &rl) {
		a.rateLimited()
	}
	WriteError(w, r, a.log, err)
}

// ObserveRateLimits makes the API call f for each request it refuses
// because the account's rate limit (issuances and renewals per hour) is
// reached, for a metric. Call it before serving.
func (a *API) ObserveRateLimits(f func()) { a.rateLimited = f }

// AccountRoutes is the account API, to be mounted at /api/v1. Every route
// needs an account token.
func (a *API) AccountRoutes() http.Handler {
	r := chi.NewRouter()
	// Renewal authenticates itself: by token, or by the certificate being
	// renewed when it arrives over the TLS listener.
	r.Post("/certificates/{serial}/renew", a.renew)
	r.Group(func(r chi.Router) {
		r.Use(a.authn.Require(pki.TokenAccount, a.fail))
		r.Post("/certificates", a.issue)
		r.Get("/certificates", a.listCertificates)
		r.Get("/certificates/{serial}", a.getCertificate)
		r.Post("/certificates/{serial}/revoke", a.revoke)
	})
	r.NotFound(a.notFound)
	r.MethodNotAllowed(a.methodNotAllowed(r))
	return r
}

// AdminRoutes is the admin API, to be mounted at /admin/api. Every route
// needs an admin token, or the admin web page's session when AcceptSessions
// was called.
func (a *API) AdminRoutes() http.Handler {
	r := chi.NewRouter()
	r.Use(a.requireAdmin)
	r.Post("/accounts", a.createAccount)
	r.Get("/accounts", a.listAccounts)
	r.Get("/accounts/{id}", a.getAccount)
	r.Patch("/accounts/{id}", a.updateAccount)
	r.Post("/accounts/{id}/tokens", a.mintToken)
	r.Get("/accounts/{id}/tokens", a.listTokens)
	r.Delete("/accounts/{id}/tokens/{tokenID}", a.revokeToken)
	r.Post("/accounts/{id}/revoke-certificates", a.revokeAccount)
	r.Get("/accounts/{id}/policy", a.getPolicy)
	r.Put("/accounts/{id}/policy", a.putPolicy)
	r.Get("/accounts/{id}/webhook", a.getWebhook)
	r.Put("/accounts/{id}/webhook", a.putWebhook)
	r.Delete("/accounts/{id}/webhook", a.deleteWebhook)
	r.Post("/accounts/{id}/webhook/rotate-secret", a.rotateWebhookSecret)
	r.Get("/accounts/{id}/webhook/deliveries", a.listWebhookDeliveries)
	r.Get("/certificates", a.listCertificates)
	r.Get("/certificates/{serial}", a.getCertificate)
	r.Post("/certificates/{serial}/revoke", a.revoke)
	r.Get("/audit", a.listAudit)
	r.NotFound(a.notFound)
	r.MethodNotAllowed(a.methodNotAllowed(r))
	return r
}

// SessionAuthenticator authenticates a request by the admin web page's
// session cookie, so that the admin API accepts the page's session as well
// as a bearer token (CONTRACT.md).
type SessionAuthenticator interface {
	// AuthenticateSession returns r's context carrying the administrator of
	// its session. ok is false when r carries no session cookie; an error
	// refuses the request (no live session, or a state change without the
	// session's CSRF token or from another origin).
	AuthenticateSession(r *http.Request) (ctx context.Context, ok bool, err error)
}

// AcceptSessions makes the admin API accept the sessions that s
// authenticates, on requests that carry no Authorization header. Call it
// before serving.
func (a *API) AcceptSessions(s SessionAuthenticator) { a.sessions = s }

// requireAdmin authenticates an admin API request by its bearer token or,
// when it has no Authorization header, by the web page's session.
func (a *API) requireAdmin(next http.Handler) http.Handler {
	bearer := a.authn.Require(pki.TokenAdmin, a.fail)(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.sessions != nil && len(r.Header.Values("Authorization")) == 0 {
			ctx, ok, err := a.sessions.AuthenticateSession(r)
			switch {
			case err != nil:
				a.fail(w, r, err)
				return
			case ok:
				next.ServeHTTP(w, r.WithContext(ctx))
				return
			}
		}
		bearer.ServeHTTP(w, r)
	})
}

func (a *API) notFound(w http.ResponseWriter, r *http.Request) { a.fail(w, r, pki.ErrNotFound) }

// methodNotAllowed answers a known path asked with a method it does not
// have, saying which it has (RFC 9110 §15.5.6). routes is the router the
// handler is installed on: chi matches paths relative to it.
func (a *API) methodNotAllowed(routes chi.Routes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.RoutePath != "" {
			path = rctx.RoutePath
		}
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if routes.Match(chi.NewRouteContext(), m, path) {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
		}
		p := Problem{Type: ProblemTypePrefix + "methodNotAllowed", Title: "Method not allowed",
			Status: http.StatusMethodNotAllowed, Detail: r.Method + " is not allowed on " + r.URL.Path}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(p.Status)
		_ = json.NewEncoder(w).Encode(p)
	}
}

// principal returns the authenticated principal that Require put in the
// request's context.
func principal(r *http.Request) (pki.Principal, *pki.Account) {
	p, acct, _ := auth.PrincipalFrom(r.Context())
	return p, acct
}

// queryLimit parses the limit query parameter: absent is 0 (the store's
// default), otherwise 1..max.
func queryLimit(r *http.Request, max int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, pki.Malformed("limit must be a whole number from 1 to %d", max)
	}
	return n, nil
}
