package config

import (
	"strings"
	"testing"
	"time"
)

// TestWebhookSettings: the expiry notices' variables parse, default to the
// safe side (no private targets, no plain http), and refuse what they
// cannot mean.
func TestWebhookSettings(t *testing.T) {
	d := Defaults().Webhook
	if d.NotifyDays != 14 || d.MaxAttempts != 12 || d.Timeout != 10*time.Second || d.AllowPrivateNetworks || d.AllowHTTPLocalhost {
		t.Fatalf("defaults %+v", d)
	}
	c, err := FromEnv(env(map[string]string{
		"PKID_WEBHOOK_NOTIFY_DAYS": "30", "PKID_WEBHOOK_MAX_ATTEMPTS": "5", "PKID_WEBHOOK_TIMEOUT": "20s",
		"PKID_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true", "PKID_WEBHOOK_ALLOW_HTTP_LOCALHOST": "1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Webhook; w.NotifyDays != 30 || w.MaxAttempts != 5 || w.Timeout != 20*time.Second || !w.AllowPrivateNetworks || !w.AllowHTTPLocalhost {
		t.Fatalf("parsed %+v", w)
	}
	if err := c.Validate(false); err != nil {
		t.Fatal(err)
	}
	for name, val := range map[string]string{
		"PKID_WEBHOOK_NOTIFY_DAYS": "x", "PKID_WEBHOOK_MAX_ATTEMPTS": "1.5", "PKID_WEBHOOK_TIMEOUT": "soon",
		"PKID_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "maybe", "PKID_WEBHOOK_ALLOW_HTTP_LOCALHOST": "yes please",
	} {
		if _, err := FromEnv(env(map[string]string{name: val})); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: %v", name, val, err)
		}
	}
	for name, change := range map[string]func(*Webhook){
		"PKID_WEBHOOK_NOTIFY_DAYS":  func(w *Webhook) { w.NotifyDays = 366 },
		"PKID_WEBHOOK_MAX_ATTEMPTS": func(w *Webhook) { w.MaxAttempts = 0 },
		"PKID_WEBHOOK_TIMEOUT":      func(w *Webhook) { w.Timeout = 2 * time.Minute },
	} {
		c := Defaults()
		change(&c.Webhook)
		if err := c.Validate(false); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s out of range: %v", name, err)
		}
	}
}
