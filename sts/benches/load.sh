#!/usr/bin/env bash
# Load test of POST /token: the server on core 0 with one worker, wrk on core 1, keep-alive
# connections, a distinct subject token per request. See docs/benchmarks.md.
#   bash sts/benches/load.sh            (defaults: ES256 out, 15 s, 64 connections)
#   ALG=EdDSA DURATION=20s bash sts/benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ALG=${ALG:-ES256}
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
COUNT=${COUNT:-250000}
PORT=${PORT:-18080}
LOG=${RUST_LOG:-info}
OUT=sts/benches/out

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p sts --bins
rm -rf "$OUT" && mkdir -p "$OUT"
target/release/sts-bench prepare --dir "$OUT" --port "$PORT" --count "$COUNT" --alg "$ALG"

RUST_LOG=$LOG taskset -c 0 target/release/sts serve --config "$OUT/sts.yaml" >"$OUT/server.log" 2>&1 &
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

echo "== $ALG out, $CONNECTIONS connections, $DURATION, server on core 0 (1 worker), wrk on core 1"
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$OUT/load.lua" "http://127.0.0.1:$PORT" | tee "$OUT/wrk.txt"
echo "server RSS after the run: $(ps -o rss= -p $SERVER | tr -d ' ') KiB"
