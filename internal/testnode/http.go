package testnode

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/account"
	"github.com/pkid/pkid/internal/pki"
)

// AdminToken creates the administrator username on a node's account service
// and returns an admin API token for it, valid for an hour.
func AdminToken(tb testing.TB, accounts *account.Service, username string) string {
	tb.Helper()
	ctx := context.Background()
	system := pki.Principal{Kind: pki.PrincipalSystem}
	if _, err := accounts.CreateAdmin(ctx, system, username, "a long enough password"); err != nil {
		tb.Fatal(err)
	}
	tok, err := accounts.MintAdminToken(ctx, system, username, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Response is an HTTP answer, its body read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Call sends a request to a node's API through client. A token, unless "",
// goes as a bearer token. A body, unless nil, goes as application/json: a
// string or []byte as it is (to send malformed JSON), anything else
// marshalled.
func Call(tb testing.TB, client *http.Client, method, url, token string, body any) Response {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// JSON decodes the body as a JSON object; the test fails when it is not one.
func (r Response) JSON(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		tb.Fatalf("not a JSON object: %v: %s", err, r.Body)
	}
	return m
}
