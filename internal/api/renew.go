package api

import (
	"net/http"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/pki"
)

type renewRequest struct {
	CSR            string `json:"csr"`
	ValidityDays   *int   `json:"validity_days"`
	RevokePrevious bool   `json:"revoke_previous"`
}

func (q *renewRequest) Validate() error {
	if q.ValidityDays != nil && *q.ValidityDays < 1 {
		return pki.Malformed(`"validity_days" must be at least 1`)
	}
	return nil
}

// renew serves POST /api/v1/certificates/{serial}/renew. It is the one
// account route that needs no token when the request comes over the TLS
// listener with the very certificate being renewed as its client
// certificate: the certificate is then its own credential.
func (a *API) renew(w http.ResponseWriter, r *http.Request) {
	serial, err := serialParam(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p, acct, err := a.renewer(r, serial)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req renewRequest
	if err := decode(w, r, &req, true); err != nil {
		a.fail(w, r, err)
		return
	}
	days := 0
	if req.ValidityDays != nil {
		days = *req.ValidityDays
	}
	c, err := a.certs.Renew(r.Context(), p, acct, ca.RenewRequest{
		Serial: serial, CSR: req.CSR, ValidityDays: days, RevokePrevious: req.RevokePrevious,
		RequestID: middleware.GetReqID(r.Context()),
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/certificates/"+c.Serial.String())
	writeJSON(w, http.StatusCreated, a.certificateView(c))
}

// renewer authenticates a renewal: by the bearer token when there is one,
// otherwise by the verified TLS client certificate, which must be the
// certificate named in the path.
func (a *API) renewer(r *http.Request, serial pki.Serial) (pki.Principal, *pki.Account, error) {
	if h := r.Header.Values("Authorization"); len(h) > 0 {
		if len(h) > 1 {
			return pki.Principal{}, nil, pki.ErrUnauthenticated
		}
		raw, err := auth.BearerToken(h[0])
		if err != nil {
			return pki.Principal{}, nil, err
		}
		return a.authn.Authenticate(r.Context(), raw, pki.TokenAccount)
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return a.certs.AuthenticateCertificate(r.Context(), r.TLS.PeerCertificates[0].Raw, serial)
	}
	return pki.Principal{}, nil, pki.ErrUnauthenticated
}
