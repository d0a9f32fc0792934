package faults

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testbin"
)

// initHierarchy does what `pkid init` does to the migrated database at url,
// but at the time now and with the validities of hc: so that a test can
// make a real hierarchy (every certificate properly signed) that has
// expired, or is about to.
func initHierarchy(t *testing.T, url string, hc issuance.HierarchyConfig, now time.Time) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := lint.New()
	if err != nil {
		t.Fatal(err)
	}
	if hc.PublicURL == "" {
		hc.PublicURL = publicURL
	}
	if _, _, err := ca.Init(ctx, db, ca.InitConfig{Hierarchy: hc}, keystore.Sealed([]byte(passphrase)), l, now); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.EnsureKey(ctx, db, []byte(passphrase), time.Now()); err != nil {
		t.Fatal(err)
	}
}

// node is a pkid node built in the test process, as `pkid serve` builds
// it (internal/app), behind an httptest server.
type node struct {
	name string
	app  *app.App
	base string
	logs *testbin.Buffer
}

// startNode builds a node on the database at url. With jobs, its background
// jobs (OCSP cache sync, re-signing, CRL, OCSP signer renewal and the CA
// expiry warning) run until the test ends.
func startNode(t *testing.T, name, url string, opts app.Options, jobs bool) *node {
	t.Helper()
	cfg := config.Defaults()
	cfg.DatabaseURL = url
	cfg.PublicURL = publicURL
	cfg.KeyPassphrase = []byte(passphrase)
	cfg.AutoMigrate = false
	logs := &testbin.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := app.New(context.Background(), cfg, log, opts)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(a.Close)
	if jobs {
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { a.RunJobs(ctx); close(done) }()
		t.Cleanup(func() { stop(); <-done })
	}
	srv := httptest.NewServer(a.Handler)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, logs.String())
		}
	})
	return &node{name: name, app: a, base: srv.URL, logs: logs}
}

// adminToken creates an administrator and returns an admin API token.
func (n *node) adminToken(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	sys := pki.Principal{Kind: pki.PrincipalSystem}
	if _, err := n.app.Accounts.CreateAdmin(ctx, sys, "ops", "a long enough password"); err != nil {
		t.Fatal(err)
	}
	tok, err := n.app.Accounts.MintAdminToken(ctx, sys, "ops", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// waitLoaded waits until the node's OCSP cache has loaded, as a node does
// before a load balancer sends it OCSP traffic.
func (n *node) waitLoaded(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !n.app.OCSP.Loaded() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: OCSP cache not loaded after 10 s", n.name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// execSQL runs statements on the database at url.
func execSQL(t *testing.T, url string, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// queryInt runs a query that returns one integer.
func queryInt(t *testing.T, url string, sql string, args ...any) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}
