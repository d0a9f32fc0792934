#!/usr/bin/env bash
# run.sh: throughput and latency of the OCSP responder serving pre-signed
# responses from memory, measured with wrk (Debian package wrk) on loopback,
# beside a trivial Go handler measured the same way in the same run: the
# ceiling that net/http allows on this machine. wrk shares the machine with
# the server, as it would in docs/BENCHMARKS.md's figures.
#
#   bench/ocsp/run.sh                      # 64 connections, 15s per run
#   CONNS=128 DURATION=30s bench/ocsp/run.sh
#   SERVER_PROCS=1 bench/ocsp/run.sh       # the server on one core, wrk on the other
#
# SERVER_PROCS sets the server's GOMAXPROCS (default: all cores). With wrk on
# the same two cores, the tail latency of every server, the trivial handler
# included, is set by the two fighting over the cores; giving the server one
# core and wrk the other is what separate machines would look like, at the
# price of some throughput.
#
# The bench server (bench/ocsp/server) makes a CA hierarchy in memory,
# installs N pre-signed responses in an ocsp.Cache and serves the
# production Responder; the wrk scripts cycle through requests for all N
# serials (SHA-1 CertIDs). Raw output goes to bench/out/ocsp/.
#
# On a machine that other work shares, requests/s moves with the load. So
# each run also records the CPU time the server and wrk used per request
# (from /proc and GNU time) and derives the capacity of an otherwise idle
# machine: cores / (server + wrk CPU per request). The load average at the
# start of each run is printed beside it.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-10000}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
DURATION=${DURATION:-15s}
SERVER_PROCS=${SERVER_PROCS:-}
WARMUP=${WARMUP:-3s}
ADDR=${ADDR:-127.0.0.1:18181}
out=bench/out/ocsp
mkdir -p "$out"

for tool in wrk curl openssl /usr/bin/time; do
  if ! command -v "$tool" >/dev/null; then
    echo "run.sh: $tool is not installed (apt-get install wrk curl openssl time)" >&2
    exit 1
  fi
done
ticks=$(getconf CLK_TCK)
cores=$(nproc)

# cpu prints the user+system CPU time of process $1, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

go build -o "$out/ocsp-bench-server" ./bench/ocsp/server
env ${SERVER_PROCS:+GOMAXPROCS=$SERVER_PROCS} "$out/ocsp-bench-server" -addr "$ADDR" -n "$N" -out "$out" >"$out/server.log" 2>&1 &
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

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(go version) $(nproc) cores; server GOMAXPROCS=${SERVER_PROCS:-$cores}; wrk -t$THREADS -c$CONNS -d$DURATION; N=$N" | tee "$out/results.txt"
wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s bench/ocsp/get.lua "http://$ADDR" -- "$out/get-paths.txt" >/dev/null

row='%-24s %10s %8s %8s %8s %6s %6s %10s %8s %12s %6s\n'
# shellcheck disable=SC2059
printf "$row" run "requests/s" "p50 ms" "p99 ms" "max ms" errors non2xx "server us" "wrk us" "idle req/s" load | tee -a "$out/results.txt"
for run in fixed get post; do
  case $run in
    fixed) label="trivial handler (400 B)"; file="" ;;
    get) label="OCSP GET"; file="$out/get-paths.txt" ;;
    post) label="OCSP POST"; file="$out/post-bodies.hex" ;;
  esac
  raw="$out/wrk-$run.txt"
  load=$(cut -d' ' -f1 /proc/loadavg)
  before=$(cpu "$pid")
  # shellcheck disable=SC2086 # $file is empty for the fixed handler
  /usr/bin/time -f 'WRKCPU %U %S' -o "$out/wrk-$run.time" \
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "bench/ocsp/$run.lua" "http://$ADDR" -- $file >"$raw"
  after=$(cpu "$pid")
  read -r _ rps p50 p99 max errs non2xx < <(grep '^RESULT' "$raw")
  read -r _ wu ws < <(grep '^WRKCPU' "$out/wrk-$run.time")
  secs=${DURATION%s}
  read -r server_us wrk_us idle < <(awk -v t="$ticks" -v b="$before" -v a="$after" -v wu="$wu" -v ws="$ws" \
    -v rps="$rps" -v d="$secs" -v c="$cores" 'BEGIN {
      n = rps * d; s = (a - b) / t / n * 1e6; w = (wu + ws) / n * 1e6
      printf "%.1f %.1f %.0f\n", s, w, c / ((s + w) / 1e6) }')
  # shellcheck disable=SC2059
  printf "$row" "$label" "$rps" "$p50" "$p99" "$max" "$errs" "$non2xx" "$server_us" "$wrk_us" "$idle" "$load" | tee -a "$out/results.txt"
done

kill "$pid"
wait "$pid" 2>/dev/null || true
trap - EXIT
echo "# answers counted by the responder:" | tee -a "$out/results.txt"
grep '^answers' "$out/server.log" | tee -a "$out/results.txt"
