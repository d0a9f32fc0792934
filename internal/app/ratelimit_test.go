package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/ratelimit"
	"github.com/pkid/pkid/internal/testnode"
)

// limitNode is a node on its own database with a manual clock, configured by
// change, and an admin token.
type limitNode struct {
	t     *testing.T
	app   *app.App
	srv   *httptest.Server
	clock *testnode.Clock
	admin string
}

func newLimitNode(t *testing.T, change func(*config.Config)) *limitNode {
	t.Helper()
	_, cfg := testnode.Init(t, []byte(testPassphrase))
	change(&cfg)
	// The clock stands still, so that no limit refills while a slow
	// (race-instrumented) test is sending its burst.
	clock := testnode.NewClock(time.Now())
	a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler), app.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	srv := httptest.NewServer(a.Handler)
	t.Cleanup(srv.Close)
	return &limitNode{t: t, app: a, srv: srv, clock: clock, admin: testnode.AdminToken(t, a.Accounts, "root")}
}

// peer is an HTTP client whose connections come from one loopback address,
// so that the server sees a real, distinct RemoteAddr for it.
type peer struct {
	n      *limitNode
	client *http.Client
	xff    string // X-Forwarded-For to send, if any
}

func (n *limitNode) from(ip string) *peer {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	n.t.Cleanup(tr.CloseIdleConnections)
	return &peer{n: n, client: &http.Client{Transport: tr}}
}

// forwarding returns a copy of p that sends X-Forwarded-For: xff.
func (p *peer) forwarding(xff string) *peer {
	q := *p
	q.xff = xff
	return &q
}

func (p *peer) do(method, path, token string, form url.Values) response {
	p.n.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, p.n.srv.URL+path, body)
	if err != nil {
		p.n.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if p.xff != "" {
		req.Header.Set("X-Forwarded-For", p.xff)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.n.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// badToken is well-formed bearer credentials that no key signed.
const badToken = "eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl"

// fail sends one request with a bad token and checks that it is answered
// with want: 401 while the client has budget, 429 after.
func (p *peer) fail(what string, want int) response {
	p.n.t.Helper()
	r := p.do("GET", "/api/v1/certificates", badToken, nil)
	if r.status != want {
		p.n.t.Fatalf("%s: %d %s, want %d", what, r.status, r.body, want)
	}
	return r
}

// expectThrottled checks a 429 answer: problem+json rateLimited with a
// Retry-After of want seconds.
func expectThrottled(t *testing.T, what string, r response, want string) {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("%s: %d %s, want 429", what, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	if got := r.json(t)["type"]; got != "urn:pkid:error:rateLimited" {
		t.Errorf("%s: problem type %v", what, got)
	}
	if got := r.header.Get("Retry-After"); got != want {
		t.Errorf("%s: Retry-After %q, want %q", what, got, want)
	}
}

func (n *limitNode) auditCount() int {
	n.t.Helper()
	var c int
	if err := n.app.DB.Pool().QueryRow(context.Background(), "SELECT count(*) FROM audit_events").Scan(&c); err != nil {
		n.t.Fatal(err)
	}
	return c
}

// metric returns the value of one sample line of /metrics, "" if absent.
func (n *limitNode) metric(sample string) string {
	n.t.Helper()
	rec := httptest.NewRecorder()
	n.app.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			return v
		}
	}
	return ""
}

// TestAuthFailureLimit: a burst of bad tokens from one address earns 401s
// up to the budget, then 429 problem+json with Retry-After for everything
// that address asks of the account and admin APIs, while another address is
// unaffected, requests that authenticate spend nothing, the public routes
// keep answering, nothing is audited, and the budget comes back with time.
func TestAuthFailureLimit(t *testing.T) {
	t.Parallel()
	n := newLimitNode(t, func(c *config.Config) {
		c.UnauthenticatedLimit = ratelimit.Rate{Limit: 5, Period: time.Minute} // one back every 12s
	})
	attacker, other := n.from("127.0.0.2"), n.from("127.0.0.3")
	audited := n.auditCount()

	for i := range 5 {
		r := attacker.fail("bad token within the budget", http.StatusUnauthorized)
		if r.header.Get("WWW-Authenticate") == "" || r.header.Get("Retry-After") != "" {
			t.Fatalf("401 %d: headers %v", i+1, r.header)
		}
	}
	expectThrottled(t, "bad token past the budget", attacker.fail("past the budget", http.StatusTooManyRequests), "12")
	for _, req := range []struct{ what, method, path, token string }{
		{"no token", "GET", "/api/v1/certificates", ""},
		{"admin API, bad token", "GET", "/admin/api/accounts", badToken},
		{"renewal without a token", "POST", "/api/v1/certificates/01/renew", ""},
		// Telling a good token from a bad one is the work being saved: a
		// refused address is refused whatever it presents.
		{"admin API, good token", "GET", "/admin/api/accounts", n.admin},
	} {
		expectThrottled(t, req.what, attacker.do(req.method, req.path, req.token, nil), "12")
	}
	// The public routes are not limited.
	for _, path := range []string{"/healthz", "/ca/root.pem", "/ca/chain.pem", "/openapi.yaml", "/metrics"} {
		if r := attacker.do("GET", path, "", nil); r.status != http.StatusOK {
			t.Errorf("%s from the refused address: %d", path, r.status)
		}
	}

	// Another address has its own budget; authenticated requests spend
	// none of it.
	other.fail("other address", http.StatusUnauthorized)
	for range 20 {
		if r := other.do("GET", "/admin/api/accounts", n.admin, nil); r.status != http.StatusOK {
			t.Fatalf("authenticated request: %d %s", r.status, r.body)
		}
	}
	for range 4 {
		other.fail("other address, rest of its budget", http.StatusUnauthorized)
	}
	other.fail("other address past its budget", http.StatusTooManyRequests)

	if got := n.auditCount(); got != audited {
		t.Errorf("anonymous failures wrote %d audit events", got-audited)
	}
	if got := n.metric(`pkid_rate_limited_total{limiter="unauthenticated"}`); got != "6" {
		t.Errorf("pkid_rate_limited_total{limiter=\"unauthenticated\"} = %q, want 6", got)
	}
	if got := n.metric("pkid_rate_limit_clients"); got != "2" {
		t.Errorf("pkid_rate_limit_clients = %q, want 2", got)
	}

	// One interval later, one more attempt; a whole period later, the whole
	// budget.
	n.clock.Advance(11 * time.Second)
	expectThrottled(t, "a second early", attacker.fail("a second early", http.StatusTooManyRequests), "1")
	n.clock.Advance(time.Second)
	attacker.fail("one interval later", http.StatusUnauthorized)
	attacker.fail("then refused again", http.StatusTooManyRequests)
	n.clock.Advance(time.Minute)
	if r := attacker.do("GET", "/admin/api/accounts", n.admin, nil); r.status != http.StatusOK {
		t.Fatalf("good token after a period: %d", r.status)
	}
	for range 5 {
		attacker.fail("a period later", http.StatusUnauthorized)
	}
	attacker.fail("a period later, past the budget", http.StatusTooManyRequests)
}

// TestAuthFailureLimitForwardedFor: X-Forwarded-For counts only from a
// trusted proxy. From an address that is not one (which is every address
// when none is configured: the same code path), a client cannot escape its
// budget by naming other addresses; through a trusted proxy each forwarded
// client has its own budget, an IPv6 client by its /64, and the sign-in page
// records the forwarded address too.
func TestAuthFailureLimitForwardedFor(t *testing.T) {
	t.Parallel()
	n := newLimitNode(t, func(c *config.Config) {
		c.UnauthenticatedLimit = ratelimit.Rate{Limit: 3, Period: time.Minute}
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.5/32")}
	})
	proxy := n.from("127.0.0.5")
	alice := proxy.forwarding("203.0.113.9, 198.51.100.1") // the left entry is the client's own claim
	for range 3 {
		alice.fail("forwarded client", http.StatusUnauthorized)
	}
	alice.fail("forwarded client past its budget", http.StatusTooManyRequests)
	proxy.forwarding("198.51.100.2").fail("another forwarded client", http.StatusUnauthorized)
	// The forwarded client's own claims left of the proxy's entry
	// change nothing.
	proxy.forwarding("198.51.100.2, 198.51.100.1").fail("a claim to be someone else", http.StatusTooManyRequests)

	// An IPv6 client is its /64.
	for _, a := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"} {
		proxy.forwarding(a).fail("IPv6 client "+a, http.StatusUnauthorized)
	}
	proxy.forwarding("2001:db8:1:2:1234::9").fail("the same /64", http.StatusTooManyRequests)
	proxy.forwarding("2001:db8:1:3::1").fail("the next /64", http.StatusUnauthorized)

	// An address that is not a trusted proxy is itself the client.
	untrusted := n.from("127.0.0.6")
	for _, xff := range []string{"198.51.100.7", "198.51.100.8", "198.51.100.9"} {
		untrusted.forwarding(xff).fail("untrusted X-Forwarded-For", http.StatusUnauthorized)
	}
	untrusted.forwarding("198.51.100.10").fail("untrusted, past its budget", http.StatusTooManyRequests)

	// The sign-in page counts and records the forwarded client.
	r := proxy.forwarding("198.51.100.77").do("POST", "/admin/login", "",
		url.Values{"username": {"nobody"}, "password": {"wrong"}})
	if r.status != http.StatusOK {
		t.Fatalf("sign-in: %d", r.status)
	}
	var detail []byte
	if err := n.app.DB.Pool().QueryRow(context.Background(),
		"SELECT detail FROM audit_events WHERE action = 'admin.login.failed' ORDER BY id DESC LIMIT 1").Scan(&detail); err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(detail, &d); err != nil {
		t.Fatal(err)
	}
	if d["remote_addr"] != "198.51.100.77" {
		t.Errorf("sign-in failure recorded from %v, want the forwarded 198.51.100.77", d["remote_addr"])
	}
}

// TestAccountLimitOff: with PKID_UNAUTHENTICATED_LIMIT=off every failure
// is answered 401. An account's hourly limit refuses issuance and renewal
// alike (counted in Postgres: TestAccountPolicyQuotas), and each refusal is
// counted under limiter="account_issuance".
func TestAccountLimitOff(t *testing.T) {
	t.Parallel()
	ln := newLimitNode(t, func(c *config.Config) { c.UnauthenticatedLimit = ratelimit.Rate{} })
	p := ln.from("127.0.0.2")
	for range 50 {
		p.fail("limit off", http.StatusUnauthorized)
	}

	n := &node{t: t, app: ln.app, srv: ln.srv, admin: ln.admin}
	id, tok := n.account("Hourly", pki.PlanEnterprise)
	n.setPolicy(id, policyBody{AllowedNames: []string{"*"}, KeyTypes: []string{"ecdsa-p256"}, MaxActiveCertificates: 10, MaxIssuancesPerHour: 1})
	first := n.issue(tok, policyCSR(t, "one.example", nil))
	expect(t, "first", first, http.StatusCreated, "")
	expect(t, "issue over the limit", n.issue(tok, policyCSR(t, "two.example", nil)), http.StatusTooManyRequests, "rateLimited")
	expect(t, "renew over the limit", n.do("POST", "/api/v1/certificates/"+first.json(t)["serial"].(string)+"/renew", tok, nil),
		http.StatusTooManyRequests, "rateLimited")
	if got := ln.metric(`pkid_rate_limited_total{limiter="account_issuance"}`); got != "2" {
		t.Errorf(`pkid_rate_limited_total{limiter="account_issuance"} = %q, want 2`, got)
	}
	if got := ln.metric(`pkid_rate_limited_total{limiter="unauthenticated"}`); got != "0" {
		t.Errorf(`pkid_rate_limited_total{limiter="unauthenticated"} = %q, want 0`, got)
	}
}
