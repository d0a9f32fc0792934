package client_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/client"
	"github.com/pkid/pkid/internal/client/clienttest"
)

func TestRenewOverMTLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     func(b *client.Bundle) client.RenewOptions
		renewed  bool
		sameKey  bool
		revokeOK bool // the previous certificate ends revoked
	}{
		{"not due yet", func(*client.Bundle) client.RenewOptions { return client.RenewOptions{} }, false, true, false},
		{"due", func(b *client.Bundle) client.RenewOptions { return client.RenewOptions{Now: due(b)} }, true, true, false},
		{"forced", func(*client.Bundle) client.RenewOptions { return client.RenewOptions{Force: true} }, true, true, false},
		{"rekey", func(*client.Bundle) client.RenewOptions { return client.RenewOptions{Force: true, Rekey: true} }, true, false, false},
		{"revoke previous", func(*client.Bundle) client.RenewOptions {
			return client.RenewOptions{Force: true, RevokePrevious: true}
		}, true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := clienttest.New(t)
			b := enroll(t, s, client.EnrollRequest{DNSNames: []string{"svc.test"}})
			before := snapshot(t, b.Dir)
			res, err := client.Renew(context.Background(), b.Dir, tc.opts(b))
			if err != nil {
				t.Fatal(err)
			}
			if res.Renewed != tc.renewed || s.Calls("renew") != map[bool]int{false: 0, true: 1}[tc.renewed] {
				t.Fatalf("renewed %v after %d calls, want %v", res.Renewed, s.Calls("renew"), tc.renewed)
			}
			if !tc.renewed {
				if after := snapshot(t, b.Dir); !equalMaps(before, after) {
					t.Errorf("a renewal that was not due changed the directory")
				}
				return
			}
			now, err := client.Load(b.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if now.Serial() == b.Serial() || now.State.Serial != now.Serial() || !res.Previous.Equal(b.Leaf) {
				t.Errorf("serial %s (state %s) after renewing %s", now.Serial(), now.State.Serial, b.Serial())
			}
			if got := now.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); got.Equal(b.Leaf.PublicKey) != tc.sameKey {
				t.Errorf("same key: %v, want %v", !tc.sameKey, tc.sameKey)
			}
			if now.Leaf.Subject.CommonName != "svc.test" || strings.Join(now.Leaf.DNSNames, ",") != "svc.test" {
				t.Errorf("names changed: %v %v", now.Leaf.Subject, now.Leaf.DNSNames)
			}
			if got := mode(t, b.Dir, client.KeyFile); got != 0o600 {
				t.Errorf("key.pem mode %o", got)
			}
			for _, leftover := range []string{"key.pem.next", "cert.pem.next"} {
				if _, err := os.Stat(filepath.Join(b.Dir, leftover)); err == nil {
					t.Errorf("%s left behind", leftover)
				}
			}
			if revoked, reason := s.Revoked(b.Serial()); revoked != tc.revokeOK || (revoked && reason != "superseded") {
				t.Errorf("previous revoked=%v reason=%q", revoked, reason)
			}
		})
	}
}

func TestRenewRekeyKeepsKeyType(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	b := enroll(t, s, client.EnrollRequest{KeyType: client.KeyRSA})
	if _, err := client.Renew(context.Background(), b.Dir, client.RenewOptions{Force: true, Rekey: true}); err != nil {
		t.Fatal(err)
	}
	now, err := client.Load(b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := now.Key.Public().(*rsa.PublicKey); !ok {
		t.Errorf("rekey of an RSA key made a %T", now.Key.Public())
	}
}

// TestRenewRefusals: every way a renewal can fail leaves the directory as
// it was, with the cause as a typed error.
func TestRenewRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(t *testing.T, s *clienttest.Server, b *client.Bundle) client.RenewOptions
		check   func(error) bool
		noCalls bool
	}{
		{"revoked", func(t *testing.T, s *clienttest.Server, b *client.Bundle) client.RenewOptions {
			c, _ := client.New(s.URL, nil, s.Token)
			if _, err := c.Revoke(context.Background(), b.Serial(), "keyCompromise"); err != nil {
				t.Fatal(err)
			}
			return client.RenewOptions{Force: true}
		}, func(err error) bool { return client.IsKind(err, "certificateRevoked") }, false},
		{"already renewed", func(t *testing.T, s *clienttest.Server, b *client.Bundle) client.RenewOptions {
			c, _ := client.New(s.URL, nil, s.Token)
			if _, err := c.Renew(context.Background(), b.Serial(), client.RenewRequest{}); err != nil {
				t.Fatal(err)
			}
			return client.RenewOptions{Force: true}
		}, func(err error) bool { return client.IsKind(err, "alreadyReplaced") }, false},
		{"expired", func(_ *testing.T, _ *clienttest.Server, b *client.Bundle) client.RenewOptions {
			return client.RenewOptions{Now: func() time.Time { return b.Leaf.NotAfter.Add(time.Second) }}
		}, func(err error) bool { return errors.Is(err, client.ErrExpired) }, true},
		{"plain HTTP without a token", func(_ *testing.T, s *clienttest.Server, _ *client.Bundle) client.RenewOptions {
			return client.RenewOptions{Force: true, URL: s.URL}
		}, func(err error) bool { return err != nil && strings.Contains(err.Error(), "https://") }, true},
		{"wrong token", func(_ *testing.T, s *clienttest.Server, _ *client.Bundle) client.RenewOptions {
			return client.RenewOptions{Force: true, Token: "forged", URL: s.URL}
		}, func(err error) bool { return client.IsKind(err, "unauthenticated") }, false},
		{"server outage", func(_ *testing.T, s *clienttest.Server, _ *client.Bundle) client.RenewOptions {
			s.SetIntercept(unavailable)
			return client.RenewOptions{Force: true}
		}, func(err error) bool {
			var pe *client.Error
			return errors.As(err, &pe) && pe.Status == 503 && pe.Retryable() && pe.RetryAfter == 5*time.Second
		}, false},
		{"untrusted answer", func(_ *testing.T, s *clienttest.Server, _ *client.Bundle) client.RenewOptions {
			s.Tamper = func(c *client.Certificate) { c.Chain = clienttest.NewCA(t, "Evil").ChainPEM() }
			return client.RenewOptions{Force: true}
		}, func(err error) bool { return errors.Is(err, client.ErrUntrusted) }, false},
		{"untrusted answer to a rekey", func(_ *testing.T, s *clienttest.Server, _ *client.Bundle) client.RenewOptions {
			s.Tamper = func(c *client.Certificate) { c.Chain = clienttest.NewCA(t, "Evil").ChainPEM() }
			return client.RenewOptions{Force: true, Rekey: true}
		}, func(err error) bool { return errors.Is(err, client.ErrUntrusted) }, false},
		{"not a renewal of this certificate", func(_ *testing.T, s *clienttest.Server, _ *client.Bundle) client.RenewOptions {
			s.Tamper = func(c *client.Certificate) { c.RenewedFrom = "7001" }
			return client.RenewOptions{Force: true}
		}, func(err error) bool { return errors.Is(err, client.ErrUntrusted) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := clienttest.New(t)
			b := enroll(t, s, client.EnrollRequest{})
			opts := tc.setup(t, s, b)
			before := snapshot(t, b.Dir)
			calls := s.Calls("renew")
			_, err := client.Renew(context.Background(), b.Dir, opts)
			if !tc.check(err) {
				t.Fatalf("Renew: %v", err)
			}
			if after := snapshot(t, b.Dir); !equalMaps(before, after) {
				t.Errorf("a failed renewal changed the directory: %v -> %v", keys(before), keys(after))
			}
			if tc.noCalls && s.Calls("renew") != calls {
				t.Errorf("pkid was asked although the refusal is local")
			}
		})
	}
}

func unavailable(w http.ResponseWriter, _ *http.Request) bool {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Retry-After", "5")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(`{"type":"urn:pkid:error:serviceUnavailable","title":"Service unavailable","status":503,"detail":"a dependency of pkid is unavailable"}`))
	return true
}

func TestRenewWithTokenAndRememberedURL(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	b := enroll(t, s, client.EnrollRequest{})
	// A token renewal at the plain URL, with the TLS listener forgotten.
	res, err := client.Renew(context.Background(), b.Dir, client.RenewOptions{Force: true, Token: s.Token, URL: s.URL})
	if err != nil || !res.Renewed {
		t.Fatalf("token renewal: %v", err)
	}
	// A certificate renewal at a URL given once is remembered.
	st := res.Bundle.State
	st.TLSServer = ""
	writeStateFile(t, b.Dir, st)
	if _, err := client.Renew(context.Background(), b.Dir, client.RenewOptions{Force: true}); err == nil || !strings.Contains(err.Error(), "--tls-server") {
		t.Fatalf("renewal without a known listener: %v", err)
	}
	if _, err := client.Renew(context.Background(), b.Dir, client.RenewOptions{Force: true, URL: s.TLSURL + "/"}); err != nil {
		t.Fatal(err)
	}
	now, err := client.Load(b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if now.State.TLSServer != s.TLSURL {
		t.Errorf("tls_server %q, want %q", now.State.TLSServer, s.TLSURL)
	}
}

func writeStateFile(t *testing.T, dir string, st client.State) {
	t.Helper()
	b := `{"server":"` + st.Server + `","tls_server":"` + st.TLSServer + `","serial":"` + st.Serial + `"}`
	if err := os.WriteFile(filepath.Join(dir, client.StateFile), []byte(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestInterruptedRekey: a crash between the steps of a rekey leaves files
// that Load puts right: forward once the certificate was received, back
// before.
func TestInterruptedRekey(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	tests := []struct {
		name       string
		leave      func(t *testing.T, dir string, newKey, newCert []byte)
		wantNewKey bool
	}{
		{"key.pem.next only: undone", func(t *testing.T, dir string, newKey, _ []byte) {
			write(t, dir, "key.pem.next", newKey)
		}, false},
		{"both .next files: completed", func(t *testing.T, dir string, newKey, newCert []byte) {
			write(t, dir, "key.pem.next", newKey)
			write(t, dir, "cert.pem.next", newCert)
		}, true},
		{"key renamed, cert.pem.next left: completed", func(t *testing.T, dir string, newKey, newCert []byte) {
			write(t, dir, "key.pem", newKey)
			write(t, dir, "cert.pem.next", newCert)
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := enroll(t, s, client.EnrollRequest{})
			k, err := client.GenerateKey(client.KeyEC)
			if err != nil {
				t.Fatal(err)
			}
			keyPEM, _ := client.MarshalKeyPEM(k)
			leaf := s.CA.Leaf(t, "svc.test", nil, k.Public(), time.Now().Add(-time.Minute), time.Hour, "")
			tc.leave(t, b.Dir, keyPEM, []byte(clienttest.PEM(leaf)))

			got, err := client.Load(b.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if isNew := got.Leaf.Equal(leaf); isNew != tc.wantNewKey {
				t.Errorf("new certificate in place: %v, want %v", isNew, tc.wantNewKey)
			}
			for _, n := range []string{"key.pem.next", "cert.pem.next"} {
				if _, err := os.Stat(filepath.Join(b.Dir, n)); err == nil {
					t.Errorf("%s still there", n)
				}
			}
		})
	}
}

func write(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDueAt(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	nb := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		life time.Duration
		want time.Time
	}{
		{"90 days", 90 * 24 * time.Hour, nb.Add(60 * 24 * time.Hour)},
		{"3 hours", 3 * time.Hour, nb.Add(2 * time.Hour)},
	}
	k, _ := client.GenerateKey(client.KeyEC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := s.CA.Leaf(t, "x.test", nil, k.Public(), nb, tc.life, "")
			if got := client.DueAt(leaf); !got.Equal(tc.want) {
				t.Errorf("DueAt %v, want %v", got, tc.want)
			}
		})
	}
}
