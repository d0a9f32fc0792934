package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/webhook"
)

// webhookCard is the account page's "Expiry notices" card: the account's
// webhook (nil when it has none), the deployment's default notice period,
// what the form last sent (to refill it after a refusal), and the secret
// when this very answer created or rotated it.
type webhookCard struct {
	Webhook     *pki.Webhook
	DefaultDays int
	URL         string
	Days        string
	Secret      string
}

// webhookCard reads the account's webhook for its page; nil when the node
// has no webhook service.
func (a *Admin) webhookCard(ctx context.Context, id string) (*webhookCard, error) {
	if a.opts.Webhooks == nil {
		return nil, nil
	}
	c := &webhookCard{DefaultDays: a.opts.Webhooks.DefaultNotifyDays()}
	w, err := a.opts.Webhooks.Webhook(ctx, id)
	switch {
	case errors.Is(err, pki.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		c.Webhook, c.URL = w, w.URL
		if w.NotifyDays > 0 {
			c.Days = strconv.Itoa(w.NotifyDays)
		}
	}
	return c, nil
}

// setWebhook creates or changes the account's webhook from the form (url,
// notify_days: empty for the default). A new webhook's secret is shown on
// this answer only, as a minted token is.
func (a *Admin) setWebhook(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if a.opts.Webhooks == nil {
		a.fail(w, r, pki.ErrNotFound)
		return
	}
	rawURL, rawDays := r.PostForm.Get("url"), strings.TrimSpace(r.PostForm.Get("notify_days"))
	refill := func(c *webhookCard) { c.URL, c.Days = rawURL, rawDays }
	days := 0
	if rawDays != "" {
		n, err := strconv.Atoi(rawDays)
		if err != nil || n < 1 || n > webhook.MaxNotifyDays {
			a.webhookError(w, r, id, pki.Malformed("the notice period must be a whole number of days from 1 to %d, or empty for the default", webhook.MaxNotifyDays), refill)
			return
		}
		days = n
	}
	_, secret, err := a.opts.Webhooks.Configure(r.Context(), principal(r), id, rawURL, days, requestID(r))
	if err != nil {
		a.webhookError(w, r, id, err, refill)
		return
	}
	if secret == nil {
		seeOther(w, r, "/admin/accounts/"+url.PathEscape(id)+"?done=webhook-updated")
		return
	}
	a.showWebhookSecret(w, r, id, secret, "Webhook created. Copy its secret now: pkid shows it this once.")
}

// rotateWebhook gives the webhook a new secret; the old one keeps signing
// for a day.
func (a *Admin) rotateWebhook(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if a.opts.Webhooks == nil {
		a.fail(w, r, pki.ErrNotFound)
		return
	}
	_, secret, err := a.opts.Webhooks.RotateSecret(r.Context(), principal(r), id, 24*time.Hour, requestID(r))
	if err != nil {
		a.webhookError(w, r, id, err, nil)
		return
	}
	a.showWebhookSecret(w, r, id, secret, "New secret made. Copy it now: pkid shows it this once. The old secret keeps signing beside it for 24 hours.")
}

// removeWebhook removes the account's webhook.
func (a *Admin) removeWebhook(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if a.opts.Webhooks == nil {
		a.fail(w, r, pki.ErrNotFound)
		return
	}
	if err := a.opts.Webhooks.Remove(r.Context(), principal(r), id, requestID(r)); err != nil {
		a.webhookError(w, r, id, err, nil)
		return
	}
	seeOther(w, r, "/admin/accounts/"+url.PathEscape(id)+"?done=webhook-removed")
}

func (a *Admin) showWebhookSecret(w http.ResponseWriter, r *http.Request, id string, secret []byte, msg string) {
	d, err := a.accountPageData(r, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if d.Webhook != nil {
		d.Webhook.Secret = string(secret)
	}
	a.render(w, r, http.StatusCreated, "account.html", view{Title: d.Account.Name, Nav: "accounts", Flash: msg, Data: d})
}

// webhookError shows a refused webhook form on the account page, refilled
// by refill (may be nil); other errors are the generic error page.
func (a *Admin) webhookError(w http.ResponseWriter, r *http.Request, id string, err error, refill func(*webhookCard)) {
	a.refillAccountPage(w, r, id, err, func(d *accountPageData) {
		if refill != nil && d.Webhook != nil {
			refill(d.Webhook)
		}
	})
}
