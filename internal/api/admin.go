package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
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

// Pages of GET /admin/api/audit: the default and largest page of the JSON
// listing, and the page size of each query behind the NDJSON export.
const (
	defaultAuditPage = 100
	maxAuditPage     = 1000
	maxAuditText     = 200 // bytes of an actor or action filter
)

// listAudit serves GET /admin/api/audit: the events that the query selects
// (account_id, actor, action, since and until in RFC 3339, before_id),
// newest first, a page of limit (default 100, at most 1000) with the cursor
// of the next page, and the head of the hash chain. With Accept:
// application/x-ndjson it exports every selected event instead, oldest
// first, one JSON object per line (limit, when given, caps the count).
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) {
	f, err := auditFilter(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Add("Vary", "Accept")
	if prefersNDJSON(r.Header.Values("Accept")) {
		a.exportAudit(w, r, f)
		return
	}
	if f.Limit == 0 {
		f.Limit = defaultAuditPage
	}
	events, head, err := a.accounts.AuditEvents(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := struct {
		Events     []auditJSON `json:"events"`
		Chain      chainJSON   `json:"chain"`
		NextCursor string      `json:"next_cursor"`
	}{Events: make([]auditJSON, 0, len(events)), Chain: chainView(head)}
	for _, e := range events {
		out.Events = append(out.Events, auditView(e))
	}
	if len(events) == f.Limit {
		out.NextCursor = strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// auditFilter reads listAudit's query.
func auditFilter(r *http.Request) (pki.AuditFilter, error) {
	q := r.URL.Query()
	f := pki.AuditFilter{AccountID: q.Get("account_id"), Actor: q.Get("actor"), Action: q.Get("action")}
	if len(f.Actor) > maxAuditText || len(f.Action) > maxAuditText {
		return f, pki.Malformed("actor and action must be at most %d bytes", maxAuditText)
	}
	var err error
	if f.Limit, err = queryLimit(r, maxAuditPage); err != nil {
		return f, err
	}
	if s := q.Get("before_id"); s != "" {
		if f.BeforeID, err = strconv.ParseInt(s, 10, 64); err != nil || f.BeforeID < 1 {
			return f, pki.Malformed("before_id must be a positive event id (the next_cursor of a previous page)")
		}
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if s := q.Get(t.name); s != "" {
			if *t.dst, err = time.Parse(time.RFC3339, s); err != nil {
				return f, pki.Malformed("%s must be an RFC 3339 time such as 2025-01-31T23:59:59Z", t.name)
			}
		}
	}
	return f, nil
}

// prefersNDJSON reports whether the Accept headers rank application/x-ndjson
// above application/json, by the rules of prefersCSV.
func prefersNDJSON(accept []string) bool {
	ndQ, ndExact := acceptWeight(accept, "application", "x-ndjson")
	jsonQ, jsonExact := acceptWeight(accept, "application", "json")
	switch {
	case ndQ <= 0:
		return false
	case ndQ != jsonQ:
		return ndQ > jsonQ
	default:
		return ndExact && !jsonExact
	}
}

// exportAudit streams the events f selects as JSON lines, oldest first,
// reading them a page at a time (so memory stays flat however long the
// trail) and extending the write deadline as each page goes out. The chain
// head at the start is in the X-Audit-Chain-Head header as ID:HASH, the
// form `pkid audit verify --anchor` takes. An error after the first line
// cannot become a problem response: the connection is cut, so that the
// client sees a truncated stream rather than a short one that looks whole.
func (a *API) exportAudit(w http.ResponseWriter, r *http.Request, f pki.AuditFilter) {
	total := f.Limit // 0: no cap
	f.Ascending = true
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	written := 0
	for {
		f.Limit = maxAuditPage
		if total > 0 {
			f.Limit = min(maxAuditPage, total-written)
		}
		events, head, err := a.accounts.AuditEvents(r.Context(), f)
		if err != nil && written == 0 && f.AfterID == 0 {
			a.fail(w, r, err)
			return
		}
		if err != nil {
			a.log.ErrorContext(r.Context(), "audit export failed after it began; cutting the connection",
				"error", err, "request_id", middleware.GetReqID(r.Context()), "events_written", written)
			panic(http.ErrAbortHandler)
		}
		if f.AfterID == 0 {
			h := w.Header()
			h.Set("Content-Type", "application/x-ndjson")
			h.Set("Cache-Control", "no-store")
			h.Set("X-Audit-Chain-Head", fmt.Sprintf("%d:%x", head.ID, head.Hash))
			w.WriteHeader(http.StatusOK)
		}
		for _, e := range events {
			if err := enc.Encode(auditView(e)); err != nil {
				return // the client went away
			}
		}
		written += len(events)
		if len(events) < f.Limit || (total > 0 && written >= total) {
			return
		}
		f.AfterID = events[len(events)-1].ID
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	}
}
