#!/usr/bin/env bash
# bench.sh: `make bench`. Runs the Go micro-benchmarks of every package, then
# the end-to-end issuance benchmark (cmd/pkid-bench), the OCSP responder
# under wrk (bench/ocsp/run.sh, when wrk is installed) and one node against
# three (bench/nodes), and keeps the raw output of each under bench/out/ (git-ignored), named by the
# time of the run, so that two runs can be compared with benchstat:
#
#   go run golang.org/x/perf/cmd/benchstat@latest bench/out/A-go.txt bench/out/B-go.txt
#
# BENCHFLAGS adds flags to go test (for example BENCHFLAGS='-count=6' for
# benchstat); PKID_BENCH_ARGS adds arguments to pkid-bench.
set -euo pipefail
cd "$(dirname "$0")/.."

out=bench/out
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)

# Header lines make each file self-describing: what ran, where, on what.
describe() {
  echo "# $*"
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(go version) $(nproc) cores"
  local rev
  if rev=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD 2>/dev/null || rev="$rev (with uncommitted changes)"
  else
    rev=unknown
  fi
  echo "# commit $rev"
}

gofile="$out/$stamp-go.txt"
read -ra flags <<<"${BENCHFLAGS:-}"
cmd=(go test -run '^$' -bench . -benchmem "${flags[@]}" ./...)
echo "bench: ${cmd[*]} > $gofile"
{
  describe "${cmd[*]}"
  "${cmd[@]}"
} 2>&1 | tee "$gofile"

if [ -d cmd/pkid-bench ]; then
  e2efile="$out/$stamp-pkid-bench.txt"
  read -ra args <<<"${PKID_BENCH_ARGS:-}"
  cmd=(go run ./cmd/pkid-bench "${args[@]}")
  echo "bench: ${cmd[*]} > $e2efile"
  {
    describe "${cmd[*]}"
    "${cmd[@]}"
  } 2>&1 | tee "$e2efile"
else
  echo "bench: end-to-end load benchmark skipped: there is no cmd/pkid-bench yet"
fi

if command -v wrk >/dev/null; then
  ocspfile="$out/$stamp-ocsp.txt"
  echo "bench: DURATION=10s bench/ocsp/run.sh > $ocspfile"
  {
    describe "DURATION=10s bench/ocsp/run.sh"
    DURATION=10s bench/ocsp/run.sh
  } 2>&1 | tee "$ocspfile"
else
  echo "bench: OCSP benchmark skipped: wrk is not installed (apt-get install wrk)"
fi

nodesfile="$out/$stamp-nodes.txt"
go build -o "$out/pkid" ./cmd/pkid
cmd=(go run ./bench/nodes -pkid "$out/pkid")
echo "bench: ${cmd[*]} > $nodesfile"
{
  describe "${cmd[*]}"
  "${cmd[@]}"
} 2>&1 | tee "$nodesfile"

echo "bench: raw output in $out/$stamp-*"
