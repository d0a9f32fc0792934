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
