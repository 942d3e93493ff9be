-- The column names of migration 0001 become PostgreSQL's, so one query text serves both
-- backends (services/store/src/dialect.rs). Only names change: times stay integer
-- milliseconds since the Unix epoch (UTC). SQLite rewrites the indexes and the primary keys
-- that name a renamed column itself; no row is copied.

alter table tenants rename column created_ms to created_at;
alter table wearers rename column created_ms to created_at;
alter table devices rename column created_ms to created_at;

alter table fixes rename column time_ms to time;
alter table fixes rename column received_ms to received_at;

alter table device_alarms rename column time_ms to time;
alter table device_alarms rename column received_ms to received_at;
alter table device_alarms rename column fix_time_ms to fix_time;
