#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the crypto-backend rule, unit and
# integration tests (the end-to-end tests start the real `sts` binary on loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# stack.md: aws-lc-rs is the one crypto backend; ring must not be linked.
if cargo tree --locked -e normal -i ring 2>/dev/null | grep -q '^ring'; then
  echo "ring is in the dependency graph:"; cargo tree --locked -e normal -i ring; exit 1
fi
cargo test --workspace --locked
