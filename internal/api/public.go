package api

import (
	"bytes"
	"encoding/pem"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/pki"
)

// PublicRoutes registers the unauthenticated CA endpoints on r: the root,
// the chain and the issuing intermediate (the current one), every live
// intermediate in one bundle, and each live intermediate by generation (the
// caIssuers URL of its certificates). They change only when the hierarchy
// does, so caches may keep them for an hour.
func (a *API) PublicRoutes(r chi.Router) {
	r.Get("/ca/root.pem", a.rootPEM)
	r.Get("/ca/chain.pem", a.chainPEM)
	r.Get("/ca/bundle.pem", a.bundlePEM)
	r.Get("/ca/issuer.cer", a.issuerDER)
	r.Get("/ca/issuer/{generation:[1-9][0-9]{0,5}}.cer", a.issuerByGeneration)
	r.Get("/ca/intermediates", a.intermediates)
}

// intermediateView is a live intermediate as GET /ca/intermediates lists
// it. Paths are relative to pkid's public URL, so that a client that knows
// one pkid URL (pkid crl fetch --url, pkid-edge --crl) finds the others.
type intermediateView struct {
	Generation      int        `json:"generation"`
	Current         bool       `json:"current"`
	ID              string     `json:"id"`
	Subject         string     `json:"subject"`
	NotBefore       time.Time  `json:"not_before"`
	NotAfter        time.Time  `json:"not_after"`
	CRLPath         string     `json:"crl_path"`
	CertificatePath string     `json:"certificate_path"`
	CertificatePEM  string     `json:"certificate"`
	SupersededAt    *time.Time `json:"superseded_at,omitempty"`
}

// intermediates lists the live intermediates, the current one first: every
// CA whose certificates a relying party may meet, and where each one's CRL
// is.
func (a *API) intermediates(w http.ResponseWriter, r *http.Request) {
	var out []intermediateView
	for _, in := range a.certs.Hierarchy().Intermediates() {
		c := in.Issuer.Cert
		v := intermediateView{
			Generation: in.Generation, Current: in.Superseded.IsZero(), ID: in.Issuer.ID,
			Subject: c.Subject.String(), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
			CRLPath: in.CRLPath(), CertificatePath: in.IssuerPath(),
			CertificatePEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})),
		}
		if !v.Current {
			at := in.Superseded.UTC()
			v.SupersededAt = &at
		}
		out = append(out, v)
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, map[string]any{"intermediates": out})
}

func servePublic(w http.ResponseWriter, r *http.Request, contentType string, modified time.Time, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeContent(w, r, "", modified, bytes.NewReader(body))
}

func (a *API) rootPEM(w http.ResponseWriter, r *http.Request) {
	root := a.certs.Hierarchy().Root()
	servePublic(w, r, "application/x-pem-file", root.NotBefore,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}))
}

func (a *API) chainPEM(w http.ResponseWriter, r *http.Request) {
	h := a.certs.Hierarchy()
	servePublic(w, r, "application/pem-certificate-chain", h.Intermediate().Cert.NotBefore, h.ChainPEM())
}

func (a *API) bundlePEM(w http.ResponseWriter, r *http.Request) {
	h := a.certs.Hierarchy()
	servePublic(w, r, "application/pem-certificate-chain", h.Intermediate().Cert.NotBefore, h.BundlePEM())
}

// issuerByGeneration serves /ca/issuer/{generation}.cer, the intermediate
// of that generation while it is live.
func (a *API) issuerByGeneration(w http.ResponseWriter, r *http.Request) {
	gen, err := strconv.Atoi(chi.URLParam(r, "generation"))
	in := a.certs.Hierarchy().IntermediateByGeneration(gen)
	if err != nil || in == nil {
		a.fail(w, r, pki.ErrNotFound)
		return
	}
	servePublic(w, r, "application/pkix-cert", in.Issuer.Cert.NotBefore, in.Issuer.Cert.Raw)
}

func (a *API) issuerDER(w http.ResponseWriter, r *http.Request) {
	inter := a.certs.Hierarchy().Intermediate().Cert
	servePublic(w, r, "application/pkix-cert", inter.NotBefore, inter.Raw)
}
