// Package api is pkid's JSON interface: the account API, the admin API and the
// public CA endpoints. Each handler limits, decodes strictly, validates, makes
// one use-case call and renders. This is the one place where domain errors
// become HTTP statuses and RFC 9457 problem documents.
package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/pkid/pkid/internal/pki"
)

// ProblemTypePrefix prefixes every problem type: the type of a bad CSR is
// "urn:pkid:error:badCSR".
const ProblemTypePrefix = "urn:pkid:error:"

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance,omitempty"`
}

var requestTitles = map[pki.Kind]string{
	pki.KindMalformed:             "Malformed request",
	pki.KindBadCSR:                "Bad certificate signing request",
	pki.KindBadPublicKey:          "Public key refused",
	pki.KindBadSignatureAlgorithm: "Signature algorithm refused",
	pki.KindBadRevocationReason:   "Revocation reason refused",
}

var conflictTitles = map[pki.Kind]string{
	pki.KindCertificateRevoked: "Certificate revoked",
	pki.KindCertificateExpired: "Certificate expired",
	pki.KindAlreadyExists:      "Already exists",
	pki.KindAlreadyReplaced:    "Certificate already renewed",
	pki.KindNotYetValid:        "Certificate not yet valid",
}

// problemFor maps an error to its problem document. Anything it does not
// recognise is a 500 whose detail says nothing about the cause: the cause is
// logged, not shown.
func problemFor(err error) Problem {
	var (
		re  *pki.RequestError
		pe  *pki.PolicyError
		ce  *pki.ConflictError
		rl  *pki.RateLimitError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return Problem{Type: ProblemTypePrefix + "requestTooLarge", Title: "Request body too large",
			Status: http.StatusRequestEntityTooLarge, Detail: "the request body exceeds " + strconv.FormatInt(mbe.Limit, 10) + " bytes"}
	case errors.Is(err, errUnsupportedMediaType):
		return Problem{Type: ProblemTypePrefix + "unsupportedMediaType", Title: "Unsupported media type",
			Status: http.StatusUnsupportedMediaType, Detail: "send the request body as application/json"}
	case errors.As(err, &re):
		title := requestTitles[re.Kind]
		if title == "" {
			title = "Bad request"
		}
		return Problem{Type: ProblemTypePrefix + string(re.Kind), Title: title, Status: http.StatusBadRequest, Detail: re.Detail}
	case errors.As(err, &pe):
		title := pe.Title
		if title == "" {
			title = "Forbidden"
		}
		return Problem{Type: ProblemTypePrefix + string(pe.Kind), Title: title, Status: http.StatusForbidden, Detail: pe.Detail}
	case errors.As(err, &ce):
		title := conflictTitles[ce.Kind]
		if title == "" {
			title = "Conflict"
		}
		return Problem{Type: ProblemTypePrefix + string(ce.Kind), Title: title, Status: http.StatusConflict, Detail: ce.Detail}
	case errors.As(err, &rl):
		return Problem{Type: ProblemTypePrefix + "rateLimited", Title: "Too many requests", Status: http.StatusTooManyRequests, Detail: rl.Detail}
	case errors.Is(err, pki.ErrNotFound):
		return Problem{Type: ProblemTypePrefix + "notFound", Title: "Not found", Status: http.StatusNotFound, Detail: "no such resource"}
	case errors.Is(err, pki.ErrUnauthenticated):
		return Problem{Type: ProblemTypePrefix + "unauthenticated", Title: "Authentication required", Status: http.StatusUnauthorized,
			Detail: "the bearer token is missing, malformed, expired or revoked"}
	case errors.Is(err, pki.ErrUnavailable):
		return Problem{Type: ProblemTypePrefix + "serviceUnavailable", Title: "Service unavailable", Status: http.StatusServiceUnavailable,
			Detail: "a dependency of pkid is unavailable; nothing was changed, retry later"}
	default:
		return Problem{Type: ProblemTypePrefix + "serverInternal", Title: "Internal error", Status: http.StatusInternalServerError,
			Detail: "pkid could not complete the request; it has been logged"}
	}
}

// WriteError renders err as a problem document. 5xx causes are logged with
// the request id; 4xx are the caller's and logged at debug level only.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := problemFor(err)
	p.Instance = r.URL.Path
	h := w.Header()
	switch p.Status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	case http.StatusTooManyRequests:
		var rl *pki.RateLimitError
		if errors.As(err, &rl) {
			h.Set("Retry-After", strconv.Itoa(max(1, int((rl.RetryAfter+time.Second-1)/time.Second))))
		}
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", "5")
	}
	lvl := slog.LevelDebug
	if p.Status >= 500 {
		lvl = slog.LevelError
	}
	log.Log(r.Context(), lvl, "request refused", "status", p.Status, "type", p.Type,
		"error", err.Error(), "request_id", middleware.GetReqID(r.Context()))
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeJSON renders v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
