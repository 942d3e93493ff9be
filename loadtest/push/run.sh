#!/usr/bin/env bash
# M4 push benchmark: a zone exit's confirming fix → the push request at FCM, against a real
# `trygg serve` (release) and the in-process fake FCM, on SQLite and on PostgreSQL, under
# background ingest load; then a 60 s FCM outage with exits during it (lost, duplicates, drain).
# About 2.5 minutes per backend after the build. There is no external peer for M4.
#
#   loadtest/push/run.sh
#   BACKENDS=sqlite OUTAGE_SECS=20 loadtest/push/run.sh   # a quicker smoke run
#
# Needs: cargo and PostgreSQL on 127.0.0.1:5432 (trust auth). Results: loadtest/results/push.{json,md}.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
echo "== building trygg and the benchmark (release)"
cargo build --release --quiet -p trygg -p trygg-loadtest --bin trygg --bin push-bench
bin="${CARGO_TARGET_DIR:-$root/target}/release"
mkdir -p loadtest/results
"$bin/push-bench" --trygg "$bin/trygg" \
  --backends "${BACKENDS:-sqlite,postgres}" \
  --outage-secs "${OUTAGE_SECS:-60}" \
  --out "${OUT:-loadtest/results/push.json}" --md "${MD:-loadtest/results/push.md}" "$@"
