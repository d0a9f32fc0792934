package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/account"
	"github.com/pkid/pkid/internal/pki"
)

// accountsPerPage is the length of a page of the accounts list.
const accountsPerPage = 25

// maxPage bounds page numbers in URLs, so that an offset stays reasonable.
const maxPage = 10000

type accountListData struct {
	Text, Plan, Status string
	Accounts           []*pki.Account
	Total, Page, Pages int
	PrevURL, NextURL   string
	NewName, NewPlan   string // the create form, refilled after an error
}

// accountList shows accounts newest first, with a search over names (or an
// exact id) and filters by plan and status.
func (a *Admin) accountList(w http.ResponseWriter, r *http.Request) {
	d, err := a.accountListData(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, "accounts.html", view{Title: "Accounts", Nav: "accounts", Flash: flash(r), Data: d})
}

func (a *Admin) accountListData(r *http.Request) (*accountListData, error) {
	q := r.URL.Query()
	d := &accountListData{Text: strings.TrimSpace(q.Get("q")), Plan: q.Get("plan"), Status: q.Get("status"), NewPlan: string(pki.PlanEnterprise)}
	if d.Plan != "" && !pki.Plan(d.Plan).Valid() {
		return nil, pki.Malformed("plan must be enterprise or standard")
	}
	if d.Status != "" && !pki.AccountStatus(d.Status).Valid() {
		return nil, pki.Malformed("status must be active or suspended")
	}
	page, err := pageNumber(q.Get("page"))
	if err != nil {
		return nil, err
	}
	d.Page = page
	accts, total, err := a.store.SearchAccounts(r.Context(), pki.AccountFilter{
		Text: d.Text, Plan: pki.Plan(d.Plan), Status: pki.AccountStatus(d.Status),
		Offset: (page - 1) * accountsPerPage, Limit: accountsPerPage,
	})
	if err != nil {
		return nil, err
	}
	d.Accounts, d.Total = accts, total
	d.Pages = max(1, (total+accountsPerPage-1)/accountsPerPage)
	link := func(p int) string {
		v := url.Values{}
		for k, s := range map[string]string{"q": d.Text, "plan": d.Plan, "status": d.Status} {
			if s != "" {
				v.Set(k, s)
			}
		}
		if p > 1 {
			v.Set("page", strconv.Itoa(p))
		}
		return "/admin/accounts?" + v.Encode()
	}
	if page > 1 {
		d.PrevURL = link(page - 1)
	}
	if page < d.Pages {
		d.NextURL = link(page + 1)
	}
	return d, nil
}

func pageNumber(s string) (int, error) {
	if s == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxPage {
		return 0, pki.Malformed("page must be a whole number from 1 to %d", maxPage)
	}
	return n, nil
}

// createAccount creates an account through account.Service, then shows it.
// A refused name or plan shows the list again with the form filled in.
func (a *Admin) createAccount(w http.ResponseWriter, r *http.Request) {
	name, plan := r.PostForm.Get("name"), pki.Plan(r.PostForm.Get("plan"))
	acct, err := a.accounts.CreateAccount(r.Context(), principal(r), name, plan, requestID(r))
	if err != nil {
		d, derr := a.accountListData(r)
		if derr != nil || !isRequestError(err) {
			a.fail(w, r, err)
			return
		}
		d.NewName, d.NewPlan = name, string(plan)
		status, _, detail := describe(err)
		a.render(w, r, status, "accounts.html", view{Title: "Accounts", Nav: "accounts", Error: detail, Data: d})
		return
	}
	seeOther(w, r, "/admin/accounts/"+url.PathEscape(acct.ID)+"?done=created")
}

// accountCertificates is how many of an account's certificates its page
// lists; the certificates list has the rest.
const accountCertificates = 20

type accountPageData struct {
	Account    *pki.Account
	Tokens     []tokenRow
	Certs      []certRow
	MoreCerts  bool
	Minted     *mintedToken
	TokenName  string
	TokenTTL   int
	MaxTTL     int
	AllReasons []string     // for "revoke all"
	Webhook    *webhookCard // nil: the node has no webhook service
}

type tokenRow struct {
	*pki.Token
	State string // active, expired, revoked
}

// mintedToken is a token just minted: the JWT is shown on this one answer
// and never again.
type mintedToken struct {
	Name      string
	JWT       string
	ExpiresAt time.Time
}

// accountAllReasons are the reasons offered for revoking all of an
// account's certificates: the account is closing, or leaving the programme.
var accountAllReasons = []string{pki.ReasonCessationOfOperation.String(), pki.ReasonAffiliationChanged.String()}

func (a *Admin) accountPageData(r *http.Request, id string) (*accountPageData, error) {
	ctx := r.Context()
	acct, err := a.accounts.Account(ctx, id)
	if err != nil {
		return nil, err
	}
	toks, err := a.accounts.Tokens(ctx, id)
	if err != nil {
		return nil, err
	}
	now := a.opts.Now()
	d := &accountPageData{Account: acct, TokenName: "", TokenTTL: int(account.DefaultTokenTTL / time.Hour),
		MaxTTL: int(account.MaxTokenTTL / time.Hour), AllReasons: accountAllReasons}
	for _, t := range toks {
		state := "active"
		switch {
		case t.RevokedAt != nil:
			state = "revoked"
		case !t.ValidAt(now):
			state = "expired"
		}
		d.Tokens = append(d.Tokens, tokenRow{Token: t, State: state})
	}
	certs, next, err := a.certs.Certificates(ctx, principal(r), pki.CertificateFilter{AccountID: id, Limit: accountCertificates})
	if err != nil {
		return nil, err
	}
	d.Certs = certRows(certs, a.certs.Now(), map[string]*pki.Account{id: acct})
	d.MoreCerts = next != ""
	if d.Webhook, err = a.webhookCard(ctx, id); err != nil {
		return nil, err
	}
	return d, nil
}

// accountPage shows an account: its plan and status with the forms that
// change them, its tokens, its newest certificates.
func (a *Admin) accountPage(w http.ResponseWriter, r *http.Request) {
	d, err := a.accountPageData(r, chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, "account.html", view{Title: d.Account.Name, Nav: "accounts", Flash: flash(r), Data: d})
}

// updateAccount changes what the form names of an account (name, plan or
// status), through account.Service.
func (a *Admin) updateAccount(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	var patch account.Patch
	if r.PostForm.Has("name") {
		v := r.PostForm.Get("name")
		patch.Name = &v
	}
	if r.PostForm.Has("plan") {
		v := pki.Plan(r.PostForm.Get("plan"))
		patch.Plan = &v
	}
	if r.PostForm.Has("status") {
		v := pki.AccountStatus(r.PostForm.Get("status"))
		patch.Status = &v
	}
	if patch.Name == nil && patch.Plan == nil && patch.Status == nil {
		a.fail(w, r, pki.Malformed("the form changes nothing"))
		return
	}
	acct, err := a.accounts.UpdateAccount(r.Context(), principal(r), id, patch, requestID(r))
	if err != nil {
		a.accountError(w, r, id, err)
		return
	}
	done := "updated"
	switch {
	case patch.Status != nil && acct.Status == pki.AccountSuspended:
		done = "suspended"
	case patch.Status != nil:
		done = "reactivated"
	}
	seeOther(w, r, "/admin/accounts/"+url.PathEscape(id)+"?done="+done)
}

// mintToken mints an account token and shows it, this once, on the answer
// itself: it is never stored, so there is no page to redirect to that could
// show it.
func (a *Admin) mintToken(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	name := r.PostForm.Get("name")
	hours, err := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("ttl_hours")))
	if err != nil || hours < 1 || hours > int(account.MaxTokenTTL/time.Hour) {
		a.accountError(w, r, id, pki.Malformed("the lifetime must be a whole number of hours from 1 to %d", int(account.MaxTokenTTL/time.Hour)))
		return
	}
	t, jwt, err := a.accounts.MintToken(r.Context(), principal(r), id, name, time.Duration(hours)*time.Hour, requestID(r))
	if err != nil {
		a.accountError(w, r, id, err)
		return
	}
	d, err := a.accountPageData(r, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	d.Minted = &mintedToken{Name: t.Name, JWT: jwt, ExpiresAt: t.ExpiresAt}
	a.render(w, r, http.StatusCreated, "account.html", view{Title: d.Account.Name, Nav: "accounts",
		Flash: "Token minted. Copy it now: pkid does not keep it and cannot show it again.", Data: d})
}

// revokeToken revokes one of the account's tokens; it is refused from the
// next request on.
func (a *Admin) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := a.accounts.RevokeToken(r.Context(), principal(r), id, chi.URLParam(r, "tokenID"), requestID(r)); err != nil {
		a.accountError(w, r, id, err)
		return
	}
	seeOther(w, r, "/admin/accounts/"+url.PathEscape(id)+"?done=token-revoked")
}

type revokeAllData struct {
	Account *pki.Account
	Reason  string
	Active  int
	More    bool // more active certificates than counted
}

// revokeAll revokes every active certificate of an account through
// ca.Service.RevokeAccount. The first POST (without confirm) changes
// nothing: it shows what would be revoked and asks again.
func (a *Admin) revokeAll(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := chi.URLParam(r, "id")
	reason := r.PostForm.Get("reason")
	if !slices.Contains(accountAllReasons, reason) {
		a.accountError(w, r, id, pki.Malformed("choose cessationOfOperation or affiliationChanged"))
		return
	}
	acct, err := a.accounts.Account(ctx, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		certs, next, err := a.certs.Certificates(ctx, principal(r), pki.CertificateFilter{AccountID: id, Status: pki.StatusActive, Limit: 500})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.render(w, r, http.StatusOK, "revoke-all.html", view{Title: "Revoke all certificates", Nav: "accounts",
			Data: revokeAllData{Account: acct, Reason: reason, Active: len(certs), More: next != ""}})
		return
	}
	n, err := a.certs.RevokeAccount(ctx, principal(r), id, reason, requestID(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	seeOther(w, r, "/admin/accounts/"+url.PathEscape(id)+"?done=revoked-all&n="+strconv.Itoa(n))
}

// accountError shows the account page again with the refusal above it, or
// an error page when the refusal is not the form's fault.
func (a *Admin) accountError(w http.ResponseWriter, r *http.Request, id string, err error) {
	a.refillAccountPage(w, r, id, err, nil)
}

// refillAccountPage is accountError, with refill (when not nil) putting what
// the user typed back into the page's form.
func (a *Admin) refillAccountPage(w http.ResponseWriter, r *http.Request, id string, err error, refill func(*accountPageData)) {
	if !isRequestError(err) {
		a.fail(w, r, err)
		return
	}
	d, derr := a.accountPageData(r, id)
	if derr != nil {
		a.fail(w, r, derr)
		return
	}
	if refill != nil {
		refill(d)
	}
	status, _, detail := describe(err)
	a.render(w, r, status, "account.html", view{Title: d.Account.Name, Nav: "accounts", Error: detail, Data: d})
}

func isRequestError(err error) bool {
	var re *pki.RequestError
	return errors.As(err, &re)
}

// flash returns the confirmation for the change a redirect reports. Only
// fixed messages are shown: nothing from the URL reaches the page but a
// number.
func flash(r *http.Request) string {
	q := r.URL.Query()
	switch q.Get("done") {
	case "created":
		return "Account created."
	case "updated":
		return "Account updated."
	case "suspended":
		return "Account suspended: its requests are refused from now on."
	case "reactivated":
		return "Account reactivated."
	case "webhook-updated":
		return "Webhook updated."
	case "webhook-removed":
		return "Webhook removed: no more expiry notices for this account."
	case "token-revoked":
		return "Token revoked. It is refused from now on."
	case "revoked":
		return "Certificate revoked. OCSP answers revoked from now on; the CRL follows within seconds."
	case "revoked-all":
		n, err := strconv.Atoi(q.Get("n"))
		if err != nil || n < 0 {
			return "Certificates revoked."
		}
		if n == 1 {
			return "1 certificate revoked."
		}
		return strconv.Itoa(n) + " certificates revoked."
	}
	return ""
}
