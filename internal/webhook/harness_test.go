package webhook_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testnode"
)

var passphrase = []byte("webhook test passphrase")

// env is a pkid node (no background jobs: tests run the webhook job
// themselves, on their clock) with its admin API served, on a fresh
// database.
type env struct {
	t     *testing.T
	app   *app.App
	cfg   config.Config
	db    *store.DB
	clock *testnode.Clock
	api   *httptest.Server
	admin string
}

// newEnv starts a node; adjust changes the configuration (which allows
// plain http to localhost unless adjust says otherwise).
func newEnv(t *testing.T, adjust func(*config.Config), opts app.Options) *env {
	t.Helper()
	db, cfg := testnode.Init(t, passphrase)
	cfg.Webhook.AllowHTTPLocalhost = true
	if adjust != nil {
		adjust(&cfg)
	}
	if err := cfg.Validate(true); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cfg: cfg, db: db, clock: testnode.NewClock(time.Now().Truncate(time.Second))}
	e.app = e.node(opts)
	e.api = httptest.NewServer(e.app.Handler)
	t.Cleanup(e.api.Close)
	e.admin = testnode.AdminToken(t, e.app.Accounts, "root")
	return e
}

// node builds another node on the same database and clock.
func (e *env) node(opts app.Options) *app.App {
	e.t.Helper()
	opts.Now = e.clock.Now
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := app.New(context.Background(), e.cfg, log, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(a.Close)
	return a
}

// account creates an Enterprise account.
func (e *env) account(name string) *pki.Account {
	e.t.Helper()
	a, err := e.app.Accounts.CreateAccount(context.Background(), pki.Principal{Kind: pki.PrincipalSystem}, name, pki.PlanEnterprise, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// issue issues a certificate valid for days to acct.
func (e *env) issue(acct *pki.Account, days int) *pki.Certificate {
	e.t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "svc.example.com"}, DNSNames: []string{"svc.example.com"}}, k)
	if err != nil {
		e.t.Fatal(err)
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	p := pki.Principal{Kind: pki.PrincipalAccount, AccountID: acct.ID}
	c, err := e.app.Certs.Issue(context.Background(), p, acct, ca.IssueRequest{CSR: csr, ValidityDays: days})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// do calls the admin API; a string body is sent as it is.
func (e *env) do(method, path string, body any) testnode.Response {
	e.t.Helper()
	return testnode.Call(e.t, http.DefaultClient, method, e.api.URL+path, e.admin, body)
}

// configure sets the account's webhook through the admin API and returns
// the secret it was given.
func (e *env) configure(acct *pki.Account, url string, notifyDays any) []byte {
	e.t.Helper()
	r := e.do("PUT", "/admin/api/accounts/"+acct.ID+"/webhook", map[string]any{"url": url, "notify_days": notifyDays})
	if r.Status != http.StatusCreated {
		e.t.Fatalf("PUT webhook: %d %s", r.Status, r.Body)
	}
	secret, _ := r.JSON(e.t)["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") {
		e.t.Fatalf("PUT webhook answered no secret: %s", r.Body)
	}
	return []byte(secret)
}

// run runs one round of a node's webhook job.
func (e *env) run(a *app.App) {
	e.t.Helper()
	if err := a.WebhookJob.RunOnce(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// delivery is a row of the outbox.
type delivery struct {
	id, state     string
	attempts      int
	nextAttemptAt time.Time
	lastAttemptAt *time.Time
	lastStatus    *int
	lastError     *string
	completedAt   *time.Time
	accountID     string
	serial        string
}

func (e *env) deliveries(serial pki.Serial) []delivery {
	e.t.Helper()
	rows, err := e.db.Pool().Query(context.Background(), `SELECT id::text, state, attempts, next_attempt_at,
		last_attempt_at, last_status, last_error, completed_at, account_id::text, serial
		FROM webhook_deliveries WHERE serial = $1`, string(serial))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []delivery
	for rows.Next() {
		var d delivery
		if err := rows.Scan(&d.id, &d.state, &d.attempts, &d.nextAttemptAt, &d.lastAttemptAt, &d.lastStatus,
			&d.lastError, &d.completedAt, &d.accountID, &d.serial); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// audits returns the audit events with action about serial, oldest first.
func (e *env) audits(action string, serial pki.Serial) []pki.AuditEvent {
	e.t.Helper()
	rows, err := e.db.Pool().Query(context.Background(), `SELECT outcome, COALESCE(account_id::text, ''), detail
		FROM audit_events WHERE action = $1 AND serial = $2 ORDER BY id`, action, string(serial))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []pki.AuditEvent
	for rows.Next() {
		ev := pki.AuditEvent{Action: action, Serial: serial}
		if err := rows.Scan(&ev.Outcome, &ev.AccountID, &ev.Detail); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// metric returns the value of one sample line of /metrics, "" when absent.
func (e *env) metric(sample string) string {
	e.t.Helper()
	resp, err := http.Get(e.api.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// notice is one request a receiver got.
type notice struct {
	header http.Header
	body   []byte
}

// receiver is a webhook receiver that records what it gets and answers
// status.
type receiver struct {
	mu      sync.Mutex
	got     []notice
	status  int
	delay   time.Duration // before answering, to widen races between nodes
	release chan struct{}
}

func newReceiver(t *testing.T, status int, tls bool) (*receiver, *httptest.Server) {
	rc := &receiver{status: status, release: make(chan struct{})}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, notice{header: r.Header.Clone(), body: body})
		delay := rc.delay
		rc.mu.Unlock()
		select {
		case <-time.After(delay):
		case <-rc.release:
		}
		w.WriteHeader(rc.status)
		_, _ = io.WriteString(w, "thanks")
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(rc.release) })
	return rc, srv
}

func (rc *receiver) notices() []notice {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]notice(nil), rc.got...)
}
