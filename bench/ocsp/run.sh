#!/usr/bin/env bash
# run.sh: throughput and latency of the OCSP responder serving pre-signed
# responses from memory, measured with wrk (Debian package wrk) on loopback,
# beside a trivial Go handler measured the same way in the same run: the
# ceiling that net/http allows on this machine. wrk shares the machine with
# the server, as it would in docs/BENCHMARKS.md's figures.
#
#   bench/ocsp/run.sh                      # 64 connections, 15s per run
#   CONNS=128 DURATION=30s bench/ocsp/run.sh
#
# The bench server (bench/ocsp/server) makes a CA hierarchy in memory,
# installs N pre-signed responses in an ocsp.Cache and serves the
# production Responder; the wrk scripts cycle through requests for all N
# serials (SHA-1 CertIDs). Raw output goes to bench/out/ocsp/.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-10000}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
ADDR=${ADDR:-127.0.0.1:18181}
out=bench/out/ocsp
mkdir -p "$out"

if ! command -v wrk >/dev/null; then
  echo "run.sh: wrk is not installed (apt-get install wrk)" >&2
  exit 1
fi

go build -o "$out/ocsp-bench-server" ./bench/ocsp/server
"$out/ocsp-bench-server" -addr "$ADDR" -n "$N" -out "$out" >"$out/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
  if curl -fsS -o /dev/null "http://$ADDR/fixed" 2>/dev/null; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then cat "$out/server.log" >&2; exit 1; fi
  sleep 0.2
done

# One request of each form must be a signed good answer before anything is
# measured: a benchmark of error answers would measure nothing.
first=$(head -n 1 "$out/get-paths.txt")
check=$(curl -fsS -o "$out/check.der" -w '%{http_code} %{content_type}' "http://$ADDR$first")
if [ "$check" != "200 application/ocsp-response" ] || ! openssl ocsp -respin "$out/check.der" -resp_text -noverify 2>/dev/null | grep -q "Cert Status: good"; then
  echo "run.sh: the responder did not answer good: $check" >&2
  exit 1
fi

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(go version) $(nproc) cores; wrk -t$THREADS -c$CONNS -d$DURATION; N=$N" | tee "$out/results.txt"
wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s bench/ocsp/get.lua "http://$ADDR" -- "$out/get-paths.txt" >/dev/null

printf '%-26s %12s %9s %9s %9s %7s %8s\n' run "requests/s" "p50 ms" "p99 ms" "max ms" errors non2xx | tee -a "$out/results.txt"
for run in fixed get post; do
  case $run in
    fixed) label="trivial handler (400 B)"; file="" ;;
    get) label="OCSP GET"; file="$out/get-paths.txt" ;;
    post) label="OCSP POST"; file="$out/post-bodies.hex" ;;
  esac
  raw="$out/wrk-$run.txt"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "bench/ocsp/$run.lua" "http://$ADDR" -- $file >"$raw"
  read -r _ rps p50 p99 max errs non2xx < <(grep '^RESULT' "$raw")
  printf '%-26s %12s %9s %9s %9s %7s %8s\n' "$label" "$rps" "$p50" "$p99" "$max" "$errs" "$non2xx" | tee -a "$out/results.txt"
done

kill "$pid"
wait "$pid" 2>/dev/null || true
trap - EXIT
echo "# answers counted by the responder:" | tee -a "$out/results.txt"
grep '^answers' "$out/server.log" | tee -a "$out/results.txt"
