package web_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/testnode"
)

// chromiumPath is Debian's Chromium, which CI installs (.ci/run).
const chromiumPath = "/usr/bin/chromium"

// ScreenshotDirEnv names the directory the browser test saves its
// screenshots in; a temporary directory when unset. `make screenshots` sets
// it to docs/screenshots.
const ScreenshotDirEnv = "PKID_SCREENSHOT_DIR"

// browser drives a headless Chromium through the admin page and saves a
// screenshot of every page it visits.
type browser struct {
	t   *testing.T
	ctx context.Context
	s   *site
	dir string
	n   int

	mu       sync.Mutex
	problems []string // console errors and uncaught exceptions
}

func newBrowser(t *testing.T, s *site) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no Chromium at %s (apt-get install chromium); the browser test needs it", chromiumPath)
	}
	dir := os.Getenv(ScreenshotDirEnv)
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancelTimeout)
	b := &browser{t: t, ctx: ctx, s: s, dir: dir}
	// A Content-Security-Policy violation (an inline script or style the
	// policy blocks), a failed load or a script error shows up as a console
	// error or an exception: the page must cause none.
	err := chromedp.Listen(ctx, func(ev any) {
		var problem string
		switch ev := ev.(type) {
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				problem = fmt.Sprintf("console %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		case *runtime.EventExceptionThrown:
			problem = "exception: " + ev.ExceptionDetails.Text
		}
		if problem != "" {
			b.mu.Lock()
			b.problems = append(b.problems, problem)
			b.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkConsole fails the test for every console error seen so far.
func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("the browser reported %s", p)
	}
}

// do runs actions that return nothing.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatal(err)
	}
}

// follow runs actions that load a page (a click on a link or a submit
// button), checks the page's status and saves its screenshot as name.
func (b *browser) follow(name string, status int, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	resp, err := chromedp.RunResponse(b.ctx, actions...)
	if err != nil {
		b.t.Fatalf("%s: %v", name, err)
	}
	if int(resp.Status) != status {
		b.t.Fatalf("%s: %s answered %d, want %d:\n%s", name, resp.URL, resp.Status, status, b.text("main"))
	}
	b.shot(name)
}

// visit opens path and saves its screenshot.
func (b *browser) visit(name, path string) {
	b.t.Helper()
	b.follow(name, http.StatusOK, chromedp.Navigate(b.s.srv.URL+path))
}

// shot saves a screenshot of the whole page as NN-name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	b.n++
	if err := os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.n, name)), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// text returns the visible text of the first element matching css.
func (b *browser) text(css string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

func (b *browser) value(css string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS(css)))
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

// location returns the path of the page shown.
func (b *browser) location() string {
	b.t.Helper()
	u, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return strings.TrimPrefix(u, b.s.srv.URL)
}

// TestBrowser walks an administrator through the page in a real browser,
// as the acceptance says: sign in; create an Enterprise account;
// mint a token; use it through the API to obtain a certificate; see it on
// the account page; revoke it from the page with a reason; see the audit
// events; suspend the account and see the API answer 403. Every page it
// visits is saved as a screenshot (PKID_SCREENSHOT_DIR).
func TestBrowser(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no Chromium at %s (apt-get install chromium); the browser test needs it", chromiumPath)
	}
	s := newSite(t, false)
	seed(t, s)
	b := newBrowser(t, s)

	// Sign in: an unauthenticated visit lands on the sign-in page.
	b.visit("login", "/admin/")
	if got := b.location(); got != "/admin/login" {
		t.Fatalf("unauthenticated dashboard went to %s", got)
	}
	b.do(chromedp.SendKeys(chromedp.ID("username"), adminUser), chromedp.SendKeys(chromedp.ID("password"), adminPassword))
	b.follow("dashboard", http.StatusOK, chromedp.Click(chromedp.CSS(`form[action="/admin/login"] button[type=submit]`)))
	if got := b.text(".who"); got != adminUser {
		t.Fatalf("signed in as %q", got)
	}

	// Create an Enterprise account.
	b.follow("accounts", http.StatusOK, chromedp.Click(chromedp.CSS(`nav a[href="/admin/accounts"]`)))
	b.do(chromedp.SendKeys(chromedp.ID("new-name"), "Acme Robotics"), chromedp.SetValue(chromedp.ID("new-plan"), "enterprise"))
	b.follow("account-created", http.StatusOK, chromedp.Click(chromedp.CSS(`form[method=post][action="/admin/accounts"] button[type=submit]`)))
	accountPath := b.location()
	accountPath = accountPath[:strings.IndexByte(accountPath, '?')]
	accountID := strings.TrimPrefix(accountPath, "/admin/accounts/")
	if !strings.Contains(b.text("main"), "Account created.") || b.text("h1") != "Acme Robotics" {
		t.Fatalf("after creating: %s", b.text("main"))
	}

	// Mint a token: shown once, with a copy button.
	b.do(chromedp.SendKeys(chromedp.ID("token-name"), "ci"))
	b.follow("token-minted", http.StatusCreated, chromedp.Click(chromedp.CSS(`form[action$="/tokens"] button[type=submit]`)))
	token := strings.TrimSpace(b.value("#minted-token"))
	if strings.Count(token, ".") != 2 {
		t.Fatalf("minted token %q is not a JWT", token)
	}
	if hidden, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.querySelector("button.copy").hidden`)); err != nil || hidden {
		t.Errorf("the copy button is hidden (%v): the page's script did not run", err)
	}

	// Use it through the API to obtain a certificate.
	resp := apiCall(t, s, "POST", "/api/v1/certificates", token, map[string]any{"csr": newCSR(t, "robot-1.acme.example")})
	if resp.status != http.StatusCreated {
		t.Fatalf("issuing with the minted token: %d %s", resp.status, resp.body)
	}
	serial := resp.json(t)["serial"].(string)

	// See it on the account page.
	b.visit("account-with-certificate", accountPath)
	if !strings.Contains(b.text("main"), "robot-1.acme.example") {
		t.Fatalf("the account page does not list the certificate:\n%s", b.text("main"))
	}

	// Revoke it from the page with a reason, through a confirmation step.
	b.follow("certificate", http.StatusOK, chromedp.Click(chromedp.CSS(`a[href="/admin/certificates/`+serial+`"]`)))
	b.do(chromedp.SetValue(chromedp.ID("reason"), "superseded"))
	b.follow("revoke-confirm", http.StatusOK, chromedp.Click(chromedp.CSS(`form[action$="/revoke"] button[type=submit]`)))
	if !strings.Contains(b.text("main"), "superseded") {
		t.Fatalf("the confirmation does not name the reason:\n%s", b.text("main"))
	}
	if c, err := s.app.Certs.Certificate(context.Background(), pki.Principal{Kind: pki.PrincipalAdmin}, pki.Serial(serial)); err != nil || c.RevokedAt != nil {
		t.Fatalf("revoked before the confirmation (%v)", err)
	}
	b.follow("certificate-revoked", http.StatusOK, chromedp.Click(chromedp.CSS(`input[name=confirm] ~ button[type=submit]`)))
	if got := b.text(".badge"); got != "revoked" {
		t.Errorf("status shown after revoking: %q", got)
	}
	resp = apiCall(t, s, "GET", "/api/v1/certificates/"+serial, token, nil)
	if m := resp.json(t); m["status"] != "revoked" || m["revocation_reason"] != "superseded" {
		t.Errorf("the API says %v (%v) after revoking from the page", m["status"], m["revocation_reason"])
	}

	// See the audit events.
	b.visit("audit", "/admin/audit?account="+accountID)
	audit := b.text("table.audit")
	for _, action := range []string{"account.created", "token.minted", "certificate.issued", "certificate.revoked"} {
		if !strings.Contains(audit, action) {
			t.Errorf("the audit page lacks %s:\n%s", action, audit)
		}
	}
	if !strings.Contains(audit, "admin:"+adminUser) {
		t.Errorf("the audit page does not name the administrator:\n%s", audit)
	}

	// Suspend the account; the API then answers 403.
	b.visit("account", accountPath)
	b.follow("account-suspended", http.StatusOK, chromedp.Click(chromedp.CSS(`input[name=status][value=suspended] ~ button`)))
	if got := b.text("dd .badge"); got != "suspended" {
		t.Errorf("status shown after suspending: %q", got)
	}
	resp = apiCall(t, s, "POST", "/api/v1/certificates", token, map[string]any{"csr": newCSR(t, "robot-2.acme.example")})
	if resp.status != http.StatusForbidden {
		t.Errorf("issuing for a suspended account: %d, want 403: %s", resp.status, resp.body)
	}

	// The remaining pages, for the record; the dashboard also at phone width.
	b.visit("certificates", "/admin/certificates")
	b.visit("ca", "/admin/ca")
	b.visit("dashboard-after", "/admin/")
	b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	b.visit("dashboard-phone", "/admin/")
	b.visit("account-phone", accountPath)
	b.checkConsole()
}

// seed gives the site a few other accounts and certificates, so that the
// lists and the dashboard in the screenshots show more than the walk-through
// makes.
func seed(t *testing.T, s *site) {
	t.Helper()
	ctx := context.Background()
	p := pki.Principal{Kind: pki.PrincipalAdmin, Username: adminUser}
	for _, a := range []struct {
		name  string
		plan  pki.Plan
		certs []string
	}{
		{"Globex Logistics", pki.PlanEnterprise, []string{"gateway.globex.example", "billing.globex.example"}},
		{"Initech", pki.PlanStandard, nil},
		{"Umbrella Research", pki.PlanEnterprise, []string{"lab-7.umbrella.example"}},
	} {
		acct, err := s.app.Accounts.CreateAccount(ctx, p, a.name, a.plan, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(a.certs) == 0 {
			continue
		}
		_, token, err := s.app.Accounts.MintToken(ctx, p, acct.ID, "deploy", 24*time.Hour, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, cn := range a.certs {
			if r := apiCall(t, s, "POST", "/api/v1/certificates", token, map[string]any{"csr": newCSR(t, cn)}); r.status != http.StatusCreated {
				t.Fatalf("seeding %s: %d %s", cn, r.status, r.body)
			}
		}
	}
}

// apiResponse is an answer of the JSON API.
type apiResponse struct {
	status int
	body   []byte
}

func (r apiResponse) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// apiCall sends a JSON API request with a bearer token.
func apiCall(t *testing.T, s *site, method, path, token string, body any) apiResponse {
	t.Helper()
	r := testnode.Call(t, s.srv.Client(), method, s.srv.URL+path, token, body)
	return apiResponse{status: r.Status, body: r.Body}
}

// newCSR returns a PEM CSR for a fresh P-256 key with common name cn.
func newCSR(t *testing.T, cn string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}
