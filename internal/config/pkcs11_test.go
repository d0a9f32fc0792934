package config

import (
	"strings"
	"testing"
)

// TestPKCS11Settings: the token replaces the passphrase, and its settings
// come complete or not at all.
func TestPKCS11Settings(t *testing.T) {
	hsm := func(c *Config) {
		c.PKCS11Module, c.PKCS11Token, c.PKCS11PINFile = "/usr/lib/softhsm/libsofthsm2.so", "pkid", "/etc/pkid/pin"
	}
	for _, tc := range []struct {
		name    string
		set     func(*Config)
		wantErr string
	}{
		{"neither passphrase nor token", func(*Config) {}, "PKID_KEY_PASSPHRASE"},
		{"passphrase", func(c *Config) { c.KeyPassphrase = []byte("p") }, ""},
		{"token", hsm, ""},
		{"token and passphrase", func(c *Config) { hsm(c); c.KeyPassphrase = []byte("p") }, ""},
		{"no PIN file", func(c *Config) { hsm(c); c.PKCS11PINFile = "" }, "go together"},
		{"no token label", func(c *Config) { hsm(c); c.PKCS11Token = "" }, "go together"},
		{"relative module", func(c *Config) { hsm(c); c.PKCS11Module = "libsofthsm2.so" }, "absolute path"},
		{"root token", func(c *Config) { hsm(c); c.PKCS11RootToken, c.PKCS11RootPINFile = "root", "/media/pin" }, ""},
		{"root token without its PIN", func(c *Config) { hsm(c); c.PKCS11RootToken = "root" }, "ROOT_PIN_FILE"},
		{"root token without a module", func(c *Config) {
			c.KeyPassphrase = []byte("p")
			c.PKCS11RootToken, c.PKCS11RootPINFile = "root", "/media/pin"
		}, "PKID_PKCS11_MODULE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			tc.set(&c)
			err := c.Validate(true)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate: %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
	env := map[string]string{"PKID_PKCS11_MODULE": "/m.so", "PKID_PKCS11_TOKEN": "t", "PKID_PKCS11_PIN_FILE": "/p",
		"PKID_PKCS11_ROOT_TOKEN": "r", "PKID_PKCS11_ROOT_PIN_FILE": "/rp"}
	c, err := FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.PKCS11Module != "/m.so" || c.PKCS11Token != "t" || c.PKCS11PINFile != "/p" || c.PKCS11RootToken != "r" || c.PKCS11RootPINFile != "/rp" || !c.HSM() {
		t.Fatalf("FromEnv: %+v", c)
	}
}
