package faults

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ocsp"
)

// passphrase protects the CA keys of every test hierarchy.
const passphrase = "fault test passphrase"

// publicURL is written into the certificates; the tests reach pkid on its
// real listen address, so it need not resolve.
const publicURL = "http://pkid.test"

// build is the pkid binary, built once per test binary.
var build struct {
	once sync.Once
	dir  string
	pkid string
	err  error
}

// pkidBinary builds cmd/pkid as an operator would (go build, no race
// detector: the process under test runs at production speed).
func pkidBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "pkid-faults-bin-")
		if build.err != nil {
			return
		}
		build.pkid = filepath.Join(build.dir, "pkid")
		if out, err := exec.Command("go", "build", "-o", build.pkid, "../../cmd/pkid").CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.pkid
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// pkidEnv is the environment of a pkid command on databaseURL: the test's
// own, without any pkid setting it may carry, plus extra (NAME=value).
func pkidEnv(databaseURL string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PKID_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	env = append(env, "DATABASE_URL="+databaseURL, "PKID_KEY_PASSPHRASE="+passphrase,
		"PKID_LOG_FORMAT=text", "PKID_PUBLIC_URL="+publicURL)
	return append(env, extra...)
}

// runPkid runs a pkid command to completion, within a minute.
func runPkid(t *testing.T, env []string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pkidBinary(t), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func mustPkid(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := runPkid(t, env, stdin, args...)
	if err != nil {
		t.Fatalf("pkid %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// setupCA does what an operator does on a new database (migrate, init, an
// administrator) and returns an admin API token.
func setupCA(t *testing.T, databaseURL string) string {
	t.Helper()
	env := pkidEnv(databaseURL)
	mustPkid(t, env, "", "migrate")
	mustPkid(t, env, "", "init")
	mustPkid(t, env, "a long enough password\n", "admin", "create-user", "--username", "ops")
	return strings.TrimSpace(mustPkid(t, env, "", "admin", "token", "--username", "ops", "--ttl", "2h"))
}

// syncBuffer is a bytes.Buffer that a process and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is a running `pkid serve`.
type daemon struct {
	t    *testing.T
	name string
	base string // http://127.0.0.1:port
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	werr error
}

// startDaemon starts `pkid serve` with env on a free port and waits until
// /readyz answers 200. The test's cleanup stops it and, if the test failed,
// prints its log.
func startDaemon(t *testing.T, name string, env []string) *daemon {
	t.Helper()
	d := launchDaemon(t, name, env, freeAddr(t))
	if err := d.waitReady(30 * time.Second); err != nil {
		t.Fatalf("%s: %v\nlog:\n%s", name, err, d.logs.String())
	}
	return d
}

// launchDaemon starts `pkid serve` on addr without waiting for it.
func launchDaemon(t *testing.T, name string, env []string, addr string) *daemon {
	t.Helper()
	d := &daemon{t: t, name: name, base: "http://" + addr, logs: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(pkidBinary(t), "serve")
	d.cmd.Env = append(append([]string{}, env...), "PKID_HTTP_ADDR="+addr)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.werr = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", d.name, d.logs.String())
		}
	})
	return d
}

// waitReady polls /readyz until it answers 200, the process exits, or
// timeout passes.
func (d *daemon) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-d.done:
			return fmt.Errorf("pkid serve exited: %v", d.werr)
		default:
		}
		if resp, err := c.Get(d.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz did not answer 200 within %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// stop asks for a graceful shutdown (SIGTERM), killing after 15 s.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		d.t.Errorf("%s did not stop within 15 s of SIGTERM", d.name)
		d.kill()
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newClient returns an HTTP client of its own (its own idle connections),
// with a timeout so that a hung server fails the test instead of hanging it.
func newClient() *http.Client {
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
}

// reply is an HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// send makes one request; a JSON body is marshalled unless it is []byte.
func send(c *http.Client, method, url, token string, body any) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// mustSend is send that fails the test unless the status is want, and
// decodes a JSON object.
func mustSend(t *testing.T, c *http.Client, method, url, token string, body any, want int) map[string]any {
	t.Helper()
	r, err := send(c, method, url, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if r.status != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, url, r.status, want, r.body)
	}
	var m map[string]any
	if len(r.body) > 0 {
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, r.body)
		}
	}
	return m
}

// newAccount creates an Enterprise account through the admin API, lifts
// its issuance quotas (the load these tests make is not what they test:
// a 429 must not hide a fault), and returns a token for it.
func newAccount(t *testing.T, c *http.Client, base, adminToken string) string {
	t.Helper()
	acct := mustSend(t, c, "POST", base+"/admin/api/accounts", adminToken, map[string]any{"name": "Faults Inc", "plan": "enterprise"}, 201)
	id := acct["id"].(string)
	r, err := send(c, "GET", base+"/admin/api/accounts/"+id+"/policy", adminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusNotFound { // 404: a build without account policies
		pol := mustSend(t, c, "GET", base+"/admin/api/accounts/"+id+"/policy", adminToken, nil, 200)
		pol["max_issuances_per_hour"], pol["max_active_certificates"] = 0, 0
		mustSend(t, c, "PUT", base+"/admin/api/accounts/"+id+"/policy", adminToken, pol, 200)
	}
	tok := mustSend(t, c, "POST", base+"/admin/api/accounts/"+id+"/tokens", adminToken, map[string]any{"name": "faults", "ttl_hours": 2}, 201)
	return tok["token"].(string)
}

// newCSR returns a fresh P-256 key's CSR, PEM.
func newCSR() string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "faults.test"}}, k)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// outcome is one answer as the client saw it: the client-side log that the
// tests compare with the database.
type outcome struct {
	op      string // "issue" or "revoke"
	base    string // the node asked
	status  int    // 0: no HTTP answer
	serial  string // of the certificate issued or revoked
	der     []byte // the certificate received (issue, 201)
	problem error  // for a non-2xx: why the body is not a valid problem document, if it is not
	err     error  // transport error (status 0) or an unparsable 2xx body
	latency time.Duration
	at      time.Time // when the answer (or the error) came
}

// ledger is the client-side log of one test.
type ledger struct {
	mu   sync.Mutex
	list []outcome
}

func (l *ledger) add(o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, o)
}

func (l *ledger) all() []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]outcome(nil), l.list...)
}

// issue requests a certificate and logs what came back.
func (l *ledger) issue(c *http.Client, base, token string) outcome {
	start := time.Now()
	r, err := send(c, "POST", base+"/api/v1/certificates", token, map[string]any{"csr": newCSR()})
	o := outcome{op: "issue", base: base, status: r.status, err: err, latency: time.Since(start), at: time.Now()}
	switch {
	case err != nil:
	case r.status/100 == 2:
		o.serial, o.der, o.err = certificateOf(r.body)
	default:
		o.problem = checkProblem(r)
	}
	l.add(o)
	return o
}

// revoke revokes serial and logs what came back.
func (l *ledger) revoke(c *http.Client, base, token, serial, reason string) outcome {
	start := time.Now()
	r, err := send(c, "POST", base+"/api/v1/certificates/"+serial+"/revoke", token, map[string]any{"reason": reason})
	o := outcome{op: "revoke", base: base, status: r.status, serial: serial, err: err, latency: time.Since(start), at: time.Now()}
	switch {
	case err != nil:
	case r.status/100 == 2:
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil || m["status"] != "revoked" || m["serial"] != serial {
			o.err = fmt.Errorf("revoke answered %d with %s", r.status, r.body)
		}
	default:
		o.problem = checkProblem(r)
	}
	l.add(o)
	return o
}

// certificateOf decodes a certificate object and checks that its serial
// field is the certificate's.
func certificateOf(body []byte) (serial string, der []byte, err error) {
	var m struct {
		Serial      string `json:"serial"`
		Certificate string `json:"certificate"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", nil, fmt.Errorf("certificate object: %v: %s", err, body)
	}
	b, _ := pem.Decode([]byte(m.Certificate))
	if b == nil {
		return m.Serial, nil, fmt.Errorf("certificate object without a PEM certificate: %s", body)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return m.Serial, nil, err
	}
	if got := c.SerialNumber.Text(16); got != m.Serial {
		return m.Serial, nil, fmt.Errorf("serial field %s, certificate serial %s", m.Serial, got)
	}
	return m.Serial, b.Bytes, nil
}

// checkProblem reports why r is not an RFC 9457 problem document with the
// fields the contract requires, or nil.
func checkProblem(r reply) error {
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p struct {
		Type, Title, Detail string
		Status              int
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		return fmt.Errorf("problem body: %v: %s", err, r.body)
	}
	if p.Type == "" || p.Title == "" || p.Detail == "" || p.Status != r.status {
		return fmt.Errorf("problem lacks type, title or detail, or its status is not %d: %s", r.status, r.body)
	}
	return nil
}

// row is a certificate as the database holds it.
type row struct {
	state   string
	der     []byte
	revoked bool
	ocsp    bool // has a stored OCSP response
}

// readRows returns every certificate in the database at url, by serial.
func readRows(t *testing.T, url string) map[string]row {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT c.serial, c.state, c.der, c.revoked_at IS NOT NULL, o.serial IS NOT NULL
		FROM certificates c LEFT JOIN ocsp_responses o ON o.serial = c.serial`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]row{}
	for rows.Next() {
		var s string
		var r row
		if err := rows.Scan(&s, &r.state, &r.der, &r.revoked, &r.ocsp); err != nil {
			t.Fatal(err)
		}
		out[s] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// tally is what a comparison of the client log with the database found.
type tally struct {
	issued, refused, transport int // issue answers: 201, problem, no answer
	unanswered                 int // issued rows that no client received (answer lost)
	pending                    []string
}

// compare checks the promises of the client log l against the database
// rows: every certificate a client received is in the database, issued,
// byte for byte; no serial was handed out twice; no 2xx came without a row;
// every refusal was a problem document with a status in allowed; every row
// is issued or pending, and every row (pending ones above all) has an OCSP
// response.
func compare(t *testing.T, l *ledger, rows map[string]row, allowed ...int) tally {
	t.Helper()
	var tl tally
	seen := map[string]bool{}
	received := map[string]bool{}
	for _, o := range l.all() {
		switch {
		case o.status == 0:
			if o.op == "issue" {
				tl.transport++
			}
		case o.status/100 == 2:
			if o.err != nil {
				t.Errorf("%s answered %d with a body that is not what it should be: %v", o.op, o.status, o.err)
				continue
			}
			if o.op != "issue" {
				if r, ok := rows[o.serial]; !ok || !r.revoked {
					t.Errorf("revoke of %s answered %d but the database does not have it revoked", o.serial, o.status)
				}
				continue
			}
			tl.issued++
			if o.status != http.StatusCreated {
				t.Errorf("issue answered %d, want 201", o.status)
			}
			if seen[o.serial] {
				t.Errorf("serial %s was handed out twice", o.serial)
			}
			seen[o.serial] = true
			received[o.serial] = true
			r, ok := rows[o.serial]
			switch {
			case !ok:
				t.Errorf("certificate %s was received (201) but is not in the database", o.serial)
			case r.state != "issued":
				t.Errorf("certificate %s was received but its row is %s", o.serial, r.state)
			case !bytes.Equal(r.der, o.der):
				t.Errorf("certificate %s: the DER received differs from the DER stored", o.serial)
			}
		default:
			if o.op == "issue" {
				tl.refused++
			}
			if o.problem != nil {
				t.Errorf("%s answered %d without a valid problem document: %v", o.op, o.status, o.problem)
			}
			if !contains(allowed, o.status) {
				t.Errorf("%s answered %d, want one of %v", o.op, o.status, allowed)
			}
		}
	}
	for s, r := range rows {
		if !r.ocsp {
			t.Errorf("certificate %s (%s) has no stored OCSP response", s, r.state)
		}
		switch r.state {
		case "pending":
			tl.pending = append(tl.pending, s)
		case "issued":
			if !received[s] {
				tl.unanswered++
			}
		default:
			t.Errorf("certificate %s is in state %q", s, r.state)
		}
	}
	return tl
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// fetchIssuer returns the issuing intermediate that base serves.
func fetchIssuer(t *testing.T, c *http.Client, base string) *x509.Certificate {
	t.Helper()
	r, err := send(c, "GET", base+"/ca/issuer.cer", "", nil)
	if err != nil || r.status != 200 {
		t.Fatalf("GET /ca/issuer.cer: %d %v", r.status, err)
	}
	cert, err := x509.ParseCertificate(r.body)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// ocspAsk asks base's responder about serial (lowercase hex), by POST or by
// GET, and returns the verified response. A response that is not
// "successful" (unauthorized, tryLater) is an ocsp.ResponseError.
func ocspAsk(c *http.Client, base string, issuer *x509.Certificate, serial string, get bool) (*ocsp.Response, error) {
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		return nil, fmt.Errorf("serial %q is not hex", serial)
	}
	req, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: n}, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, err
	}
	var resp *http.Response
	if get {
		resp, err = c.Get(base + "/ocsp/" + base64URLPath(req))
	} else {
		resp, err = c.Post(base+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ocsp-response" {
		return nil, fmt.Errorf("OCSP answered %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r, err := ocsp.ParseResponseForCert(der, &x509.Certificate{SerialNumber: n}, issuer)
	if err != nil {
		return nil, err
	}
	if r.SerialNumber.Cmp(n) != 0 {
		return nil, fmt.Errorf("OCSP response for serial %x, asked for %s", r.SerialNumber, serial)
	}
	return r, nil
}

// ocspStatus is ocspAsk reduced to "good", "revoked", "unknown", or the
// name of a non-successful response status ("unauthorized", "tryLater").
func ocspStatus(c *http.Client, base string, issuer *x509.Certificate, serial string, get bool) (string, error) {
	r, err := ocspAsk(c, base, issuer, serial, get)
	var re ocsp.ResponseError
	switch {
	case errors.As(err, &re):
		switch re.Status {
		case ocsp.Unauthorized:
			return "unauthorized", nil
		case ocsp.TryLater:
			return "tryLater", nil
		}
		return "", err
	case err != nil:
		return "", err
	}
	switch r.Status {
	case ocsp.Good:
		return "good", nil
	case ocsp.Revoked:
		return "revoked", nil
	}
	return "unknown", nil
}

// base64URLPath encodes an OCSP request for the GET form (RFC 6960
// appendix A.1: base64, then URL-escaped).
func base64URLPath(req []byte) string {
	return url.PathEscape(base64.StdEncoding.EncodeToString(req))
}
