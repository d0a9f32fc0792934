package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/audit"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// TestAuditVerify runs `pkid audit verify` (through run, as main does) on
// an intact chain, then after one byte of one stored event is changed in
// SQL.
func TestAuditVerify(t *testing.T) {
	ctx := context.Background()
	url := testdb.New(t)
	t.Setenv("DATABASE_URL", url)
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 5 {
		ev := pki.AuditEvent{Actor: "admin:alice", Action: "account.created", Outcome: pki.OutcomeSuccess,
			Detail: map[string]any{"name": fmt.Sprintf("Acme %d", i)}}
		if err := db.RecordAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	linker := audit.NewLinker(db, audit.LinkerOptions{})
	if res, err := linker.Link(ctx); err != nil || res.Linked != 5 {
		t.Fatalf("Link = %+v, %v", res, err)
	}
	if err := db.RecordAudit(ctx, pki.AuditEvent{Actor: "system", Action: "test.unlinked", Outcome: pki.OutcomeSuccess}); err != nil {
		t.Fatal(err)
	}
	head, err := db.AuditChainHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	anchor := fmt.Sprintf("%d:%x", head.ID, head.Hash)

	verify := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(ctx, append([]string{"audit", "verify"}, args...), strings.NewReader(""), &stdout, &stderr)
		return stdout.String(), err
	}
	out, err := verify()
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	want := fmt.Sprintf("chain verified: 5 events, head %x\n", head.Hash)
	if !strings.HasPrefix(out, want) || !strings.Contains(out, "1 events not linked yet") {
		t.Errorf("stdout %q, want it to start %q", out, want)
	}
	if out, err := verify("--anchor", anchor); err != nil || !strings.Contains(out, "anchor 5 matches") {
		t.Errorf("with the anchor: %q, %v", out, err)
	}

	// One byte of the third event's detail, as someone with the database
	// owner's rights could change it.
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `ALTER TABLE audit_events DISABLE TRIGGER audit_events_insert_only;
			UPDATE audit_events SET detail = '{"name": "Acme 3"}' WHERE detail->>'name' = 'Acme 2';
			ALTER TABLE audit_events ENABLE TRIGGER audit_events_insert_only`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = verify()
	var be *audit.BreakError
	if !errors.As(err, &be) || be.ID != 3 {
		t.Fatalf("verify after tampering: %v, want a break at event 3", err)
	}
	if !regexp.MustCompile(`^audit chain broken at event 3: the event was altered`).MatchString(err.Error()) {
		t.Errorf("message %q", err)
	}
}

func TestAuditVerifyUsage(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://127.0.0.1:1/none")
	for _, args := range [][]string{
		{"audit"},
		{"audit", "check"},
		{"audit", "verify", "extra"},
		{"audit", "verify", "--anchor", "5"},
		{"audit", "verify", "--anchor", "5:abcd"},
		{"audit", "verify", "--no-such-flag"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
