package config

import (
	"errors"
	"fmt"
	"time"
)

// Webhook configures expiry notifications by webhook (internal/webhook).
type Webhook struct {
	// NotifyDays is the notice period of webhooks that set none: a notice
	// goes out when a certificate is within this many days of its notAfter.
	NotifyDays int
	// MaxAttempts is how many times a notice is tried before it is marked
	// failed.
	MaxAttempts int
	// Timeout bounds one attempt (connect, TLS, request and answer).
	Timeout time.Duration
	// AllowPrivateNetworks lets notices go to loopback, private, link-local
	// and other non-public addresses. Off by default.
	AllowPrivateNetworks bool
	// AllowHTTPLocalhost accepts http:// URLs to localhost and loopback
	// addresses, for development. Off by default.
	AllowHTTPLocalhost bool
}

func defaultWebhook() Webhook {
	return Webhook{NotifyDays: 14, MaxAttempts: 12, Timeout: 10 * time.Second}
}

// webhookFromEnv reads the PKID_WEBHOOK_* variables into w.
func webhookFromEnv(env *envReader, w *Webhook) {
	env.integer("PKID_WEBHOOK_NOTIFY_DAYS", &w.NotifyDays)
	env.integer("PKID_WEBHOOK_MAX_ATTEMPTS", &w.MaxAttempts)
	env.duration("PKID_WEBHOOK_TIMEOUT", &w.Timeout)
	env.boolean("PKID_WEBHOOK_ALLOW_PRIVATE_NETWORKS", &w.AllowPrivateNetworks)
	env.boolean("PKID_WEBHOOK_ALLOW_HTTP_LOCALHOST", &w.AllowHTTPLocalhost)
}

func (w Webhook) validate() error {
	var errs []error
	if w.NotifyDays < 1 || w.NotifyDays > 365 {
		errs = append(errs, fmt.Errorf("PKID_WEBHOOK_NOTIFY_DAYS %d must be from 1 to 365", w.NotifyDays))
	}
	if w.MaxAttempts < 1 || w.MaxAttempts > 50 {
		errs = append(errs, fmt.Errorf("PKID_WEBHOOK_MAX_ATTEMPTS %d must be from 1 to 50", w.MaxAttempts))
	}
	if w.Timeout < time.Second || w.Timeout > time.Minute {
		errs = append(errs, fmt.Errorf("PKID_WEBHOOK_TIMEOUT %s must be between 1s and 1m", w.Timeout))
	}
	return errors.Join(errs...)
}
