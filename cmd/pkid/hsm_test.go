package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testbin"
	"github.com/pkid/pkid/internal/testdb"
	"github.com/pkid/pkid/internal/testhsm"
)

// TestHSM is the operator's path with an HSM (SoftHSM2 here): `pkid init
// --pkcs11-*` with no passphrase, `pkid ca rotate` on the token, two `pkid
// serve` nodes on it, a
// certificate issued for an openssl CSR that `openssl verify` accepts, an
// OCSP answer openssl verifies, CA keys that the token will not let out and
// that the database holds no trace of.
func TestHSM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the pkid binary")
	}
	tok := testhsm.New(t, "pkid-e2e")
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("needs openssl")
	}
	bin := testbin.Binary(t, "pkid")
	dbURL := testdb.Missing(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PKID_") {
			env = append(env, kv) // no passphrase: the token is the only secret
		}
	}
	env = append(env, "DATABASE_URL="+dbURL, "PKID_LOG_FORMAT=text", "SOFTHSM2_CONF="+tok.Conf)
	hsmEnv := append(append([]string{}, env...), tok.Env()...)
	run := func(env []string, stdin string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	must := func(env []string, stdin string, args ...string) string {
		t.Helper()
		out, err := run(env, stdin, args...)
		if err != nil {
			t.Fatalf("pkid %v: %v\n%s", args, err, out)
		}
		return out
	}

	must(env, "", "migrate")
	if out, err := run(env, "", "init"); err == nil || !strings.Contains(out, "PKID_PKCS11_MODULE") {
		t.Fatalf("init with neither passphrase nor token: %v\n%s", err, out)
	}
	pkcs11 := []string{"--pkcs11-module", tok.Module, "--pkcs11-token", tok.Label, "--pkcs11-pin-file", tok.PINFile}
	out := must(env, "", append([]string{"init"}, pkcs11...)...)
	if !strings.Contains(out, `generated on PKCS#11 token "pkid-e2e"`) {
		t.Errorf("init does not say where the keys are:\n%s", out)
	}
	if out := must(env, "", append([]string{"init"}, pkcs11...)...); !strings.Contains(out, "nothing changed") {
		t.Errorf("second init:\n%s", out)
	}
	must(hsmEnv, "correct horse battery staple\n", "admin", "create-user", "--username", "ops")
	adminToken := strings.TrimSpace(must(hsmEnv, "", "admin", "token", "--username", "ops"))

	// `pkid ca rotate` makes the next intermediate on the token too, with
	// the root's key signing there.
	if out := must(hsmEnv, "", "ca", "rotate"); !strings.Contains(out, "generation 2") {
		t.Fatalf("ca rotate:\n%s", out)
	}

	// The issuers table: no key material for the CA keys, only where
	// they are on the token; the OCSP signers' keys sealed.
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	onToken := map[string]keystore.Ref{}
	for _, r := range recs {
		switch r.Kind {
		case pki.IssuerRoot, pki.IssuerIntermediate:
			if r.EncryptedKey != nil || !strings.HasPrefix(r.KeyURI, "pkcs11:token=pkid-e2e;") {
				t.Errorf("%s row: encrypted_key %d bytes, key_uri %q: want no key, a URI on the token", r.Kind, len(r.EncryptedKey), r.KeyURI)
			}
			if strings.Contains(r.KeyURI, tok.PIN) {
				t.Errorf("%s key URI holds the PIN", r.Kind)
			}
			onToken[r.Subject] = keystore.RefOf(r)
		case pki.IssuerOCSP:
			if r.KeyURI != "" || len(r.EncryptedKey) == 0 {
				t.Errorf("OCSP signer row: key_uri %q: want a sealed key", r.KeyURI)
			}
		}
	}
	if len(onToken) != 3 {
		t.Fatalf("issuers: %d rows, %d keys on the token; want the root and two intermediates", len(recs), len(onToken))
	}

	// A wrong PIN stops serve before it listens, without showing the PIN.
	wrongPIN := filepath.Join(t.TempDir(), "wrong-pin")
	if err := os.WriteFile(wrongPIN, []byte("987654321\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := append(append([]string{}, hsmEnv...), "PKID_PKCS11_PIN_FILE="+wrongPIN, "PKID_HTTP_ADDR="+testbin.FreeAddr(t))
	if out, err := run(bad, "", "serve"); err == nil || !strings.Contains(out, "CKR_PIN_INCORRECT") || strings.Contains(out, "987654321") {
		t.Fatalf("serve with a wrong PIN: %v\n%s", err, out)
	}

	// Two nodes, each its own process and its own sessions on the token.
	var bases []string
	for _, name := range []string{"node A", "node B"} {
		n := testbin.StartNode(t, name, append(append([]string{}, hsmEnv...), "PKID_PUBLIC_URL=http://pkid.test"))
		t.Cleanup(func() {
			_ = n.Stop(15 * time.Second)
			if strings.Contains(n.Logs(), tok.PIN) {
				t.Errorf("%s logged the PIN", name)
			}
		})
		bases = append(bases, n.URL)
	}

	acct := call(t, "POST", bases[0]+"/admin/api/accounts", adminToken, `{"name":"HSM Inc","plan":"enterprise"}`, 201)
	token := call(t, "POST", bases[0]+"/admin/api/accounts/"+acct["id"].(string)+"/tokens", adminToken, `{"name":"hsm"}`, 201)["token"].(string)

	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	openssl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("openssl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", file("client.key"), "-subj", "/CN=node.test", "-out", file("client.csr"))
	csr, err := os.ReadFile(file("client.csr"))
	if err != nil {
		t.Fatal(err)
	}
	for i, base := range bases {
		body, _ := json.Marshal(map[string]string{"csr": string(csr)})
		cert := call(t, "POST", base+"/api/v1/certificates", token, string(body), 201)
		leaf, chain := file("leaf.pem"), file("chain.pem")
		writeFile(t, leaf, cert["certificate"].(string))
		writeFile(t, chain, cert["chain"].(string))
		writeFile(t, file("root.pem"), getBody(t, base+"/ca/root.pem"))
		if out := openssl("verify", "-CAfile", file("root.pem"), "-untrusted", chain, leaf); !strings.Contains(out, ": OK") {
			t.Fatalf("node %d: openssl verify: %s", i, out)
		}
		// The first PEM block of the chain is the intermediate.
		inter := cert["chain"].(string)
		inter = inter[:strings.Index(inter, "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----")] + "\n"
		writeFile(t, file("inter.pem"), inter)
		out := openssl("ocsp", "-issuer", file("inter.pem"), "-cert", leaf, "-CAfile", chain, "-url", base+"/ocsp", "-no_nonce")
		if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, leaf+": good") {
			t.Fatalf("node %d: openssl ocsp: %s", i, out)
		}
	}

	// The token, asked while both nodes run: the CA keys are sensitive,
	// never extractable, and their value is refused.
	ks, err := keystore.Open(keystore.Config{PKCS11: tok.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	for subject, ref := range onToken {
		p, err := ks.Protection(ref)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Kept() || p.Extractable || !p.Sensitive {
			t.Errorf("key of %s: %+v: the token would let it out", subject, p)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d, %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestHSMOfflineRoot: the root key on a token of its own, given to `pkid
// init` and `pkid ca rotate` only. The serving nodes run without it, and a
// rotation without it is refused before anything is made.
func TestHSMOfflineRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the pkid binary")
	}
	serving := testhsm.New(t, "pkid-serving")
	rootTok := serving.Another(t, "pkid-root")
	bin := testbin.Binary(t, "pkid")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PKID_") {
			env = append(env, kv)
		}
	}
	env = append(append(env, "DATABASE_URL="+testdb.Missing(t), "PKID_LOG_FORMAT=text"), serving.Env()...)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	rootFlags := []string{"--pkcs11-root-token", rootTok.Label, "--pkcs11-root-pin-file", rootTok.PINFile}
	if out, err := run("migrate"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	out, err := run(append([]string{"init"}, rootFlags...)...)
	if err != nil || !strings.Contains(out, `root key was generated on PKCS#11 token "pkid-root"`) {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if out, err := run("ca", "rotate"); err == nil || !strings.Contains(out, "PKID_PKCS11_ROOT_TOKEN") {
		t.Fatalf("ca rotate without the root's token: %v\n%s", err, out)
	}
	if out, err := run(append([]string{"ca", "rotate"}, rootFlags...)...); err != nil || !strings.Contains(out, "generation 2") {
		t.Fatalf("ca rotate with the root's token: %v\n%s", err, out)
	}

	testbin.StartNode(t, "serve", env) // ready without the root's token
}
