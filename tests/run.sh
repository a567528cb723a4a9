#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the crypto-backend rule, unit and
# integration tests (the end-to-end tests start the real `sts` binary on loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."

# The replay tests start their own redis-server on a free loopback port; the gateway test
# starts its own nginx (Debian package) on a free loopback port; the SPIFFE test runs the
# OpenSSL commands of docs/spiffe.md.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# stack.md: aws-lc-rs is the one crypto backend; ring must not be linked.
if cargo tree --locked -e normal -i ring 2>/dev/null | grep -q '^ring'; then
  echo "ring is in the dependency graph:"; cargo tree --locked -e normal -i ring; exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line over every test binary: "N passed, N failed".
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
