-- Tenants, wearers, devices, fixes and device alarm events (PostgreSQL).

create table tenants (
    id          uuid primary key,
    name        text not null unique,
    created_at  timestamptz not null default now()
);

create table wearers (
    id          uuid primary key,
    tenant_id   uuid not null references tenants (id),
    name        text not null,
    created_at  timestamptz not null default now()
);
create index wearers_by_tenant on wearers (tenant_id);

-- A device id is global: the same watch can never be bound in two tenants.
create table devices (
    id          text primary key,
    tenant_id   uuid not null references tenants (id),
    wearer_id   uuid references wearers (id),
    protocol    text not null check (protocol in ('native', 'watch', 'gt06', 'osmand')),
    -- SHA-256 (hex) of the native device token; null for protocols without credentials.
    token_hash  text,
    created_at  timestamptz not null default now()
);
create index devices_by_tenant on devices (tenant_id);

-- One row per (device, fix time): a resent fix is a no-op, which makes ingest idempotent.
create table fixes (
    device_id   text not null references devices (id),
    time        timestamptz not null,
    received_at timestamptz not null,
    lat         double precision not null,
    lon         double precision not null,
    accuracy_m  double precision,
    speed_mps   double precision,
    course_deg  double precision,
    altitude_m  double precision,
    battery_pct smallint,
    source      text not null,
    late        boolean not null,
    primary key (device_id, time)
);

-- Alarms the device raised itself (sos, fall, watch_removed). Unique per (device, kind,
-- device time) so a resent alarm is recognised; the alarm engine turns these into alarms.
create table device_alarms (
    id            bigserial primary key,
    device_id     text not null references devices (id),
    kind          text not null check (kind in ('sos', 'fall', 'watch_removed')),
    time          timestamptz not null,
    received_at   timestamptz not null,
    -- The device clock was outside the accepted window; order by received_at instead.
    clock_suspect boolean not null,
    -- The fix sent with the alarm, if any (its row is in fixes).
    fix_time      timestamptz,
    unique (device_id, kind, time)
);
