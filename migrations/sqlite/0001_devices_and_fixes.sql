-- Tenants, wearers, devices, fixes and device alarm events (SQLite).
-- Times are integer milliseconds since the Unix epoch (UTC): compact, ordered, exact.

create table tenants (
    id          text primary key,
    name        text not null unique,
    created_ms  integer not null
);

create table wearers (
    id          text primary key,
    tenant_id   text not null references tenants (id),
    name        text not null,
    created_ms  integer not null
);
create index wearers_by_tenant on wearers (tenant_id);

-- A device id is global: the same watch can never be bound in two tenants.
create table devices (
    id          text primary key,
    tenant_id   text not null references tenants (id),
    wearer_id   text references wearers (id),
    protocol    text not null check (protocol in ('native', 'watch', 'gt06', 'osmand')),
    -- SHA-256 (hex) of the native device token; null for protocols without credentials.
    token_hash  text,
    created_ms  integer not null
);
create index devices_by_tenant on devices (tenant_id);

-- One row per (device, fix time): a resent fix is a no-op, which makes ingest idempotent.
create table fixes (
    device_id   text not null references devices (id),
    time_ms     integer not null,
    received_ms integer not null,
    lat         real not null,
    lon         real not null,
    accuracy_m  real,
    speed_mps   real,
    course_deg  real,
    altitude_m  real,
    battery_pct integer,
    source      text not null,
    late        integer not null,
    primary key (device_id, time_ms)
) without rowid;

-- Alarms the device raised itself (sos, fall, watch_removed). Unique per (device, kind,
-- device time) so a resent alarm is recognised; the alarm engine turns these into alarms.
create table device_alarms (
    id            integer primary key,
    device_id     text not null references devices (id),
    kind          text not null check (kind in ('sos', 'fall', 'watch_removed')),
    time_ms       integer not null,
    received_ms   integer not null,
    -- The device clock was outside the accepted window; order by received_ms instead.
    clock_suspect integer not null,
    -- The fix sent with the alarm, if any (its row is in fixes).
    fix_time_ms   integer,
    unique (device_id, kind, time_ms)
);
