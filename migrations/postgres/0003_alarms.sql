-- Alarms, their append-only events, the notification outbox, staff push tokens and the alarm
-- engine's per-device zone state (PostgreSQL).

create table alarms (
    id              uuid primary key,
    tenant_id       uuid not null references tenants (id),
    wearer_id       uuid not null references wearers (id),
    device_id       text references devices (id),
    kind            text not null check (kind in ('sos', 'fall', 'zone_exit', 'zone_enter', 'watch_removed',
                                                  'low_battery', 'device_offline', 'test')),
    -- The zone of a zone alarm; '' for every other kind (part of the open-alarm key below).
    zone_id         text not null default '',
    state           text not null check (state in ('raised', 'notified', 'acknowledged', 'on_site', 'closed')),
    raised_at       timestamptz not null,
    -- The device's time of the fix or device alarm that raised it.
    trigger_time    timestamptz not null,
    lat             double precision,
    lon             double precision,
    accuracy_m      double precision,
    position_time   timestamptz,
    returned_at     timestamptz,
    acknowledged_at timestamptz,
    acknowledged_by uuid references users (id),
    on_site_at      timestamptz,
    on_site_by      uuid references users (id),
    closed_at       timestamptz,
    closed_by       uuid references users (id),
    outcome         text check (outcome in ('assisted', 'false_alarm', 'test', 'not_found', 'other')),
    note            text not null default ''
);
-- At most one open alarm per wearer, kind and zone: a repeated SOS joins the open one.
create unique index alarms_open_once on alarms (wearer_id, kind, zone_id) where state <> 'closed';
create index alarms_by_tenant on alarms (tenant_id, raised_at);

-- Every step of an alarm: raised, repeated, returned, notified, acknowledged, on_site, closed,
-- push outcomes, receipts, escalations. Never updated, never deleted.
create table alarm_events (
    id          bigserial primary key,
    alarm_id    uuid not null references alarms (id),
    at          timestamptz not null,
    kind        text not null,
    actor       uuid references users (id),
    lat         double precision,
    lon         double precision,
    accuracy_m  double precision,
    detail      text not null default ''
);
create index alarm_events_by_alarm on alarm_events (alarm_id, id);

-- Pushes to send, written in the transaction that raises (or escalates) an alarm. One row per
-- alarm, escalation step and recipient: delivery is idempotent per (alarm, recipient, step).
create table outbox (
    id          bigserial primary key,
    tenant_id   uuid not null references tenants (id),
    alarm_id    uuid not null references alarms (id),
    step        bigint not null,
    recipient   uuid not null references users (id),
    created_at  timestamptz not null,
    -- When the worker may next try it (retry back-off moves it forward).
    due_at      timestamptz not null,
    attempts    bigint not null default 0,
    -- pending until sent, failed when it cannot be (the alarm escalates instead).
    status      text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
    last_error  text,
    unique (alarm_id, step, recipient)
);
create index outbox_due on outbox (status, due_at);

-- Staff phones' FCM registration tokens. A token belongs to one account at a time.
create table push_tokens (
    token       text primary key,
    tenant_id   uuid not null references tenants (id),
    user_id     uuid not null references users (id),
    platform    text not null check (platform in ('android', 'ios')),
    created_at  timestamptz not null,
    disabled_at timestamptz
);
create index push_tokens_by_user on push_tokens (user_id);

-- The exit policy's memory per device (trygg_geofence::DeviceState as JSON), written in the same
-- transaction as the alarms it leads to, so a restart neither re-raises nor misses an exit.
create table device_zone_state (
    device_id   text primary key references devices (id),
    state       text not null,
    -- Time of the newest fix evaluated; recovery re-evaluates later fixes.
    last_fix_at timestamptz not null,
    updated_at  timestamptz not null
);

-- Which alarm a device alarm became (null: not yet handled by the engine).
alter table device_alarms add column handled_at timestamptz;
alter table device_alarms add column alarm_id uuid references alarms (id);
-- Device alarms stored before the engine existed were seen in the logs then: handled, so the
-- first start after this migration does not raise them all as new alarms.
update device_alarms set handled_at = received_at;

alter table tenant_settings add column on_site_limit_secs bigint not null default 3600;
