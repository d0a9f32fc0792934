// Package testhsm gives a test its own SoftHSM2 token: a token directory
// and configuration file in the test's temporary directory, a token
// initialised with softhsm2-util, and a PIN file, as an operator would set
// up an HSM for `pkid init --pkcs11-*`.
//
// SoftHSM2 finds its configuration through SOFTHSM2_CONF, which New sets for
// the test (t.Setenv): tests that use it cannot run in parallel, and a child
// process started by the test inherits the variable.
package testhsm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pkid/pkid/internal/keystore"
)

// EnvModule overrides where the SoftHSM2 module is looked for.
const EnvModule = "PKID_TEST_PKCS11_MODULE"

// DefaultModule is where Debian's softhsm2 package installs the module.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// Token is a fresh, initialised SoftHSM2 token.
type Token struct {
	Module  string // the PKCS#11 module
	Label   string // the token's label
	PIN     string // the user PIN
	PINFile string // a file holding the PIN and a newline, mode 0600
	Conf    string // the SOFTHSM2_CONF file
}

// Config returns the keystore configuration that logs in to the token.
func (tok *Token) Config() keystore.PKCS11 {
	return keystore.PKCS11{Module: tok.Module, Token: tok.Label, PIN: []byte(tok.PIN)}
}

// Env returns the environment variables that point pkid at the token.
func (tok *Token) Env() []string {
	return []string{
		"SOFTHSM2_CONF=" + tok.Conf,
		"PKID_PKCS11_MODULE=" + tok.Module,
		"PKID_PKCS11_TOKEN=" + tok.Label,
		"PKID_PKCS11_PIN_FILE=" + tok.PINFile,
	}
}

// ModulePath returns the SoftHSM2 module's path, or why it cannot be used:
// not installed, no softhsm2-util, or a build that cannot load modules.
func ModulePath() (string, error) {
	if !keystore.Supported {
		return "", errors.New("PKCS#11 needs cgo; this test binary was built with CGO_ENABLED=0")
	}
	mod := DefaultModule
	if m := os.Getenv(EnvModule); m != "" {
		mod = m
	}
	if _, err := os.Stat(mod); err != nil {
		return "", fmt.Errorf("SoftHSM2 is not installed (%v): apt-get install softhsm2, or set %s", err, EnvModule)
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return "", errors.New("softhsm2-util is not on PATH: apt-get install softhsm2")
	}
	return mod, nil
}

// Module returns ModulePath, skipping t when it fails, or failing t under
// CI=true, where .ci/run installs softhsm2 and the tests must run.
func Module(t testing.TB) string {
	t.Helper()
	mod, err := ModulePath()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return mod
}

// New initialises a token labelled label (random when empty) in a fresh
// token directory and points SOFTHSM2_CONF at it for the rest of the test.
func New(t testing.TB, label string) *Token {
	t.Helper()
	mod := Module(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	if label == "" {
		label = "pkid-test-" + random(4)
	}
	return initToken(t, mod, conf, label)
}

// Another initialises a second token, labelled label, beside tok (same
// module, same SOFTHSM2_CONF), as an HSM with several partitions offers.
func (tok *Token) Another(t testing.TB, label string) *Token {
	t.Helper()
	return initToken(t, tok.Module, tok.Conf, label)
}

func initToken(t testing.TB, mod, conf, label string) *Token {
	t.Helper()
	tok := &Token{Module: mod, Label: label, PIN: random(8), Conf: conf, PINFile: filepath.Join(t.TempDir(), "pin")}
	if err := os.WriteFile(tok.PINFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label,
		"--pin", tok.PIN, "--so-pin", random(8))
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v: %s", err, out)
	}
	return tok
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
