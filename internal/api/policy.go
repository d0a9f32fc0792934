package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/pkid/pkid/internal/pki"
)

// policyJSON is an account's issuance policy as the admin API shows it.
// uri_namespace, ca_max_validity_days, updated_at and updated_by are read
// only: they explain the policy and are ignored in a PUT.
type policyJSON struct {
	AccountID             string        `json:"account_id"`
	AllowedNames          []string      `json:"allowed_names"`
	AllowURISANs          bool          `json:"allow_uri_sans"`
	URINamespace          string        `json:"uri_namespace,omitempty"`
	KeyTypes              []pki.KeyType `json:"key_types"`
	MaxValidityDays       int           `json:"max_validity_days"`
	CAMaxValidityDays     int           `json:"ca_max_validity_days"`
	MaxActiveCertificates int           `json:"max_active_certificates"`
	MaxIssuancesPerHour   int           `json:"max_issuances_per_hour"`
	UpdatedAt             time.Time     `json:"updated_at"`
	UpdatedBy             string        `json:"updated_by"`
}

func (a *API) policyView(p *pki.AccountPolicy) policyJSON {
	return policyJSON{
		AccountID: p.AccountID, AllowedNames: p.AllowedNames, AllowURISANs: p.AllowURISANs,
		URINamespace: a.certs.URINamespace(p.AccountID), KeyTypes: p.KeyTypes,
		MaxValidityDays: p.MaxValidityDays, CAMaxValidityDays: a.certs.MaxValidityDays(),
		MaxActiveCertificates: p.MaxActiveCertificates, MaxIssuancesPerHour: p.MaxIssuancesPerHour,
		UpdatedAt: p.UpdatedAt.UTC(), UpdatedBy: p.UpdatedBy,
	}
}

// putPolicyRequest replaces a policy: every policy field is required, so
// that a field left out is never silently reset. The read-only fields of
// policyJSON are accepted, so that a GET answer can be edited and sent
// back, and ignored, except that account_id must be the path's.
type putPolicyRequest struct {
	AllowedNames          *[]string      `json:"allowed_names"`
	AllowURISANs          *bool          `json:"allow_uri_sans"`
	KeyTypes              *[]pki.KeyType `json:"key_types"`
	MaxValidityDays       *int           `json:"max_validity_days"`
	MaxActiveCertificates *int           `json:"max_active_certificates"`
	MaxIssuancesPerHour   *int           `json:"max_issuances_per_hour"`

	AccountID         *string    `json:"account_id"`
	URINamespace      *string    `json:"uri_namespace"`
	CAMaxValidityDays *int       `json:"ca_max_validity_days"`
	UpdatedAt         *time.Time `json:"updated_at"`
	UpdatedBy         *string    `json:"updated_by"`
}

func (q *putPolicyRequest) bodyAccount() *string { return q.AccountID }

func (q *putPolicyRequest) Validate() error {
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"allowed_names", q.AllowedNames != nil},
		{"allow_uri_sans", q.AllowURISANs != nil},
		{"key_types", q.KeyTypes != nil},
		{"max_validity_days", q.MaxValidityDays != nil},
		{"max_active_certificates", q.MaxActiveCertificates != nil},
		{"max_issuances_per_hour", q.MaxIssuancesPerHour != nil},
	} {
		if !f.set {
			return pki.Malformed("%q is required: PUT replaces the whole policy (GET it, edit it, PUT it back)", f.name)
		}
	}
	return nil
}

func (q *putPolicyRequest) policy() pki.AccountPolicy {
	return pki.AccountPolicy{
		AllowedNames: *q.AllowedNames, AllowURISANs: *q.AllowURISANs, KeyTypes: *q.KeyTypes,
		MaxValidityDays: *q.MaxValidityDays, MaxActiveCertificates: *q.MaxActiveCertificates,
		MaxIssuancesPerHour: *q.MaxIssuancesPerHour,
	}
}

func (a *API) getPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := a.certs.Policy(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.policyView(p))
}

func (a *API) putPolicy(w http.ResponseWriter, r *http.Request) {
	var req putPolicyRequest
	id, ok := a.decodeAccountBody(w, r, &req)
	if !ok {
		return
	}
	p, _ := principal(r)
	saved, err := a.certs.SetPolicy(r.Context(), p, id, req.policy(), middleware.GetReqID(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.policyView(saved))
}
