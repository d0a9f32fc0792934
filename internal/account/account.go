// Package account holds the administration use cases: accounts (plan and
// suspension), their API tokens, administrators and the audit trail. The JSON
// admin API, the admin web page and the pkid command all call these, so that
// no rule is written twice.
package account

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/pki"
)

// Audit actions written by this package.
const (
	ActionAccountCreated = "account.created"
	ActionAccountUpdated = "account.updated"
	ActionTokenMinted    = "token.minted"
	ActionTokenRevoked   = "token.revoked"
	ActionAdminCreated   = "admin.created"
	ActionAdminToken     = "admin.token.minted"
)

// Token lifetimes.
const (
	DefaultTokenTTL = 720 * time.Hour
	MaxTokenTTL     = 366 * 24 * time.Hour
	MaxAdminTTL     = 24 * time.Hour
)

// Service runs the administration use cases.
type Service struct {
	store  Store
	tokens *auth.Tokens
	now    func() time.Time
}

// New returns a Service over st that mints JWTs with tokens.
func New(st Store, tokens *auth.Tokens, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: st, tokens: tokens, now: now}
}

func event(p pki.Principal, action, accountID, requestID string) pki.AuditEvent {
	return pki.AuditEvent{Actor: p.Actor(), Action: action, Outcome: pki.OutcomeSuccess, AccountID: accountID, RequestID: requestID}
}

// CheckName validates a display name (accounts, tokens): 1 to max runes of
// valid UTF-8 with no control characters, so that it can never break a log
// line, a CSV cell boundary or a certificate's subject.
func CheckName(field, name string, max int) error {
	if strings.TrimSpace(name) != name {
		return pki.Malformed("%s must not start or end with white space", field)
	}
	if name == "" || utf8.RuneCountInString(name) > max {
		return pki.Malformed("%s must be 1 to %d characters", field, max)
	}
	if !utf8.ValidString(name) {
		return pki.Malformed("%s must be valid UTF-8", field)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return pki.Malformed("%s must not contain control characters", field)
		}
	}
	return nil
}

// CreateAccount creates an account. The name becomes the O of the account's
// certificates, so it is held to the 64-character limit of RFC 5280's
// ub-organization-name.
func (s *Service) CreateAccount(ctx context.Context, p pki.Principal, name string, plan pki.Plan, requestID string) (*pki.Account, error) {
	if err := CheckName("name", name, 64); err != nil {
		return nil, err
	}
	if !plan.Valid() {
		return nil, pki.Malformed("plan must be %q or %q", pki.PlanEnterprise, pki.PlanStandard)
	}
	a := &pki.Account{Name: name, Plan: plan, Status: pki.AccountActive}
	ev := event(p, ActionAccountCreated, "", requestID)
	ev.Detail = map[string]any{"name": name, "plan": plan}
	if err := s.store.CreateAccount(ctx, a, ev); err != nil {
		return nil, err
	}
	return a, nil
}

// Account returns one account.
func (s *Service) Account(ctx context.Context, id string) (*pki.Account, error) {
	return s.store.Account(ctx, id)
}

// Accounts lists every account.
func (s *Service) Accounts(ctx context.Context) ([]*pki.Account, error) {
	return s.store.Accounts(ctx)
}

// Patch is a partial update of an account; nil fields are left alone.
type Patch struct {
	Name   *string
	Plan   *pki.Plan
	Status *pki.AccountStatus
}

// UpdateAccount applies patch. Suspending an account or moving it off the
// Enterprise plan takes effect on its next request: tokens and the account's
// state are checked on every request.
func (s *Service) UpdateAccount(ctx context.Context, p pki.Principal, id string, patch Patch, requestID string) (*pki.Account, error) {
	if patch.Name != nil {
		if err := CheckName("name", *patch.Name, 64); err != nil {
			return nil, err
		}
	}
	if patch.Plan != nil && !patch.Plan.Valid() {
		return nil, pki.Malformed("plan must be %q or %q", pki.PlanEnterprise, pki.PlanStandard)
	}
	if patch.Status != nil && !patch.Status.Valid() {
		return nil, pki.Malformed("status must be %q or %q", pki.AccountActive, pki.AccountSuspended)
	}
	ev := event(p, ActionAccountUpdated, id, requestID)
	return s.store.UpdateAccount(ctx, id, func(a *pki.Account, ev *pki.AuditEvent) error {
		changes := map[string]any{}
		if patch.Name != nil && *patch.Name != a.Name {
			changes["name"] = map[string]any{"from": a.Name, "to": *patch.Name}
			a.Name = *patch.Name
		}
		if patch.Plan != nil && *patch.Plan != a.Plan {
			changes["plan"] = map[string]any{"from": a.Plan, "to": *patch.Plan}
			a.Plan = *patch.Plan
		}
		if patch.Status != nil && *patch.Status != a.Status {
			changes["status"] = map[string]any{"from": a.Status, "to": *patch.Status}
			a.Status = *patch.Status
		}
		a.UpdatedAt = s.now()
		ev.Detail = changes
		return nil
	}, ev)
}

// MintToken creates an API token for an account and returns its record and
// the JWT, which is shown this once and never stored. ttl 0 means
// DefaultTokenTTL.
func (s *Service) MintToken(ctx context.Context, p pki.Principal, accountID, name string, ttl time.Duration, requestID string) (*pki.Token, string, error) {
	if err := CheckName("name", name, 100); err != nil {
		return nil, "", err
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < time.Minute || ttl > MaxTokenTTL {
		return nil, "", pki.Malformed("ttl_hours must be between 1 and %d", int(MaxTokenTTL/time.Hour))
	}
	if _, err := s.store.Account(ctx, accountID); err != nil {
		return nil, "", err
	}
	now := s.now().Truncate(time.Second)
	t := &pki.Token{
		ID: newUUID(), Kind: pki.TokenAccount, AccountID: accountID, Name: name,
		CreatedBy: p.Actor(), CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	jwt, err := s.tokens.Mint(auth.Claims{TokenID: t.ID, Kind: t.Kind, Subject: accountID, ExpiresAt: t.ExpiresAt})
	if err != nil {
		return nil, "", err
	}
	ev := event(p, ActionTokenMinted, accountID, requestID)
	ev.Detail = map[string]any{"token_id": t.ID, "name": name, "expires_at": t.ExpiresAt}
	if err := s.store.CreateToken(ctx, t, ev); err != nil {
		return nil, "", err
	}
	return t, jwt, nil
}

// Tokens lists an account's tokens (never the JWTs themselves).
func (s *Service) Tokens(ctx context.Context, accountID string) ([]*pki.Token, error) {
	if _, err := s.store.Account(ctx, accountID); err != nil {
		return nil, err
	}
	return s.store.Tokens(ctx, accountID)
}

// RevokeToken revokes one of an account's tokens; it is refused from the next
// request on.
func (s *Service) RevokeToken(ctx context.Context, p pki.Principal, accountID, tokenID, requestID string) error {
	ev := event(p, ActionTokenRevoked, accountID, requestID)
	ev.OccurredAt = s.now()
	ev.Detail = map[string]any{"token_id": tokenID}
	return s.store.RevokeToken(ctx, accountID, tokenID, ev)
}

// MinPasswordLength is the shortest administrator password accepted
// (NIST SP 800-63B §5.1.1.2 asks for at least 8; pkid guards a CA).
const MinPasswordLength = 12

// CreateAdmin creates an administrator with an argon2id password hash.
func (s *Service) CreateAdmin(ctx context.Context, p pki.Principal, username, password string) (*pki.Admin, error) {
	username = auth.CanonicalUsername(username)
	if err := CheckName("username", username, 64); err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(password) < MinPasswordLength {
		return nil, pki.Malformed("password must be at least %d characters", MinPasswordLength)
	}
	if len(password) > 1024 {
		return nil, pki.Malformed("password must be at most 1024 bytes")
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return nil, err
	}
	a := &pki.Admin{Username: username, PasswordHash: hash}
	ev := event(p, ActionAdminCreated, "", "")
	ev.Detail = map[string]any{"username": username}
	if err := s.store.CreateAdmin(ctx, a, ev); err != nil {
		if errors.Is(err, pki.ErrAlreadyExists) {
			return nil, &pki.ConflictError{Kind: pki.KindAlreadyExists, Detail: fmt.Sprintf("administrator %q exists already", username)}
		}
		return nil, err
	}
	return a, nil
}

// MintAdminToken creates an admin API token for the named administrator.
func (s *Service) MintAdminToken(ctx context.Context, p pki.Principal, username string, ttl time.Duration) (string, error) {
	if ttl < time.Minute || ttl > MaxAdminTTL {
		return "", pki.Malformed("admin token ttl must be between 1m and %s", MaxAdminTTL)
	}
	admin, err := s.store.AdminByUsername(ctx, auth.CanonicalUsername(username))
	if err != nil {
		return "", err
	}
	now := s.now().Truncate(time.Second)
	t := &pki.Token{
		ID: newUUID(), Kind: pki.TokenAdmin, AdminID: admin.ID, Name: "cli",
		CreatedBy: p.Actor(), CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	jwt, err := s.tokens.Mint(auth.Claims{TokenID: t.ID, Kind: t.Kind, Subject: admin.ID, Username: admin.Username, ExpiresAt: t.ExpiresAt})
	if err != nil {
		return "", err
	}
	ev := event(p, ActionAdminToken, "", "")
	ev.Detail = map[string]any{"token_id": t.ID, "username": admin.Username, "expires_at": t.ExpiresAt}
	if err := s.store.CreateToken(ctx, t, ev); err != nil {
		return "", err
	}
	return jwt, nil
}

// AuditEvents returns the audit events that f selects (see
// pki.AuditFilter: newest first unless f.Ascending) and the head of the
// audit trail's hash chain. The head is read first, so every event it
// covers that f selects comes back linked; events above it may be linked
// too, by a linker that ran in between.
func (s *Service) AuditEvents(ctx context.Context, f pki.AuditFilter) ([]pki.AuditEvent, pki.AuditChainHead, error) {
	switch {
	case f.Limit < 0:
		return nil, pki.AuditChainHead{}, pki.Malformed("limit must be positive")
	case f.BeforeID < 0 || f.AfterID < 0:
		return nil, pki.AuditChainHead{}, pki.Malformed("event ids must be positive")
	case !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until):
		return nil, pki.AuditChainHead{}, pki.Malformed("since must be before until")
	}
	head, err := s.store.AuditChainHead(ctx)
	if err != nil {
		return nil, pki.AuditChainHead{}, err
	}
	events, err := s.store.SearchAudit(ctx, f)
	if err != nil {
		return nil, pki.AuditChainHead{}, err
	}
	return events, head, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
