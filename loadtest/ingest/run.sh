#!/usr/bin/env bash
# Ingest benchmark: trygg's group commit vs one transaction per fix (the Traccar pattern), on
# SQLite and PostgreSQL, over HTTP against a real `trygg serve`, in one run.
#
#   loadtest/ingest/run.sh                 # 20 s per configuration (4 configurations)
#   SECONDS_PER_RUN=300 loadtest/ingest/run.sh   # the 5-minute M3 duration
#
# Needs: cargo and PostgreSQL on 127.0.0.1:5432 (trust auth). Results: loadtest/results/ingest.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
echo "== building trygg and the benchmark (release)"
cargo build --release --quiet -p trygg -p trygg-loadtest --bin trygg --bin ingest-bench
bin="${CARGO_TARGET_DIR:-$root/target}/release"
mkdir -p loadtest/results
"$bin/ingest-bench" --trygg "$bin/trygg" --seconds "${SECONDS_PER_RUN:-20}" --out loadtest/results/ingest.json
