//go:build unix

package crl_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/crl"
	"github.com/pkid/pkid/internal/pki"
)

// BenchmarkCRL measures CRL generation for 100,000 and 1,000,000 revoked
// certificates in Postgres, and the parts it is made of:
//
//   - generate: Job.Generate, all of it: lock, read the rows, sort, encode,
//     lint (sampled), sign, store the DER with its audit event, commit;
//   - read: the lock and the read of the rows into memory, nothing else
//     (the transaction is rolled back), the floor set by Postgres and pgx;
//   - store: the write and commit of a CRL of that size, without reading or
//     signing anything.
//
// Each reports peak-RSS-MiB, the process's peak resident memory while it ran
// (VmHWM, reset before), which includes the Go runtime and the test binary:
// an upper bound for what generation needs; and cpu-s/op, the CPU time of
// the Go process (not Postgres's) per operation, which other load on the
// machine does not inflate the way it inflates wall time. The rows are
// vacuumed and a checkpoint taken before measuring: the steady state of
// rows revoked over weeks, not the first read of a bulk load, which also
// rewrites every page to set hint bits. The signing part alone is
// BenchmarkSignCRL and BenchmarkEncodeCRL in internal/issuance.
//
//	go test -run '^$' -bench BenchmarkCRL -benchtime 3x -timeout 30m ./internal/crl
func BenchmarkCRL(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			e := newEnv(b)
			start := time.Now()
			bulkRevoked(b, e, n)
			b.Logf("setup: %d revoked certificates written in %s", n, time.Since(start).Round(time.Millisecond))
			ctx := context.Background()

			b.Run("generate", func(b *testing.B) {
				j := e.job(b, nil, nil, crl.JobConfig{Now: time.Now, Keep: 2, Log: benchLog()})
				var last *pki.CRL
				measure(b, func() {
					c, err := j.Generate(ctx)
					if err != nil {
						b.Fatal(err)
					}
					last = c
				})
				if last.Entries != n {
					b.Fatalf("%d entries, want %d", last.Entries, n)
				}
				b.ReportMetric(float64(len(last.DER))/(1<<20), "DER-MiB")
			})

			b.Run("read", func(b *testing.B) {
				stop := errors.New("rolled back on purpose")
				measure(b, func() {
					err := e.db.GenerateCRL(ctx, e.h.inter.ID, 0, func(_ *pki.CRL, _ int64, revoked func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
						entries, err := revoked(time.Time{})
						if err == nil && len(entries) != n {
							err = fmt.Errorf("read %d rows, want %d", len(entries), n)
						}
						if err == nil {
							err = stop
						}
						return nil, pki.AuditEvent{}, err
					})
					if !errors.Is(err, stop) {
						b.Fatal(err)
					}
				})
			})

			b.Run("store", func(b *testing.B) {
				latest, err := e.db.LatestCRL(ctx, e.h.inter.ID)
				if err != nil {
					b.Fatal(err)
				}
				der := latest.DER
				measure(b, func() {
					err := e.db.GenerateCRL(ctx, e.h.inter.ID, 2, func(prev *pki.CRL, number int64, _ func(time.Time) ([]pki.RevokedEntry, error)) (*pki.CRL, pki.AuditEvent, error) {
						now := time.Now().UTC().Truncate(time.Second)
						return &pki.CRL{IssuerID: e.h.inter.ID, Number: number, DER: der, ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: n},
							pki.AuditEvent{Actor: "system", Action: "bench.crl.store", Outcome: pki.OutcomeSuccess}, nil
					})
					if err != nil {
						b.Fatal(err)
					}
				})
			})
		})
	}
}

// benchLog logs to stderr when PKID_BENCH_LOG is set: the job's own
// breakdown of each CRL (reading, signing, storing).
func benchLog() *slog.Logger {
	if os.Getenv("PKID_BENCH_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// measure runs op b.N times and reports the process's peak resident memory
// over those runs, after releasing what the setup left behind.
func measure(b *testing.B, op func()) {
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS(b)
	cpu := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		op()
	}
	b.StopTimer()
	b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
	if peak := peakRSS(); peak > 0 {
		b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets VmHWM to the current resident size (Linux
// clear_refs, value 5).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak RSS (%v): peak-RSS-MiB covers the whole process", err)
	}
}

// peakRSS returns VmHWM in bytes, or 0 where /proc is missing.
func peakRSS() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// bulkRevoked writes n revoked certificates of the intermediate with COPY.
// Postgres's advice for bulk loads is followed: the indexes the load does
// not need are dropped first and rebuilt after, with their definitions
// read from the catalog so that the schema ends as it began, then ANALYZE.
func bulkRevoked(b *testing.B, e *env, n int) {
	ctx := context.Background()
	conn, err := e.db.Pool().Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	exec := func(sql string, args ...any) {
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
	type def struct{ name, sql string }
	var indexes, uniques []def
	collect := func(sql string, into *[]def) {
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
			var d def
			if err := rows.Scan(&d.name, &d.sql); err != nil {
				b.Fatal(err)
			}
			*into = append(*into, d)
		}
		if rows.Err() != nil {
			b.Fatal(rows.Err())
		}
	}
	collect(`SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = 'certificates'::regclass AND contype = 'u'`, &uniques)
	collect(`SELECT i.indexname, i.indexdef FROM pg_indexes i
		WHERE i.tablename = 'certificates' AND i.indexname NOT IN (
			SELECT conname FROM pg_constraint WHERE conrelid = 'certificates'::regclass AND contype IN ('p', 'u'))`, &indexes)
	for _, u := range uniques {
		exec("ALTER TABLE certificates DROP CONSTRAINT " + pgx.Identifier{u.name}.Sanitize())
	}
	for _, i := range indexes {
		exec("DROP INDEX " + pgx.Identifier{i.name}.Sanitize())
	}

	reasons := []int16{0, 1, 3, 4, 5, 9}
	now := time.Now().UTC()
	rnd := make([]byte, 17+32)
	k := 0
	copied, err := conn.Conn().CopyFrom(ctx, pgx.Identifier{"certificates"},
		[]string{"serial", "issuer_id", "account_id", "state", "lint_der", "spki_sha256", "subject_cn",
			"not_before", "not_after", "revoked_at", "revocation_reason"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if k == n {
				return nil, nil
			}
			k++
			if _, err := rand.Read(rnd); err != nil {
				return nil, err
			}
			rnd[0] = 0x70
			spki := sha256.Sum256(rnd[17:])
			revokedAt := now.Add(-time.Duration(k%(30*24*3600)) * time.Second)
			return []any{hex.EncodeToString(rnd[:17]), e.h.inter.ID, e.account, "pending", []byte{0}, spki[:], "bench",
				now.Add(-60 * 24 * time.Hour), now.Add(30 * 24 * time.Hour), revokedAt, reasons[k%len(reasons)]}, nil
		}))
	if err != nil || copied != int64(n) {
		b.Fatalf("COPY: %d rows, %v", copied, err)
	}
	for _, u := range uniques {
		exec("ALTER TABLE certificates ADD CONSTRAINT " + pgx.Identifier{u.name}.Sanitize() + " " + u.sql)
	}
	for _, i := range indexes {
		exec(i.sql)
	}
	exec("VACUUM (ANALYZE) certificates")
	exec("CHECKPOINT")
	if got := count(b, e.db, "SELECT count(*) FROM certificates WHERE revoked_at IS NOT NULL"); got != n {
		b.Fatalf("%d revoked rows, want %d", got, n)
	}
}
