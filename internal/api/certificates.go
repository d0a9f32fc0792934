package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/pki"
)

type issueRequest struct {
	CSR          string `json:"csr"`
	ValidityDays *int   `json:"validity_days"`
}

func (q *issueRequest) Validate() error {
	if q.CSR == "" {
		return pki.Malformed(`the "csr" field is required: a PEM certificate signing request`)
	}
	if q.ValidityDays != nil && *q.ValidityDays < 1 {
		return pki.Malformed(`"validity_days" must be at least 1`)
	}
	return nil
}

func (a *API) issue(w http.ResponseWriter, r *http.Request) {
	var req issueRequest
	if err := decode(w, r, &req, false); err != nil {
		a.fail(w, r, err)
		return
	}
	p, acct := principal(r)
	days := 0
	if req.ValidityDays != nil {
		days = *req.ValidityDays
	}
	c, err := a.certs.Issue(r.Context(), p, acct, ca.IssueRequest{
		CSR: req.CSR, ValidityDays: days, RequestID: middleware.GetReqID(r.Context()),
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/certificates/"+c.Serial.String())
	writeJSON(w, http.StatusCreated, a.certificateView(c))
}

func (a *API) certificateView(c *pki.Certificate) certificateJSON {
	return certificateView(c, a.certs.Hierarchy().ChainPEM(), a.certs.Now())
}

// serialParam parses the {serial} path parameter. A malformed serial is 400
// (SECURITY.md V-05); a well-formed one that is not found, or not the
// caller's, is 404.
func serialParam(r *http.Request) (pki.Serial, error) {
	s, err := pki.ParseSerial(chi.URLParam(r, "serial"))
	if err != nil {
		return "", pki.Malformed("the serial must be a hexadecimal number of at most 20 octets")
	}
	return s, nil
}

func (a *API) getCertificate(w http.ResponseWriter, r *http.Request) {
	serial, err := serialParam(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p, _ := principal(r)
	c, err := a.certs.Certificate(r.Context(), p, serial)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.certificateView(c))
}

type certificateList struct {
	Certificates []certificateJSON `json:"certificates"`
	NextCursor   string            `json:"next_cursor"`
}

// listCertificates serves both the account API (the caller's own
// certificates, whatever account_id says) and the admin API (any account).
func (a *API) listCertificates(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryLimit(r, 500)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p, _ := principal(r)
	f := pki.CertificateFilter{
		Status: pki.Status(q.Get("status")),
		Cursor: q.Get("cursor"),
		Limit:  limit,
	}
	if p.Kind == pki.PrincipalAdmin {
		f.AccountID = q.Get("account_id")
	}
	certs, next, err := a.certs.Certificates(r.Context(), p, f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := certificateList{Certificates: make([]certificateJSON, 0, len(certs)), NextCursor: next}
	for _, c := range certs {
		out.Certificates = append(out.Certificates, a.certificateView(c))
	}
	writeJSON(w, http.StatusOK, out)
}
