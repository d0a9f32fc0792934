package store_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// closedPortURL returns a database URL on a local port that nothing listens
// on.
func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "postgres://postgres@" + addr + "/pkid?sslmode=disable&connect_timeout=2"
}

// TestUnavailable checks that a database that cannot be reached gives
// ErrUnavailable, which the API answers with 503, from every entry point.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := closedPortURL(t)
	db, err := store.Open(ctx, u)
	if err != nil {
		t.Fatalf("Open does not connect, so it must not fail: %v", err)
	}
	defer db.Close()

	tests := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return db.Ping(ctx) }},
		{"Account", func() error { _, err := db.Account(ctx, "00000000-0000-4000-8000-000000000000"); return err }},
		{"Certificate", func() error { _, err := db.Certificate(ctx, pki.MustNewSerial()); return err }},
		{"Certificates", func() error { _, _, err := db.Certificates(ctx, pki.CertificateFilter{}); return err }},
		{"RecordAudit", func() error { return db.RecordAudit(ctx, event("x")) }},
		{"InTx", func() error { return db.InTx(ctx, func(pgx.Tx) error { return nil }) }},
		{"Migrate", func() error { return store.Migrate(ctx, u, nil) }},
		{"deadline", func() error {
			ctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
			defer cancel()
			<-ctx.Done()
			return db.Ping(ctx)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, pki.ErrUnavailable) {
				t.Fatalf("%s = %v, want ErrUnavailable", tt.name, err)
			}
		})
	}
}

// TestConnectionKilled ends the store's server sessions under it, as a
// database restart or failover does: the next query fails with ErrUnavailable,
// and the pool recovers on its own once the server answers again.
func TestConnectionKilled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := testdb.New(t)
	db, err := store.Open(ctx, u, store.WithMaxConns(1))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	admin, err := store.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var pid int32
	if err := db.Pool().QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	var killed bool
	if err := admin.Pool().QueryRow(ctx, "SELECT pg_terminate_backend($1, 5000)", pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend = %v, %v", killed, err)
	}
	if _, err := db.Accounts(ctx); !errors.Is(err, pki.ErrUnavailable) {
		t.Fatalf("Accounts on a killed session = %v, want ErrUnavailable", err)
	}
	if _, err := db.Accounts(ctx); err != nil {
		t.Fatalf("Accounts after the pool replaced the session = %v", err)
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := store.Open(ctx, "postgres://[::1"); err == nil {
		t.Error("Open accepted a malformed URL")
	}
	db, err := store.Open(ctx, testdb.New(t), store.WithMaxConns(3), store.WithConnectTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if got := db.Pool().Config().MaxConns; got != 3 {
		t.Errorf("MaxConns = %d, want 3", got)
	}
	if got := db.Pool().Config().ConnConfig.ConnectTimeout; got != time.Second {
		t.Errorf("ConnectTimeout = %v, want 1s", got)
	}
	var app string
	if err := db.Pool().QueryRow(ctx, "SHOW application_name").Scan(&app); err != nil || app != "pkid" {
		t.Errorf("application_name = %q, %v", app, err)
	}
}

// TestCancelled checks that a caller that gives up is not reported as an
// outage.
func TestCancelled(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := db.Accounts(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, pki.ErrUnavailable) {
		t.Fatalf("Accounts(cancelled) = %v, want context.Canceled and not ErrUnavailable", err)
	}
}

func TestInTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	errStop := errors.New("stop")
	insert := func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO accounts (name, plan) VALUES ('tx', 'standard')")
		return err
	}
	tests := []struct {
		name      string
		fn        func(pgx.Tx) error
		want      error
		wantCount int
	}{
		{"rolled back on error", func(tx pgx.Tx) error {
			if err := insert(tx); err != nil {
				return err
			}
			return errStop
		}, errStop, 0},
		{"driver error mapped", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SELECT * FROM accounts WHERE id = 'nope'")
			return err
		}, pki.ErrNotFound, 0},
		{"committed", insert, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := db.InTx(ctx, tt.fn); !errors.Is(err, tt.want) {
				t.Fatalf("InTx = %v, want %v", err, tt.want)
			}
			if n := count(t, db, "SELECT count(*) FROM accounts WHERE name = 'tx'"); n != tt.wantCount {
				t.Errorf("%d rows, want %d", n, tt.wantCount)
			}
		})
	}
}

func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := testdb.New(t) // migrated already, from the template
	for i := range 2 {
		if err := store.Migrate(ctx, u, nil); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	db, err := store.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var version int
	var dirty bool
	if err := db.Pool().QueryRow(ctx, "SELECT version, dirty FROM schema_migrations").Scan(&version, &dirty); err != nil {
		t.Fatal(err)
	}
	if version < 1 || dirty {
		t.Errorf("schema version %d dirty %v", version, dirty)
	}
}

// TestMigrateCreatesDatabase runs several migrations at once on a database
// that does not exist: each must succeed, and the schema be complete once.
func TestMigrateCreatesDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := testdb.Missing(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = store.Migrate(ctx, u, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate #%d: %v", i+1, err)
		}
	}
	db, err := store.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := &pki.Account{Name: "after migrate", Plan: pki.PlanEnterprise}
	if err := db.CreateAccount(ctx, a, event("account.create")); err != nil {
		t.Fatalf("the migrated schema does not take an account: %v", err)
	}
	// Close every connection before the cleanup drops the database.
	db.Close()
}
