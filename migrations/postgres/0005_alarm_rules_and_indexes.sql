-- Repeats never silence a new alarm; an alarm from a watch bound to nobody is an alarm too;
-- indexes for the purge and the engine's catch-up (PostgreSQL).

-- An alarm from a device bound to nobody has no wearer (its device says where it came from).
alter table alarms alter column wearer_id drop not null;
-- When a repeat last joined the alarm (or it was raised): an acknowledged alarm takes repeats
-- only for the tenant's repeat_join_secs after this.
alter table alarms add column last_triggered_at timestamptz;
update alarms set last_triggered_at = raised_at;
alter table alarms alter column last_triggered_at set not null;
-- A forgotten open alarm no longer blocks a new one of the same wearer, kind and zone.
drop index alarms_open_once;
create index alarms_open on alarms (wearer_id, kind, zone_id) where state <> 'closed';
create index alarms_open_unbound on alarms (device_id, kind) where state <> 'closed' and wearer_id is null;
-- The purge asks, per fix, whether a critical alarm of its device protects it.
create index alarms_by_device on alarms (device_id, trigger_time);

alter table tenant_settings add column repeat_join_secs bigint not null default 900;
-- Who is alerted for an alarm nobody else would get: a device bound to nobody, a wearer with
-- no responders and no team.
alter table tenant_settings add column fallback_team_id uuid references teams (id);
alter table tenant_settings add column fallback_alarm_centre_url text;

-- The engine's catch-up: fixes received since a time, device alarms not yet handled.
create index fixes_by_received on fixes (received_at);
create index device_alarms_pending on device_alarms (id) where handled_at is null;
create index device_alarms_by_fix on device_alarms (device_id, fix_time);
