package config

import (
	"errors"
	"fmt"
	"strconv"
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
func webhookFromEnv(getenv Getenv, w *Webhook) []error {
	var errs []error
	integer := func(name string, dst *int) {
		if v, ok := getenv(name); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a whole number", name, v))
				return
			}
			*dst = n
		}
	}
	boolean := func(name string, dst *bool) {
		if v, ok := getenv(name); ok && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				return
			}
			*dst = b
		}
	}
	integer("PKID_WEBHOOK_NOTIFY_DAYS", &w.NotifyDays)
	integer("PKID_WEBHOOK_MAX_ATTEMPTS", &w.MaxAttempts)
	if v, ok := getenv("PKID_WEBHOOK_TIMEOUT"); ok && v != "" {
		d, err := ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("PKID_WEBHOOK_TIMEOUT: %w", err))
		} else {
			w.Timeout = d
		}
	}
	boolean("PKID_WEBHOOK_ALLOW_PRIVATE_NETWORKS", &w.AllowPrivateNetworks)
	boolean("PKID_WEBHOOK_ALLOW_HTTP_LOCALHOST", &w.AllowHTTPLocalhost)
	return errs
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
