package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/pkid/pkid/internal/account"
	"github.com/pkid/pkid/internal/pki"
)

type createAccountRequest struct {
	Name string   `json:"name"`
	Plan pki.Plan `json:"plan"`
}

func (q *createAccountRequest) Validate() error {
	if q.Name == "" {
		return pki.Malformed(`"name" is required`)
	}
	if !q.Plan.Valid() {
		return pki.Malformed(`"plan" must be "enterprise" or "standard"`)
	}
	return nil
}

func (a *API) createAccount(w http.ResponseWriter, r *http.Request) {
	var req createAccountRequest
	if err := decode(w, r, &req, false); err != nil {
		a.fail(w, r, err)
		return
	}
	p, _ := principal(r)
	acct, err := a.accounts.CreateAccount(r.Context(), p, req.Name, req.Plan, middleware.GetReqID(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/admin/api/accounts/"+acct.ID)
	writeJSON(w, http.StatusCreated, accountView(acct))
}

func (a *API) listAccounts(w http.ResponseWriter, r *http.Request) {
	accts, err := a.accounts.Accounts(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := struct {
		Accounts []accountJSON `json:"accounts"`
	}{Accounts: make([]accountJSON, 0, len(accts))}
	for _, acct := range accts {
		out.Accounts = append(out.Accounts, accountView(acct))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getAccount(w http.ResponseWriter, r *http.Request) {
	acct, err := a.accounts.Account(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, accountView(acct))
}

type updateAccountRequest struct {
	Name   *string            `json:"name"`
	Plan   *pki.Plan          `json:"plan"`
	Status *pki.AccountStatus `json:"status"`
}

func (q *updateAccountRequest) Validate() error {
	if q.Name == nil && q.Plan == nil && q.Status == nil {
		return pki.Malformed(`give at least one of "name", "plan", "status"`)
	}
	return nil
}

func (a *API) updateAccount(w http.ResponseWriter, r *http.Request) {
	var req updateAccountRequest
	if err := decode(w, r, &req, false); err != nil {
		a.fail(w, r, err)
		return
	}
	p, _ := principal(r)
	acct, err := a.accounts.UpdateAccount(r.Context(), p, chi.URLParam(r, "id"),
		account.Patch{Name: req.Name, Plan: req.Plan, Status: req.Status}, middleware.GetReqID(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, accountView(acct))
}

type mintTokenRequest struct {
	Name     string `json:"name"`
	TTLHours *int   `json:"ttl_hours"`
}

func (q *mintTokenRequest) Validate() error {
	if q.Name == "" {
		return pki.Malformed(`"name" is required`)
	}
	if q.TTLHours != nil && (*q.TTLHours < 1 || *q.TTLHours > int(account.MaxTokenTTL/time.Hour)) {
		return pki.Malformed(`"ttl_hours" must be from 1 to %d`, int(account.MaxTokenTTL/time.Hour))
	}
	return nil
}

func (a *API) mintToken(w http.ResponseWriter, r *http.Request) {
	var req mintTokenRequest
	if err := decode(w, r, &req, false); err != nil {
		a.fail(w, r, err)
		return
	}
	var ttl time.Duration
	if req.TTLHours != nil {
		ttl = time.Duration(*req.TTLHours) * time.Hour
	}
	p, _ := principal(r)
	t, jwt, err := a.accounts.MintToken(r.Context(), p, chi.URLParam(r, "id"), req.Name, ttl, middleware.GetReqID(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, tokenView(t, jwt))
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	toks, err := a.accounts.Tokens(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := struct {
		Tokens []tokenJSON `json:"tokens"`
	}{Tokens: make([]tokenJSON, 0, len(toks))}
	for _, t := range toks {
		out.Tokens = append(out.Tokens, tokenView(t, ""))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	p, _ := principal(r)
	err := a.accounts.RevokeToken(r.Context(), p, chi.URLParam(r, "id"), chi.URLParam(r, "tokenID"), middleware.GetReqID(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request) {
	limit, err := queryLimit(r, 1000)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	events, err := a.accounts.AuditEvents(r.Context(), pki.AuditFilter{AccountID: r.URL.Query().Get("account_id"), Limit: limit})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := struct {
		Events []auditJSON `json:"events"`
	}{Events: make([]auditJSON, 0, len(events))}
	for _, e := range events {
		out.Events = append(out.Events, auditView(e))
	}
	writeJSON(w, http.StatusOK, out)
}
