// Package testdb gives tests their own migrated Postgres database, fast enough
// for every test to have one and safe for tests and test binaries running in
// parallel.
//
// The migrations run once per schema version, into a template database whose
// name carries a hash of the migration files (pkid_tmpl_<hash>); each test then
// gets CREATE DATABASE pkid_t_<random> TEMPLATE pkid_tmpl_<hash>, a file copy
// that takes milliseconds, dropped when the test ends. The server is
// PKID_TEST_DATABASE_URL, by default the local Postgres as user postgres.
package testdb

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/migrations"
)

// EnvURL names the environment variable that points at the test server. The
// URL's database is the maintenance database, where databases are created.
const EnvURL = "PKID_TEST_DATABASE_URL"

// DefaultURL is the server used when EnvURL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// setupTimeout bounds creating the template (it may wait for another test
// binary that is creating it) and each per-test database.
const setupTimeout = 2 * time.Minute

// server is the per-process state: the maintenance pool and the template,
// made on first use.
var server struct {
	once     sync.Once
	err      error
	base     *url.URL
	pool     *pgxpool.Pool
	template string
}

// New returns the URL of a fresh database with pkid's schema, which t's
// cleanup drops. It fails t when the server cannot be reached: tests that
// need Postgres do not pass without it.
func New(t testing.TB) string {
	t.Helper()
	if err := setup(); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	name := randomName()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	_, err := server.pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+
		" TEMPLATE "+pgx.Identifier{server.template}.Sanitize())
	if err != nil {
		t.Fatalf("testdb: creating %s from %s: %v", name, server.template, err)
	}
	t.Cleanup(func() { drop(t, name) })
	return databaseURL(name)
}

// randomName returns a name for a test database that no other test uses.
func randomName() string {
	var b [8]byte
	rand.Read(b[:])
	return "pkid_t_" + hex.EncodeToString(b[:])
}

// drop drops the database name, ending any session still connected to it.
func drop(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := server.pool.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("testdb: dropping %s: %v", name, err)
	}
}

// Missing returns the URL of a database that does not exist yet, on the test
// server, for tests of code that creates it (pkid migrate). t's cleanup drops
// it if something did.
func Missing(t testing.TB) string {
	t.Helper()
	if err := setup(); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	name := randomName()
	t.Cleanup(func() { drop(t, name) })
	return databaseURL(name)
}

// Open returns a store on a fresh database (see New), closed when t ends and
// before the database is dropped.
func Open(t testing.TB) *store.DB {
	t.Helper()
	u := New(t)
	db, err := store.Open(context.Background(), u)
	if err != nil {
		t.Fatalf("testdb: opening %s: %v", u, err)
	}
	t.Cleanup(db.Close)
	return db
}

// databaseURL returns the server's URL with the database set to name.
func databaseURL(name string) string {
	u := *server.base
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

func setup() error {
	server.once.Do(func() { server.err = initServer() })
	return server.err
}

func initServer() error {
	raw := os.Getenv(EnvURL)
	if raw == "" {
		raw = DefaultURL
	}
	base, err := url.Parse(raw)
	if err != nil || (base.Scheme != "postgres" && base.Scheme != "postgresql") {
		return fmt.Errorf("%s must be a postgres:// URL", EnvURL)
	}
	server.base = base
	hash, err := migrationsHash()
	if err != nil {
		return err
	}
	server.template = "pkid_tmpl_" + hash

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return fmt.Errorf("parsing %s: %v", EnvURL, err)
	}
	cfg.MaxConns = 4
	server.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	if err := server.pool.Ping(ctx); err != nil {
		return fmt.Errorf("cannot reach the test Postgres at %s (set %s): %v", base.Redacted(), EnvURL, err)
	}
	return ensureTemplate(ctx)
}

// ensureTemplate makes the template database unless a complete one exists.
// A template is complete once it is marked IS_TEMPLATE, the last step; one
// left half-made by a crashed run is dropped and made again. An advisory lock
// on the server keeps test binaries from making it twice at once.
func ensureTemplate(ctx context.Context) error {
	ready := func(conn *pgxpool.Conn) (exists, complete bool, err error) {
		err = conn.QueryRow(ctx, "SELECT true, datistemplate FROM pg_database WHERE datname = $1",
			server.template).Scan(&exists, &complete)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, false, nil
		}
		return exists, complete, err
	}
	conn, err := server.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, complete, err := ready(conn); err != nil || complete {
		return err
	}

	sum := sha256.Sum256([]byte("pkid testdb template"))
	lockID := int64(binary.BigEndian.Uint64(sum[:8]))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockID); err != nil {
		return fmt.Errorf("locking template creation: %v", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockID)

	exists, complete, err := ready(conn)
	if err != nil || complete {
		return err
	}
	ident := pgx.Identifier{server.template}.Sanitize()
	if exists {
		if _, err := conn.Exec(ctx, "DROP DATABASE "+ident+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("dropping incomplete template: %v", err)
		}
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return fmt.Errorf("creating template: %v", err)
	}
	if err := store.Migrate(ctx, databaseURL(server.template), slog.New(slog.DiscardHandler)); err != nil {
		return fmt.Errorf("migrating template: %v", err)
	}
	// No connections: CREATE DATABASE ... TEMPLATE needs the template idle.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident+" WITH ALLOW_CONNECTIONS false IS_TEMPLATE true"); err != nil {
		return fmt.Errorf("marking template: %v", err)
	}
	return nil
}

// migrationsHash names the schema version: the first 8 hex digits of a
// SHA-256 over the migration files' names and contents, so that changing a
// migration makes a new template.
func migrationsHash() (string, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, err := fs.ReadFile(migrations.FS, n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:8], nil
}
