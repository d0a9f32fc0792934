package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/pki"
)

// policyPageData is the account's issuance policy page: the policy, the
// form that replaces it, and the active certificates it would not issue.
type policyPageData struct {
	Account   *pki.Account
	Policy    *pki.AccountPolicy
	Form      policyForm
	Namespace string // the account's URI SAN namespace; "" when the deployment has no trust domain
	CAMaxDays int
	Misfits   []misfitRow
	Examined  int  // active certificates examined for misfits
	Complete  bool // whether that was all of them
}

// policyForm is what the form shows: the saved policy, or what an
// administrator submitted and must correct.
type policyForm struct {
	Names      string // one rule per line
	AllowURIs  bool
	KeyTypes   []keyTypeChoice
	MaxDays    string
	MaxActive  string
	MaxPerHour string
}

type keyTypeChoice struct {
	Type     pki.KeyType
	Selected bool
}

// misfitRow is an active certificate that the policy would not issue today.
type misfitRow struct {
	certRow
	Reasons []string
}

func formOf(p *pki.AccountPolicy, all []pki.KeyType) policyForm {
	return policyForm{
		Names:      strings.Join(p.AllowedNames, "\n"),
		AllowURIs:  p.AllowURISANs,
		KeyTypes:   keyChoices(all, p.KeyTypes),
		MaxDays:    strconv.Itoa(p.MaxValidityDays),
		MaxActive:  strconv.Itoa(p.MaxActiveCertificates),
		MaxPerHour: strconv.Itoa(p.MaxIssuancesPerHour),
	}
}

// keyChoices offers every key type of all, the CA's, marking the selected.
func keyChoices(all, selected []pki.KeyType) []keyTypeChoice {
	var out []keyTypeChoice
	for _, t := range all {
		c := keyTypeChoice{Type: t}
		for _, s := range selected {
			c.Selected = c.Selected || s == t
		}
		out = append(out, c)
	}
	return out
}

func (a *Admin) policyPageData(r *http.Request, id string) (*policyPageData, error) {
	ctx := r.Context()
	acct, err := a.accounts.Account(ctx, id)
	if err != nil {
		return nil, err
	}
	pol, err := a.certs.Policy(ctx, id)
	if err != nil {
		return nil, err
	}
	misfits, examined, complete, err := a.certs.PolicyMisfits(ctx, principal(r), id)
	if err != nil {
		return nil, err
	}
	d := &policyPageData{Account: acct, Policy: pol, Form: formOf(pol, a.certs.KeyTypes()), Namespace: a.certs.URINamespace(id),
		CAMaxDays: a.certs.MaxValidityDays(), Examined: examined, Complete: complete}
	now := a.certs.Now()
	for _, m := range misfits {
		row := certRows([]*pki.Certificate{m.Certificate}, now, map[string]*pki.Account{id: acct})[0]
		d.Misfits = append(d.Misfits, misfitRow{certRow: row, Reasons: m.Reasons})
	}
	return d, nil
}

// policyPage shows an account's issuance policy, the form that changes it,
// and the active certificates that no longer fit it.
func (a *Admin) policyPage(w http.ResponseWriter, r *http.Request) {
	d, err := a.policyPageData(r, chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	flash := ""
	if r.URL.Query().Get("done") == "saved" {
		flash = "Policy saved. It applies to the account's requests from now on; certificates already issued are unchanged."
	}
	a.render(w, r, http.StatusOK, "account-policy.html", view{Title: "Policy of " + d.Account.Name, Nav: "accounts", Flash: flash, Data: d})
}

// updatePolicy replaces the account's policy with the form's, through
// ca.Service.SetPolicy (which audits the change). A refused form is shown
// again with what was submitted.
func (a *Admin) updatePolicy(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	f := r.PostForm
	form := policyForm{
		Names: f.Get("allowed_names"), AllowURIs: f.Get("allow_uri_sans") == "yes",
		MaxDays: f.Get("max_validity_days"), MaxActive: f.Get("max_active_certificates"), MaxPerHour: f.Get("max_issuances_per_hour"),
	}
	var keyTypes []pki.KeyType
	for _, t := range f["key_types"] {
		keyTypes = append(keyTypes, pki.KeyType(t))
	}
	form.KeyTypes = keyChoices(a.certs.KeyTypes(), keyTypes)
	pol, err := policyFromForm(form, keyTypes)
	if err == nil {
		_, err = a.certs.SetPolicy(r.Context(), principal(r), id, pol, requestID(r))
	}
	if err != nil {
		if !isRequestError(err) {
			a.fail(w, r, err)
			return
		}
		d, derr := a.policyPageData(r, id)
		if derr != nil {
			a.fail(w, r, derr)
			return
		}
		d.Form = form
		status, _, detail := describe(err)
		a.render(w, r, status, "account-policy.html", view{Title: "Policy of " + d.Account.Name, Nav: "accounts", Error: detail, Data: d})
		return
	}
	seeOther(w, r, "/admin/accounts/"+url.PathEscape(id)+"/policy?done=saved")
}

// policyFromForm reads the form: one name rule per line (blank lines and
// surrounding space ignored) and whole numbers.
func policyFromForm(form policyForm, keyTypes []pki.KeyType) (pki.AccountPolicy, error) {
	p := pki.AccountPolicy{AllowedNames: []string{}, AllowURISANs: form.AllowURIs, KeyTypes: keyTypes}
	for line := range strings.Lines(form.Names) {
		if rule := strings.TrimSpace(line); rule != "" {
			p.AllowedNames = append(p.AllowedNames, rule)
		}
	}
	for _, n := range []struct {
		field string
		in    string
		out   *int
	}{
		{"the maximum validity", form.MaxDays, &p.MaxValidityDays},
		{"the active-certificate quota", form.MaxActive, &p.MaxActiveCertificates},
		{"the hourly quota", form.MaxPerHour, &p.MaxIssuancesPerHour},
	} {
		v, err := strconv.Atoi(strings.TrimSpace(n.in))
		if err != nil {
			return p, pki.Malformed("%s must be a whole number (0: no limit of the account's own)", n.field)
		}
		*n.out = v
	}
	return p, nil
}
