-- The daily test alarm and battery-aware reporting (SQLite).
--
-- A device may now send a `test` alarm (recorded, closed as `test` at once, never pushed), and a
-- device that sends none in its tenant's daily window raises a `test_alarm_missing` technical
-- alert. SQLite cannot change a check constraint, so `alarms` and `device_alarms` are rebuilt:
-- create, copy, drop, rename, as in 0005. trygg migrates with foreign keys off and checks them
-- afterwards (sqlite.rs); `legacy_alter_table` keeps the renames from rewriting the references
-- of other tables, which name `alarms` and so reach the new table.
pragma legacy_alter_table = on;

create table alarms_new (
    id                text primary key,
    tenant_id         text not null references tenants (id),
    -- Null for an alarm from a device bound to nobody (its device says where it came from).
    wearer_id         text references wearers (id),
    device_id         text references devices (id),
    kind              text not null check (kind in ('sos', 'fall', 'zone_exit', 'zone_enter', 'watch_removed',
                                                    'low_battery', 'device_offline', 'test',
                                                    'test_alarm_missing')),
    zone_id           text not null default '',
    state             text not null check (state in ('raised', 'notified', 'acknowledged', 'on_site', 'closed')),
    raised_at         integer not null,
    trigger_time      integer not null,
    lat               real,
    lon               real,
    accuracy_m        real,
    position_time     integer,
    returned_at       integer,
    acknowledged_at   integer,
    acknowledged_by   text references users (id),
    on_site_at        integer,
    on_site_by        text references users (id),
    closed_at         integer,
    closed_by         text references users (id),
    outcome           text check (outcome in ('assisted', 'false_alarm', 'test', 'not_found', 'other')),
    note              text not null default '',
    -- When a repeat last joined the alarm (or it was raised): an acknowledged alarm takes
    -- repeats only for the tenant's repeat_join_secs after this.
    last_triggered_at integer not null
);
insert into alarms_new
    select id, tenant_id, wearer_id, device_id, kind, zone_id, state, raised_at, trigger_time, lat, lon,
           accuracy_m, position_time, returned_at, acknowledged_at, acknowledged_by, on_site_at, on_site_by,
           closed_at, closed_by, outcome, note, last_triggered_at
    from alarms;
drop table alarms;
alter table alarms_new rename to alarms;
create index alarms_open on alarms (wearer_id, kind, zone_id) where state <> 'closed';
create index alarms_open_unbound on alarms (device_id, kind) where state <> 'closed' and wearer_id is null;
create index alarms_by_tenant on alarms (tenant_id, raised_at);
create index alarms_by_device on alarms (device_id, trigger_time);

-- Alarms the device raised itself. Unique per (device, kind, device time) so a resent alarm is
-- recognised; the alarm engine turns these into alarms.
create table device_alarms_new (
    id            integer primary key,
    device_id     text not null references devices (id),
    kind          text not null check (kind in ('sos', 'fall', 'watch_removed', 'test')),
    time_ms       integer not null,
    received_ms   integer not null,
    -- The device clock was outside the accepted window; order by received_ms instead.
    clock_suspect integer not null,
    -- The fix sent with the alarm, if any (its row is in fixes).
    fix_time_ms   integer,
    handled_at    integer,
    alarm_id      text references alarms (id),
    unique (device_id, kind, time_ms)
);
insert into device_alarms_new
    select id, device_id, kind, time_ms, received_ms, clock_suspect, fix_time_ms, handled_at, alarm_id
    from device_alarms;
drop table device_alarms;
alter table device_alarms_new rename to device_alarms;
pragma legacy_alter_table = off;
create index device_alarms_pending on device_alarms (id) where handled_at is null;
create index device_alarms_by_fix on device_alarms (device_id, fix_time_ms);

-- The daily test-alarm window (the tenant's local time): a bound device heard by trygg must send
-- a test alarm between these hours every day. Equal hours (the default): no daily test alarm.
alter table tenant_settings add column test_alarm_from_hour integer not null default 0;
alter table tenant_settings add column test_alarm_until_hour integer not null default 0;
-- Battery-aware reporting: the interval watches are told to report at normally, and the faster
-- one while a zone exit is suspected but not yet confirmed.
alter table tenant_settings add column report_interval_secs integer not null default 300;
alter table tenant_settings add column report_interval_fast_secs integer not null default 30;
