package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/pkid/pkid/internal/api"
	"github.com/pkid/pkid/internal/clientip"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/ratelimit"
)

// The limiters, as pkid_rate_limited_total labels them.
const (
	// LimiterUnauthenticated: failed authentication per client address,
	// counted by each node in memory.
	LimiterUnauthenticated = "unauthenticated"
	// LimiterAccountIssuance: an account's issuances and renewals per hour,
	// counted in Postgres.
	LimiterAccountIssuance = "account_issuance"
	// LimiterLogin: admin sign-in attempts per username and per address,
	// counted in Postgres.
	LimiterLogin = "login"
)

// AuthFailures limits, per client address, the requests to the account and
// admin APIs that fail authentication.
type AuthFailures struct {
	// Limiter holds each client's budget, keyed by clientip.Prefix; nil
	// turns the limit off.
	Limiter *ratelimit.Limiter[netip.Prefix]
	// Client returns a request's client address; the connection's peer when
	// nil.
	Client func(*http.Request) netip.Addr
}

// throttleAuthFailures returns middleware that charges each 401 answer to
// the client's budget and, once the budget is spent, answers the client's
// requests 429 with Retry-After before they reach authentication, which is
// the work the limit exists to save: an ES256 verification per forged
// token, a database read per revoked one. Requests that authenticate never
// spend from the budget; while a client address is refused, though, it is
// refused whatever it presents, since telling a good token from a bad one
// is that same work. The refusal is logged once per exhaustion and counted
// in metrics, never audited: an anonymous client must not be able to write
// to the audit trail at will.
func throttleAuthFailures(a AuthFailures, m *Metrics, log *slog.Logger) func(http.Handler) http.Handler {
	if a.Limiter == nil {
		return func(next http.Handler) http.Handler { return next }
	}
	client := a.Client
	if client == nil {
		client = clientip.New(nil).Addr
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key := clientip.Prefix(client(r))
			if wait, ok := a.Limiter.Check(key); !ok {
				m.RateLimited(LimiterUnauthenticated)
				api.WriteError(w, r, log, &pki.RateLimitError{RetryAfter: wait, Detail: fmt.Sprintf(
					"too many requests from this address (%s) failed authentication; retry in %d seconds",
					key, int((wait+time.Second-1)/time.Second))})
				return
			}
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			if ww.Status() == http.StatusUnauthorized && a.Limiter.Spend(key) {
				log.WarnContext(r.Context(), "client throttled: too many failed authentications",
					"client", key.String(), "remote", r.RemoteAddr, "path", r.URL.Path,
					"request_id", middleware.GetReqID(r.Context()))
			}
		})
	}
}
