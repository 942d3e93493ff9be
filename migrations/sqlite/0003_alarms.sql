-- Alarms, their append-only events, the notification outbox, staff push tokens and the alarm
-- engine's per-device zone state (SQLite). Times are integer milliseconds (UTC), as before.

create table alarms (
    id              text primary key,
    tenant_id       text not null references tenants (id),
    wearer_id       text not null references wearers (id),
    device_id       text references devices (id),
    kind            text not null check (kind in ('sos', 'fall', 'zone_exit', 'zone_enter', 'watch_removed',
                                                  'low_battery', 'device_offline', 'test')),
    -- The zone of a zone alarm; '' for every other kind (part of the open-alarm key below).
    zone_id         text not null default '',
    state           text not null check (state in ('raised', 'notified', 'acknowledged', 'on_site', 'closed')),
    raised_at       integer not null,
    -- The device's time of the fix or device alarm that raised it.
    trigger_time    integer not null,
    lat             real,
    lon             real,
    accuracy_m      real,
    position_time   integer,
    returned_at     integer,
    acknowledged_at integer,
    acknowledged_by text references users (id),
    on_site_at      integer,
    on_site_by      text references users (id),
    closed_at       integer,
    closed_by       text references users (id),
    outcome         text check (outcome in ('assisted', 'false_alarm', 'test', 'not_found', 'other')),
    note            text not null default ''
);
-- At most one open alarm per wearer, kind and zone: a repeated SOS joins the open one.
create unique index alarms_open_once on alarms (wearer_id, kind, zone_id) where state <> 'closed';
create index alarms_by_tenant on alarms (tenant_id, raised_at);

-- Every step of an alarm: raised, repeated, returned, notified, acknowledged, on_site, closed,
-- push outcomes, receipts, escalations. Never updated, never deleted.
create table alarm_events (
    id          integer primary key,
    alarm_id    text not null references alarms (id),
    at          integer not null,
    kind        text not null,
    actor       text references users (id),
    lat         real,
    lon         real,
    accuracy_m  real,
    detail      text not null default ''
);
create index alarm_events_by_alarm on alarm_events (alarm_id, id);

-- Pushes to send, written in the transaction that raises (or escalates) an alarm. One row per
-- alarm, escalation step and recipient: delivery is idempotent per (alarm, recipient, step).
create table outbox (
    id          integer primary key,
    tenant_id   text not null references tenants (id),
    alarm_id    text not null references alarms (id),
    step        integer not null,
    recipient   text not null references users (id),
    created_at  integer not null,
    -- When the worker may next try it (retry back-off moves it forward).
    due_at      integer not null,
    attempts    integer not null default 0,
    -- pending until sent, failed when it cannot be (the alarm escalates instead).
    status      text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
    last_error  text,
    unique (alarm_id, step, recipient)
);
create index outbox_due on outbox (status, due_at);

-- Staff phones' FCM registration tokens. A token belongs to one account at a time.
create table push_tokens (
    token       text primary key,
    tenant_id   text not null references tenants (id),
    user_id     text not null references users (id),
    platform    text not null check (platform in ('android', 'ios')),
    created_at  integer not null,
    disabled_at integer
);
create index push_tokens_by_user on push_tokens (user_id);

-- The exit policy's memory per device (trygg_geofence::DeviceState as JSON), written in the same
-- transaction as the alarms it leads to, so a restart neither re-raises nor misses an exit.
create table device_zone_state (
    device_id   text primary key references devices (id),
    state       text not null,
    -- Time of the newest fix evaluated; recovery re-evaluates later fixes.
    last_fix_at integer not null,
    updated_at  integer not null
);

-- Which alarm a device alarm became (null: not yet handled by the engine).
alter table device_alarms add column handled_at integer;
alter table device_alarms add column alarm_id text references alarms (id);
-- Device alarms stored before the engine existed were seen in the logs then: handled, so the
-- first start after this migration does not raise them all as new alarms.
update device_alarms set handled_at = received_ms;

alter table tenant_settings add column on_site_limit_secs integer not null default 3600;
