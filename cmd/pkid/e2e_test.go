package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/pkid/pkid/internal/testbin"
	"github.com/pkid/pkid/internal/testdb"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// TestTwoNodesIssueConcurrently runs the real binary the way an operator
// does (migrate, init, create-user, token, serve) and then two `pkid serve`
// processes on one database, issuing at the same time through both.
func TestTwoNodesIssueConcurrently(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the pkid binary")
	}
	bin := testbin.Binary(t, "pkid")
	dbURL := testdb.Missing(t) // pkid migrate creates it
	env := testbin.Env(dbURL, "e2e passphrase")
	run := func(stdin string, args ...string) string {
		t.Helper()
		return testbin.MustRun(t, bin, env, stdin, args...)
	}

	run("", "migrate")
	run("", "migrate") // idempotent
	out1 := run("", "init")
	out2 := run("", "init")
	fpRe := regexp.MustCompile(`[0-9a-f]{64}`)
	fp1, fp2 := fpRe.FindString(out1), fpRe.FindString(out2)
	if fp1 == "" || fp1 != fp2 {
		t.Fatalf("init fingerprints %q and %q", out1, out2)
	}
	if !strings.Contains(out2, "nothing changed") {
		t.Errorf("second init does not say it changed nothing: %q", out2)
	}
	run("correct horse battery staple\n", "admin", "create-user", "--username", "Ops")
	tokOut := run("", "admin", "token", "--username", "ops")
	adminToken := strings.TrimSpace(tokOut)
	if strings.Count(tokOut, "\n") != 1 || strings.Count(adminToken, ".") != 2 {
		t.Fatalf("admin token stdout must be the JWT alone: %q", tokOut)
	}

	// Two nodes on the same database.
	var bases []string
	for _, name := range []string{"node A", "node B"} {
		n := testbin.StartNode(t, name, append(env, "PKID_PUBLIC_URL=http://pkid.test"))
		bases = append(bases, n.URL)
	}

	acct := call(t, "POST", bases[0]+"/admin/api/accounts", adminToken, `{"name":"Two Nodes Inc","plan":"enterprise"}`, 201)
	tok := call(t, "POST", bases[1]+"/admin/api/accounts/"+acct["id"].(string)+"/tokens", adminToken, `{"name":"e2e"}`, 201)
	token := tok["token"].(string)

	const perNode = 25
	var wg sync.WaitGroup
	serials := make(chan string, 2*perNode)
	errs := make(chan error, 2*perNode)
	for _, base := range bases {
		for i := 0; i < perNode; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body, _ := json.Marshal(map[string]string{"csr": newCSR()})
				m, err := tryCall("POST", base+"/api/v1/certificates", token, string(body), 201)
				if err != nil {
					errs <- err
					return
				}
				serials <- m["serial"].(string)
			}()
		}
	}
	wg.Wait()
	close(serials)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for s := range serials {
		if seen[s] {
			t.Errorf("serial %s issued twice", s)
		}
		seen[s] = true
	}
	if len(seen) != 2*perNode {
		t.Fatalf("%d certificates, want %d", len(seen), 2*perNode)
	}
	// Each node sees every certificate, whichever node issued it.
	for _, base := range bases {
		list := call(t, "GET", base+"/api/v1/certificates?limit=500", token, "", 200)
		if got := len(list["certificates"].([]any)); got != 2*perNode {
			t.Errorf("%s lists %d certificates, want %d", base, got, 2*perNode)
		}
	}
}

func newCSR() string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "node.test"}}, k)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func tryCall(method, url, token, body string, want int) (map[string]any, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d, want %d: %s", method, url, resp.StatusCode, want, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", method, url, err, b)
	}
	return m, nil
}

func call(t *testing.T, method, url, token, body string, want int) map[string]any {
	t.Helper()
	m, err := tryCall(method, url, token, body, want)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
