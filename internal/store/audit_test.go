package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/testdb"
)

func TestRecordAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	acme := (&fixture{db: db}).newAccount(t, "Acme")
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

	tests := []struct {
		name    string
		ev      pki.AuditEvent
		wantErr bool
		check   func(t *testing.T, got pki.AuditEvent)
	}{
		{
			name: "every field",
			ev: pki.AuditEvent{OccurredAt: at, Actor: "admin:alice", Action: "certificate.revoke", Outcome: pki.OutcomeFailure,
				AccountID: acme.ID, Serial: "70ab", RequestID: "r-1", Detail: map[string]any{"reason": "keyCompromise", "n": 3}},
			check: func(t *testing.T, got pki.AuditEvent) {
				if !got.OccurredAt.Equal(at) || got.Actor != "admin:alice" || got.Action != "certificate.revoke" ||
					got.Outcome != pki.OutcomeFailure || got.AccountID != acme.ID || got.Serial != "70ab" || got.RequestID != "r-1" ||
					got.Detail["reason"] != "keyCompromise" || got.Detail["n"] != float64(3) || got.ID == 0 {
					t.Errorf("read back %+v", got)
				}
			},
		},
		{
			name: "hostile strings survive intact",
			ev: pki.AuditEvent{Actor: "system", Action: "issue.refused", Outcome: pki.OutcomeFailure,
				Detail: map[string]any{"cn": "evil\n[AUDIT] forged line \"quoted\" \\u0000 '; DROP TABLE audit_events; --"}},
			check: func(t *testing.T, got pki.AuditEvent) {
				want := "evil\n[AUDIT] forged line \"quoted\" \\u0000 '; DROP TABLE audit_events; --"
				if got.Detail["cn"] != want {
					t.Errorf("detail cn = %q, want %q", got.Detail["cn"], want)
				}
				if got.OccurredAt.IsZero() {
					t.Error("OccurredAt not defaulted")
				}
			},
		},
		{
			name: "NUL and invalid UTF-8 are replaced, not refused",
			ev: pki.AuditEvent{Actor: "account:\x00", Action: "issue.refused", Outcome: pki.OutcomeFailure,
				Detail: map[string]any{"cn": "a\x00b\xffc"}},
			check: func(t *testing.T, got pki.AuditEvent) {
				if got.Actor != "account:\uFFFD" || got.Detail["cn"] != "a\uFFFDb\uFFFDc" {
					t.Errorf("read back actor %q detail %q", got.Actor, got.Detail["cn"])
				}
			},
		},
		{
			name: "account id that is not a uuid is kept in the detail",
			ev:   pki.AuditEvent{Actor: "system", Action: "account.lookup", Outcome: pki.OutcomeFailure, AccountID: "../etc"},
			check: func(t *testing.T, got pki.AuditEvent) {
				if got.AccountID != "" || got.Detail["account_id_unparsed"] != "../etc" {
					t.Errorf("read back %+v", got)
				}
			},
		},
		{name: "no actor", ev: pki.AuditEvent{Action: "x", Outcome: pki.OutcomeSuccess}, wantErr: true},
		{name: "no action", ev: pki.AuditEvent{Actor: "system", Outcome: pki.OutcomeSuccess}, wantErr: true},
		{name: "unknown outcome", ev: pki.AuditEvent{Actor: "system", Action: "x", Outcome: "maybe"}, wantErr: true},
		{name: "detail that is not JSON", ev: pki.AuditEvent{Actor: "system", Action: "x", Outcome: pki.OutcomeSuccess,
			Detail: map[string]any{"ch": make(chan int)}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := db.RecordAudit(ctx, tt.ev)
			if tt.wantErr {
				if err == nil {
					t.Fatal("RecordAudit succeeded")
				}
				return
			}
			if err != nil {
				t.Fatalf("RecordAudit: %v", err)
			}
			events, err := db.AuditEvents(ctx, pki.AuditFilter{Limit: 1})
			if err != nil || len(events) != 1 {
				t.Fatalf("AuditEvents = %v, %v", events, err)
			}
			tt.check(t, events[0])
		})
	}
}

func TestAuditEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.Open(t)
	f := &fixture{db: db}
	acme, other := f.newAccount(t, "Acme"), f.newAccount(t, "Other") // one event each
	for i := range 1005 {
		ev := event("probe")
		ev.AccountID = acme.ID
		if i%2 == 0 {
			ev.AccountID = ""
		}
		if err := db.RecordAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name   string
		filter pki.AuditFilter
		want   int
	}{
		{"default limit", pki.AuditFilter{}, 100},
		{"limit", pki.AuditFilter{Limit: 7}, 7},
		{"limit capped", pki.AuditFilter{Limit: 5000}, 1000},
		{"one account", pki.AuditFilter{AccountID: acme.ID, Limit: 1000}, 503},
		{"another account", pki.AuditFilter{AccountID: other.ID}, 1},
		{"unknown account", pki.AuditFilter{AccountID: newUUID()}, 0},
		{"account not a uuid", pki.AuditFilter{AccountID: "x"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := db.AuditEvents(ctx, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != tt.want {
				t.Fatalf("got %d events, want %d", len(events), tt.want)
			}
			for i := 1; i < len(events); i++ {
				if events[i].ID >= events[i-1].ID {
					t.Fatalf("events not newest first: %d then %d", events[i-1].ID, events[i].ID)
				}
			}
			for _, ev := range events {
				if tt.filter.AccountID != "" && ev.AccountID != tt.filter.AccountID {
					t.Fatalf("event of account %q in a listing for %q", ev.AccountID, tt.filter.AccountID)
				}
			}
		})
	}
}
