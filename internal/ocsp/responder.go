package ocsp

import (
	"crypto"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
)

// Metrics receives one observation per answer: status is one of the Status
// constants, source one of the Source constants. The server's Prometheus
// registry implements it; it must be cheap and safe for concurrent use.
type Metrics interface {
	OCSPAnswered(status, source string)
}

type nopMetrics struct{}

func (nopMetrics) OCSPAnswered(string, string) {}

// Responder answers OCSP requests over HTTP from a Cache.
type Responder struct {
	cache   *Cache
	issuers *issuerTables
	signer  func(issuerID string) *issuance.Issuer
	log     *slog.Logger
	metrics Metrics
	now     func() time.Time
	bufs    sync.Pool // *[]byte of maxRequestSize+1: request bodies
}

// NewResponder returns a responder that serves from c. issuers returns the
// certificates of the issuing CAs it answers for (several during a
// rollover); it is called on every request and should be cheap: the name
// and key hashes are computed again only when the certificates it returns
// change. signer returns the delegated OCSP responder of the issuer with
// this ID (each issuer has its own: RFC 6960 §4.2.2.2), used only to sign
// the SHA-256 form of a response on first demand, and only if that issuer
// certified it. log receives debug lines about refused requests
// and errors; m may be nil.
func NewResponder(c *Cache, issuers func() []*x509.Certificate, signer func(issuerID string) *issuance.Issuer, log *slog.Logger, m Metrics) *Responder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = nopMetrics{}
	}
	r := &Responder{
		cache:   c,
		issuers: &issuerTables{current: issuers},
		signer:  signer,
		log:     log,
		metrics: m,
		now:     c.opts.Now,
	}
	r.bufs.New = func() any {
		b := make([]byte, bufSize)
		return &b
	}
	return r
}

// Path is where the responder is served: POST Path, GET Path/{base64
// request}.
const Path = "/ocsp"

// Routes registers the responder on router: POST /ocsp and GET /ocsp/{base64
// request}; ServeHTTP finds the request in the path itself. Other methods
// get 405.
func (r *Responder) Routes(router chi.Router) {
	router.Handle(Path, r)
	router.Handle(Path+"/*", r)
}

// ServeHTTP answers a request for Path or a path below it, without needing
// a router in front (pkid serves /ocsp this way: a router costs two
// allocations and a copy of the request, a third of the responder's own
// work). The GET form's request is everything after "/ocsp/" in the path as
// sent (RawPath when the client escaped anything, as a router would route
// it), so a request whose base64 holds "/", "%2F", "+" or "%2B" is read as
// sent; nothing in front of the responder may clean paths (no
// middleware.CleanPath or StripSlashes). A path outside Path is a malformed
// request.
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	p := req.URL.RawPath
	if p == "" {
		p = req.URL.Path
	}
	rest, ok := strings.CutPrefix(p, Path)
	if !ok || (rest != "" && rest[0] != '/') {
		r.fail(w, req, http.StatusNotFound, malformedBody, StatusMalformed, SourceNone, errNotResponderPath)
		return
	}
	if rest != "" {
		rest = rest[1:]
	}
	r.serve(w, req, rest)
}

var errNotResponderPath = requestError("not a path of the responder")

// Header values, shared by every answer. Each slice has len == cap, so a
// middleware that appends to one gets a copy instead of changing it.
var (
	contentType     = []string{"application/ocsp-response"}
	noCache         = []string{"max-age=0, no-cache"}
	errorLength     = []string{strconv.Itoa(len(malformedBody))}
	allowedMethods  = []string{"GET, HEAD, POST"}
	cacheDirectives = ", public, no-transform, must-revalidate"
)

// serve answers one request; encoded is the GET form's base64 request (the
// path after "/ocsp/"), ignored for POST.
func (r *Responder) serve(w http.ResponseWriter, req *http.Request, encoded string) {
	bufp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bufp)

	var der []byte
	var err error
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		der, err = decodeGET(encoded, *bufp)
	case http.MethodPost:
		der, err = readBody(req, (*bufp)[:maxRequestSize+1])
	default:
		w.Header()["Allow"] = allowedMethods
		r.fail(w, req, http.StatusMethodNotAllowed, malformedBody, StatusMalformed, SourceNone, nil)
		return
	}
	switch {
	case errors.Is(err, errTooLarge):
		r.fail(w, req, http.StatusRequestEntityTooLarge, malformedBody, StatusMalformed, SourceNone, err)
		return
	case err != nil:
		r.fail(w, req, http.StatusBadRequest, malformedBody, StatusMalformed, SourceNone, err)
		return
	}
	r.answer(w, req, der)
}

// readBody reads a POST body into buf (of maxRequestSize+1 bytes), refusing
// one that is larger than maxRequestSize without reading further.
func readBody(req *http.Request, buf []byte) ([]byte, error) {
	if req.ContentLength > maxRequestSize {
		return nil, errTooLarge
	}
	n, err := io.ReadFull(req.Body, buf)
	switch {
	case err == nil:
		return nil, errTooLarge
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return buf[:n], nil
	}
	return nil, requestError("reading the body: " + err.Error())
}

// answer answers one DER request.
func (r *Responder) answer(w http.ResponseWriter, req *http.Request, der []byte) {
	q, err := parseRequest(der)
	if err != nil {
		r.fail(w, req, http.StatusBadRequest, malformedBody, StatusMalformed, SourceNone, err)
		return
	}
	var alg int
	switch q.hash {
	case crypto.SHA1:
		alg = hashSHA1
	case crypto.SHA256:
		alg = hashSHA256
	default:
		r.fail(w, req, http.StatusOK, unauthorizedBody, StatusUnauthorized, SourceNone, errUnsupportedHash)
		return
	}
	auth := r.issuers.load().match(alg, q.nameHash, q.keyHash)
	if auth == nil {
		r.fail(w, req, http.StatusOK, unauthorizedBody, StatusUnauthorized, SourceNone, errOtherIssuer)
		return
	}
	k, ok := keyFromInteger(q.serial)
	if !ok {
		r.fail(w, req, http.StatusOK, unauthorizedBody, StatusUnauthorized, SourceNone, errNotPkidSerial)
		return
	}
	e, source, err := r.cache.lookup(req.Context(), k)
	switch {
	case errors.Is(err, pki.ErrNotFound):
		r.fail(w, req, http.StatusOK, unauthorizedBody, StatusUnauthorized, source, err)
		return
	case err != nil:
		r.fail(w, req, http.StatusServiceUnavailable, tryLaterBody, StatusTryLater, source, err)
		return
	}
	if e.issuerID != auth.id {
		r.fail(w, req, http.StatusOK, unauthorizedBody, StatusUnauthorized, source, errOtherIssuer)
		return
	}
	body, etag, length := e.der, e.etag, e.contentLength
	if alg == hashSHA256 {
		v, signed, err := r.sha256Form(e, auth)
		switch {
		case errors.Is(err, errNoSigner):
			r.fail(w, req, http.StatusOK, unauthorizedBody, StatusUnauthorized, source, err)
			return
		case err != nil:
			r.log.Error("signing the SHA-256 form of an OCSP response failed", "serial", e.key.serial(), "error", err)
			r.fail(w, req, http.StatusServiceUnavailable, tryLaterBody, StatusTryLater, source, err)
			return
		case signed:
			source = SourceSigned
		}
		body, etag, length = v.der, v.etag, v.contentLength
	}

	h := w.Header()
	h["Content-Type"] = contentType
	h["Cache-Control"] = []string{cacheControl(e.nextUpdate, r.now())}
	h["Last-Modified"] = e.lastModified
	h["Expires"] = e.expires
	h["Etag"] = etag
	r.metrics.OCSPAnswered(e.status(), source)
	if inm := req.Header["If-None-Match"]; len(inm) > 0 && etagMatches(inm, etag[0]) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Length"] = length
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// Reasons for an unauthorized answer, for the debug log.
var (
	errUnsupportedHash = errors.New("ocsp: CertID hash algorithm other than SHA-1 or SHA-256")
	errOtherIssuer     = errors.New("ocsp: CertID names an issuer this responder does not answer for")
	errNotPkidSerial   = errors.New("ocsp: serial cannot be one of pkid's")
	errNoSigner        = errors.New("ocsp: no delegated responder may sign for this issuer")
)

// fail writes an unsigned error response. Errors are never cached: the
// next attempt may succeed (a certificate issued a moment later, a database
// back up).
func (r *Responder) fail(w http.ResponseWriter, req *http.Request, code int, body []byte, status, source string, err error) {
	h := w.Header()
	h["Content-Type"] = contentType
	h["Cache-Control"] = noCache
	h["Content-Length"] = errorLength
	w.WriteHeader(code)
	if req.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	r.metrics.OCSPAnswered(status, source)
	if err != nil && r.log.Enabled(req.Context(), slog.LevelDebug) {
		r.log.LogAttrs(req.Context(), slog.LevelDebug, "OCSP request refused",
			slog.String("status", status), slog.Int("http_status", code), slog.String("error", err.Error()))
	}
}

// cacheControl returns the Cache-Control of a successful answer (RFC 5019
// §6.2): caches may keep it until nextUpdate, and no longer.
func cacheControl(nextUpdate, now time.Time) string {
	maxAge := int64(nextUpdate.Sub(now) / time.Second)
	if maxAge < 0 {
		maxAge = 0
	}
	var b [80]byte
	out := append(b[:0], "max-age="...)
	out = strconv.AppendInt(out, maxAge, 10)
	out = append(out, cacheDirectives...)
	return string(out)
}

// etagMatches reports whether an If-None-Match header (possibly several,
// each a list) names etag or "*", with the weak comparison that RFC 9110
// §13.1.2 prescribes for it.
func etagMatches(values []string, etag string) bool {
	for _, v := range values {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			tok = strings.TrimPrefix(strings.TrimSpace(tok), "W/")
			if tok == etag || tok == "*" {
				return true
			}
		}
	}
	return false
}

// sha256Form returns the SHA-256-CertID form of e, signing it on first
// demand, and whether this call signed it. It is made only from e itself:
// the stored response is parsed, its signature verified against the issuer,
// and the same status with the same thisUpdate and nextUpdate is signed
// with the other CertID hash. So it can never say more, or anything
// fresher, than the stored response it was made from, and it is dropped
// with that response.
func (r *Responder) sha256Form(e *entry, a *authority) (*variant, bool, error) {
	if v := e.sha256.Load(); v != nil {
		return v, false, nil
	}
	e.signMu.Lock()
	defer e.signMu.Unlock()
	if v := e.sha256.Load(); v != nil {
		return v, false, nil
	}
	signer := r.signer(a.id)
	if !signer.CanSignOCSPFor(a.cert) {
		return nil, false, errNoSigner
	}
	st, err := statusOf(e, a.cert)
	if err != nil {
		return nil, false, err
	}
	der, err := signer.SignOCSP(a.cert, st, crypto.SHA256)
	if err != nil {
		return nil, false, err
	}
	v := &variant{der: der}
	v.etag, v.contentLength = bodyHeaders(der)
	e.sha256.Store(v)
	return v, true, nil
}
