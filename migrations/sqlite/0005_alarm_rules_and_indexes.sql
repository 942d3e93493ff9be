-- Repeats never silence a new alarm; an alarm from a watch bound to nobody is an alarm too;
-- indexes for the purge and the engine's catch-up (SQLite).
--
-- SQLite cannot drop a NOT NULL constraint, so `alarms` is rebuilt: create, copy, drop, rename.
-- trygg migrates with foreign keys off (see sqlite.rs), and `legacy_alter_table` keeps the
-- rename from touching other tables, whose references name `alarms` and so reach the new table.
pragma legacy_alter_table = on;

create table alarms_new (
    id                text primary key,
    tenant_id         text not null references tenants (id),
    -- Null for an alarm from a device bound to nobody (its device says where it came from).
    wearer_id         text references wearers (id),
    device_id         text references devices (id),
    kind              text not null check (kind in ('sos', 'fall', 'zone_exit', 'zone_enter', 'watch_removed',
                                                    'low_battery', 'device_offline', 'test')),
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
           closed_at, closed_by, outcome, note, raised_at
    from alarms;
drop table alarms;
alter table alarms_new rename to alarms;
pragma legacy_alter_table = off;
-- A forgotten open alarm no longer blocks a new one of the same wearer, kind and zone.
create index alarms_open on alarms (wearer_id, kind, zone_id) where state <> 'closed';
create index alarms_open_unbound on alarms (device_id, kind) where state <> 'closed' and wearer_id is null;
create index alarms_by_tenant on alarms (tenant_id, raised_at);
-- The purge asks, per fix, whether a critical alarm of its device protects it.
create index alarms_by_device on alarms (device_id, trigger_time);

alter table tenant_settings add column repeat_join_secs integer not null default 900;
-- Who is alerted for an alarm nobody else would get: a device bound to nobody, a wearer with
-- no responders and no team.
alter table tenant_settings add column fallback_team_id text references teams (id);
alter table tenant_settings add column fallback_alarm_centre_url text;

-- The engine's catch-up: fixes received since a time, device alarms not yet handled.
create index fixes_by_received on fixes (received_ms);
create index device_alarms_pending on device_alarms (id) where handled_at is null;
create index device_alarms_by_fix on device_alarms (device_id, fix_time_ms);
