#!/usr/bin/env bash
# Every load benchmark of M1–M3 in one run, one after the other on a quiet machine, so the
# figures the README quotes come from the same machine on the same afternoon:
#
#   1. geofence: M1 and M2 against shapely 2 and PostGIS driven by pgbench (loadtest/geofence)
#   2. the Traccar-style baseline, pgbench (loadtest/baseline)
#   3. per backend (SQLite, then PostgreSQL): m3, ceiling (steps of 2,000 from 2,000 to 14,000
#      fixes/s), burst (M3's 10,000/s and 20,000/s), then, around half the ceiling the ceiling
#      run just found (the load a backend carries with room to spare): storm (with as many
#      watches as the ceiling, so each sends a fix every 2 s and buffers 30 in the 60 s outage),
#      and overload at twice the ceiling; a backend with no step under p99 ≤ 50 ms counts the
#      lowest step as its ceiling (loadtest/watch)
#   4. the HTTP flood, bad and valid token (SQLite)
#   5. loadtest/results/summary.md: the headline table of all of them, with their start times
#
#   loadtest/run-all.sh              # about 80 minutes
#
# Needs what the scripts it runs need (cargo, python3, pgbench, PostgreSQL on 127.0.0.1:5432
# with trust auth, `ulimit -n` 20,000; installs PostGIS with apt-get and shapely into
# loadtest/.venv if missing). A PostgreSQL activity log (checkpoints, autovacuum, WAL position,
# one line a second) is written beside each PostgreSQL watch run as
# loadtest/results/pg-activity-SCENARIO.log, to tell the database's own pauses from trygg's.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
results="$root/loadtest/results"
mkdir -p "$results"
log="$results/run-all.log"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
: > "$log"
note() { printf '== %s: %s (load average %s)\n' "$(date -u +%H:%M:%S)" "$1" "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"; }
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"

# One line a second while a PostgreSQL run goes on: what the database itself is doing.
pg_activity() {
    while sleep 1; do
        psql -d test -AtF' ' -c "select to_char(clock_timestamp(), 'HH24:MI:SS'),
            pg_current_wal_lsn(),
            (select 'checkpoints=' || checkpoints_timed || '+' || checkpoints_req
                || ' buffers_checkpoint=' || buffers_checkpoint || ' buffers_backend=' || buffers_backend
                from pg_stat_bgwriter),
            coalesce((select 'autovacuum: ' || string_agg(left(query, 80), ' | ')
                from pg_stat_activity where backend_type = 'autovacuum worker'), '')" 2>/dev/null || true
    done
}

watch_run() {
    local scenario="$1" backend="$2"
    shift 2
    note "watch $scenario on $backend"
    local sampler=""
    if [[ "$backend" == postgres ]]; then
        pg_activity > "$results/pg-activity-$scenario.log" &
        sampler=$!
    fi
    BACKENDS="$backend" loadtest/watch/run.sh "$scenario" "$@" 2>&1 | tail -n 40 >> "$log" \
        || note "watch $scenario on $backend FAILED (its output is above); going on"
    [[ -z "$sampler" ]] || kill "$sampler" 2>/dev/null || true
}

note "build"
cargo build --release --quiet -p trygg -p trygg-loadtest
note "geofence (M1, M2)"
loadtest/geofence/run.sh 2>&1 | tail -n 30 >> "$log" || note "geofence FAILED; going on"
note "baseline"
loadtest/baseline/run.sh 2>&1 | tail -n 30 >> "$log" || note "baseline FAILED; going on"
steps=2000,4000,6000,8000,10000,12000,14000
for backend in sqlite postgres; do
    watch_run m3 "$backend"
    rm -f "$results/watch-ceiling-$backend.json"
    watch_run ceiling "$backend" --steps "$steps"
    ceiling="$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["summary"]["ceiling_per_s"]))' \
        "$results/watch-ceiling-$backend.json" 2>/dev/null || echo 0)"
    watch_run burst "$backend"
    (( ceiling > 0 )) || ceiling="${steps%%,*}"
    watch_run storm "$backend" --rate $(( ceiling / 2 )) --watches "$ceiling"
    export OVERLOAD_RATE=$(( 2 * ceiling ))
    watch_run overload "$backend" --rate $(( ceiling / 2 ))
done
watch_run http-flood sqlite
watch_run http-flood sqlite --flood-token valid
note "summary"
python3 loadtest/summary.py "$results" "$started" > "$results/summary.md"
note "done"
cat "$results/summary.md"
