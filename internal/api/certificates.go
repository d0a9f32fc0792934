package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

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
	return certificateView(c, a.certs.Hierarchy().ChainPEMFor(c.IssuerID), a.certs.Now())
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
// certificates, whatever account_id says) and the admin API (any account,
// and the whole listing as CSV when the client asks for text/csv). Query
// parameters are checked strictly: an unknown or repeated one, or a value
// that does not parse, is a 400 naming it, since a search that silently
// ignored a misspelt filter would answer with everything.
func (a *API) listCertificates(w http.ResponseWriter, r *http.Request) {
	p, _ := principal(r)
	export := false
	if p.Kind == pki.PrincipalAdmin {
		w.Header().Add("Vary", "Accept")
		export = prefersCSV(r.Header.Values("Accept"))
	}
	maxLimit := maxCertificatePage
	if export {
		maxLimit = MaxCSVRows // limit bounds the whole export
	}
	f, err := certificateFilter(r, maxLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if export {
		a.exportCertificates(w, r, p, f)
		return
	}
	if p.Kind != pki.PrincipalAdmin {
		f.AccountID = "" // the use case puts the account's own id there
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

// certificateListParams are the query parameters of the certificate
// listings. Their names are the certificate object's fields they filter on.
var certificateListParams = map[string]bool{
	"account_id": true, "status": true, "common_name": true, "serial_prefix": true,
	"fingerprint_sha256": true, "spki_sha256": true, "expiring_before": true,
	"sort": true, "cursor": true, "limit": true,
}

// maxCertificatePage is the largest page of a JSON listing.
const maxCertificatePage = 500

// certificateFilter parses a listing's query into a filter, with limit at
// most maxLimit. It normalises what users paste: serials and hashes in upper
// case or with colons (as openssl and browsers show them), a serial prefix
// with leading zeros. Whether the values make sense together is for
// ca.Service.Certificates.
func certificateFilter(r *http.Request, maxLimit int) (pki.CertificateFilter, error) {
	q := r.URL.Query()
	for name, vals := range q {
		if !certificateListParams[name] {
			return pki.CertificateFilter{}, pki.Malformed("unknown query parameter %q", truncate(name, 40))
		}
		if len(vals) > 1 {
			return pki.CertificateFilter{}, pki.Malformed("query parameter %s is given more than once", name)
		}
	}
	limit, err := queryLimit(r, maxLimit)
	if err != nil {
		return pki.CertificateFilter{}, err
	}
	f := pki.CertificateFilter{
		AccountID:  q.Get("account_id"),
		Status:     pki.Status(q.Get("status")),
		CommonName: q.Get("common_name"),
		Sort:       pki.CertificateSort(q.Get("sort")),
		Cursor:     q.Get("cursor"),
		Limit:      limit,
	}
	if s := q.Get("serial_prefix"); s != "" {
		serial, err := pki.ParseSerial(s)
		if err != nil {
			return f, pki.Malformed("serial_prefix must be hexadecimal (colons and leading zeros allowed), at most 40 digits, not all zeros")
		}
		f.SerialPrefix = string(serial)
	}
	if f.FingerprintSHA256, err = queryHash(q.Get("fingerprint_sha256"), "fingerprint_sha256"); err != nil {
		return f, err
	}
	if f.SPKISHA256, err = queryHash(q.Get("spki_sha256"), "spki_sha256"); err != nil {
		return f, err
	}
	if s := q.Get("expiring_before"); s != "" {
		if f.ExpiringBefore, err = time.Parse(time.RFC3339, s); err != nil {
			return f, pki.Malformed("expiring_before must be an RFC 3339 time such as 2026-01-31T00:00:00Z")
		}
	}
	return f, nil
}

// queryHash parses a SHA-256 hash given as 64 hexadecimal digits, in either
// case, optionally in colon-separated pairs; "" is nil (no filter).
func queryHash(s, name string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, pki.Malformed("%s must be a SHA-256 hash: 64 hexadecimal digits", name)
	}
	return b, nil
}

// truncate shortens s to at most n bytes for quoting it back in a problem.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
