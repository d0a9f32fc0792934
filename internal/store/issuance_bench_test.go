package store_test

import (
	"context"
	"crypto/sha256"
	"syscall"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/testdb"
)

// The issuance path's statements under concurrency, as the group commit
// sees them. Besides ns/op (wall time, mostly Postgres) they report
// cpu-ns/op, the CPU this process spends per call (encoding parameters,
// decoding answers, the garbage collector), which is pkid's own share of
// the cost and what these benchmarks are for.

// benchConcurrency is how many calls are in flight at once: the load of
// pkid-bench's concurrency-64 run.
const benchConcurrency = 64

// processCPU returns the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runParallel runs op b.N times from benchConcurrency goroutines and
// reports the process CPU per call.
func runParallel(b *testing.B, op func(ctx context.Context) error) {
	b.SetParallelism((benchConcurrency + 1) / 2)
	ctx := context.Background()
	cpu := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

func BenchmarkTokenAndAccount(b *testing.B) {
	db := testdb.Open(b)
	f := &fixture{db: db}
	acct := f.newAccount(b, "Acme")
	tok := &pki.Token{ID: newUUID(), Kind: pki.TokenAccount, AccountID: acct.ID, Name: "ci",
		CreatedBy: "admin:alice", ExpiresAt: time.Now().Add(time.Hour)}
	if err := db.CreateToken(context.Background(), tok, event("token.create")); err != nil {
		b.Fatal(err)
	}
	runParallel(b, func(ctx context.Context) error {
		_, _, err := db.TokenAndAccount(ctx, tok.ID, acct.ID)
		return err
	})
}

// BenchmarkIssuanceWritesCPU is one issuance's two writes: the pending row
// with its OCSP response and audit event, then the issued row with its
// audit event, each event with a detail shaped like the CA's.
func BenchmarkIssuanceWritesCPU(b *testing.B) {
	db := testdb.Open(b)
	f := newFixture(b, db)
	signing := event("certificate.signing")
	signing.AccountID = f.account.ID
	signing.Detail = map[string]any{"issuer": f.issuer.ID, "common_name": "client.example",
		"dns_names": []string{"client.example"}, "not_before": time.Now(), "not_after": time.Now()}
	runParallel(b, func(ctx context.Context) error {
		c := f.pending(f.account.ID, nil)
		der := randomBytes(700)
		fp := sha256.Sum256(der)
		if err := db.CreatePending(ctx, c, signing); err != nil {
			return err
		}
		issued := event("certificate.issued")
		issued.Detail = map[string]any{"fingerprint_sha256": "00"}
		return db.MarkIssued(ctx, c.Serial, der, fp[:], issued)
	})
}
