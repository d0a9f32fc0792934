package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/webhook"
)

// ServeWebhooks enables the admin API's webhook routes
// (/admin/api/accounts/{id}/webhook...), backed by s. Without it they
// answer 404. Call it before serving.
func (a *API) ServeWebhooks(s *webhook.Service) { a.webhooks = s }

// webhookJSON is an account's webhook as the admin API shows it. secret is
// there only in the answer that created it or rotated it: pkid never shows
// it again.
type webhookJSON struct {
	AccountID               string     `json:"account_id"`
	URL                     string     `json:"url"`
	NotifyDays              *int       `json:"notify_days"`
	EffectiveNotifyDays     int        `json:"effective_notify_days"`
	Secret                  string     `json:"secret,omitempty"`
	SecretRotatedAt         time.Time  `json:"secret_rotated_at"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
	UpdatedBy               string     `json:"updated_by"`
}

func (a *API) webhookView(w *pki.Webhook, secret []byte) webhookJSON {
	v := webhookJSON{
		AccountID: w.AccountID, URL: w.URL, EffectiveNotifyDays: a.webhooks.DefaultNotifyDays(),
		Secret: string(secret), SecretRotatedAt: w.SecretRotatedAt.UTC(),
		CreatedAt: w.CreatedAt.UTC(), UpdatedAt: w.UpdatedAt.UTC(), UpdatedBy: w.UpdatedBy,
	}
	if w.NotifyDays > 0 {
		days := w.NotifyDays
		v.NotifyDays, v.EffectiveNotifyDays = &days, days
	}
	if w.PreviousExpiresAt != nil {
		t := w.PreviousExpiresAt.UTC()
		v.PreviousSecretExpiresAt = &t
	}
	return v
}

// putWebhookRequest sets an account's webhook. notify_days null or absent
// means the deployment's default. The read-only fields of webhookJSON are
// accepted and ignored, so that a GET answer can be edited and sent back,
// except that account_id must be the path's; the secret is never set by
// the caller.
type putWebhookRequest struct {
	URL        *string `json:"url"`
	NotifyDays *int    `json:"notify_days"`

	AccountID               *string    `json:"account_id"`
	EffectiveNotifyDays     *int       `json:"effective_notify_days"`
	SecretRotatedAt         *time.Time `json:"secret_rotated_at"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
	CreatedAt               *time.Time `json:"created_at"`
	UpdatedAt               *time.Time `json:"updated_at"`
	UpdatedBy               *string    `json:"updated_by"`
}

func (q *putWebhookRequest) bodyAccount() *string { return q.AccountID }

func (q *putWebhookRequest) Validate() error {
	if q.URL == nil {
		return pki.Malformed(`"url" is required`)
	}
	if q.NotifyDays != nil && (*q.NotifyDays < 1 || *q.NotifyDays > webhook.MaxNotifyDays) {
		return pki.Malformed(`"notify_days" must be from 1 to %d, or null for the default`, webhook.MaxNotifyDays)
	}
	return nil
}

func (a *API) getWebhook(w http.ResponseWriter, r *http.Request) {
	if a.webhooks == nil {
		a.notFound(w, r)
		return
	}
	hook, err := a.webhooks.Webhook(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.webhookView(hook, nil))
}

// putWebhook creates (201, with the secret) or changes (200, the secret
// unchanged and not shown) the account's webhook.
func (a *API) putWebhook(w http.ResponseWriter, r *http.Request) {
	if a.webhooks == nil {
		a.notFound(w, r)
		return
	}
	var req putWebhookRequest
	id, ok := a.decodeAccountBody(w, r, &req)
	if !ok {
		return
	}
	days := 0
	if req.NotifyDays != nil {
		days = *req.NotifyDays
	}
	p, _ := principal(r)
	hook, secret, err := a.webhooks.Configure(r.Context(), p, id, *req.URL, days, middleware.GetReqID(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if secret != nil {
		status = http.StatusCreated
	}
	writeJSON(w, status, a.webhookView(hook, secret))
}

func (a *API) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	if a.webhooks == nil {
		a.notFound(w, r)
		return
	}
	p, _ := principal(r)
	if err := a.webhooks.Remove(r.Context(), p, chi.URLParam(r, "id"), middleware.GetReqID(r.Context())); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// defaultKeepPreviousHours is how long a rotated-out secret keeps signing
// when the request does not say.
const defaultKeepPreviousHours = 24

type rotateSecretRequest struct {
	KeepPreviousHours *int `json:"keep_previous_hours"`
}

func (q *rotateSecretRequest) Validate() error {
	max := int(webhook.MaxKeepPrevious / time.Hour)
	if q.KeepPreviousHours != nil && (*q.KeepPreviousHours < 0 || *q.KeepPreviousHours > max) {
		return pki.Malformed(`"keep_previous_hours" must be from 0 to %d`, max)
	}
	return nil
}

func (a *API) rotateWebhookSecret(w http.ResponseWriter, r *http.Request) {
	if a.webhooks == nil {
		a.notFound(w, r)
		return
	}
	var req rotateSecretRequest
	if err := decode(w, r, &req, true); err != nil {
		a.fail(w, r, err)
		return
	}
	keep := defaultKeepPreviousHours
	if req.KeepPreviousHours != nil {
		keep = *req.KeepPreviousHours
	}
	p, _ := principal(r)
	hook, secret, err := a.webhooks.RotateSecret(r.Context(), p, chi.URLParam(r, "id"),
		time.Duration(keep)*time.Hour, middleware.GetReqID(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.webhookView(hook, secret))
}

type deliveryJSON struct {
	ID            string     `json:"id"`
	Type          string     `json:"type"`
	Serial        string     `json:"serial"`
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
	LastStatus    int        `json:"last_status,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	CompletedAt   *time.Time `json:"completed_at,omitempty"`
}

func deliveryView(d pki.WebhookDelivery) deliveryJSON {
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	v := deliveryJSON{
		ID: d.ID, Type: d.Kind, Serial: string(d.Serial), State: string(d.State), Attempts: d.Attempts,
		LastAttemptAt: utc(d.LastAttemptAt), LastStatus: d.LastStatus, LastError: d.LastError,
		CreatedAt: d.CreatedAt.UTC(), CompletedAt: utc(d.CompletedAt),
	}
	if d.State == pki.DeliveryPending {
		v.NextAttemptAt = utc(&d.NextAttemptAt)
	}
	return v
}

// listWebhookDeliveries serves the account's notices, newest first (query
// limit, default 100, at most 500).
func (a *API) listWebhookDeliveries(w http.ResponseWriter, r *http.Request) {
	if a.webhooks == nil {
		a.notFound(w, r)
		return
	}
	limit, err := queryLimit(r, webhook.MaxDeliveriesPage)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	id := chi.URLParam(r, "id")
	if _, err := a.accounts.Account(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	list, err := a.webhooks.Deliveries(r.Context(), id, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := struct {
		Deliveries []deliveryJSON `json:"deliveries"`
	}{Deliveries: make([]deliveryJSON, 0, len(list))}
	for _, d := range list {
		out.Deliveries = append(out.Deliveries, deliveryView(d))
	}
	writeJSON(w, http.StatusOK, out)
}
