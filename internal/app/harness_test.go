package app_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testnode"
)

const testPassphrase = "correct horse battery staple"

// node is one pkid node under test: the App and an HTTP server in front of it.
type node struct {
	t      *testing.T
	app    *app.App
	srv    *httptest.Server
	admin  string // admin API token
	dbURL  string
	rawDB  *store.DB
	passph []byte
	clock  *testClock
}

// testClock is the wall clock plus an offset that a test may move forward,
// to see certificates expire.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// newNode initialises a fresh database with a CA hierarchy and an
// administrator and serves it.
func newNode(t *testing.T) *node {
	t.Helper()
	db, cfg := testnode.Init(t, []byte(testPassphrase))
	return startNode(t, cfg.DatabaseURL, db, cfg.KeyPassphrase)
}

// startNode serves an already initialised database (a second node).
func startNode(t *testing.T, url string, db *store.DB, pass []byte) *node {
	t.Helper()
	ctx := context.Background()
	cfg := config.Defaults()
	cfg.DatabaseURL = url
	cfg.PublicURL = "http://pkid.test"
	cfg.KeyPassphrase = pass
	cfg.AutoMigrate = false
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	clock := &testClock{}
	a, err := app.New(ctx, cfg, log, app.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	jobs, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.RunJobs(jobs); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	srv := httptest.NewServer(a.Handler)
	t.Cleanup(srv.Close)
	n := &node{t: t, app: a, srv: srv, dbURL: url, rawDB: db, passph: pass, clock: clock}
	n.admin = n.mintAdmin()
	return n
}

func (n *node) mintAdmin() string {
	n.t.Helper()
	return testnode.AdminToken(n.t, n.app.Accounts, "root-"+randomHex(n.t, 4))
}

// response is a decoded HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a request with an optional bearer token and JSON body (a string
// is sent as is, anything else is marshalled).
func (n *node) do(method, path, token string, body any) response {
	n.t.Helper()
	r := testnode.Call(n.t, n.srv.Client(), method, n.srv.URL+path, token, body)
	return response{status: r.Status, header: r.Header, body: r.Body}
}

// account creates an account on plan and returns its id and a fresh token.
func (n *node) account(name string, plan pki.Plan) (id, token string) {
	n.t.Helper()
	r := n.do("POST", "/admin/api/accounts", n.admin, map[string]any{"name": name, "plan": plan})
	if r.status != http.StatusCreated {
		n.t.Fatalf("create account: %d %s", r.status, r.body)
	}
	id = r.json(n.t)["id"].(string)
	r = n.do("POST", "/admin/api/accounts/"+id+"/tokens", n.admin, map[string]any{"name": "test", "ttl_hours": 2})
	if r.status != http.StatusCreated {
		n.t.Fatalf("mint token: %d %s", r.status, r.body)
	}
	return id, r.json(n.t)["token"].(string)
}

// issue posts csrPEM and returns the answer.
func (n *node) issue(token, csrPEM string) response {
	n.t.Helper()
	return n.do("POST", "/api/v1/certificates", token, map[string]any{"csr": csrPEM})
}

// counts returns how many certificate rows exist and how many certificates
// the intermediate has signed: a refusal must change neither. (Its CRL
// signatures are left out: the CRL job signs whenever it is due.)
func (n *node) counts() (rows int, sigs uint64) {
	n.t.Helper()
	err := n.rawDB.Pool().QueryRow(context.Background(), "SELECT count(*) FROM certificates").Scan(&rows)
	if err != nil {
		n.t.Fatal(err)
	}
	return rows, n.app.Hierarchy.Intermediate().CertificatesSigned()
}

// opensslCSR makes a key and CSR with the real openssl binary. keyArgs are
// the -newkey arguments, e.g. "ec -pkeyopt ec_paramgen_curve:P-256".
func opensslCSR(t *testing.T, subj string, extra ...string) (csrPEM string, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	keyFile = filepath.Join(dir, "key.pem")
	csrFile := filepath.Join(dir, "csr.pem")
	args := []string{"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", keyFile, "-subj", subj, "-out", csrFile}
	args = append(args, extra...)
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl req: %v: %s", err, out)
	}
	b, err := os.ReadFile(csrFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), keyFile
}

func parseCertPEM(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, rest := pem.Decode([]byte(s))
	if b == nil || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("not exactly one PEM certificate: %q", s)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
