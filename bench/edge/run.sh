#!/usr/bin/env bash
# run.sh: what revocation checking costs pkid-edge. Builds pkid-edge, then
# measures, in one run, new mTLS connections per second and connection and
# request latency (p50, p99) through a pkid-edge whose revocation cache is
# warm and through the same binary with --revocation=off, loading the two
# in short alternating slices (bench/edge/main.go says how); then the Go
# micro-benchmark of the check itself (internal/edge BenchmarkRevocation).
# Targets: the checks add <= 1 ms at request p99 and cost <= 10% of the
# connection rate; the script exits non-zero when one is missed.
#
#   bench/edge/run.sh                          # 4 clients, 30 slices of 500ms
#   CONC=8 SLICES=60 bench/edge/run.sh
#
# The load generator, the fake OCSP responder, CRL server and upstream run
# in one process beside the two edges, on the same machine. On a shared
# machine the rates and tail latencies move with whatever else runs; the
# "edge CPU per ..." rows, from the kernel's accounting of each edge
# process, barely do. Raw output goes to bench/out/edge/.
set -euo pipefail
cd "$(dirname "$0")/../.."

CONC=${CONC:-4}
SLICES=${SLICES:-30}
SLICE=${SLICE:-500ms}
CLIENTS=${CLIENTS:-16}
out=bench/out/edge
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
file="$out/$stamp.txt"

go build -o "$out/pkid-edge" ./cmd/pkid-edge
{
  echo "# bench/edge/run.sh CONC=$CONC SLICES=$SLICES SLICE=$SLICE CLIENTS=$CLIENTS"
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(go version) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} | tee "$file"
status=0
go run ./bench/edge -edge "$out/pkid-edge" -conc "$CONC" -slices "$SLICES" -slice "$SLICE" -clients "$CLIENTS" 2>&1 | tee -a "$file" || status=$?
echo | tee -a "$file"
go test -run '^$' -bench BenchmarkRevocation -benchmem ./internal/edge/ 2>&1 | tee -a "$file"
echo "run.sh: raw output in $file"
exit "$status"
