package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/sealedkey"
)

// Audit actions of webhook configuration.
const (
	ActionConfigured    = "webhook.configured"
	ActionSecretRotated = "webhook.secret.rotated"
	ActionRemoved       = "webhook.removed"
)

// Notice periods, in days.
const (
	DefaultNotifyDays = 14
	MaxNotifyDays     = 365
)

// MaxKeepPrevious bounds how long a rotated-out secret keeps signing.
const MaxKeepPrevious = 7 * 24 * time.Hour

// secretPrefix starts every secret, so that it is recognisable (by people
// and by secret scanners) for what it is.
const secretPrefix = "whsec_"

// ConfigStore is what configuring webhooks needs from the database.
type ConfigStore interface {
	// Webhook returns the account's webhook; ErrNotFound when it has none.
	Webhook(ctx context.Context, accountID string) (*pki.Webhook, error)
	// UpdateWebhook lets change turn the account's webhook (nil: none) into
	// the one to save (nil: remove it) and complete ev, and writes both in
	// one transaction; ErrNotFound when there is no such account.
	UpdateWebhook(ctx context.Context, accountID string, change func(cur *pki.Webhook, ev *pki.AuditEvent) (*pki.Webhook, error), ev pki.AuditEvent) (*pki.Webhook, error)
	// WebhookDeliveries lists an account's deliveries, newest first.
	WebhookDeliveries(ctx context.Context, accountID string, limit int) ([]pki.WebhookDelivery, error)
	SaltStore
}

// SaltStore keeps the per-deployment salt of the key that seals secrets.
type SaltStore interface {
	// SealingSalt returns the salt stored for purpose, storing candidate
	// when there is none.
	SealingSalt(ctx context.Context, purpose string, candidate []byte) ([]byte, error)
}

// Keyring seals and opens webhook secrets. Its key is derived from the
// passphrase and the deployment's salt on first use, so a node that never
// touches a webhook pays nothing; the derivation is retried after a
// failure. Safe for concurrent use.
type Keyring struct {
	st         SaltStore
	passphrase []byte

	mu  sync.Mutex
	box *sealedkey.Box
}

// NewKeyring returns the keyring that derives its key from passphrase (the
// secret that seals pkid's software keys: PKID_KEY_PASSPHRASE, or the secret
// derived on the PKCS#11 token) and the salt kept in st.
func NewKeyring(st SaltStore, passphrase []byte) *Keyring {
	return &Keyring{st: st, passphrase: passphrase}
}

func (k *Keyring) get(ctx context.Context) (*sealedkey.Box, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.box != nil {
		return k.box, nil
	}
	if len(k.passphrase) == 0 {
		return nil, errors.New("webhook: no sealing secret (PKID_KEY_PASSPHRASE or a PKCS#11 token) to seal webhook secrets with")
	}
	candidate := make([]byte, 32)
	if _, err := rand.Read(candidate); err != nil {
		return nil, err
	}
	salt, err := k.st.SealingSalt(ctx, "webhook-secrets", candidate)
	if err != nil {
		return nil, err
	}
	box, err := sealedkey.NewBox(k.passphrase, salt)
	if err != nil {
		return nil, err
	}
	k.box = box
	return box, nil
}

// sealContext binds a sealed secret to its account.
func sealContext(accountID string) []byte { return []byte("pkid webhook secret\x00" + accountID) }

func (k *Keyring) seal(ctx context.Context, accountID string, secret []byte) ([]byte, error) {
	box, err := k.get(ctx)
	if err != nil {
		return nil, err
	}
	return box.Seal(secret, sealContext(accountID)), nil
}

// secrets opens the secrets that sign a notice to w at now: the current
// one and, until it expires, the one it replaced.
func (k *Keyring) secrets(ctx context.Context, w *pki.Webhook, now time.Time) ([][]byte, error) {
	box, err := k.get(ctx)
	if err != nil {
		return nil, err
	}
	cur, err := box.Open(w.SealedSecret, sealContext(w.AccountID))
	if err != nil {
		return nil, err
	}
	out := [][]byte{cur}
	if w.SealedPrevious != nil && w.PreviousExpiresAt != nil && now.Before(*w.PreviousExpiresAt) {
		prev, err := box.Open(w.SealedPrevious, sealContext(w.AccountID))
		if err != nil {
			return nil, err
		}
		out = append(out, prev)
	}
	return out, nil
}

// newSecret returns a fresh secret: "whsec_" and 32 random bytes in
// unpadded base64url. Receivers use the whole string as the HMAC key.
func newSecret() []byte {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return []byte(secretPrefix + base64.RawURLEncoding.EncodeToString(b[:]))
}

// Service runs the administrators' webhook use cases.
type Service struct {
	st         ConfigStore
	keys       *Keyring
	policy     TargetPolicy
	notifyDays int
	now        func() time.Time
}

// NewService returns the use cases over st, sealing secrets with keys,
// checking URLs against policy; defaultDays is the notice period of
// webhooks that set none (DefaultNotifyDays when 0).
func NewService(st ConfigStore, keys *Keyring, policy TargetPolicy, defaultDays int, now func() time.Time) *Service {
	if defaultDays <= 0 {
		defaultDays = DefaultNotifyDays
	}
	if now == nil {
		now = time.Now
	}
	return &Service{st: st, keys: keys, policy: policy, notifyDays: defaultDays, now: now}
}

// DefaultNotifyDays returns the notice period of webhooks that set none.
func (s *Service) DefaultNotifyDays() int { return s.notifyDays }

// Webhook returns the account's webhook; ErrNotFound when the account has
// none or does not exist.
func (s *Service) Webhook(ctx context.Context, accountID string) (*pki.Webhook, error) {
	return s.st.Webhook(ctx, accountID)
}

// Configure sets the account's webhook URL and notice period (notifyDays 0:
// the deployment's default). A new webhook gets a fresh secret, returned
// this once; changing an existing one keeps its secret and returns nil.
func (s *Service) Configure(ctx context.Context, p pki.Principal, accountID, rawURL string, notifyDays int, requestID string) (*pki.Webhook, []byte, error) {
	if err := s.policy.CheckURL(rawURL); err != nil {
		return nil, nil, err
	}
	if notifyDays < 0 || notifyDays > MaxNotifyDays {
		return nil, nil, pki.Malformed(`"notify_days" must be from 1 to %d, or null for the default (%d)`, MaxNotifyDays, s.notifyDays)
	}
	var secret []byte
	ev := pki.AuditEvent{Actor: p.Actor(), Action: ActionConfigured, Outcome: pki.OutcomeSuccess, AccountID: accountID, RequestID: requestID}
	saved, err := s.st.UpdateWebhook(ctx, accountID, func(cur *pki.Webhook, ev *pki.AuditEvent) (*pki.Webhook, error) {
		next := &pki.Webhook{AccountID: accountID, URL: rawURL, NotifyDays: notifyDays}
		if cur != nil {
			next.SealedSecret, next.SealedPrevious, next.PreviousExpiresAt = cur.SealedSecret, cur.SealedPrevious, cur.PreviousExpiresAt
			next.SecretRotatedAt = cur.SecretRotatedAt
		} else {
			secret = newSecret()
			sealed, err := s.keys.seal(ctx, accountID, secret)
			if err != nil {
				return nil, err
			}
			next.SealedSecret = sealed
		}
		ev.Detail = map[string]any{"url": redactURL(rawURL), "notify_days": notifyDays, "created": cur == nil}
		return next, nil
	}, ev)
	if err != nil {
		return nil, nil, err
	}
	return saved, secret, nil
}

// RotateSecret gives the account's webhook a fresh secret, returned this
// once. The old secret keeps signing beside it for keepPrevious (0: stops
// at once; at most MaxKeepPrevious), so that receivers can switch without
// losing a notice. ErrNotFound when the account has no webhook.
func (s *Service) RotateSecret(ctx context.Context, p pki.Principal, accountID string, keepPrevious time.Duration, requestID string) (*pki.Webhook, []byte, error) {
	if keepPrevious < 0 || keepPrevious > MaxKeepPrevious {
		return nil, nil, pki.Malformed(`"keep_previous_hours" must be from 0 to %d`, int(MaxKeepPrevious/time.Hour))
	}
	secret := newSecret()
	now := s.now()
	ev := pki.AuditEvent{Actor: p.Actor(), Action: ActionSecretRotated, Outcome: pki.OutcomeSuccess, AccountID: accountID, RequestID: requestID}
	saved, err := s.st.UpdateWebhook(ctx, accountID, func(cur *pki.Webhook, ev *pki.AuditEvent) (*pki.Webhook, error) {
		if cur == nil {
			return nil, pki.ErrNotFound
		}
		sealed, err := s.keys.seal(ctx, accountID, secret)
		if err != nil {
			return nil, err
		}
		next := *cur
		next.SealedSecret, next.SecretRotatedAt = sealed, now
		next.SealedPrevious, next.PreviousExpiresAt = nil, nil
		detail := map[string]any{"previous_expires_at": nil}
		if keepPrevious > 0 {
			until := now.Add(keepPrevious)
			next.SealedPrevious, next.PreviousExpiresAt = cur.SealedSecret, &until
			detail["previous_expires_at"] = until.UTC()
		}
		ev.Detail = detail
		return &next, nil
	}, ev)
	if err != nil {
		return nil, nil, err
	}
	return saved, secret, nil
}

// Remove deletes the account's webhook; notices not yet delivered are
// cancelled when their turn comes. ErrNotFound when it has none.
func (s *Service) Remove(ctx context.Context, p pki.Principal, accountID, requestID string) error {
	ev := pki.AuditEvent{Actor: p.Actor(), Action: ActionRemoved, Outcome: pki.OutcomeSuccess, AccountID: accountID, RequestID: requestID}
	_, err := s.st.UpdateWebhook(ctx, accountID, func(cur *pki.Webhook, ev *pki.AuditEvent) (*pki.Webhook, error) {
		if cur == nil {
			return nil, pki.ErrNotFound
		}
		ev.Detail = map[string]any{"url": redactURL(cur.URL)}
		return nil, nil
	}, ev)
	return err
}

// MaxDeliveriesPage bounds Deliveries.
const MaxDeliveriesPage = 500

// Deliveries lists the account's notices, newest first, at most limit (100
// when 0, at most MaxDeliveriesPage).
func (s *Service) Deliveries(ctx context.Context, accountID string, limit int) ([]pki.WebhookDelivery, error) {
	if limit == 0 {
		limit = 100
	}
	if limit < 0 || limit > MaxDeliveriesPage {
		return nil, pki.Malformed("limit must be from 1 to %d", MaxDeliveriesPage)
	}
	return s.st.WebhookDeliveries(ctx, accountID, limit)
}
