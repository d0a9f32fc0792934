package testpg_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/testpg"
)

// count returns the rows of table t in the database at url.
func count(t *testing.T, url string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLifecycle: what a commit wrote survives a fast shutdown and a SIGKILL
// of every server process; what was not committed does not; the server is
// unreachable while down and comes back on the same port.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	c := testpg.Start(t)
	url := c.CreateDatabase("life")
	if !strings.Contains(url, ":"+strconv.Itoa(c.Port())+"/life") {
		t.Fatalf("URL %q does not name port %d and database life", url, c.Port())
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 10)"); err != nil {
		t.Fatal(err)
	}
	var fsync string
	if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "on" {
		t.Fatalf("fsync = %q (%v), want on", fsync, err)
	}
	// An open transaction with rows that must not survive the kill.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO t SELECT generate_series(11, 20)"); err != nil {
		t.Fatal(err)
	}

	c.Kill()
	if c.Running() {
		t.Fatal("Running after Kill")
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a session survived Kill")
	}
	conn.Close(ctx)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if c2, err := pgx.Connect(short, url); err == nil {
		c2.Close(ctx)
		t.Fatal("connected to a killed server")
	}

	start := time.Now()
	c.Start()
	t.Logf("restart with crash recovery: %s", time.Since(start).Round(time.Millisecond))
	if n := count(t, url); n != 10 {
		t.Fatalf("after Kill and Start: %d rows, want the 10 committed", n)
	}
	if !strings.Contains(c.Log(), "not properly shut down") {
		t.Error("the server log does not show crash recovery after Kill")
	}

	c.Stop()
	if c.Running() {
		t.Fatal("Running after Stop")
	}
	c.Start()
	if n := count(t, url); n != 10 {
		t.Fatalf("after Stop and Start: %d rows, want 10", n)
	}
}

// TestTwoClusters: clusters are independent (own port, own data).
func TestTwoClusters(t *testing.T) {
	t.Parallel()
	a, b := testpg.Start(t), testpg.Start(t)
	if a.Port() == b.Port() {
		t.Fatalf("both clusters on port %d", a.Port())
	}
	ua := a.CreateDatabase("x")
	a.Stop()
	ub := b.CreateDatabase("x")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, ub)
	if err != nil {
		t.Fatalf("stopping one cluster broke the other: %v", err)
	}
	conn.Close(ctx)
	if ua == ub {
		t.Fatal("same URL for two clusters")
	}
}
