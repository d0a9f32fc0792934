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
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/testbin"
)

// passphrase protects the CA keys of every test hierarchy.
const passphrase = "fault test passphrase"

// publicURL is written into the certificates; the tests reach pkid on its
// real listen address, so it need not resolve.
const publicURL = "http://pkid.test"

func TestMain(m *testing.M) { testbin.Main(m) }

// pkidEnv is the environment of a pkid command on databaseURL, with this
// package's passphrase and public URL, plus extra (NAME=value).
func pkidEnv(databaseURL string, extra ...string) []string {
	return testbin.Env(databaseURL, passphrase, append([]string{"PKID_PUBLIC_URL=" + publicURL}, extra...)...)
}

// mustPkid runs a pkid command to completion and fails the test unless it
// succeeds.
func mustPkid(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	return testbin.MustRun(t, testbin.Binary(t, "pkid"), env, stdin, args...)
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
	rows, err := conn.Query(ctx, `SELECT serial, state, der, revoked_at IS NOT NULL FROM certificates`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]row{}
	for rows.Next() {
		var s string
		var r row
		if err := rows.Scan(&s, &r.state, &r.der, &r.revoked); err != nil {
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
// is issued or pending. (That the responder answers for every row, pending
// ones above all, is checked by the tests that have a node to ask.)
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
