package webhook

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pkid/pkid/internal/pki"
)

// Audit actions of deliveries. Every attempt is audited, in the transaction
// that records its outcome.
const (
	// ActionDelivered: the receiver answered 2xx (detail: delivery_id,
	// url, attempt, status).
	ActionDelivered = "webhook.delivered"
	// ActionAttemptFailed: an attempt failed and another is scheduled
	// (detail: delivery_id, url, attempt, status or error,
	// next_attempt_at). Outcome failure.
	ActionAttemptFailed = "webhook.delivery.retrying"
	// ActionFailed: the last attempt failed; no more will be made.
	// Outcome failure.
	ActionFailed = "webhook.delivery.failed"
	// ActionCancelled: the notice became moot before it was delivered
	// (detail: delivery_id, reason).
	ActionCancelled = "webhook.delivery.cancelled"
)

// Outcomes as the Observer hears them.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomeFailed    = "failed"
	OutcomeCancelled = "cancelled"
)

// Observer hears about deliveries, for metrics.
type Observer interface {
	// WebhookDelivery is called once per attempt or cancellation with one
	// of the Outcome constants.
	WebhookDelivery(outcome string)
	// WebhookPending reports the deliveries pending in the whole database.
	WebhookPending(n int)
}

// OutboxStore is what the job needs from the database.
type OutboxStore interface {
	// EnqueueExpiring makes a pending delivery for every certificate due a
	// notice at now, once per certificate.
	EnqueueExpiring(ctx context.Context, now time.Time, defaultDays int) (int, error)
	// ClaimDelivery claims the soonest due delivery that no one else holds
	// and leases it for lease (no other node claims it meanwhile), lets
	// handle send it with no transaction open, and writes its outcome and
	// audit event if the lease still holds. false: none was due.
	ClaimDelivery(ctx context.Context, now time.Time, lease time.Duration, handle func(*pki.DueDelivery) pki.DeliveryOutcome) (bool, error)
	// PendingDeliveries counts pending deliveries.
	PendingDeliveries(ctx context.Context) (int, error)
}

// JobConfig configures a Job. Zero fields take the defaults.
type JobConfig struct {
	// NotifyDays is the notice period of webhooks that set none. Default
	// DefaultNotifyDays.
	NotifyDays int
	// MaxAttempts is how many times a notice is tried before it is marked
	// failed. Default 12: with the default backoff, attempts spread over
	// about 14 hours.
	MaxAttempts int
	// RetryBase is the wait after the first failed attempt; it doubles
	// after each failure up to RetryMax. Each wait is drawn uniformly from
	// its upper half (jitter), so that notices that failed together do not
	// come back together. Defaults 1 minute and 6 hours.
	RetryBase time.Duration
	RetryMax  time.Duration
	// Interval is how often the job looks for certificates due a notice and
	// for deliveries due an attempt. Default 1 minute.
	Interval time.Duration
	// Workers is how many deliveries one node sends at once. Default 2.
	// An attempt holds no database connection while it waits on the
	// receiver: the delivery is leased (OutboxStore.ClaimDelivery).
	Workers int
	// Timeout bounds one attempt. Default DefaultTimeout.
	Timeout time.Duration
	// Policy restricts where notices may go.
	Policy TargetPolicy
	// RootCAs verifies receivers' certificates; the system's roots when nil.
	RootCAs *x509.CertPool
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Log is where the job logs; discarded when nil.
	Log *slog.Logger
	// Observer hears about outcomes; nil: no one.
	Observer Observer
}

func (c JobConfig) withDefaults() JobConfig {
	if c.NotifyDays <= 0 {
		c.NotifyDays = DefaultNotifyDays
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 12
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Minute
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 6 * time.Hour
	}
	if c.Interval <= 0 {
		c.Interval = time.Minute
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c
}

type nopObserver struct{}

func (nopObserver) WebhookDelivery(string) {}
func (nopObserver) WebhookPending(int)     {}

// MaxAttemptsLimit is the most attempts a notice may be given (the
// database bounds the counter).
const MaxAttemptsLimit = 50

// Job finds certificates due an expiry notice and delivers the notices.
// Every node runs one; the database makes sure each notice is made once and
// sent by one node at a time.
type Job struct {
	st     OutboxStore
	keys   *Keyring
	cfg    JobConfig
	client *http.Client
}

// NewJob returns the job over st, opening secrets with keys.
func NewJob(st OutboxStore, keys *Keyring, cfg JobConfig) (*Job, error) {
	cfg = cfg.withDefaults()
	switch {
	case st == nil || keys == nil:
		return nil, errors.New("webhook: a job needs a store and a keyring")
	case cfg.MaxAttempts > MaxAttemptsLimit:
		return nil, fmt.Errorf("webhook: %d attempts is more than %d", cfg.MaxAttempts, MaxAttemptsLimit)
	case cfg.NotifyDays > MaxNotifyDays:
		return nil, fmt.Errorf("webhook: a notice period of %d days is more than %d", cfg.NotifyDays, MaxNotifyDays)
	case cfg.RetryMax < cfg.RetryBase:
		return nil, errors.New("webhook: the longest retry wait is shorter than the first")
	}
	return &Job{st: st, keys: keys, cfg: cfg, client: newClient(cfg.Policy, cfg.Timeout, cfg.RootCAs)}, nil
}

// Run runs the job every Interval until ctx ends. Failures are logged and
// the next round tries again.
func (j *Job) Run(ctx context.Context) {
	t := time.NewTicker(j.cfg.Interval)
	defer t.Stop()
	for {
		if err := j.RunOnce(ctx); err != nil && ctx.Err() == nil {
			j.cfg.Log.Error("webhook job failed; will retry", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce makes the notices due now, then sends every delivery that is due,
// Workers at a time, and reports how many remain pending.
func (j *Job) RunOnce(ctx context.Context) error {
	now := j.cfg.Now()
	n, err := j.st.EnqueueExpiring(ctx, now, j.cfg.NotifyDays)
	if err != nil {
		return err
	}
	if n > 0 {
		j.cfg.Log.Info("certificates due an expiry notice", "count", n)
	}
	var wg sync.WaitGroup
	errs := make([]error, j.cfg.Workers)
	for i := range j.cfg.Workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				claimed, err := j.st.ClaimDelivery(ctx, j.cfg.Now(), j.lease(), j.deliver(ctx))
				if err != nil {
					errs[i] = err
					return
				}
				if !claimed {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	pending, err := j.st.PendingDeliveries(ctx)
	if err != nil {
		return err
	}
	j.cfg.Observer.WebhookPending(pending)
	return nil
}

// lease is how long a claimed delivery stays out of other nodes' reach:
// long enough for one attempt (the HTTP timeout, plus opening the secret and
// writing the outcome), short enough that a delivery whose node died is
// sent again within minutes.
func (j *Job) lease() time.Duration { return 2*j.cfg.Timeout + time.Minute }

// deliver returns the handler for one claimed delivery: cancel it when
// moot, else send it and say what became of it.
func (j *Job) deliver(ctx context.Context) func(*pki.DueDelivery) pki.DeliveryOutcome {
	return func(d *pki.DueDelivery) pki.DeliveryOutcome {
		now := j.cfg.Now()
		if reason := moot(d, now); reason != "" {
			j.cfg.Observer.WebhookDelivery(OutcomeCancelled)
			return pki.DeliveryOutcome{
				State: pki.DeliveryCancelled, Attempts: d.Attempts, NextAttemptAt: d.NextAttemptAt,
				LastStatus: d.LastStatus, LastError: d.LastError, CompletedAt: &now,
				Event: j.event(d, ActionCancelled, pki.OutcomeSuccess, map[string]any{"reason": reason}),
			}
		}
		status, errText := j.send(ctx, d, now)
		attempt := d.Attempts + 1
		detail := map[string]any{"url": redactURL(d.Webhook.URL), "attempt": attempt}
		if status != 0 {
			detail["status"] = status
		}
		if errText != "" {
			detail["error"] = errText
		}
		out := pki.DeliveryOutcome{Attempts: attempt, AttemptedAt: &now, LastStatus: status, LastError: errText, NextAttemptAt: d.NextAttemptAt}
		switch {
		case errText == "":
			out.State, out.CompletedAt = pki.DeliveryDelivered, &now
			out.Event = j.event(d, ActionDelivered, pki.OutcomeSuccess, detail)
			j.cfg.Observer.WebhookDelivery(OutcomeDelivered)
		case attempt >= j.cfg.MaxAttempts:
			out.State, out.CompletedAt = pki.DeliveryFailed, &now
			out.Event = j.event(d, ActionFailed, pki.OutcomeFailure, detail)
			j.cfg.Observer.WebhookDelivery(OutcomeFailed)
			j.cfg.Log.Warn("webhook notice failed for good", "delivery_id", d.ID, "account_id", d.AccountID,
				"serial", d.Serial, "attempts", attempt, "error", errText)
		default:
			out.State, out.NextAttemptAt = pki.DeliveryPending, now.Add(j.backoff(attempt))
			detail["next_attempt_at"] = out.NextAttemptAt.UTC()
			out.Event = j.event(d, ActionAttemptFailed, pki.OutcomeFailure, detail)
			j.cfg.Observer.WebhookDelivery(OutcomeRetry)
		}
		return out
	}
}

func (j *Job) event(d *pki.DueDelivery, action, outcome string, detail map[string]any) pki.AuditEvent {
	detail["delivery_id"] = d.ID
	return pki.AuditEvent{Actor: "system", Action: action, Outcome: outcome, AccountID: d.AccountID, Serial: d.Serial, Detail: detail}
}

// moot says why a notice need not be sent any more, or "" when it must.
func moot(d *pki.DueDelivery, now time.Time) string {
	switch {
	case d.Webhook == nil:
		return "the account has no webhook any more"
	case !d.AccountActive:
		return "the account is suspended"
	case d.Revoked:
		return "the certificate was revoked"
	case d.Renewed:
		return "the certificate was renewed"
	case !now.Before(d.NotAfter):
		return "the certificate has expired"
	}
	return ""
}

// backoff returns the wait after the attempt-th failed attempt: RetryBase
// doubled attempt-1 times, at most RetryMax, drawn from its upper half.
func (j *Job) backoff(attempt int) time.Duration {
	d := j.cfg.RetryMax
	if shift := attempt - 1; shift < 32 && j.cfg.RetryBase<<shift < j.cfg.RetryMax && j.cfg.RetryBase<<shift > 0 {
		d = j.cfg.RetryBase << shift
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Notice is the JSON body of an expiry notice.
type Notice struct {
	ID        string    `json:"id"`   // the delivery id, as in Pkid-Delivery
	Type      string    `json:"type"` // "certificate.expiring"
	CreatedAt time.Time `json:"created_at"`
	AccountID string    `json:"account_id"`
	Serial    string    `json:"serial"`
	SubjectCN string    `json:"subject_cn"`
	NotAfter  time.Time `json:"not_after"`
	// DaysLeft is whole days from CreatedAt to NotAfter, rounded down:
	// the same in every attempt of one notice.
	DaysLeft int `json:"days_left"`
}

// noticeFor builds d's body. It depends only on the delivery's row, so
// every attempt sends the same bytes.
func noticeFor(d *pki.DueDelivery) ([]byte, error) {
	return json.Marshal(Notice{
		ID: d.ID, Type: d.Kind, CreatedAt: d.CreatedAt.UTC(), AccountID: d.AccountID, Serial: string(d.Serial),
		SubjectCN: d.SubjectCN, NotAfter: d.NotAfter.UTC(), DaysLeft: int(d.NotAfter.Sub(d.CreatedAt) / (24 * time.Hour)),
	})
}

// maxErrorText bounds the error kept with a delivery.
const maxErrorText = 300

// send makes one attempt and returns the receiver's status (0 when it gave
// none) and, when the attempt failed, why.
func (j *Job) send(ctx context.Context, d *pki.DueDelivery, now time.Time) (int, string) {
	secrets, err := j.keys.secrets(ctx, d.Webhook, now)
	if err != nil {
		j.cfg.Log.Error("cannot open a webhook secret", "account_id", d.AccountID, "error", err)
		return 0, "pkid could not open the webhook secret"
	}
	body, err := noticeFor(d)
	if err != nil {
		return 0, err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Webhook.URL, bytes.NewReader(body))
	if err != nil {
		return 0, truncate("bad webhook URL: " + err.Error())
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "pkid-webhook/1")
	h.Set(HeaderDelivery, d.ID)
	h.Set(HeaderEvent, d.Kind)
	h.Set(HeaderSignature, SignatureHeader(now, body, secrets...))
	resp, err := j.client.Do(req)
	if err != nil {
		return 0, truncate(attemptError(ctx, err))
	}
	// Read a bounded part of the answer so that the connection can be
	// reused; what the receiver says is not kept.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Sprintf("the receiver answered %d", resp.StatusCode)
	}
	return resp.StatusCode, ""
}

// truncate cuts s to maxErrorText bytes at a rune boundary.
func truncate(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	s = s[:maxErrorText]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
