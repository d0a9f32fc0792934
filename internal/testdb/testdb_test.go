package testdb_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/testdb"
)

// exists reports whether the test server has a database called name.
func exists(t *testing.T, name string) bool {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func dbName(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func TestNew(t *testing.T) {
	ctx := context.Background()
	var names []string
	t.Run("two databases", func(t *testing.T) {
		a, b := testdb.New(t), testdb.New(t)
		if a == b {
			t.Fatalf("New returned %s twice", a)
		}
		for _, u := range []string{a, b} {
			names = append(names, dbName(t, u))
			conn, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			var version int
			err = conn.QueryRow(ctx, "SELECT version FROM schema_migrations WHERE NOT dirty").Scan(&version)
			conn.Close(ctx)
			if err != nil || version < 1 {
				t.Fatalf("%s is not migrated: version %d, %v", u, version, err)
			}
		}
		// What one test writes, the other does not see.
		db := testdb.Open(t)
		if _, err := db.Pool().Exec(ctx, "INSERT INTO accounts (name, plan) VALUES ('x', 'standard')"); err != nil {
			t.Fatal(err)
		}
		other := testdb.Open(t)
		var n int
		if err := other.Pool().QueryRow(ctx, "SELECT count(*) FROM accounts").Scan(&n); err != nil || n != 0 {
			t.Fatalf("a fresh database has %d accounts (%v)", n, err)
		}
	})
	for _, name := range names {
		if exists(t, name) {
			t.Errorf("%s outlived its test", name)
		}
	}
}

func TestMissing(t *testing.T) {
	var name string
	t.Run("missing", func(t *testing.T) {
		name = dbName(t, testdb.Missing(t))
		if exists(t, name) {
			t.Fatalf("Missing returned %s, which exists", name)
		}
		// The code under test creates it...
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, testdb.New(t))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	})
	// ...and the cleanup drops it.
	if name == "" || exists(t, name) {
		t.Errorf("Missing's database %q outlived its test", name)
	}
}
