package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/pki"
)

// MaxBodyBytes bounds every JSON request body (SECURITY.md C-33).
const MaxBodyBytes = 64 << 10

// errUnsupportedMediaType is answered with 415.
var errUnsupportedMediaType = errors.New("unsupported media type")

// validator is implemented by request types that check themselves.
type validator interface{ Validate() error }

// accountBody is the body of a PUT on one of an account's resources (its
// policy, its webhook). It may carry back the read-only fields that GET
// returned, "account_id" among them, so that a client can PUT what it got.
type accountBody interface {
	validator
	// bodyAccount is the body's "account_id", nil when absent.
	bodyAccount() *string
}

// decodeAccountBody decodes dst and returns the account of the path; an
// "account_id" in the body must name that same account. On false the
// problem is written already.
func (a *API) decodeAccountBody(w http.ResponseWriter, r *http.Request, dst accountBody) (string, bool) {
	if err := decode(w, r, dst, false); err != nil {
		a.fail(w, r, err)
		return "", false
	}
	id := chi.URLParam(r, "id")
	if acct := dst.bodyAccount(); acct != nil && *acct != id {
		a.fail(w, r, pki.Malformed(`"account_id" is not the account of the path`))
		return "", false
	}
	return id, true
}

// decode reads one JSON object into dst: at most MaxBodyBytes, content type
// application/json, no unknown fields, nothing after the object; then runs
// dst's Validate. allowEmpty accepts an absent body as "{}".
func decode(w http.ResponseWriter, r *http.Request, dst validator, allowEmpty bool) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	if r.ContentLength == 0 && allowEmpty {
		return dst.Validate()
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return errUnsupportedMediaType
		}
	} else if !allowEmpty {
		return errUnsupportedMediaType
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) {
			if allowEmpty {
				return dst.Validate()
			}
			return pki.Malformed("the request body is empty; a JSON object is required")
		}
		return pki.Malformed("the request body is not valid JSON for this operation: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return pki.Malformed("the request body must hold exactly one JSON object")
	}
	return dst.Validate()
}

// jsonProblem describes a decoding error without echoing the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	// json's unknown-field error names the field, which is the client's own
	// key and useful to it.
	return err.Error()
}
