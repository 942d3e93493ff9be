#!/usr/bin/env bash
# The geofence benchmark, end to end: M1 (trygg vs shapely 2 STRtree), M2 (vs PostGIS GiST,
# driven at its best by pgbench: prepared statements, one client per core; PGBENCH_SECS=20)
# and M5 (exit policy vs naive point-in-polygon under GPS jitter).
#
#   loadtest/geofence/run.sh            # full run: 10k and 100k zones, 1M points each
#   QUICK=1 loadtest/geofence/run.sh    # smoke run: small fixtures, for checking the script
#
# Needs: cargo, python3 (with venv), pgbench, PostgreSQL 15 on 127.0.0.1:5432 with trust auth. Installs
# shapely/psycopg into loadtest/.venv with pip and PostGIS with apt-get if missing.
# Results: loadtest/results/geofence.md and loadtest/results/geofence.json.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
fixtures="$root/loadtest/fixtures/geofence"
results="$root/loadtest/results"
venv="$root/loadtest/.venv"
mkdir -p "$fixtures" "$results"

step() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

if [[ -n "${QUICK:-}" ]]; then
    sizes=(2000); points=50000; pg_sample=2000; sim_devices=40
else
    sizes=(10000 100000); points=1000000; pg_sample=20000; sim_devices=300
fi

step "building trygg-loadtest (release)"
cargo build --release --quiet -p trygg-loadtest
bin="${CARGO_TARGET_DIR:-$root/target}/release"

step "python venv with shapely 2 and psycopg ($venv)"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check 'shapely>=2,<3' 'psycopg[binary]>=3.1' numpy

step "PostGIS"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
has_postgis() {
    [[ "$(psql -d test -Atc "select count(*) from pg_available_extensions where name = 'postgis'")" == 1 ]]
}
if ! has_postgis; then
    echo "installing postgresql-15-postgis-3 with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-postgis-3 >/dev/null
fi
has_postgis && echo "postgis available"

for n in "${sizes[@]}"; do
    step "M1 ours: $n zones, $points points"
    "$bin/geofence-bench" --zones "$n" --points "$points" --seed 42 --out "$fixtures/$n"
done

step "M5 jitter simulator: $sim_devices device-days"
"$bin/jitter-sim" --devices "$sim_devices" --seed 7 --out "$fixtures/m5.json"

step "M1 shapely, M2 PostGIS, report"
"$venv/bin/python" "$here/peers.py" --fixtures "$fixtures" --sizes "${sizes[@]}" --pg-sample "$pg_sample" \
    --m5 "$fixtures/m5.json" --out "$results/geofence${QUICK:+-quick}"
cat "$results/geofence${QUICK:+-quick}.md"
