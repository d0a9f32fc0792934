package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

func newAdmin(t *testing.T, db *store.DB, username string) *pki.Admin {
	t.Helper()
	a := &pki.Admin{Username: username, PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"}
	if err := db.CreateAdmin(context.Background(), a, event("admin.created")); err != nil {
		t.Fatalf("CreateAdmin: %v", err)
	}
	return a
}

func sessionHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func TestAdminSessionLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	admin := newAdmin(t, db, "alice")
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	idle := 30 * time.Minute

	s := &pki.Session{IDHash: sessionHash("one"), AdminID: admin.ID, CreatedAt: t0, ExpiresAt: t0.Add(12 * time.Hour),
		RemoteAddr: "192.0.2.7", UserAgent: "test\x00agent"}
	if err := db.CreateAdminSession(ctx, s, nil, pki.AuditEvent{Actor: "admin:alice", Action: "admin.login", Outcome: pki.OutcomeSuccess}); err != nil {
		t.Fatalf("CreateAdminSession: %v", err)
	}
	if s.Username != "alice" || !s.LastSeenAt.Equal(t0) {
		t.Errorf("created session %+v", s)
	}
	logins, err := db.SearchAudit(ctx, pki.AuditFilter{Action: "admin.login"})
	if err != nil || len(logins) != 1 {
		t.Fatalf("login events: %v, %v", logins, err)
	}

	tests := []struct {
		name    string
		hash    []byte
		now     time.Time
		wantErr error
	}{
		{"fresh", s.IDHash, t0.Add(time.Minute), nil},
		{"seen 29 minutes ago", s.IDHash, t0.Add(30 * time.Minute), nil},
		{"an unknown id", sessionHash("two"), t0.Add(31 * time.Minute), pki.ErrNotFound},
		{"a hash of the wrong length", []byte("short"), t0.Add(31 * time.Minute), pki.ErrNotFound},
		{"idle for 30 minutes", s.IDHash, t0.Add(61 * time.Minute), pki.ErrNotFound},
	}
	for _, tc := range tests {
		got, err := db.AdminSession(ctx, tc.hash, tc.now, tc.now.Add(-idle))
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.wantErr)
			continue
		}
		if err == nil && (got.AdminID != admin.ID || got.Username != "alice" || !got.LastSeenAt.Equal(tc.now) ||
			got.RemoteAddr != "192.0.2.7" || got.UserAgent != "test\uFFFDagent") {
			t.Errorf("%s: session %+v", tc.name, got)
		}
	}

	// The absolute timeout holds however busy the session is.
	s2 := &pki.Session{IDHash: sessionHash("busy"), AdminID: admin.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := db.CreateAdminSession(ctx, s2, nil, event("admin.login")); err != nil {
		t.Fatal(err)
	}
	for now := t0.Add(10 * time.Minute); now.Before(t0.Add(time.Hour)); now = now.Add(10 * time.Minute) {
		if _, err := db.AdminSession(ctx, s2.IDHash, now, now.Add(-idle)); err != nil {
			t.Fatalf("at %s: %v", now.Sub(t0), err)
		}
	}
	if _, err := db.AdminSession(ctx, s2.IDHash, t0.Add(time.Hour), t0.Add(time.Hour-idle)); !errors.Is(err, pki.ErrNotFound) {
		t.Errorf("past the absolute timeout: %v, want ErrNotFound", err)
	}

	// Signing in again replaces the session presented.
	s3 := &pki.Session{IDHash: sessionHash("three"), AdminID: admin.ID, CreatedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(12 * time.Hour)}
	if err := db.CreateAdminSession(ctx, s3, sessionHash("busy"), event("admin.login")); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Minute)
	if _, err := db.AdminSession(ctx, s2.IDHash, now, now.Add(-idle)); !errors.Is(err, pki.ErrNotFound) {
		t.Errorf("the replaced session: %v, want ErrNotFound", err)
	}

	// Logout deletes the session and audits only when there was one.
	ok, err := db.DeleteAdminSession(ctx, s3.IDHash, event("admin.logout"))
	if err != nil || !ok {
		t.Fatalf("DeleteAdminSession: %v, %v", ok, err)
	}
	ok, err = db.DeleteAdminSession(ctx, s3.IDHash, event("admin.logout"))
	if err != nil || ok {
		t.Errorf("deleting twice: %v, %v", ok, err)
	}
	if evs, _ := db.SearchAudit(ctx, pki.AuditFilter{Action: "admin.logout"}); len(evs) != 1 {
		t.Errorf("%d logout events, want 1", len(evs))
	}
	if _, err := db.AdminSession(ctx, s3.IDHash, now, now.Add(-idle)); !errors.Is(err, pki.ErrNotFound) {
		t.Errorf("after logout: %v", err)
	}

	// Purge removes what is no longer live, and nothing else.
	n, err := db.PurgeAdminSessions(ctx, t0.Add(2*time.Hour), t0.Add(2*time.Hour-idle))
	if err != nil || n != 1 { // "one", idle since t0+30m
		t.Errorf("purge: %d, %v; want 1", n, err)
	}
}

func TestCreateAdminSessionRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	now := time.Now()
	tests := []struct {
		name    string
		s       pki.Session
		wantErr error
	}{
		{"unknown administrator", pki.Session{IDHash: sessionHash("a"), AdminID: "00000000-0000-4000-8000-000000000000", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, pki.ErrNotFound},
		{"administrator id not a UUID", pki.Session{IDHash: sessionHash("b"), AdminID: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, pki.ErrNotFound},
		{"short id hash", pki.Session{IDHash: []byte("x"), AdminID: "00000000-0000-4000-8000-000000000000", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil},
	}
	for _, tc := range tests {
		err := db.CreateAdminSession(ctx, &tc.s, nil, event("admin.login"))
		if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.wantErr)
		}
	}
	if evs, _ := db.SearchAudit(ctx, pki.AuditFilter{Action: "admin.login"}); len(evs) != 0 {
		t.Errorf("%d login events for refused sessions", len(evs))
	}
}

func TestCountLoginAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	window := 15 * time.Minute
	count := func(key string, now time.Time) (int, time.Time) {
		t.Helper()
		n, start, err := db.CountLoginAttempt(ctx, key, now, now.Add(-window))
		if err != nil {
			t.Fatalf("CountLoginAttempt(%s): %v", key, err)
		}
		return n, start
	}
	for i := 1; i <= 3; i++ {
		n, start := count("user:a", t0.Add(time.Duration(i)*time.Minute))
		if n != i || !start.Equal(t0.Add(time.Minute)) {
			t.Errorf("attempt %d: %d since %s", i, n, start)
		}
	}
	if n, _ := count("addr:192.0.2.1", t0.Add(4*time.Minute)); n != 1 {
		t.Errorf("another key: %d, want 1", n)
	}
	// The window is fixed: it ends 15 minutes after its first attempt.
	if n, start := count("user:a", t0.Add(16*time.Minute)); n != 1 || !start.Equal(t0.Add(16*time.Minute)) {
		t.Errorf("after the window: %d since %s, want 1 since now", n, start)
	}
	// Passed windows of other keys are deleted as attempts arrive.
	var rows int
	if err := db.Pool().QueryRow(ctx, "SELECT count(*) FROM login_attempts WHERE key = 'addr:192.0.2.1'").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("rows: %d, %v", rows, err)
	}
	count("user:b", t0.Add(20*time.Minute))
	if err := db.Pool().QueryRow(ctx, "SELECT count(*) FROM login_attempts WHERE key = 'addr:192.0.2.1'").Scan(&rows); err != nil || rows != 0 {
		t.Errorf("a passed window was kept: %d, %v", rows, err)
	}
	if err := db.ClearLoginAttempts(ctx, "user:a"); err != nil {
		t.Fatal(err)
	}
	if n, _ := count("user:a", t0.Add(21*time.Minute)); n != 1 {
		t.Errorf("after clearing: %d, want 1", n)
	}
	for _, key := range []string{"", string(make([]byte, 301))} {
		if _, _, err := db.CountLoginAttempt(ctx, key, t0, t0.Add(-window)); err == nil {
			t.Errorf("key of %d bytes accepted", len(key))
		}
	}
}

// TestCountLoginAttemptConcurrent: concurrent attempts each take a place,
// so that a burst cannot slip past a limit.
func TestCountLoginAttemptConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	now := time.Now()
	const n = 20
	seen := make(chan int, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			c, _, err := db.CountLoginAttempt(ctx, "user:burst", now, now.Add(-time.Minute))
			seen <- c
			errs <- err
		}()
	}
	got := map[int]bool{}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		got[<-seen] = true
	}
	for i := 1; i <= n; i++ {
		if !got[i] {
			t.Errorf("no attempt was counted as number %d: %v", i, got)
		}
	}
}
