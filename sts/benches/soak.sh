#!/usr/bin/env bash
# Soak run of POST /token (not part of CI): measures the peak for 10 s, then holds about 80% of
# it for DURATION with a distinct subject token per request, and prints the server's RSS at the
# start, the middle and the end, plus any non-2xx answers. Server on core 0 (one worker), wrk on
# core 1, keep-alive connections. See docs/benchmarks.md.
#   bash sts/benches/soak.sh                       (10 minutes, 80% of peak, ES256, mapped profile)
#   DURATION=60 LOAD=0.5 bash sts/benches/soak.sh  (seconds; fraction of peak)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-600}
LOAD=${LOAD:-0.8}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18081}
OUT=sts/benches/soak-out

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p sts --bins
rm -rf "$OUT" && mkdir -p "$OUT"
rss() { ps -o rss= -p "$SERVER" | tr -d ' '; }

# Enough distinct tokens for the peak probe plus the whole soak at the paced rate; sized after
# the probe, so first a small set to measure the peak with.
target/release/sts-bench prepare --dir "$OUT" --port "$PORT" --count 150000 --alg ES256 --profile mapped >/dev/null
floor=$(taskset -c 0 target/release/sts-bench floor)
taskset -c 0 target/release/sts serve --config "$OUT/sts.yaml" >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d10s -s "$OUT/load.lua" "http://127.0.0.1:$PORT" >"$OUT/peak.txt"
peak=$(awk '/Requests\/sec/ {printf "%d", $2}' "$OUT/peak.txt")
kill $SERVER; wait $SERVER 2>/dev/null || true
rate=$(awk -v p="$peak" -v l="$LOAD" 'BEGIN {printf "%d", p*l}')
count=$(( rate * DURATION * 105 / 100 ))
echo "== peak $peak/s ($floor); soak at $rate/s for ${DURATION}s with $count distinct tokens"
target/release/sts-bench prepare --dir "$OUT" --port "$PORT" --count "$count" --alg ES256 --profile mapped >/dev/null
# Pacing: each connection waits so that CONNECTIONS connections together send about $rate/s.
delay_ms=$(awk -v c="$CONNECTIONS" -v r="$rate" 'BEGIN {printf "%.3f", 1000*c/r}')
cat >>"$OUT/load.lua" <<LUA
-- Pacing for the soak: a fixed pause before each request of a connection.
delay = function() return $delay_ms end
LUA

taskset -c 0 target/release/sts serve --config "$OUT/sts.yaml" >"$OUT/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency --timeout 5s -s "$OUT/load.lua" "http://127.0.0.1:$PORT" >"$OUT/soak.txt" &
WRK=$!
sleep 15; rss_start=$(rss)
sleep $(( DURATION / 2 - 15 )); rss_mid=$(rss)
wait $WRK
rss_end=$(rss)
cat "$OUT/soak.txt"
errors=$(awk '/Non-2xx/ {print $5} /Socket errors/ {print}' "$OUT/soak.txt")
achieved=$(awk '/Requests\/sec/ {printf "%d", $2}' "$OUT/soak.txt")
echo "== soak: $achieved exchanges/s = $(awk -v a="$achieved" -v p="$peak" 'BEGIN {printf "%.0f", 100*a/p}')% of the peak ($peak/s); $floor"
echo "== errors: ${errors:-none}"
echo "== server RSS: start ${rss_start} KiB, middle ${rss_mid} KiB, end ${rss_end} KiB"
