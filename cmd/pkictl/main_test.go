package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/client"
	"github.com/pkid/pkid/internal/client/clienttest"
)

// pkictl runs the command line in-process with the environment vars (and
// nothing from the real one) at the clock now (nil: time.Now).
func pkictl(t *testing.T, vars map[string]string, now func() time.Time, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if now == nil {
		now = time.Now
	}
	e := &env{getenv: func(k string) string { return vars[k] }, stdout: &out, stderr: &errb, now: now}
	code = e.run(context.Background(), args)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	t.Parallel()
	type helpCase struct {
		name string
		args []string
		code int
		want string
	}
	tests := []helpCase{
		{"no arguments", nil, exitUsage, "Usage:"},
		{"help", []string{"help"}, exitOK, "Exit codes:"},
		{"--help", []string{"--help"}, exitOK, "PKICTL_"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `no command "frobnicate"`},
		{"help for an unknown command", []string{"help", "frobnicate"}, exitUsage, `no command "frobnicate"`},
	}
	for name := range commands {
		tests = append(tests,
			helpCase{name + " --help", []string{name, "--help"}, exitOK, "Examples:"},
			helpCase{"help " + name, []string{"help", name}, exitOK, "Exit codes:"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := pkictl(t, nil, nil, tc.args...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
				t.Errorf("exit %d, want %d; output lacks %q:\n%s%s", code, tc.code, tc.want, stdout, stderr)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"enroll without a server", nil, []string{"enroll", "--token", "t", "--cn", "x", "--out", "d"}, "--server is required"},
		{"enroll without a token", nil, []string{"enroll", "--server", "http://x", "--cn", "x", "--out", "d"}, "PKICTL_TOKEN"},
		{"enroll without a name", nil, []string{"enroll", "--server", "http://x", "--token", "t", "--out", "d"}, "--cn is required"},
		{"enroll without a directory", nil, []string{"enroll", "--server", "http://x", "--token", "t", "--cn", "x"}, "--out is required"},
		{"enroll with a DSA key", nil, []string{"enroll", "--server", "http://x", "--token", "t", "--cn", "x", "--out", "d", "--key-type", "dsa"}, "use ec or rsa"},
		{"enroll with a SHA-1 fingerprint", nil, []string{"enroll", "--server", "http://x", "--token", "t", "--cn", "x", "--out", "d", "--root-fingerprint", strings.Repeat("ab", 20)}, "64 hexadecimal digits"},
		{"enroll with a non-URL", nil, []string{"enroll", "--server", "pkid:8080", "--token", "t", "--cn", "x", "--out", "d"}, "--server"},
		{"enroll with a plain TLS server", nil, []string{"enroll", "--server", "http://x", "--tls-server", "http://x", "--token", "t", "--cn", "x", "--out", "d"}, "https://"},
		{"a stray argument", nil, []string{"status", "--dir", "d", "extra"}, `unexpected argument "extra"`},
		{"an unknown flag", nil, []string{"status", "--dri", "d"}, "flag provided but not defined"},
		{"renew without a directory", nil, []string{"renew"}, "--dir is required"},
		{"watch and force", nil, []string{"renew", "--dir", "d", "--watch", "--force"}, "cannot be combined"},
		{"key type without rekey", nil, []string{"renew", "--dir", "d", "--key-type", "rsa"}, "--rekey only"},
		{"revoke without a reason", nil, []string{"revoke", "--dir", "d", "--token", "t"}, "--reason is required"},
		{"revoke for a made-up reason", nil, []string{"revoke", "--dir", "d", "--token", "t", "--reason", "boredom"}, "keyCompromise"},
		{"revoke privilegeWithdrawn (admins only)", nil, []string{"revoke", "--dir", "d", "--token", "t", "--reason", "privilegeWithdrawn"}, "use one of"},
		{"revoke a malformed serial", nil, []string{"revoke", "--dir", "d", "--token", "t", "--reason", "superseded", "--serial", "xyz"}, "not a serial"},
		{"bad boolean in the environment", map[string]string{"PKICTL_FORCE": "perhaps"}, []string{"renew", "--dir", "d"}, "PKICTL_FORCE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := pkictl(t, tc.vars, nil, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) || stdout != "" {
				t.Errorf("exit %d (want 2), stderr lacks %q:\n%s%s", code, tc.want, stdout, stderr)
			}
		})
	}
}

// TestLifecycle: enroll, status, renew, revoke, status — with flags from the
// environment, against the fake pkid.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	dir := filepath.Join(t.TempDir(), "certs")
	vars := map[string]string{"PKICTL_SERVER": s.URL, "PKICTL_TOKEN": s.Token, "PKICTL_DIR": dir}

	code, out, errOut := pkictl(t, vars, nil, "enroll", "--cn", "svc.test", "--dns", "svc.test,alt.test",
		"--tls-server", s.TLSURL, "--root-fingerprint", s.RootFingerprint())
	if code != exitOK {
		t.Fatalf("enroll: exit %d\n%s%s", code, out, errOut)
	}
	first := regexp.MustCompile(`enrolled: serial ([0-9a-f]+)`).FindStringSubmatch(out)
	if first == nil || !strings.Contains(out, "(pinned)") || !strings.Contains(out, "[svc.test alt.test]") {
		t.Fatalf("enroll output:\n%s", out)
	}
	b, err := client.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	dueAt := client.DueAt(b.Leaf)

	steps := []struct {
		name string
		now  func() time.Time
		args []string
		code int
		want string
	}{
		{"status", nil, []string{"status"}, exitOK, "ocsp:        good"},
		{"check-only before the due point", nil, []string{"renew", "--check-only"}, exitNotDue, "not due"},
		{"renew before the due point", nil, []string{"renew"}, exitOK, "not due: serial " + first[1]},
		{"check-only after the due point", func() time.Time { return dueAt.Add(time.Hour) }, []string{"renew", "--check-only"}, exitOK, "due: serial"},
		{"renew after the due point", func() time.Time { return dueAt.Add(time.Hour) }, []string{"renew"}, exitOK, "renewed: serial " + first[1] + " -> "},
		{"revoke the previous certificate", nil, []string{"revoke", "--reason", "superseded", "--serial", first[1]}, exitOK, "serial " + first[1] + ": revoked (superseded)"},
		{"the current one is still good", nil, []string{"status"}, exitOK, "ocsp:        good"},
		{"revoke the current certificate", nil, []string{"revoke", "--reason", "keyCompromise"}, exitOK, ": revoked (keyCompromise)"},
		{"status of a revoked certificate", nil, []string{"status"}, exitNotGood, "REVOKED"},
		{"status offline", nil, []string{"status", "--offline"}, exitOK, "chain:       ok"},
		{"status once expired", func() time.Time { return time.Now().Add(100 * 24 * time.Hour) }, []string{"status", "--offline"}, exitNotGood, "status:      expired"},
	}
	for _, st := range steps {
		code, out, errOut := pkictl(t, vars, st.now, st.args...)
		if code != st.code || !strings.Contains(out, st.want) {
			t.Errorf("%s: exit %d (want %d), output lacks %q:\n%s%s", st.name, code, st.code, st.want, out, errOut)
		}
	}
}

// TestRefusalsShowTheProblem: pkid's title and detail reach the user, with a
// hint where there is an obvious next step.
func TestRefusalsShowTheProblem(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	dir := filepath.Join(t.TempDir(), "certs")
	code, _, stderr := pkictl(t, map[string]string{"PKICTL_TOKEN": s.Token}, nil, "enroll", "--server", s.URL,
		"--cn", "forbidden.example", "--out", dir, "--root-fingerprint", s.RootFingerprint())
	if code != exitFailed || !strings.Contains(stderr, "pkid refused: Name not allowed (HTTP 403)") ||
		!strings.Contains(stderr, "does not allow forbidden.example") {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "key.pem")); err == nil {
		t.Errorf("a refused enrolment left key.pem")
	}

	code, _, stderr = pkictl(t, map[string]string{"PKICTL_TOKEN": "expired"}, nil, "enroll", "--server", s.URL,
		"--cn", "svc.test", "--out", dir, "--root-fingerprint", s.RootFingerprint())
	if code != exitFailed || !strings.Contains(stderr, "(HTTP 401)") || !strings.Contains(stderr, "ask your administrator") {
		t.Errorf("exit %d:\n%s", code, stderr)
	}

	code, _, stderr = pkictl(t, map[string]string{"PKICTL_TOKEN": s.Token}, nil, "enroll", "--server", s.URL,
		"--cn", "svc.test", "--out", dir, "--root-fingerprint", strings.Repeat("00", 32))
	if code != exitFailed || !strings.Contains(stderr, "not the pinned root") {
		t.Errorf("wrong pin: exit %d:\n%s", code, stderr)
	}
	if s.Calls("issue") != 2 {
		t.Errorf("a wrong pin must stop enrolment before the CSR is sent (%d issue calls)", s.Calls("issue"))
	}
}

func TestEnrollWithoutPinShowsTheFingerprint(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, stderr := pkictl(t, map[string]string{"PKICTL_TOKEN": s.Token}, nil, "enroll", "--server", s.URL, "--cn", "svc.test", "--out", dir)
	if code != exitOK || !strings.Contains(out, s.RootFingerprint()) || !strings.Contains(out, "Verify this fingerprint with your platform's administrators") {
		t.Fatalf("exit %d:\n%s%s", code, out, stderr)
	}
	if s.Calls("root") != 1 {
		t.Errorf("root fetched %d times", s.Calls("root"))
	}
	// Later commands use the stored root: never fetched again.
	if code, out, stderr := pkictl(t, nil, nil, "renew", "--dir", dir, "--force", "--tls-server", s.TLSURL); code != exitOK {
		t.Fatalf("renew: exit %d\n%s%s", code, out, stderr)
	}
	if s.Calls("root") != 1 {
		t.Errorf("root fetched again after enrolment")
	}
}

func TestRenewHook(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	dir := filepath.Join(t.TempDir(), "certs")
	if code, out, stderr := pkictl(t, map[string]string{"PKICTL_TOKEN": s.Token}, nil, "enroll", "--server", s.URL,
		"--tls-server", s.TLSURL, "--cn", "svc.test", "--out", dir, "--root-fingerprint", s.RootFingerprint()); code != exitOK {
		t.Fatalf("enroll: %d\n%s%s", code, out, stderr)
	}
	marker := filepath.Join(t.TempDir(), "hook")
	code, out, stderr := pkictl(t, nil, nil, "renew", "--dir", dir, "--force", "--hook", `echo "$PKICTL_PREVIOUS_SERIAL $PKICTL_SERIAL" > `+marker)
	if code != exitOK {
		t.Fatalf("renew: %d\n%s%s", code, out, stderr)
	}
	got, err := os.ReadFile(marker)
	m := regexp.MustCompile(`renewed: serial ([0-9a-f]+) -> ([0-9a-f]+)`).FindStringSubmatch(out)
	if err != nil || m == nil || strings.TrimSpace(string(got)) != m[1]+" "+m[2] {
		t.Errorf("hook wrote %q (%v); renew said %q", got, err, out)
	}
	code, _, stderr = pkictl(t, nil, nil, "renew", "--dir", dir, "--force", "--hook", "exit 3")
	if code != exitFailed || !strings.Contains(stderr, "the certificate was renewed") {
		t.Errorf("failing hook: exit %d\n%s", code, stderr)
	}
}

// TestEnrollAtTheTLSListener: with a pin, pkid's own TLS listener (whose
// certificate no system trusts) serves enrolment too, and is remembered for
// renewal.
func TestEnrollAtTheTLSListener(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	dir := filepath.Join(t.TempDir(), "certs")
	vars := map[string]string{"PKICTL_TOKEN": s.Token}
	if code, out, stderr := pkictl(t, vars, nil, "enroll", "--server", s.TLSURL, "--cn", "svc.test", "--out", dir,
		"--root-fingerprint", colons(s.RootFingerprint())); code != exitOK {
		t.Fatalf("enroll: exit %d\n%s%s", code, out, stderr)
	}
	if code, out, stderr := pkictl(t, nil, nil, "renew", "--dir", dir, "--force"); code != exitOK || !strings.Contains(out, "renewed") {
		t.Fatalf("renew: exit %d\n%s%s", code, out, stderr)
	}
	// Without a pin, the listener's certificate cannot be trusted yet.
	code, _, stderr := pkictl(t, vars, nil, "enroll", "--server", s.TLSURL, "--cn", "svc.test", "--out", filepath.Join(t.TempDir(), "x"))
	if code != exitFailed || !strings.Contains(stderr, "does not trust") {
		t.Errorf("enroll at the listener without a pin: exit %d\n%s", code, stderr)
	}
}

func colons(hexFP string) string {
	var parts []string
	for i := 0; i < len(hexFP); i += 2 {
		parts = append(parts, strings.ToUpper(hexFP[i:i+2]))
	}
	return strings.Join(parts, ":")
}
