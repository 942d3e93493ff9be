#!/usr/bin/env bash
# M3 over device TCP: simulated 3G watches (19,900 connections) against a real `trygg serve`
# (release) with the alarm engine, the push worker, a fake FCM and 100k zones, on each backend.
# One scenario per command:
#
#   loadtest/watch/run.sh m3                 # 10,000 fixes/s for 5 min after a 30 s warm-up
#   loadtest/watch/run.sh burst              # 30 s at 20,000 fixes/s between steady stretches
#   loadtest/watch/run.sh ceiling            # rising steps, 30 s each: the highest with p99 ≤ 50 ms
#   loadtest/watch/run.sh storm              # all drop for 60 s, reconnect within 10 s, upload ~30 fixes each
#   OVERLOAD_RATE=24000 loadtest/watch/run.sh overload   # 60 s at twice the ceiling
#   loadtest/watch/run.sh http-flood         # 500 concurrent 0.5 MB device posts with a bad token
#
#   BACKENDS=sqlite loadtest/watch/run.sh m3 --secs 60    # one backend; extra flags go to watch-load
#
# Needs: cargo, PostgreSQL on 127.0.0.1:5432 (trust auth), `ulimit -n` of at least 20,000 (the
# 19,900 connections are held by the simulator and by the server). Traffic stays on 127.0.0.0/8.
# Results: loadtest/results/watch-SCENARIO-BACKEND.{json,md}.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
scenario="${1:?usage: loadtest/watch/run.sh m3|burst|ceiling|storm|overload|http-flood [watch-load flags]}"
shift
ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < 20000 )); then
    echo "ulimit -n is $(ulimit -n): 19,900 connections need 20,000 open files" >&2
    exit 1
fi
echo "== building trygg and watch-load (release)"
cargo build --release --quiet -p trygg -p trygg-loadtest --bin trygg --bin watch-load
bin="${CARGO_TARGET_DIR:-$root/target}/release"
mkdir -p loadtest/results
extra=()
if [[ "$scenario" == overload ]]; then
    extra+=(--overload-rate "${OVERLOAD_RATE:?overload needs OVERLOAD_RATE, twice the ceiling}")
fi
for backend in ${BACKENDS:-sqlite postgres}; do
    echo "== $scenario on $backend ($(date -u +%H:%M:%S), load average $(cut -d' ' -f1-3 /proc/loadavg))"
    "$bin/watch-load" --scenario "$scenario" --backend "$backend" --trygg "$bin/trygg" \
        --out-dir loadtest/results "${extra[@]}" "$@"
done
