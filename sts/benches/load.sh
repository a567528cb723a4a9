#!/usr/bin/env bash
# Load test of POST /token: the server on core 0 with one worker, wrk on core 1, keep-alive
# connections, a distinct subject token per request. Runs wrk RUNS times and prints the median,
# with the crypto floor measured on the server's core before and after. See docs/benchmarks.md.
#   bash sts/benches/load.sh                  (ES256 out, mapped profile, 64 connections, 5 x 10 s)
#   ALG=EdDSA bash sts/benches/load.sh
#   PROFILE=plain CONNECTIONS=16 RUNS=9 DURATION=15s bash sts/benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ALG=${ALG:-ES256}
PROFILE=${PROFILE:-mapped}
DURATION=${DURATION:-10s}
RUNS=${RUNS:-5}
CONNECTIONS=${CONNECTIONS:-64}
COUNT=${COUNT:-250000}
PORT=${PORT:-18080}
LOG=${RUST_LOG:-info}
OUT=sts/benches/out

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p sts --bins
rm -rf "$OUT" && mkdir -p "$OUT"
target/release/sts-bench prepare --dir "$OUT" --port "$PORT" --count "$COUNT" --alg "$ALG" --profile "$PROFILE"

floor_before=$(taskset -c 0 target/release/sts-bench floor)
# Every run starts at the first body, so runs repeat each other's subject tokens: the
# verified-subject cache is off here, so every request verifies (as before the cache existed).
STS__SUBJECT_CACHE__CAPACITY=0 RUST_LOG=$LOG taskset -c 0 target/release/sts serve --config "$OUT/sts.yaml" >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.1
done
# Sanity: one request must succeed before measuring.
first=$(head -n1 "$OUT/bodies.txt")
curl -fs -u "gateway:bench-gateway-secret-0123456789" -d "$first" "http://127.0.0.1:$PORT/token" >/dev/null \
  || { echo "sanity request failed"; cat "$OUT/server.log"; exit 1; }

echo "== $ALG out, $PROFILE profile, $CONNECTIONS connections, $RUNS x $DURATION, server on core 0 (1 worker), wrk on core 1"
wrk_run() { taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$1" --latency -s "$OUT/load.lua" "http://127.0.0.1:$PORT"; }
wrk_run 2s >/dev/null # warm-up: connections, allocator, caches
for run in $(seq 1 "$RUNS"); do
  wrk_run "$DURATION" >"$OUT/wrk-$run.txt"
  if grep -q "Non-2xx" "$OUT/wrk-$run.txt"; then
    echo "run $run had failed requests:"; cat "$OUT/wrk-$run.txt"; exit 1
  fi
  awk -v run="$run" '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    END {printf "run %d: %8.0f exchanges/s   p50 %s   p99 %s\n", run, rps, p50, p99}' "$OUT/wrk-$run.txt"
done | tee "$OUT/runs.txt"
floor_after=$(taskset -c 0 target/release/sts-bench floor)
echo "$floor_before (before)"
echo "$floor_after (after)"
echo "server RSS after the runs: $(ps -o rss= -p $SERVER | tr -d ' ') KiB"
# The floor is one ES256 verify plus one ES256 sign, so the ratio is printed for ES256 output only.
awk '{print $3}' "$OUT/runs.txt" | sort -n | awk -v alg="$ALG" -v f1="${floor_before##* = }" -v f2="${floor_after##* = }" '
  {v[NR]=$1} END {
    m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
    f = (f1 + f2) / 2
    if (alg == "ES256")
      printf "median: %.0f exchanges/s = %.0f%% of the floor measured around it (%.0f/s)\n", m, 100*m/f, f
    else
      printf "median: %.0f exchanges/s (the floor above is for ES256 output)\n", m
  }'
