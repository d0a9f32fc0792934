package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/audit"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// insertIssuanceLikeEvents writes n events shaped like issuance's (a detail
// of about 300 bytes) in one statement.
func insertIssuanceLikeEvents(b *testing.B, db *store.DB, n int) {
	_, err := db.Pool().Exec(context.Background(), `INSERT INTO audit_events (actor, action, outcome, account_id, serial, request_id, detail)
		SELECT 'account:0b9c7d1e-2f3a-4b5c-8d6e-7f8091a2b3c4', 'certificate.issued', 'success',
			'0b9c7d1e-2f3a-4b5c-8d6e-7f8091a2b3c4', md5(i::text), 'req-' || i,
			jsonb_build_object('fingerprint_sha256', encode(sha256(i::text::bytea), 'hex'),
				'subject', 'CN=client-' || i || '.example', 'not_after', '2026-01-01T00:00:00Z',
				'spki_sha256', encode(sha256(('k' || i)::bytea), 'hex'), 'validity_days', 90)
		FROM generate_series(1, $1) i`, n)
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAuditLinker measures how many events per second the linker
// links (read, canonicalise, hash twice, append), one batch per
// transaction. The events are written before the clock starts.
func BenchmarkAuditLinker(b *testing.B) {
	for _, batch := range []int{1000, 5000} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			ctx := context.Background()
			db := testdb.Open(b)
			insertIssuanceLikeEvents(b, db, b.N)
			l := audit.NewLinker(db, audit.LinkerOptions{Batch: batch})
			b.ResetTimer()
			start := time.Now()
			linked := 0
			for linked < b.N {
				res, err := l.Link(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if res.Linked == 0 {
					b.Fatalf("a pass linked nothing: %+v", res)
				}
				linked += res.Linked
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkAuditVerify measures `pkid audit verify`'s walk: events per
// second checked in one snapshot.
func BenchmarkAuditVerify(b *testing.B) {
	ctx := context.Background()
	db := testdb.Open(b)
	insertIssuanceLikeEvents(b, db, b.N)
	l := audit.NewLinker(db, audit.LinkerOptions{Batch: 5000})
	for linked := 0; linked < b.N; {
		res, err := l.Link(ctx)
		if err != nil {
			b.Fatal(err)
		}
		linked += res.Linked
	}
	b.ResetTimer()
	start := time.Now()
	rep, err := verifyChain(db, audit.VerifyOptions{})
	if err != nil || rep.Events != int64(b.N) {
		b.Fatalf("Verify = %+v, %v", rep, err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkIssuanceWritesChain measures the database side of issuance
// (CreatePending, then MarkIssued: two transactions, two audit events, as
// the CA writes them) from 64 goroutines, with no linker and with one
// linker running as every node runs it: the chain must not cap issuance.
func BenchmarkIssuanceWritesChain(b *testing.B) {
	for _, linker := range []bool{false, true} {
		name := "linker=off"
		if linker {
			name = "linker=on"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			db := testdb.Open(b)
			f := newFixture(b, db)
			var l *audit.Linker
			if linker {
				l = audit.NewLinker(db, audit.LinkerOptions{})
				runCtx, stop := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { l.Run(runCtx); close(done) }()
				defer func() { stop(); <-done }()
			}
			b.SetParallelism(32) // 64 writers on 2 cores
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					f.issue(b, f.pending(f.account.ID, nil))
				}
			})
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "certs/s")
			if linker {
				b.StopTimer()
				// How far behind the linker was when the writers stopped,
				// and how long it takes to catch up from there.
				h, err := db.AuditChainHead(ctx)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(h.Unlinked), "unlinked-at-end")
				caught := time.Now()
				for h.Unlinked > 0 && time.Since(caught) < 30*time.Second {
					time.Sleep(5 * time.Millisecond)
					if h, err = db.AuditChainHead(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(time.Since(caught).Milliseconds()), "catch-up-ms")
			}
		})
	}
}
