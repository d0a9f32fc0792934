package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

type revokeRequest struct {
	Reason string `json:"reason"`
}

// Validate accepts any string: the reason name is checked by the use case,
// which knows whether the caller may use privilegeWithdrawn.
func (*revokeRequest) Validate() error { return nil }

// revoke serves both the account API (own certificates) and the admin API.
// The body may be absent: the reason is then unspecified.
func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	serial, err := serialParam(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req revokeRequest
	if err := decode(w, r, &req, true); err != nil {
		a.fail(w, r, err)
		return
	}
	p, _ := principal(r)
	c, err := a.certs.Revoke(r.Context(), p, serial, req.Reason, middleware.GetReqID(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.certificateView(c))
}

// revokeAccount revokes every active certificate of an account.
func (a *API) revokeAccount(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	if err := decode(w, r, &req, true); err != nil {
		a.fail(w, r, err)
		return
	}
	p, _ := principal(r)
	id := chi.URLParam(r, "id")
	if _, err := a.accounts.Account(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	n, err := a.certs.RevokeAccount(r.Context(), p, id, req.Reason, middleware.GetReqID(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"account_id": id, "revoked": n})
}
