-- Device supervision (PostgreSQL): per-device deadlines as rows with a due time, claimed by the
-- alarm engine, so a restart skips none and fires none twice.

-- kind: 'offline' (the device has not been heard for its tenant's offline_after_secs).
-- The engine arms a row when a bound device reports (batched with its own commit, only when the
-- due time moves by a good part of the threshold, so not one write per fix). When it comes due
-- the engine checks when the device was really last heard: heard since, it is moved on; not
-- heard, a `device_offline` alert is raised and `fired_at` set in the same transaction, and
-- the row stays due every minute until the device is heard again, which closes the alert.
create table device_deadlines (
    device_id  text not null references devices (id) on delete cascade,
    kind       text not null,
    tenant_id  uuid not null references tenants (id),
    due_at     timestamptz not null,
    -- When the alert was raised; null while the device is heard in time.
    fired_at   timestamptz,
    primary key (device_id, kind)
);
create index device_deadlines_due on device_deadlines (due_at);

-- Supervision settings per tenant (see the README's Supervision section).
-- A low-battery alert is re-armed once the device reports this many points above the threshold
-- (or charging): one alert per discharge.
alter table tenant_settings add column battery_rearm_margin_pct bigint not null default 10;
-- Quiet hours (the tenant's local time): technical alerts that can wait are held from
-- quiet_from_hour until quiet_until_hour.
alter table tenant_settings add column quiet_from_hour bigint not null default 22;
alter table tenant_settings add column quiet_until_hour bigint not null default 7;
