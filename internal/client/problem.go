package client

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ProblemTypePrefix is the prefix of pkid's problem types; Error.Kind strips
// it.
const ProblemTypePrefix = "urn:pkid:error:"

// maxProblemText bounds each text field of a problem kept in an Error: the
// server's words reach a terminal, so they are also stripped of control
// characters (a hostile or broken server must not be able to move the cursor
// or rewrite what the user reads).
const maxProblemText = 512

// Error is a refusal by pkid: the HTTP status and the RFC 9457 problem
// document that came with it. A response that was not a problem document
// (a proxy's HTML error page, say) is still an Error, with the status text as
// its title and a short, sanitised excerpt of the body as its detail.
type Error struct {
	Status   int    // HTTP status code
	Type     string // problem type URI, e.g. urn:pkid:error:certificateRevoked
	Title    string // short, stable summary of the problem type
	Detail   string // what went wrong with this request
	Instance string // the request path the problem is about
	// RetryAfter is the server's Retry-After (429, 503), zero when absent.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pkid answered %d", e.Status)
	if e.Title != "" {
		b.WriteString(" ")
		b.WriteString(e.Title)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Kind returns the problem type without pkid's prefix ("certificateRevoked"),
// or the whole type when it is not one of pkid's.
func (e *Error) Kind() string { return strings.TrimPrefix(e.Type, ProblemTypePrefix) }

// Retryable reports whether the same request may succeed later without any
// change on the caller's side: rate limiting (429), a request timeout (408)
// and the server's own failures (5xx). Every other refusal needs someone to
// act first, so repeating it is pointless.
func (e *Error) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout || e.Status >= 500
}

// problemJSON is the wire form of a problem document; unknown members are
// allowed (RFC 9457 §3.2 extension members).
type problemJSON struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance"`
}

// errorFromResponse builds the Error for a non-success answer whose body
// (already read, and capped) is body.
func errorFromResponse(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var p problemJSON
	if (mt == "application/problem+json" || mt == "application/json") && json.Unmarshal(body, &p) == nil && (p.Title != "" || p.Detail != "") {
		e.Type = clean(p.Type)
		e.Title = clean(p.Title)
		e.Detail = clean(p.Detail)
		e.Instance = clean(p.Instance)
		return e
	}
	e.Title = http.StatusText(resp.StatusCode)
	if e.Title == "" {
		e.Title = "Unexpected answer"
	}
	e.Detail = clean(string(body))
	if e.Detail == "" {
		e.Detail = "the response carried no problem document"
	}
	return e
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// clean makes server-supplied text safe to print: control and format
// characters (escape sequences, bidirectional overrides) become spaces,
// runs of white space collapse, and the result is at most maxProblemText
// bytes.
func clean(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if b.Len()+len(string(r)) > maxProblemText {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
