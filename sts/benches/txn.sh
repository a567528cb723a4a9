#!/usr/bin/env bash
# Txn-Tokens at ingress (docs/benchmarks.md): ES256 access token in, ES256 Txn-Token out.
# The server runs on core 0 with one worker; wrk (and nginx, in the gateway runs) on core 1;
# keep-alive connections. For each workload it measures the peak (wrk, median of RUNS runs),
# then the latency at 80% of that peak with an open-loop sender (sts-bench rate), with the
# crypto floor measured on the server's core before and after.
#   (a) distinct: a new user token on every request
#   (b) zipf:     requests drawn Zipf(s=1.1) over 1,000 live user tokens (verified-subject cache)
#   then both again through nginx configured as in docs/ingress.md.
# Beside each peak: the server's CPU per request, user and system (from /proc/PID/stat), and at
# the end the same for GET /healthz, the cost of any request on this machine.
#   bash sts/benches/txn.sh
#   RUNS=3 DURATION=5s SKIP_NGINX=1 bash sts/benches/txn.sh
#   BUSY_POLL=2ms bash sts/benches/txn.sh      # the server with `busy_poll: 2ms`
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10s}
RUNS=${RUNS:-5}
CONNECTIONS=${CONNECTIONS:-64}
COUNT=${COUNT:-200000}
PORT=${PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
UPSTREAM_PORT=${UPSTREAM_PORT:-18082}
OUT=$(pwd)/sts/benches/out-txn
LOG=${RUST_LOG:-info}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light; }
cargo build --release -q -p sts --bins
rm -rf "$OUT" && mkdir -p "$OUT"
target/release/sts-bench prepare --dir "$OUT/distinct" --port "$PORT" --count "$COUNT" --profile txn >/dev/null
target/release/sts-bench prepare --dir "$OUT/zipf" --port "$PORT" --count "$COUNT" --profile txn --tokens 1000 --zipf 1.1 >/dev/null
if [ -n "${BUSY_POLL:-}" ]; then
  for d in "$OUT/distinct" "$OUT/zipf"; do echo "busy_poll: $BUSY_POLL" >>"$d/sts.yaml"; done
fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_sts() { # dir
  RUST_LOG=$LOG taskset -c 0 target/release/sts serve --config "$1/sts.yaml" >"$1/server.log" 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && return
    sleep 0.1
  done
  echo "sts did not start"; cat "$1/server.log"; exit 1
}

# The upstream behind nginx: sts-bench's minimal HTTP responder, on core 1.
start_upstream() {
  taskset -c 1 target/release/sts-bench upstream --port "$UPSTREAM_PORT" &
  PIDS+=("$!")
}

start_nginx() { # dir
  local prefix="$1/nginx"
  mkdir -p "$prefix/logs"
  local basic
  basic=$(cat "$1/gateway-basic.txt")
  awk '/^```nginx$/ {on=1; next} /^```$/ {on=0} on' docs/ingress.md \
    | sed -e "s/127.0.0.1:8080/127.0.0.1:$PORT/" -e "s/127.0.0.1:9000/127.0.0.1:$UPSTREAM_PORT/" \
          -e "s/127.0.0.1:8000/127.0.0.1:$NGINX_PORT/" -e "s#ZWRnZS1nYXRld2F5OkNIQU5HRS1NRQ==#$basic#" \
    >"$prefix/nginx.conf"
  taskset -c 1 /usr/sbin/nginx -p "$prefix" -e "$prefix/logs/error.log" -c "$prefix/nginx.conf" \
    -g "daemon off; pid $prefix/nginx.pid;" &
  NGINX=$!
  PIDS+=("$NGINX")
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null && return
    sleep 0.1
  done
  echo "nginx did not start"; cat "$prefix/logs/error.log"; exit 1
}

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

# The server's CPU time so far, user and system, in clock ticks (/proc/PID/stat utime and
# stime, counted after the command name, which may hold spaces).
HZ=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$SERVER/stat" | awk '{print $12, $13}'; }
# per_request BEFORE AFTER REQUESTS: "user sys", the server's CPU µs per request in between
# ("n/a n/a" without requests). The kernel splits user and system time by sampling ticks, and
# the window includes wrk's connecting and its last requests in flight: read them to ±1 µs.
per_request() {
  echo "$1 $2 $3" | awk -v hz="$HZ" 'NF < 5 || $5 + 0 <= 0 {print "n/a n/a"; exit}
    {printf "%.1f %.1f\n", ($3-$1)*1e6/hz/$5, ($4-$2)*1e6/hz/$5}'
}
# check_wrk FILE NAME: stop with wrk's output when any response was not a success. (Socket
# errors are not counted: nginx closes a client connection after 1,000 requests.)
check_wrk() {
  if grep -q "Non-2xx" "$1"; then
    echo "$2 had failed requests:"; cat "$1"; exit 1
  fi
}

# measure NAME DIR URL SCRIPT MODE [FRESH]
# FRESH: restart the server before every run and warm it up on the last 20,000 requests, so
# that no user token of a run was seen by that server before (the distinct workload: a token
# sent again would be remembered by the verified-subject cache).
measure() {
  local name=$1 dir=$2 url=$3 script=$4 mode=$5 fresh=${6:-}
  [ -z "$fresh" ] && taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s "$dir/$script" "$url" >/dev/null # warm-up
  for run in $(seq 1 "$RUNS"); do
    if [ -n "$fresh" ]; then
      kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
      start_sts "$dir"
      START=$((COUNT - 20000)) taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s "$dir/$script" "$url" >/dev/null
    fi
    local before
    before=$(cpu_ticks)
    START=0 taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$dir/$script" "$url" >"$dir/wrk-$name-$run.txt"
    local after
    after=$(cpu_ticks)
    check_wrk "$dir/wrk-$name-$run.txt" "$name run $run" >&2
    per_request "$before" "$after" "$(awk '/requests in/ {print $1}' "$dir/wrk-$name-$run.txt")" \
      >>"$dir/cpu-$name.txt"
    awk '/Requests\/sec/ {print $2}' "$dir/wrk-$name-$run.txt"
  done >"$dir/rates-$name.txt"
  local peak
  peak=$(median <"$dir/rates-$name.txt")
  local rate
  rate=$(awk -v p="$peak" 'BEGIN {printf "%d", p * 0.8}')
  if [ -n "$fresh" ]; then
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
    start_sts "$dir"
    START=$((COUNT - 20000)) taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s "$dir/$script" "$url" >/dev/null
  fi
  local target="$url/token"
  [ "$mode" = gateway ] && target="$url/orders/1"
  local lat
  lat=$(taskset -c 1 target/release/sts-bench rate --dir "$dir" --mode "$mode" --url "$target" \
        --rate "$rate" --seconds "${DURATION%s}" --connections "$CONNECTIONS")
  printf "%-16s peak %8.0f/s (runs: %s)\n                 server CPU per request (median): user %s µs, system %s µs\n                 at 80%%: %s\n" \
    "$name" "$peak" "$(tr '\n' ' ' <"$dir/rates-$name.txt")" \
    "$(cut -d' ' -f1 "$dir/cpu-$name.txt" | median)" "$(cut -d' ' -f2 "$dir/cpu-$name.txt" | median)" "$lat"
  echo "$peak" >"$dir/peak-$name.txt"
}

floor_before=$(taskset -c 0 target/release/sts-bench floor)
echo "== Txn-Tokens: ES256 in, ES256 out; server core 0 (1 worker), load on core 1; $CONNECTIONS connections, $RUNS x $DURATION; busy_poll ${BUSY_POLL:-0s}"
start_sts "$OUT/distinct"
measure "distinct" "$OUT/distinct" "http://127.0.0.1:$PORT" load.lua token fresh
if [ -z "${SKIP_NGINX:-}" ]; then
  start_upstream
  start_nginx "$OUT/distinct"
  measure "distinct+nginx" "$OUT/distinct" "http://127.0.0.1:$NGINX_PORT" gateway.lua gateway fresh
  kill "$NGINX"; wait "$NGINX" 2>/dev/null || true
fi
echo "server RSS: $(ps -o rss= -p "$SERVER" | tr -d ' ') KiB"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
start_sts "$OUT/zipf"
measure "zipf" "$OUT/zipf" "http://127.0.0.1:$PORT" load.lua token
if [ -z "${SKIP_NGINX:-}" ]; then
  start_nginx "$OUT/zipf"
  measure "zipf+nginx" "$OUT/zipf" "http://127.0.0.1:$NGINX_PORT" gateway.lua gateway
fi
echo "server RSS: $(ps -o rss= -p "$SERVER" | tr -d ' ') KiB"
# The baseline every request pays on this machine: the same server answering GET /healthz
# (a constant JSON body; no policy, no crypto), closed loop as above.
echo 'request = function() return wrk.format("GET", "/healthz") end' >"$OUT/healthz.lua"
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s "$OUT/healthz.lua" "http://127.0.0.1:$PORT" >/dev/null
before=$(cpu_ticks)
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$OUT/healthz.lua" "http://127.0.0.1:$PORT" >"$OUT/wrk-healthz.txt"
after=$(cpu_ticks)
check_wrk "$OUT/wrk-healthz.txt" "GET /healthz"
hz=$(per_request "$before" "$after" "$(awk '/requests in/ {print $1}' "$OUT/wrk-healthz.txt")")
read -r hz_user hz_sys <<<"$hz"
printf "%-16s %8.0f/s; server CPU per request: user %s µs, system %s µs\n" "GET /healthz" \
  "$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk-healthz.txt")" "$hz_user" "$hz_sys"
floor_after=$(taskset -c 0 target/release/sts-bench floor)
echo "$floor_before (before)"
echo "$floor_after (after)"
awk -v f1="${floor_before##* = }" -v f2="${floor_after##* = }" \
    -v d="$(cat "$OUT/distinct/peak-distinct.txt")" -v z="$(cat "$OUT/zipf/peak-zipf.txt")" 'BEGIN {
  f = (f1 + f2) / 2
  printf "distinct: %.0f/s = %.0f%% of the floor (%.0f/s); zipf: %.0f/s = %.2fx distinct\n", d, 100*d/f, f, z, z/d
}'
