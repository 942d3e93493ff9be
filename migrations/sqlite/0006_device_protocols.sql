-- Devices that speak the watch, GT06 and OsmAnd protocols (SQLite).
-- Times are integer milliseconds since the Unix epoch (UTC), as in 0001.

-- The device clock's offset from UTC in minutes (Sweden: 60 or 120). Null: not set, so a watch
-- is read as UTC and a GT06 tracker at the time zone its login sends (UTC without one).
alter table devices add column utc_offset_minutes integer;
-- When the device last connected or sent a keep-alive (TCP/OsmAnd devices only).
alter table devices add column last_heard_at integer;
-- The battery the device last reported in a keep-alive or status packet, in percent.
alter table devices add column last_battery_pct integer;

-- Ids that connected before anyone registered them. They were refused; this is what a tenant
-- admin registering the id later sees ("heard before registration"). Not tenant data: no
-- tenant owns an id nobody registered.
create table unregistered_devices (
    id            text primary key,
    protocol      text not null,
    first_heard_at integer not null,
    last_heard_at  integer not null,
    times_heard   integer not null
);

-- Every command sent to a device on its open connection, who asked and when.
create table device_commands (
    id         integer primary key,
    tenant_id  text not null references tenants (id),
    device_id  text not null references devices (id),
    command    text not null,
    sent_by    text,
    sent_at    integer not null
);
create index device_commands_by_device on device_commands (device_id, sent_at);
