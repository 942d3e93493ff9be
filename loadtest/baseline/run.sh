#!/usr/bin/env bash
# The Traccar-style baseline for M3: one INSERT per fix (its own transaction, as Traccar's
# DataManager writes each position) and one point-in-polygon query per fix against PostGIS (GiST
# index), on the same 19,900 watches and 100k zones as the watch-load scenarios. Driven by
# pgbench, the small client PostgreSQL users tune with: prepared statements, and
#   1. at its best: the client count that gives the most fixes/s (2, 8, 32 and 64 clients tried);
#   2. at the same load as M3: open loop at 10,000 fixes/s (`pgbench --rate`, latency measured
#      from the scheduled start, as the watch simulator does).
# The baseline skips what a real Traccar also pays for (protocol decoding, its event pipeline), so
# it is a generous peer.
#
#   loadtest/baseline/run.sh                  # 20 s per configuration
#   SECS=60 RATE=10000 loadtest/baseline/run.sh
#
# Needs: cargo, pgbench, PostgreSQL 15 on 127.0.0.1:5432 (trust auth); installs PostGIS with
# apt-get if missing. Results: loadtest/results/baseline.json and baseline.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
secs="${SECS:-20}"
rate="${RATE:-10000}"
fixtures="$root/loadtest/fixtures/baseline"
results="$root/loadtest/results"
mkdir -p "$fixtures" "$results"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"

echo "== PostGIS"
if [[ "$(psql -d test -Atc "select count(*) from pg_available_extensions where name = 'postgis'")" != 1 ]]; then
    echo "installing postgresql-15-postgis-3 with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-postgis-3 >/dev/null
fi

echo "== fixtures (the watch-load homes and zones)"
cargo build --release --quiet -p trygg-loadtest --bin watch-load
bin="${CARGO_TARGET_DIR:-$root/target}/release"
"$bin/watch-load" --scenario fixtures --out-dir "$fixtures"

db="trygg_baseline_$$"
cleanup() { psql -d test -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true; rm -f "$fixtures"/*.pgbench; }
trap cleanup EXIT
psql -d test -qc "create database $db"
psql -d "$db" -q -v ON_ERROR_STOP=1 <<SQL
create extension postgis;
create table homes (id integer primary key, device_id text not null, x double precision not null, y double precision not null);
\copy homes from '$fixtures/homes.csv' csv
create table zone_circles (device_id text, kind text, x double precision, y double precision, radius_m double precision);
\copy zone_circles from '$fixtures/zones.csv' csv
create table zones (id serial primary key, device_id text not null, kind text not null, geom geometry(Polygon, 4326) not null);
insert into zones (device_id, kind, geom)
    select device_id, kind, st_buffer(st_setsrid(st_makepoint(x, y), 4326)::geography, radius_m, 16)::geometry from zone_circles;
create index zones_geom on zones using gist (geom);
-- Traccar's tc_positions, the columns a watch fix fills.
create table positions (
    id bigserial primary key, protocol text, device_id text not null, servertime timestamptz not null,
    devicetime timestamptz not null, fixtime timestamptz not null, valid boolean, latitude double precision,
    longitude double precision, altitude double precision, speed double precision, course double precision,
    accuracy double precision, attributes text);
create index positions_device_fixtime on positions (device_id, fixtime);
analyze;
SQL
echo "zones: $(psql -d "$db" -Atc 'select count(*) from zones'), homes: $(psql -d "$db" -Atc 'select count(*) from homes')"
n="$(psql -d "$db" -Atc 'select count(*) from homes')"
cat > "$fixtures/fix.pgbench" <<SQL
\set i random(0, $((n - 1)))
insert into positions (protocol, device_id, servertime, devicetime, fixtime, valid, latitude, longitude, altitude, speed, course, accuracy, attributes) select 'watch', device_id, now(), now(), now(), true, y, x, 40, 1.0, 90, 10, '{"batteryLevel":80,"steps":1200}' from homes where id = :i;
select z.id from zones z join homes h on h.id = :i where z.device_id = h.device_id and st_intersects(z.geom, st_setsrid(st_makepoint(h.x, h.y), 4326));
SQL

runs=()
run() { # label, pgbench args...
    local label="$1"; shift
    echo "== $label: pgbench $*" >&2
    local out
    out="$(pgbench -n -M prepared -T "$secs" -f "$fixtures/fix.pgbench" "$@" "$db" 2>&1)"
    local tps lat p99 lag
    tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")"
    lat="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")"
    lag="$(sed -n 's/^rate limit schedule lag: avg \([0-9.]*\) .*/\1/p' <<<"$out")"
    echo "   $tps fixes/s, latency average $lat ms${lag:+, schedule lag $lag ms}" >&2
    runs+=("{\"label\":\"$label\",\"args\":\"$*\",\"fixes_per_s\":${tps:-0},\"latency_avg_ms\":${lat:-null},\"schedule_lag_avg_ms\":${lag:-null}}")
}
cores="$(nproc)"
run "2 clients" -c 2 -j "$cores"
run "8 clients" -c 8 -j "$cores"
run "32 clients" -c 32 -j "$cores"
run "64 clients" -c 64 -j "$cores"
run "open loop at $rate/s, 32 clients" -c 32 -j "$cores" --rate "$rate"
# The per-transaction log would be large; pgbench's own percentiles need --log. One more run
# with a sampled log gives p99 at the same load.
logdir="$(mktemp -d)"
(cd "$logdir" && pgbench -n -M prepared -T "$secs" -f "$fixtures/fix.pgbench" -c 32 -j "$cores" --rate "$rate" \
    --log --sampling-rate 0.1 "$db" >/dev/null 2>&1 || true)
p99="$(cat "$logdir"/pgbench_log.* 2>/dev/null | awk '$3 != "skipped" {print $3 + $7}' | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int(NR*0.99)]/1000; else print "null"}')"
rm -rf "$logdir"
best="$(printf '%s\n' "${runs[@]:0:4}" | sed -n 's/.*"fixes_per_s":\([0-9.]*\).*/\1/p' | sort -g | tail -1)"
positions="$(psql -d "$db" -Atc 'select count(*) from positions')"
cat > "$results/baseline.json" <<JSON
{
  "date": "$(date -u +%FT%TZ)",
  "loadavg": "$(cat /proc/loadavg)",
  "machine": "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $cores cores",
  "postgis": "$(psql -d "$db" -Atc 'select postgis_lib_version()')",
  "zones": $(psql -d "$db" -Atc 'select count(*) from zones'),
  "watches": $n,
  "secs_per_run": $secs,
  "per_fix": "one INSERT (own transaction) + one ST_Intersects query (GiST), prepared",
  "runs": [$(IFS=,; echo "${runs[*]}")],
  "best_fixes_per_s": $best,
  "open_loop_rate": $rate,
  "open_loop_p99_ms_sampled": $p99,
  "positions_written": $positions
}
JSON
{
    echo "# Traccar-style baseline (\`loadtest/baseline/run.sh\`)"
    echo
    echo "$(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg). One INSERT per fix (its own transaction) and one"
    echo "PostGIS \`ST_Intersects\` per fix, prepared, pgbench, $n watches, $(psql -d "$db" -Atc 'select count(*) from zones') zones, $secs s per run."
    echo
    echo "| run | fixes/s | latency average (ms) | schedule lag average (ms) |"
    echo "|---|---|---|---|"
    for r in "${runs[@]}"; do
        sed -E 's/.*"label":"([^"]*)".*"fixes_per_s":([0-9.]*),"latency_avg_ms":([^,]*),"schedule_lag_avg_ms":([^}]*)}/| \1 | \2 | \3 | \4 |/' <<<"$r"
    done
    echo
    echo "Best: **$best fixes/s**. At $rate/s offered (open loop): p99 $p99 ms (from a 10 % sample of transactions)."
} > "$results/baseline.md"
cat "$results/baseline.md"
