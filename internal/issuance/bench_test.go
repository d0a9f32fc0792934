package issuance

import (
	"crypto/elliptic"
	"testing"
	"time"
)

// The benchmarks measure one P-256 client certificate in pkid's profile,
// issued by a P-256 intermediate: Prepare (template, tbsCertificate, zlint)
// then Issue (real signature and its verification). Each reports
//
//   - certs/s: certificates per second of wall time;
//   - cpu-µs/op: process CPU time per certificate (all threads, GC included),
//     which a busy shared machine does not inflate the way it inflates wall
//     time;
//   - certs/core-s: certificates per second of one core, 1e6 / cpu-µs/op,
//     the capacity figure docs/BENCHMARKS.md quotes.
//
//	go test -run '^$' -bench . -benchtime 3s ./internal/issuance

// noLint accepts everything: it isolates the cost of zlint from the rest.
type noLint struct{}

func (noLint) Certificate([]byte) error { return nil }

// cpuMeter reports throughput metrics for a benchmark.
type cpuMeter struct{ start time.Duration }

func startCPU(b *testing.B) cpuMeter {
	b.ReportAllocs()
	return cpuMeter{start: processCPUTime()}
}

func (m cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
	if cpu := processCPUTime() - m.start; cpu > 0 {
		perOp := float64(cpu.Microseconds()) / float64(b.N)
		b.ReportMetric(perOp, "cpu-µs/op")
		b.ReportMetric(1e6/perOp, "certs/core-s")
	}
}

func benchIssue(b *testing.B, l certLinter) {
	h := newHierarchy(b, HierarchyConfig{})
	p := testProfile()
	req := testRequest(b, mustKey(b, elliptic.P256()).Public())
	m := startCPU(b)
	for b.Loop() {
		prep, err := h.intermediate.prepareClient(p, req, l)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.intermediate.Issue(prep); err != nil {
			b.Fatal(err)
		}
	}
	m.report(b)
}

func benchIssueParallel(b *testing.B, l certLinter) {
	h := newHierarchy(b, HierarchyConfig{})
	p := testProfile()
	req := testRequest(b, mustKey(b, elliptic.P256()).Public())
	m := startCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			prep, err := h.intermediate.prepareClient(p, req, l)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := h.intermediate.Issue(prep); err != nil {
				b.Error(err)
				return
			}
		}
	})
	m.report(b)
}

// BenchmarkPrepareIssue is the whole of issuance on one core, zlint included.
func BenchmarkPrepareIssue(b *testing.B) { benchIssue(b, testLinter(b)) }

// BenchmarkIssueNoLint is BenchmarkPrepareIssue without zlint: the template,
// its encoding and the real signature with its verification. The difference
// between the two is zlint's share.
func BenchmarkIssueNoLint(b *testing.B) { benchIssue(b, noLint{}) }

// BenchmarkPrepareIssueParallel is BenchmarkPrepareIssue on every core
// (GOMAXPROCS goroutines), sharing one issuer as pkid serve does.
func BenchmarkPrepareIssueParallel(b *testing.B) { benchIssueParallel(b, testLinter(b)) }

// BenchmarkIssueNoLintParallel is BenchmarkIssueNoLint on every core.
func BenchmarkIssueNoLintParallel(b *testing.B) { benchIssueParallel(b, noLint{}) }
