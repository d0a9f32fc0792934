package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/client"
)

// TestErrors: whatever a refusal looks like on the wire, it becomes an
// *Error whose text is safe to print.
func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		contentType string
		retryAfter  string
		body        string
		want        client.Error
	}{
		{"pkid problem", 409, "application/problem+json", "",
			`{"type":"urn:pkid:error:certificateRevoked","title":"Certificate revoked","status":409,"detail":"certificate 70ab is revoked","instance":"/api/v1/certificates/70ab/renew","extra":1}`,
			client.Error{Status: 409, Type: "urn:pkid:error:certificateRevoked", Title: "Certificate revoked", Detail: "certificate 70ab is revoked", Instance: "/api/v1/certificates/70ab/renew"}},
		{"rate limited", 429, "application/problem+json", "7",
			`{"type":"urn:pkid:error:rateLimited","title":"Too many requests","status":429,"detail":"slow down"}`,
			client.Error{Status: 429, Type: "urn:pkid:error:rateLimited", Title: "Too many requests", Detail: "slow down", RetryAfter: 7 * time.Second}},
		{"a proxy's HTML page", 502, "text/html", "", "<html>\n<b>Bad gateway</b>\n</html>",
			client.Error{Status: 502, Title: "Bad Gateway", Detail: "<html> <b>Bad gateway</b> </html>"}},
		{"empty body", 500, "", "", "",
			client.Error{Status: 500, Title: "Internal Server Error", Detail: "the response carried no problem document"}},
		{"terminal escapes in the problem", 400, "application/problem+json", "",
			"{\"title\":\"Bad\\u001b[2J request\",\"status\":400,\"detail\":\"a\\u202eb\\nc\"}",
			client.Error{Status: 400, Title: "Bad [2J request", Detail: "a b c"}},
		{"a JSON body that is no problem", 404, "application/json", "", `{"hello":"world"}`,
			client.Error{Status: 404, Title: "Not Found", Detail: `{"hello":"world"}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c, err := client.New(srv.URL, nil, "t")
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Issue(context.Background(), client.IssueRequest{CSR: "x"})
			var pe *client.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Issue: %v, want *client.Error", err)
			}
			if *pe != tc.want {
				t.Errorf("got  %#v\nwant %#v", *pe, tc.want)
			}
			if strings.ContainsAny(pe.Error(), "\x1b\n\u202e") {
				t.Errorf("Error() carries control characters: %q", pe.Error())
			}
		})
	}
}

func TestErrorKindAndRetryable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err       client.Error
		kind      string
		retryable bool
	}{
		{client.Error{Status: 409, Type: "urn:pkid:error:alreadyReplaced"}, "alreadyReplaced", false},
		{client.Error{Status: 403, Type: "urn:pkid:error:accountSuspended"}, "accountSuspended", false},
		{client.Error{Status: 429, Type: "urn:pkid:error:rateLimited"}, "rateLimited", true},
		{client.Error{Status: 503, Type: "urn:pkid:error:serviceUnavailable"}, "serviceUnavailable", true},
		{client.Error{Status: 502, Type: "about:blank"}, "about:blank", true},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			if tc.err.Kind() != tc.kind || tc.err.Retryable() != tc.retryable {
				t.Errorf("Kind %q Retryable %v", tc.err.Kind(), tc.err.Retryable())
			}
		})
	}
}

func TestRequests(t *testing.T) {
	t.Parallel()
	type seen struct{ method, path, auth, contentType, body string }
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 1024)
		n, _ := r.Body.Read(b)
		got = seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b[:n])}
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost && !strings.HasSuffix(r.URL.Path, "/revoke") {
			w.WriteHeader(http.StatusCreated)
		}
		_, _ = w.Write([]byte(`{"serial":"70ab","status":"active","renewed_from":"70aa","unknown_field":true}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	c, err := client.New(srv.URL+"/prefix/", nil, "tok")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() (*client.Certificate, error)
		want seen
	}{
		{"issue", func() (*client.Certificate, error) {
			return c.Issue(ctx, client.IssueRequest{CSR: "CSR", ValidityDays: 7})
		}, seen{"POST", "/prefix/api/v1/certificates", "Bearer tok", "application/json", `{"csr":"CSR","validity_days":7}`}},
		{"renew, same key", func() (*client.Certificate, error) {
			return c.Renew(ctx, "70aa", client.RenewRequest{})
		}, seen{"POST", "/prefix/api/v1/certificates/70aa/renew", "Bearer tok", "application/json", `{}`}},
		{"renew, rekey", func() (*client.Certificate, error) {
			return c.Renew(ctx, "70aa", client.RenewRequest{CSR: "CSR", RevokePrevious: true})
		}, seen{"POST", "/prefix/api/v1/certificates/70aa/renew", "Bearer tok", "application/json", `{"csr":"CSR","revoke_previous":true}`}},
		{"revoke", func() (*client.Certificate, error) {
			return c.Revoke(ctx, "70aa", "keyCompromise")
		}, seen{"POST", "/prefix/api/v1/certificates/70aa/revoke", "Bearer tok", "application/json", `{"reason":"keyCompromise"}`}},
		{"get", func() (*client.Certificate, error) {
			return c.Certificate(ctx, "70aa")
		}, seen{"GET", "/prefix/api/v1/certificates/70aa", "Bearer tok", "", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := tc.call()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("sent %+v\nwant %+v", got, tc.want)
			}
			if cert.Serial != "70ab" || cert.RenewedFrom != "70aa" {
				t.Errorf("decoded %+v", cert)
			}
		})
	}
}

func TestSerialsStayInThePath(t *testing.T) {
	t.Parallel()
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls++ }))
	defer srv.Close()
	c, _ := client.New(srv.URL, nil, "tok")
	for _, serial := range []string{"", "../../admin/api/accounts", "70ab/revoke", "70ab?x=1", strings.Repeat("a", 41)} {
		if _, err := c.Renew(context.Background(), serial, client.RenewRequest{}); err == nil {
			t.Errorf("Renew(%q) was sent", serial)
		}
		if _, err := c.Revoke(context.Background(), serial, ""); err == nil {
			t.Errorf("Revoke(%q) was sent", serial)
		}
	}
	if calls != 0 {
		t.Errorf("%d requests reached the server", calls)
	}
}

func TestParseServerURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want, err string
	}{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", ""},
		{"https://pkid.example/base/", "https://pkid.example/base", ""},
		{"ftp://pkid.example", "", "http:// or https://"},
		{"pkid.example:8080", "", "http:// or https://"},
		{"https://user:pw@pkid.example", "", "credentials"},
		{"https://pkid.example/?x=1", "", "query"},
		{"https://", "", "no host"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			u, err := client.ParseServerURL(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseServerURL: %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil || u.String() != tc.want {
				t.Fatalf("ParseServerURL: %v %v", u, err)
			}
		})
	}
}
