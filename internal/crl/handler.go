package crl

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// maxAge is the longest a relying party or proxy may reuse a CRL without
// asking again: a revocation must reach it within seconds, and a 304 costs
// next to nothing.
const maxAge = 60 * time.Second

// Handler serves the CRLs a Cache holds.
type Handler struct {
	cache        *Cache
	root         func() string
	intermediate func() string
	generation   func(gen int) (issuerID string, ok bool)
	now          func() time.Time
}

// NewHandler returns the handler that serves, from cache, the CRL of the
// issuer intermediateID returns at /crl and /crl.pem and that of rootID at
// /ca/root.crl. now is the clock that decides whether a CRL has expired;
// time.Now when nil.
func NewHandler(cache *Cache, rootID, intermediateID func() string, now func() time.Time) *Handler {
	if now == nil {
		now = time.Now
	}
	return &Handler{cache: cache, root: rootID, intermediate: intermediateID, now: now}
}

// ByGeneration makes h also serve the CRL of each live intermediate at
// /crl/{generation} (DER) and /crl/{generation}.pem, the distribution points
// that the certificates of intermediates made by `pkid ca rotate` name.
// issuer returns the ID of the live intermediate of a generation, ok false
// when there is none (404). It returns h.
func (h *Handler) ByGeneration(issuer func(gen int) (issuerID string, ok bool)) *Handler {
	h.generation = issuer
	return h
}

// Routes registers GET (and HEAD) /crl, /crl.pem and /ca/root.crl on r, and
// /crl/{generation}[.pem] after ByGeneration.
func (h *Handler) Routes(r chi.Router) {
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		if h.generation != nil {
			r.MethodFunc(m, "/crl/{generation}", h.serveGeneration)
		}
		r.MethodFunc(m, "/crl", func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, h.intermediate(), false) })
		r.MethodFunc(m, "/crl.pem", func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, h.intermediate(), true) })
		r.MethodFunc(m, "/ca/root.crl", func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, h.root(), false) })
	}
}

// serve answers with the CRL of issuerID, DER or PEM, with validators and
// caching headers; http.ServeContent evaluates If-None-Match (which wins)
// and If-Modified-Since (RFC 9110 §13.2.2) and answers 304 or 200.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, issuerID string, asPEM bool) {
	held := h.cache.lookup(issuerID)
	now := h.now()
	switch {
	case held == nil:
		unavailable(w, "no CRL has been published yet")
		return
	case !now.Before(held.crl.NextUpdate):
		// Never serve an expired CRL: OpenSSL would then refuse every
		// certificate, which is an outage; a 503 says what is wrong.
		unavailable(w, "the newest CRL passed its nextUpdate at "+held.crl.NextUpdate.UTC().Format(time.RFC3339)+" and no newer one has been published")
		return
	}
	body, contentType, etag := held.crl.DER, "application/pkix-crl", held.etag
	if asPEM {
		// Another representation, so another strong validator.
		body, contentType, etag = held.pemBytes(), "application/x-pem-file", strings.TrimSuffix(held.etag, `"`)+`-pem"`
	}
	age := min(maxAge, held.crl.NextUpdate.Sub(now)).Truncate(time.Second)
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set("ETag", etag)
	hd.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(age.Seconds())))
	if held.sameSecond && r.Header.Get("If-Modified-Since") != "" {
		// Last-Modified names this CRL and the one before it alike: only
		// the ETag may answer 304.
		r = r.Clone(r.Context())
		r.Header.Del("If-Modified-Since")
	}
	http.ServeContent(w, r, "", held.crl.ThisUpdate, bytes.NewReader(body))
}

// unavailable answers 503 with an RFC 9457 problem.
// maxGenerationDigits bounds the generation in /crl/{generation}: a
// million rotations is more than any CA makes.
const maxGenerationDigits = 6

// serveGeneration serves /crl/{generation} and /crl/{generation}.pem: the
// generation is a decimal number without leading zeros, so that each CRL
// has one URL.
func (h *Handler) serveGeneration(w http.ResponseWriter, r *http.Request) {
	param := chi.URLParam(r, "generation")
	digits, asPEM := strings.CutSuffix(param, ".pem")
	gen, err := strconv.Atoi(digits)
	if err != nil || len(digits) > maxGenerationDigits || gen < 1 || strconv.Itoa(gen) != digits {
		notFound(w, "no CRL at this path: /crl/ is followed by an intermediate's generation, e.g. /crl/2")
		return
	}
	id, ok := h.generation(gen)
	if !ok {
		notFound(w, "no live intermediate of generation "+digits)
		return
	}
	h.serve(w, r, id, asPEM)
}

// notFound writes a 404 problem, as internal/api words it.
func notFound(w http.ResponseWriter, detail string) {
	status := http.StatusNotFound
	hd := w.Header()
	hd.Set("Content-Type", "application/problem+json")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":   "urn:pkid:error:notFound",
		"title":  "Not found",
		"status": status,
		"detail": detail,
	})
}

func unavailable(w http.ResponseWriter, detail string) {
	hd := w.Header()
	hd.Set("Content-Type", "application/problem+json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Retry-After", "5")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":   "urn:pkid:error:serviceUnavailable",
		"title":  "Service unavailable",
		"status": http.StatusServiceUnavailable,
		"detail": detail,
	})
}
