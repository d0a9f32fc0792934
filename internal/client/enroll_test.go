package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/client"
	"github.com/pkid/pkid/internal/client/clienttest"
)

func TestEnrollWritesAVerifiedDirectory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		keyType client.KeyType
		check   func(*client.Bundle) bool
	}{
		{"ec", client.KeyEC, func(b *client.Bundle) bool {
			k, ok := b.Key.Public().(*ecdsa.PublicKey)
			return ok && k.Curve == elliptic.P256()
		}},
		{"rsa", client.KeyRSA, func(b *client.Bundle) bool {
			k, ok := b.Key.Public().(*rsa.PublicKey)
			return ok && k.N.BitLen() == 3072
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := clienttest.New(t)
			b := enroll(t, s, client.EnrollRequest{CommonName: "svc.test", DNSNames: []string{"svc.test", "alt.test"}, KeyType: tc.keyType, ValidityDays: 30})
			if !tc.check(b) {
				t.Errorf("key is %T", b.Key.Public())
			}
			if got := mode(t, b.Dir, client.KeyFile); got != 0o600 {
				t.Errorf("key.pem mode %o, want 600", got)
			}
			if fi, err := os.Stat(b.Dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("directory mode: %v %v", fi.Mode(), err)
			}
			loaded, err := client.Load(b.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if loaded.Serial() != b.Serial() || loaded.State.Serial != b.Serial() || loaded.State.AccountID != s.AccountID ||
				loaded.State.TLSServer != s.TLSURL || loaded.State.Server != s.URL {
				t.Errorf("loaded %+v, enrolled serial %s", loaded.State, b.Serial())
			}
			if !loaded.Root.Equal(s.CA.Root) || len(loaded.Chain) != 2 || !loaded.Chain[0].Equal(s.CA.Intermediate) {
				t.Errorf("root or chain not what pkid returned")
			}
			if _, err := loaded.Verify(time.Now()); err != nil {
				t.Errorf("Verify: %v", err)
			}
			if got := loaded.Leaf.NotAfter.Sub(loaded.Leaf.NotBefore); got != 30*24*time.Hour {
				t.Errorf("validity %v, want the 30 days asked for", got)
			}
			if strings.Join(loaded.Leaf.DNSNames, ",") != "svc.test,alt.test" {
				t.Errorf("DNS names %v", loaded.Leaf.DNSNames)
			}
		})
	}
}

// TestEnrollRefusesUntrustedAnswers: whatever is wrong with pkid's answer,
// nothing is written and the key that was made is removed.
func TestEnrollRefusesUntrustedAnswers(t *testing.T) {
	t.Parallel()
	other := clienttest.NewCA(t, "Other")
	tests := []struct {
		name   string
		tamper func(s *clienttest.Server, c *client.Certificate)
		want   string
	}{
		{"certificate for another key", func(s *clienttest.Server, c *client.Certificate) {
			key := clienttest.NewCA(t, "k").RootKey
			leaf := s.CA.Leaf(t, "svc.test", nil, key.Public(), time.Now().Add(-time.Minute), time.Hour, "")
			c.Certificate, c.Serial = clienttest.PEM(leaf), leaf.SerialNumber.Text(16)
		}, "not for this machine's key"},
		{"chain ends in another root", func(s *clienttest.Server, c *client.Certificate) {
			c.Chain = clienttest.PEM(s.CA.Intermediate) + clienttest.PEM(other.Root)
		}, "not the trusted root"},
		{"certificate from another CA", func(s *clienttest.Server, c *client.Certificate) {
			leaf := other.Leaf(t, "svc.test", nil, s.CA.RootKey.Public(), time.Now().Add(-time.Minute), time.Hour, "")
			c.Certificate, c.Serial = clienttest.PEM(leaf), leaf.SerialNumber.Text(16)
			c.Chain = other.ChainPEM()
		}, "not the trusted root"},
		{"serial differs from the certificate's", func(_ *clienttest.Server, c *client.Certificate) {
			c.Serial = "7001"
		}, "serial"},
		{"two certificates in the certificate field", func(s *clienttest.Server, c *client.Certificate) {
			c.Certificate += clienttest.PEM(s.CA.Intermediate)
		}, "2 certificates"},
		{"not PEM", func(_ *clienttest.Server, c *client.Certificate) { c.Certificate = "hello" }, "not PEM"},
		{"a private key among the chain", func(_ *clienttest.Server, c *client.Certificate) {
			c.Chain += "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
		}, `"PRIVATE KEY" block`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := clienttest.New(t)
			s.Tamper = func(c *client.Certificate) { tc.tamper(s, c) }
			dir := filepath.Join(t.TempDir(), "certs")
			c, _ := client.New(s.URL, nil, s.Token)
			_, err := client.Enroll(context.Background(), c, client.EnrollRequest{Dir: dir, CommonName: "svc.test", Root: s.CA.Root})
			if !errors.Is(err, client.ErrUntrusted) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "may want to revoke") {
				t.Fatalf("Enroll: %v, want ErrUntrusted mentioning %q and the serial to revoke", err, tc.want)
			}
			if files := snapshot(t, dir); len(files) != 0 {
				t.Errorf("files left behind: %v", keys(files))
			}
		})
	}
}

func TestEnrollRefusals(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	tests := []struct {
		name   string
		token  string
		cn     string
		status int
		kind   string
		title  string
	}{
		{"bad token", "nope", "svc.test", 401, "unauthenticated", "Authentication required"},
		{"name not allowed", s.Token, "forbidden.example", 403, "rejectedIdentifier", "Name not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "certs")
			c, _ := client.New(s.URL, nil, tc.token)
			_, err := client.Enroll(context.Background(), c, client.EnrollRequest{Dir: dir, CommonName: tc.cn, Root: s.CA.Root})
			var pe *client.Error
			if !errors.As(err, &pe) || pe.Status != tc.status || pe.Kind() != tc.kind || pe.Title != tc.title || pe.Detail == "" {
				t.Fatalf("Enroll: %#v", err)
			}
			if files := snapshot(t, dir); len(files) != 0 {
				t.Errorf("a refused enrolment left %v", keys(files))
			}
		})
	}
}

func TestEnrollWillNotOverwrite(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	b := enroll(t, s, client.EnrollRequest{})
	before := snapshot(t, b.Dir)
	c, _ := client.New(s.URL, nil, s.Token)
	_, err := client.Enroll(context.Background(), c, client.EnrollRequest{Dir: b.Dir, CommonName: "svc.test", Root: s.CA.Root})
	if !errors.Is(err, client.ErrEnrolled) {
		t.Fatalf("second enrolment: %v", err)
	}
	if after := snapshot(t, b.Dir); !equalMaps(before, after) {
		t.Errorf("the directory changed")
	}
	if n := s.Calls("issue"); n != 1 {
		t.Errorf("%d issue calls, want 1", n)
	}
}

func TestFetchRoot(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	other := clienttest.NewCA(t, "Other")
	tests := []struct {
		name    string
		url     string
		pin     string
		wantErr string
	}{
		{"plain HTTP, pinned", s.URL, s.RootFingerprint(), ""},
		{"plain HTTP, pinned with colons in upper case", s.URL, colons(s.RootFingerprint()), ""},
		{"plain HTTP, trust on first use", s.URL, "", ""},
		// pkid's own TLS listener: its certificate chains to the root being
		// fetched; the pin authenticates the answer instead.
		{"TLS listener, pinned", s.TLSURL, s.RootFingerprint(), ""},
		{"TLS listener, not pinned", s.TLSURL, "", "does not trust"},
		{"wrong pin", s.URL, client.Fingerprint(other.Root), "not the pinned root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var pin []byte
			if tc.pin != "" {
				var err error
				if pin, err = client.ParseFingerprint(tc.pin); err != nil {
					t.Fatal(err)
				}
			}
			root, err := client.FetchRoot(context.Background(), tc.url, pin)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FetchRoot: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !root.Equal(s.CA.Root) {
				t.Fatalf("FetchRoot: %v", err)
			}
		})
	}
}

func colons(hexFP string) string {
	var parts []string
	for i := 0; i < len(hexFP); i += 2 {
		parts = append(parts, strings.ToUpper(hexFP[i:i+2]))
	}
	return strings.Join(parts, ":")
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
