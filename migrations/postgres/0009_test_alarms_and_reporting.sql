-- The daily test alarm and battery-aware reporting (PostgreSQL).
--
-- A device may now send a `test` alarm (recorded, closed as `test` at once, never pushed), and a
-- device that sends none in its tenant's daily window raises a `test_alarm_missing` technical
-- alert: both kind checks take the new names.
alter table alarms drop constraint alarms_kind_check;
alter table alarms add constraint alarms_kind_check
    check (kind in ('sos', 'fall', 'zone_exit', 'zone_enter', 'watch_removed', 'low_battery', 'device_offline',
                    'test', 'test_alarm_missing'));
alter table device_alarms drop constraint device_alarms_kind_check;
alter table device_alarms add constraint device_alarms_kind_check
    check (kind in ('sos', 'fall', 'watch_removed', 'test'));

-- The daily test-alarm window (the tenant's local time): a bound device heard by trygg must send
-- a test alarm between these hours every day. Equal hours (the default): no daily test alarm.
alter table tenant_settings add column test_alarm_from_hour bigint not null default 0;
alter table tenant_settings add column test_alarm_until_hour bigint not null default 0;
-- Battery-aware reporting: the interval watches are told to report at normally, and the faster
-- one while a zone exit is suspected but not yet confirmed.
alter table tenant_settings add column report_interval_secs bigint not null default 300;
alter table tenant_settings add column report_interval_fast_secs bigint not null default 30;
