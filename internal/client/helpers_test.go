package client_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/client"
	"github.com/pkid/pkid/internal/client/clienttest"
)

// enroll enrolls a fresh directory against the fake with the root pinned,
// remembering both of the fake's URLs.
func enroll(t *testing.T, s *clienttest.Server, req client.EnrollRequest) *client.Bundle {
	t.Helper()
	if req.Dir == "" {
		req.Dir = filepath.Join(t.TempDir(), "certs")
	}
	if req.CommonName == "" {
		req.CommonName = "svc.test"
	}
	pin, err := client.ParseFingerprint(s.RootFingerprint())
	if err != nil {
		t.Fatal(err)
	}
	root, err := client.FetchRoot(context.Background(), s.URL, pin)
	if err != nil {
		t.Fatal(err)
	}
	req.Root = root
	req.State = client.State{Server: s.URL, TLSServer: s.TLSURL}
	c, err := client.New(s.URL, nil, s.Token)
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Enroll(context.Background(), c, req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snapshot returns the contents of every file in dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || e.Name() == ".pkictl.lock" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

// mode returns the permission bits of dir/name.
func mode(t *testing.T, dir, name string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// due returns a clock set just past the certificate's renewal point.
func due(b *client.Bundle) func() time.Time {
	at := client.DueAt(b.Leaf).Add(time.Minute)
	return func() time.Time { return at }
}
