package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// authFixture is a fixture plus a store holding an active Enterprise account,
// an administrator's token and an account token, all valid at testNow.
type authFixture struct {
	*fixture
	st   *memStore
	auth *Authenticator
}

const testAdminTokenID = "9f2e7b4c-3d5e-4f60-b7a8-d9e0f1a2b3c4"

func newAuthFixture(t testing.TB) *authFixture {
	t.Helper()
	f := newFixture(t)
	st := newMemStore()
	st.accounts[testAccountID] = &pki.Account{ID: testAccountID, Name: "Acme", Plan: pki.PlanEnterprise, Status: pki.AccountActive}
	st.tokens[testTokenID] = &pki.Token{ID: testTokenID, Kind: pki.TokenAccount, AccountID: testAccountID, Name: "ci", ExpiresAt: testNow.Add(time.Hour)}
	st.tokens[testAdminTokenID] = &pki.Token{ID: testAdminTokenID, Kind: pki.TokenAdmin, AdminID: testAdminID, Name: "cli", ExpiresAt: testNow.Add(time.Hour)}
	return &authFixture{fixture: f, st: st, auth: NewAuthenticator(f.tokens, st, testClock)}
}

func (f *authFixture) adminToken(t testing.TB) string {
	t.Helper()
	tok, err := f.tokens.Mint(Claims{TokenID: testAdminTokenID, Kind: pki.TokenAdmin, Subject: testAdminID, Username: "alice", ExpiresAt: testNow.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAuthenticateAccepts(t *testing.T) {
	tests := []struct {
		name       string
		account    func(*pki.Account)
		wantStatus pki.AccountStatus
		wantPlan   pki.Plan
	}{
		{"active enterprise account", func(*pki.Account) {}, pki.AccountActive, pki.PlanEnterprise},
		// J-11: not an authentication failure; the use case answers 403.
		{"suspended account", func(a *pki.Account) { a.Status = pki.AccountSuspended }, pki.AccountSuspended, pki.PlanEnterprise},
		{"standard plan account", func(a *pki.Account) { a.Plan = pki.PlanStandard }, pki.AccountActive, pki.PlanStandard},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t)
			tt.account(f.st.accounts[testAccountID])
			p, acct, err := f.auth.Authenticate(context.Background(), f.mint(t, pki.TokenAccount), pki.TokenAccount)
			if err != nil {
				t.Fatal(err)
			}
			want := pki.Principal{Kind: pki.PrincipalAccount, AccountID: testAccountID, TokenID: testTokenID}
			if p != want {
				t.Errorf("principal = %+v, want %+v", p, want)
			}
			if acct == nil || acct.ID != testAccountID || acct.Status != tt.wantStatus || acct.Plan != tt.wantPlan {
				t.Errorf("account = %+v", acct)
			}
		})
	}

	t.Run("admin", func(t *testing.T) {
		f := newAuthFixture(t)
		p, acct, err := f.auth.Authenticate(context.Background(), f.adminToken(t), pki.TokenAdmin)
		if err != nil {
			t.Fatal(err)
		}
		want := pki.Principal{Kind: pki.PrincipalAdmin, AdminID: testAdminID, Username: "alice", TokenID: testAdminTokenID}
		if p != want || acct != nil {
			t.Errorf("Authenticate = %+v, %+v; want %+v, nil", p, acct, want)
		}
		if p.Actor() != "admin:alice" {
			t.Errorf("actor %q", p.Actor())
		}
	})
}

func TestAuthenticateRefuses(t *testing.T) {
	revokedAt := testNow.Add(-time.Minute)
	tests := []struct {
		name  string
		setup func(f *authFixture)
		kind  pki.TokenKind
		admin bool // present the admin token
	}{
		{name: "revoked jti", setup: func(f *authFixture) { f.st.tokens[testTokenID].RevokedAt = &revokedAt }},
		{name: "revoked in the future is still revoked", setup: func(f *authFixture) {
			later := testNow.Add(time.Hour)
			f.st.tokens[testTokenID].RevokedAt = &later
		}},
		{name: "expired record", setup: func(f *authFixture) { f.st.tokens[testTokenID].ExpiresAt = testNow.Add(-time.Second) }},
		{name: "record expires now", setup: func(f *authFixture) { f.st.tokens[testTokenID].ExpiresAt = testNow }},
		{name: "no record", setup: func(f *authFixture) { delete(f.st.tokens, testTokenID) }},
		{name: "deleted account", setup: func(f *authFixture) { delete(f.st.accounts, testAccountID) }},
		{name: "record of another kind", setup: func(f *authFixture) {
			r := f.st.tokens[testTokenID]
			r.Kind, r.AccountID, r.AdminID = pki.TokenAdmin, "", testAccountID
		}},
		{name: "record of another account", setup: func(f *authFixture) {
			f.st.tokens[testTokenID].AccountID = "11111111-2222-3333-4444-555555555555"
			f.st.accounts["11111111-2222-3333-4444-555555555555"] = &pki.Account{ID: "11111111-2222-3333-4444-555555555555", Plan: pki.PlanEnterprise, Status: pki.AccountActive}
		}},
		{name: "record under another ID", setup: func(f *authFixture) {
			f.st.tokens[testTokenID].ID = "00000000-0000-0000-0000-000000000000"
		}},
		{name: "account record under another ID", setup: func(f *authFixture) {
			f.st.accounts[testAccountID].ID = "00000000-0000-0000-0000-000000000000"
		}},
		{name: "admin record revoked", admin: true, kind: pki.TokenAdmin, setup: func(f *authFixture) {
			f.st.tokens[testAdminTokenID].RevokedAt = &revokedAt
		}},
		{name: "admin record of another admin", admin: true, kind: pki.TokenAdmin, setup: func(f *authFixture) {
			f.st.tokens[testAdminTokenID].AdminID = "11111111-2222-3333-4444-555555555555"
		}},
		{name: "admin token used as account token", admin: true, kind: pki.TokenAccount, setup: func(*authFixture) {}},
		{name: "account token used as admin token", kind: pki.TokenAdmin, setup: func(*authFixture) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t)
			tt.setup(f)
			tok := f.mint(t, pki.TokenAccount)
			if tt.admin {
				tok = f.adminToken(t)
			}
			kind := tt.kind
			if kind == "" {
				kind = pki.TokenAccount
			}
			p, acct, err := f.auth.Authenticate(context.Background(), tok, kind)
			if !errors.Is(err, pki.ErrUnauthenticated) {
				t.Fatalf("Authenticate = %+v, %+v, %v; want pki.ErrUnauthenticated", p, acct, err)
			}
			if p != (pki.Principal{}) || acct != nil {
				t.Errorf("Authenticate returned %+v, %+v with its error", p, acct)
			}
		})
	}
}

// TestAuthenticateStoreDown: a database outage is ErrUnavailable (503), never
// ErrUnauthenticated (401), and never success.
func TestAuthenticateStoreDown(t *testing.T) {
	down := fmt.Errorf("store: connection refused: %w", pki.ErrUnavailable)
	tests := []struct {
		name  string
		setup func(*memStore)
	}{
		{"token lookup", func(m *memStore) { m.tokenErr = down }},
		{"account lookup", func(m *memStore) { m.accountErr = down }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t)
			tt.setup(f.st)
			_, _, err := f.auth.Authenticate(context.Background(), f.mint(t, pki.TokenAccount), pki.TokenAccount)
			if !errors.Is(err, pki.ErrUnavailable) || errors.Is(err, pki.ErrUnauthenticated) {
				t.Errorf("Authenticate = %v; want ErrUnavailable and not ErrUnauthenticated", err)
			}
		})
	}
	t.Run("other store error", func(t *testing.T) {
		f := newAuthFixture(t)
		f.st.tokenErr = errors.New("store: something odd")
		_, _, err := f.auth.Authenticate(context.Background(), f.mint(t, pki.TokenAccount), pki.TokenAccount)
		if err == nil || errors.Is(err, pki.ErrUnauthenticated) {
			t.Errorf("Authenticate = %v; want the store's error", err)
		}
	})
}

// TestAuthenticateSeesChangesAtOnce: revocation and suspension take effect on
// the next request, with no cache in between.
func TestAuthenticateSeesChangesAtOnce(t *testing.T) {
	f := newAuthFixture(t)
	tok := f.mint(t, pki.TokenAccount)
	ctx := context.Background()
	if _, _, err := f.auth.Authenticate(ctx, tok, pki.TokenAccount); err != nil {
		t.Fatal(err)
	}
	f.st.accounts[testAccountID].Status = pki.AccountSuspended
	_, acct, err := f.auth.Authenticate(ctx, tok, pki.TokenAccount)
	if err != nil || acct.Status != pki.AccountSuspended {
		t.Fatalf("after suspension: %+v, %v", acct, err)
	}
	now := testNow
	f.st.tokens[testTokenID].RevokedAt = &now
	if _, _, err := f.auth.Authenticate(ctx, tok, pki.TokenAccount); !errors.Is(err, pki.ErrUnauthenticated) {
		t.Errorf("after revocation: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	const tok = "eyJh.eyJz.c2ln"
	tests := []struct {
		name, header, want string
	}{
		{"canonical", "Bearer " + tok, tok},
		{"lower-case scheme", "bearer " + tok, tok},
		{"upper-case scheme", "BEARER " + tok, tok},
		{"several spaces", "Bearer   " + tok, tok},
		{"token68 padding", "Bearer abc+/~-_.==", "abc+/~-_.=="},
		{"empty", "", ""},
		{"scheme only", "Bearer", ""},
		{"scheme and space", "Bearer ", ""},
		{"basic", "Basic YWxpY2U6cGFzcw==", ""},
		{"no space", "Bearer" + tok, ""},
		{"tab", "Bearer\t" + tok, ""},
		{"two tokens", "Bearer " + tok + " " + tok, ""},
		{"trailing space", "Bearer " + tok + " ", ""},
		{"comma list", "Bearer " + tok + ", Basic x", ""},
		{"auth-param", `Bearer token="` + tok + `"`, ""},
		{"padding only", "Bearer ==", ""},
		{"padding inside", "Bearer ab=c", ""},
		{"non-ASCII", "Bearer tøken", ""},
		{"NUL", "Bearer a\x00b", ""},
		{"newline", "Bearer a\nb", ""},
		{"too long", "Bearer " + strings.Repeat("a", MaxTokenLength+1), ""},
		{"scheme prefix", "Bearerx " + tok, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BearerToken(tt.header)
			if tt.want == "" {
				if !errors.Is(err, pki.ErrUnauthenticated) || got != "" {
					t.Errorf("BearerToken(%q) = %q, %v; want pki.ErrUnauthenticated", tt.header, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("BearerToken(%q) = %q, %v; want %q", tt.header, got, err, tt.want)
			}
		})
	}
}

// TestClaimsAudienceOf: the unverified hint that picks 403 over 401 reads
// the audience and nothing else.
func TestClaimsAudienceOf(t *testing.T) {
	f := newAuthFixture(t)
	acct, admin := f.mint(t, pki.TokenAccount), f.adminToken(t)
	for _, tc := range []struct {
		name string
		raw  string
		kind pki.TokenKind
		want bool
	}{
		{"account token as account", acct, pki.TokenAccount, true},
		{"forged account token as account", flipLastBit(acct), pki.TokenAccount, true},
		{"admin token as account", admin, pki.TokenAccount, false},
		{"account token as admin", acct, pki.TokenAdmin, false},
		{"garbage", "not.a.jwt", pki.TokenAccount, false},
		{"empty", "", pki.TokenAccount, false},
	} {
		if got := claimsAudienceOf(tc.raw, tc.kind); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRequire(t *testing.T) {
	f := newAuthFixture(t)
	tok := f.mint(t, pki.TokenAccount)

	type result struct {
		reached bool
		p       pki.Principal
		acct    *pki.Account
		err     error
	}
	run := func(t *testing.T, kind pki.TokenKind, headers ...string) result {
		t.Helper()
		var res result
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			res.reached = true
			var ok bool
			res.p, res.acct, ok = PrincipalFrom(r.Context())
			if !ok {
				t.Error("no principal in the request context")
			}
			w.WriteHeader(http.StatusNoContent)
		})
		onErr := func(w http.ResponseWriter, _ *http.Request, err error) {
			res.err = err
			w.WriteHeader(http.StatusTeapot)
		}
		req := httptest.NewRequest(http.MethodGet, "/api/v1/certificates", nil)
		for _, h := range headers {
			req.Header.Add("Authorization", h)
		}
		rec := httptest.NewRecorder()
		f.auth.Require(kind, onErr)(next).ServeHTTP(rec, req)
		if res.reached == (res.err != nil) {
			t.Errorf("reached the handler: %v, onErr called with %v", res.reached, res.err)
		}
		if res.err != nil && rec.Code != http.StatusTeapot {
			t.Errorf("middleware wrote status %d itself", rec.Code)
		}
		return res
	}

	t.Run("valid account token", func(t *testing.T) {
		res := run(t, pki.TokenAccount, "Bearer "+tok)
		if !res.reached || res.p.AccountID != testAccountID || res.acct == nil || res.acct.ID != testAccountID {
			t.Errorf("result %+v", res)
		}
	})
	t.Run("valid admin token", func(t *testing.T) {
		res := run(t, pki.TokenAdmin, "Bearer "+f.adminToken(t))
		if !res.reached || res.p.Username != "alice" || res.acct != nil {
			t.Errorf("result %+v", res)
		}
	})
	for _, tt := range []struct {
		name    string
		kind    pki.TokenKind
		headers []string
	}{
		{"no header", pki.TokenAccount, nil},
		{"two headers", pki.TokenAccount, []string{"Bearer " + tok, "Bearer " + tok}},
		{"basic scheme", pki.TokenAccount, []string{"Basic YWxpY2U6cGFzcw=="}},
		{"forged token", pki.TokenAccount, []string{"Bearer " + flipLastBit(tok)}},
		{"admin token on account routes", pki.TokenAccount, []string{"Bearer " + f.adminToken(t)}},
		{"forged account token on admin routes", pki.TokenAdmin, []string{"Bearer " + flipLastBit(tok)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.kind, tt.headers...)
			if !errors.Is(res.err, pki.ErrUnauthenticated) {
				t.Errorf("onErr got %v, want pki.ErrUnauthenticated", res.err)
			}
		})
	}
	// A genuine account token on the admin API is authenticated but not
	// allowed there: 403, not 401 (SECURITY.md A-10).
	t.Run("account token on admin routes", func(t *testing.T) {
		res := run(t, pki.TokenAdmin, "Bearer "+tok)
		var pe *pki.PolicyError
		if !errors.As(res.err, &pe) || pe.Kind != pki.KindForbidden || errors.Is(res.err, pki.ErrUnauthenticated) {
			t.Errorf("onErr got %v, want a forbidden PolicyError", res.err)
		}
	})
	t.Run("database down", func(t *testing.T) {
		f.st.tokenErr = fmt.Errorf("store: %w", pki.ErrUnavailable)
		defer func() { f.st.tokenErr = nil }()
		res := run(t, pki.TokenAccount, "Bearer "+tok)
		if !errors.Is(res.err, pki.ErrUnavailable) || errors.Is(res.err, pki.ErrUnauthenticated) {
			t.Errorf("onErr got %v, want pki.ErrUnavailable only", res.err)
		}
	})
}

func TestPrincipalContext(t *testing.T) {
	if _, _, ok := PrincipalFrom(context.Background()); ok {
		t.Error("PrincipalFrom found a principal in an empty context")
	}
	p := pki.Principal{Kind: pki.PrincipalAccount, AccountID: testAccountID, TokenID: testTokenID}
	acct := &pki.Account{ID: testAccountID}
	gotP, gotAcct, ok := PrincipalFrom(WithPrincipal(context.Background(), p, acct))
	if !ok || gotP != p || gotAcct != acct {
		t.Errorf("PrincipalFrom = %+v, %+v, %v", gotP, gotAcct, ok)
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	f := newAuthFixture(b)
	tok := f.mint(b, pki.TokenAccount)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := f.auth.Authenticate(ctx, tok, pki.TokenAccount); err != nil {
			b.Fatal(err)
		}
	}
}
