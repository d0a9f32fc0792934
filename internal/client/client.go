package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxResponseBytes bounds every answer read from pkid: a certificate object
// with its chain is a few KiB, so anything near this is not pkid.
const maxResponseBytes = 1 << 20

// DefaultTimeout bounds one request, connection included, when the caller's
// context has no deadline.
const DefaultTimeout = 30 * time.Second

// Client calls pkid's account API and public CA endpoints. It is safe for
// concurrent use.
type Client struct {
	base  *url.URL
	hc    *http.Client
	token string
}

// New returns a client for the pkid whose base URL is base (http or https,
// no query or fragment; a path prefix is kept). hc carries the requests (its
// TLS configuration decides whom to trust and which client certificate to
// present); nil means a client with DefaultTimeout. token is the account
// token sent as a bearer token; empty sends none, as for renewal with the
// certificate itself.
func New(base string, hc *http.Client, token string) (*Client, error) {
	u, err := ParseServerURL(base)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	return &Client{base: u, hc: hc, token: token}, nil
}

// ParseServerURL checks a pkid base URL: absolute http or https with a host,
// no user information, query or fragment. The trailing slash is dropped.
func ParseServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("client: server URL %q: %w", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("client: server URL %q must start with http:// or https://", s)
	case u.Host == "":
		return nil, fmt.Errorf("client: server URL %q has no host", s)
	case u.User != nil:
		return nil, fmt.Errorf("client: server URL %q must not carry credentials; pass the token separately", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("client: server URL %q must not have a query or fragment", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Certificate is pkid's certificate object (CONTRACT.md).
type Certificate struct {
	Serial            string     `json:"serial"`
	Status            string     `json:"status"`
	Certificate       string     `json:"certificate"` // PEM
	Chain             string     `json:"chain"`       // PEM: intermediate then root
	NotBefore         time.Time  `json:"not_before"`
	NotAfter          time.Time  `json:"not_after"`
	FingerprintSHA256 string     `json:"fingerprint_sha256"`
	AccountID         string     `json:"account_id"`
	CommonName        string     `json:"common_name"`
	RevokedAt         *time.Time `json:"revoked_at,omitempty"`
	RevocationReason  string     `json:"revocation_reason,omitempty"`
	RenewedFrom       string     `json:"renewed_from,omitempty"`
}

// IssueRequest asks for a certificate for a CSR.
type IssueRequest struct {
	CSR          string `json:"csr"`                     // PEM certificate signing request
	ValidityDays int    `json:"validity_days,omitempty"` // 0: the policy's default
}

// RenewRequest asks for a certificate to be renewed. Without CSR the same
// public key is certified again; with one, the new key (a rekey).
type RenewRequest struct {
	CSR            string `json:"csr,omitempty"`
	ValidityDays   int    `json:"validity_days,omitempty"` // 0: the policy's default
	RevokePrevious bool   `json:"revoke_previous,omitempty"`
}

// Issue submits a CSR (POST /api/v1/certificates); it needs a token.
func (c *Client) Issue(ctx context.Context, req IssueRequest) (*Certificate, error) {
	var out Certificate
	if err := c.do(ctx, http.MethodPost, "/api/v1/certificates", req, http.StatusCreated, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Renew renews the certificate serial (POST
// /api/v1/certificates/{serial}/renew), authenticated by the token or, over
// pkid's TLS listener, by the client certificate that is the certificate
// being renewed.
func (c *Client) Renew(ctx context.Context, serial string, req RenewRequest) (*Certificate, error) {
	if err := checkSerial(serial); err != nil {
		return nil, err
	}
	var out Certificate
	if err := c.do(ctx, http.MethodPost, "/api/v1/certificates/"+serial+"/renew", req, http.StatusCreated, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Revoke revokes the certificate serial for reason, an RFC 5280 reason name
// ("" is unspecified); it needs a token. Revoking a revoked certificate
// succeeds and returns it unchanged.
func (c *Client) Revoke(ctx context.Context, serial, reason string) (*Certificate, error) {
	if err := checkSerial(serial); err != nil {
		return nil, err
	}
	var out Certificate
	body := struct {
		Reason string `json:"reason,omitempty"`
	}{reason}
	if err := c.do(ctx, http.MethodPost, "/api/v1/certificates/"+serial+"/revoke", body, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Certificate returns the caller's certificate serial; it needs a token.
func (c *Client) Certificate(ctx context.Context, serial string) (*Certificate, error) {
	if err := checkSerial(serial); err != nil {
		return nil, err
	}
	var out Certificate
	if err := c.do(ctx, http.MethodGet, "/api/v1/certificates/"+serial, nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RootPEM fetches the root certificate (GET /ca/root.pem). Whoever calls it
// must not trust the answer without the user's say-so: see Enroll.
func (c *Client) RootPEM(ctx context.Context) ([]byte, error) {
	resp, body, err := c.send(ctx, http.MethodGet, "/ca/root.pem", nil, false)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errorFromResponse(resp, body)
	}
	return body, nil
}

// do sends a JSON request (nil in: no body) and decodes a JSON answer with
// status want into out; any other status is an *Error.
func (c *Client) do(ctx context.Context, method, path string, in any, want int, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("client: encoding the request: %w", err)
		}
	}
	resp, raw, err := c.send(ctx, method, path, body, in != nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return errorFromResponse(resp, raw)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return fmt.Errorf("client: %s %s answered %d with content type %q, not JSON", method, path, resp.StatusCode, clean(resp.Header.Get("Content-Type")))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("client: %s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// send makes one request and reads at most maxResponseBytes of the answer.
func (c *Client) send(ctx context.Context, method, path string, body []byte, isJSON bool) (*http.Response, []byte, error) {
	u := *c.base
	u.Path += path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, nil, fmt.Errorf("client: %w", err)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("User-Agent", "pkictl")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("client: reading the answer to %s %s: %w", method, path, err)
	}
	if len(raw) > maxResponseBytes {
		return nil, nil, fmt.Errorf("client: the answer to %s %s exceeds %d bytes", method, path, maxResponseBytes)
	}
	return resp, raw, nil
}

// checkSerial refuses a serial that is not 1 to 40 hex digits, before it
// becomes part of a URL path.
func checkSerial(serial string) error {
	if serial == "" || len(serial) > 40 {
		return fmt.Errorf("client: %q is not a serial number", clean(serial))
	}
	for _, c := range serial {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return fmt.Errorf("client: %q is not a serial number", clean(serial))
		}
	}
	return nil
}

// IsKind reports whether err is an *Error whose problem kind is kind (for
// example "alreadyReplaced").
func IsKind(err error, kind string) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind() == kind
}
