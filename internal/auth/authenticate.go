package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// Authenticator checks a presented token on every request: its signature and
// claims through Tokens, then its database record and, for account tokens,
// the account, so that revocation and suspension need no token expiry to take
// effect.
type Authenticator struct {
	tokens *Tokens
	store  Store
	now    func() time.Time
}

// NewAuthenticator returns an Authenticator that parses tokens with tokens,
// reads records from st and takes the time from now.
func NewAuthenticator(tokens *Tokens, st Store, now func() time.Time) *Authenticator {
	return &Authenticator{tokens: tokens, store: st, now: now}
}

// Authenticate checks raw, a bearer token, for the API of the given kind and
// returns who is calling. The token's record must exist, be of that kind,
// belong to the token's subject, and be neither revoked nor expired; an
// account token's account must exist. For account tokens the account is
// returned as read now. A suspended or non-Enterprise account is not an
// authentication failure: the principal is returned and the use case refuses
// what the account may not do (403, not 401).
//
// Errors wrap pki.ErrUnauthenticated, except that a store error wrapping
// pki.ErrUnavailable is returned as such, so that a database outage answers
// 503 rather than telling a valid caller that its token is bad.
func (a *Authenticator) Authenticate(ctx context.Context, raw string, kind pki.TokenKind) (pki.Principal, *pki.Account, error) {
	c, err := a.tokens.Parse(raw, kind)
	if err != nil {
		return pki.Principal{}, nil, err
	}
	// An account token's account is read with its record, in one round
	// trip: the subject is the account id, and it is authentic (Parse has
	// checked the signature); whether the record agrees is checked below.
	var rec *pki.Token
	var acct *pki.Account
	if kind == pki.TokenAccount {
		rec, acct, err = a.store.TokenAndAccount(ctx, c.TokenID, c.Subject)
	} else {
		rec, err = a.store.Token(ctx, c.TokenID)
	}
	if err != nil {
		return pki.Principal{}, nil, storeError("token record", err)
	}
	now := a.now()
	switch {
	case rec.ID != c.TokenID:
		return pki.Principal{}, nil, unauthenticated("token record %s answered for jti %s", rec.ID, c.TokenID)
	case rec.Kind != kind:
		return pki.Principal{}, nil, unauthenticated("token %s is recorded as an %s token", rec.ID, rec.Kind)
	case rec.RevokedAt != nil:
		return pki.Principal{}, nil, unauthenticated("token %s was revoked at %s", rec.ID, rec.RevokedAt.UTC().Format(time.RFC3339))
	case !rec.ValidAt(now):
		return pki.Principal{}, nil, unauthenticated("token %s expired at %s", rec.ID, rec.ExpiresAt.UTC().Format(time.RFC3339))
	}

	switch kind {
	case pki.TokenAccount:
		if rec.AccountID == "" || rec.AccountID != c.Subject {
			return pki.Principal{}, nil, unauthenticated("token %s is not recorded for its subject", rec.ID)
		}
		if acct == nil {
			return pki.Principal{}, nil, storeError("account", pki.ErrNotFound)
		}
		if acct.ID != rec.AccountID {
			return pki.Principal{}, nil, unauthenticated("account record %s answered for %s", acct.ID, rec.AccountID)
		}
		p := pki.Principal{Kind: pki.PrincipalAccount, AccountID: acct.ID, TokenID: rec.ID}
		return p, acct, nil
	case pki.TokenAdmin:
		if rec.AdminID == "" || rec.AdminID != c.Subject {
			return pki.Principal{}, nil, unauthenticated("token %s is not recorded for its subject", rec.ID)
		}
		p := pki.Principal{Kind: pki.PrincipalAdmin, AdminID: rec.AdminID, Username: c.Username, TokenID: rec.ID}
		return p, nil, nil
	default:
		// Parse has refused unknown kinds already.
		return pki.Principal{}, nil, unauthenticated("unknown token kind %q", kind)
	}
}

// storeError turns a store error into Authenticate's: a missing record means
// the token is not (or no longer) good; an outage stays an outage.
func storeError(what string, err error) error {
	switch {
	case errors.Is(err, pki.ErrUnavailable):
		return fmt.Errorf("auth: reading %s: %w", what, err)
	case errors.Is(err, pki.ErrNotFound):
		return unauthenticated("%s not found", what)
	default:
		return fmt.Errorf("auth: reading %s: %w", what, err)
	}
}

// BearerToken returns the token in an Authorization header value of the form
// "Bearer <token68>" (RFC 6750 §2.1): the scheme in any case, then spaces,
// then exactly one token68 and nothing else. Anything else is an error
// wrapping pki.ErrUnauthenticated.
func BearerToken(header string) (string, error) {
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", unauthenticated("authorization scheme is not Bearer")
	}
	tok := strings.TrimLeft(rest, " ")
	if len(tok) > MaxTokenLength {
		return "", unauthenticated("token longer than %d bytes", MaxTokenLength)
	}
	if !isToken68(tok) {
		return "", unauthenticated("bearer credentials are not one token68 value")
	}
	return tok, nil
}

// isToken68 reports whether s matches RFC 9110 §11.2's
// token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

// Require returns middleware that lets a request through only with a valid
// bearer token of the given kind, and puts the principal (and, for account
// tokens, the account) into its context for PrincipalFrom. On failure it
// calls onErr with an error wrapping pki.ErrUnauthenticated (or
// pki.ErrUnavailable) and does not call the next handler; onErr writes the
// response, since only the api package writes problem documents and the
// WWW-Authenticate header.
func (a *Authenticator) Require(kind pki.TokenKind, onErr func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			vals := r.Header.Values("Authorization")
			switch len(vals) {
			case 0:
				onErr(w, r, unauthenticated("no Authorization header"))
				return
			case 1:
			default:
				onErr(w, r, unauthenticated("%d Authorization headers", len(vals)))
				return
			}
			raw, err := BearerToken(vals[0])
			if err != nil {
				onErr(w, r, err)
				return
			}
			p, acct, err := a.Authenticate(r.Context(), raw, kind)
			if err != nil {
				onErr(w, r, a.wrongAPI(r.Context(), raw, kind, err))
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p, acct)))
		})
	}
}

// wrongAPI returns err, the refusal of raw as a token of kind, unless raw is
// a genuine, current account token presented to the admin API: that caller
// is authenticated, only not allowed here, so it gets 403 rather than 401
// (SECURITY.md A-10), and no budget of the per-address limit on failed
// authentication. The account token is checked in full (signature, record,
// revocation) before the answer says so; anything less stays 401.
func (a *Authenticator) wrongAPI(ctx context.Context, raw string, kind pki.TokenKind, err error) error {
	// Only a token that claims to be an account token is checked again, so
	// a forged one costs one signature verification, not two.
	if kind != pki.TokenAdmin || !errors.Is(err, pki.ErrUnauthenticated) || !claimsAudienceOf(raw, pki.TokenAccount) {
		return err
	}
	if _, _, accErr := a.Authenticate(ctx, raw, pki.TokenAccount); accErr != nil {
		return err
	}
	return &pki.PolicyError{Kind: pki.KindForbidden, Title: "Forbidden",
		Detail: "an account token cannot be used on the admin API; use an administrator's token"}
}

type principalKey struct{}

type principalValue struct {
	p    pki.Principal
	acct *pki.Account
}

// WithPrincipal returns a copy of ctx that carries p and, for account
// principals, the account as read when the request was authenticated.
func WithPrincipal(ctx context.Context, p pki.Principal, acct *pki.Account) context.Context {
	return context.WithValue(ctx, principalKey{}, principalValue{p: p, acct: acct})
}

// PrincipalFrom returns the principal that WithPrincipal (or Require) put
// into ctx; ok is false when there is none.
func PrincipalFrom(ctx context.Context) (p pki.Principal, acct *pki.Account, ok bool) {
	v, ok := ctx.Value(principalKey{}).(principalValue)
	return v.p, v.acct, ok
}
