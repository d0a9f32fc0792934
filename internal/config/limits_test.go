package config

import (
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/ratelimit"
)

func env(m map[string]string) Getenv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestRateLimitSettings: the per-address limit's variables parse, default
// to a limit that is on, and refuse what they cannot mean.
func TestRateLimitSettings(t *testing.T) {
	c, err := FromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.UnauthenticatedLimit != (ratelimit.Rate{Limit: 30, Period: time.Minute}) || c.UnauthenticatedClients != 100_000 || c.TrustedProxies != nil {
		t.Errorf("defaults: %v, %d, %v", c.UnauthenticatedLimit, c.UnauthenticatedClients, c.TrustedProxies)
	}
	if err := c.Validate(false); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}

	c, err = FromEnv(env(map[string]string{
		"PKID_UNAUTHENTICATED_LIMIT":         "off",
		"PKID_UNAUTHENTICATED_LIMIT_CLIENTS": "5000",
		"PKID_TRUSTED_PROXIES":               "10.0.0.0/8, 192.0.2.1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.UnauthenticatedLimit.Off() || c.UnauthenticatedClients != 5000 || len(c.TrustedProxies) != 2 ||
		c.TrustedProxies[1].String() != "192.0.2.1/32" {
		t.Errorf("parsed: %v, %d, %v", c.UnauthenticatedLimit, c.UnauthenticatedClients, c.TrustedProxies)
	}
	if err := c.Validate(false); err != nil {
		t.Error(err)
	}

	for name, val := range map[string]string{
		"PKID_UNAUTHENTICATED_LIMIT":         "30",
		"PKID_UNAUTHENTICATED_LIMIT_CLIENTS": "lots",
		"PKID_TRUSTED_PROXIES":               "10.0.0.1/8",
		"PKID_LOGIN_LIMIT_USER":              "five",
		"PKID_LOGIN_WINDOW":                  "soon",
	} {
		if _, err := FromEnv(env(map[string]string{name: val})); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: error %v, want one naming the variable", name, val, err)
		}
	}
	for _, n := range []int{0, 999, 10_000_001} {
		c := Defaults()
		c.UnauthenticatedClients = n
		if err := c.Validate(false); err == nil || !strings.Contains(err.Error(), "PKID_UNAUTHENTICATED_LIMIT_CLIENTS") {
			t.Errorf("%d clients: %v", n, err)
		}
	}
}

// TestLoginSettings: the sign-in throttle's numbers come from the
// environment and are held to ranges that keep it a throttle.
func TestLoginSettings(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"PKID_LOGIN_LIMIT_USER": "10", "PKID_LOGIN_LIMIT_ADDRESS": "200", "PKID_LOGIN_WINDOW": "1h"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginUserAttempts != 10 || c.LoginAddressAttempts != 200 || c.LoginWindow != time.Hour {
		t.Errorf("parsed %d, %d, %s", c.LoginUserAttempts, c.LoginAddressAttempts, c.LoginWindow)
	}
	if err := c.Validate(false); err != nil {
		t.Error(err)
	}
	for name, change := range map[string]func(*Config){
		"PKID_LOGIN_LIMIT_USER":    func(c *Config) { c.LoginUserAttempts = 0 },
		"PKID_LOGIN_LIMIT_ADDRESS": func(c *Config) { c.LoginAddressAttempts = 100_001 },
		"PKID_LOGIN_WINDOW":        func(c *Config) { c.LoginWindow = 30 * time.Second },
	} {
		c := Defaults()
		change(&c)
		if err := c.Validate(false); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s out of range: %v", name, err)
		}
	}
}
