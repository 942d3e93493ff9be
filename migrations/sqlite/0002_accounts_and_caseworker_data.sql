-- Accounts, consent, device bindings, zones, teams, responders, tenant settings, access log (SQLite).
-- New columns are named as on PostgreSQL (`*_at`) so both backends share their queries; times are
-- still integer milliseconds since the Unix epoch (UTC), as in 0001.

-- Local accounts. An installation admin belongs to no tenant; everyone else to exactly one.
create table users (
    id            text primary key,
    tenant_id     text references tenants (id),
    email         text not null unique,
    name          text not null,
    role          text not null check (role in ('admin', 'tenant_admin', 'caseworker', 'staff')),
    -- argon2id PHC string.
    password_hash text not null,
    created_at    integer not null,
    check ((role = 'admin') = (tenant_id is null))
);
create index users_by_tenant on users (tenant_id);

create table teams (
    id          text primary key,
    tenant_id   text not null references tenants (id),
    name        text not null,
    created_at  integer not null,
    unique (tenant_id, name)
);

create table team_members (
    team_id     text not null references teams (id),
    user_id     text not null references users (id),
    primary key (team_id, user_id)
);

alter table wearers add column note text not null default '';
alter table wearers add column contact_name text not null default '';
alter table wearers add column contact_phone text not null default '';
alter table wearers add column team_id text references teams (id);
-- Last escalation step after the responders: an external alarm receiving centre's webhook.
alter table wearers add column alarm_centre_url text;
alter table wearers add column deactivated_at integer;

-- Documented consent (or decision) for positioning and passive (zone) alarms.
create table consents (
    id             text primary key,
    tenant_id      text not null references tenants (id),
    wearer_id      text not null references wearers (id),
    positioning    integer not null,
    passive_alarms integer not null,
    given_by       text not null check (given_by in ('wearer', 'legal_representative', 'decision')),
    document_ref   text not null,
    valid_from     integer not null,
    valid_until    integer,
    withdrawn_at   integer,
    recorded_by    text not null references users (id),
    created_at     integer not null
);
create index consents_by_wearer on consents (tenant_id, wearer_id);

-- Which wearer wore which device when: a replaced watch keeps the wearer's history.
-- devices.wearer_id is the current binding; this table is the record of all of them.
create table device_bindings (
    id          integer primary key,
    tenant_id   text not null references tenants (id),
    device_id   text not null references devices (id),
    wearer_id   text not null references wearers (id),
    bound_at    integer not null,
    unbound_at  integer
);
create index device_bindings_by_wearer on device_bindings (tenant_id, wearer_id);
create index device_bindings_by_device on device_bindings (device_id);

create table zones (
    id          text primary key,
    tenant_id   text not null references tenants (id),
    wearer_id   text not null references wearers (id),
    name        text not null,
    kind        text not null check (kind in ('stay_inside', 'keep_out')),
    -- A GeoJSON geometry object, validated by the API before it is stored.
    geometry    text not null,
    radius_m    real,
    -- A weekly schedule as JSON (trygg_geofence::Schedule); null means always active.
    schedule    text,
    created_at  integer not null,
    updated_at  integer not null
);
create index zones_by_wearer on zones (tenant_id, wearer_id);

-- A wearer's ordered responders: each step a staff member or a whole team.
create table responders (
    wearer_id           text not null references wearers (id),
    position            integer not null,
    user_id             text references users (id),
    team_id             text references teams (id),
    escalate_after_secs integer not null,
    primary key (wearer_id, position),
    check ((user_id is null) <> (team_id is null))
);

create table tenant_settings (
    tenant_id          text primary key references tenants (id),
    time_zone          text not null,
    -- trygg_geofence::Policy as JSON.
    exit_policy        text not null,
    offline_after_secs integer not null,
    battery_low_pct    integer not null,
    fix_retention_days integer not null,
    updated_at         integer not null
);

-- Every read of a wearer's positions: who, when, which wearer, why.
create table access_log (
    id          integer primary key,
    tenant_id   text not null references tenants (id),
    user_id     text not null references users (id),
    wearer_id   text not null references wearers (id),
    at          integer not null,
    what        text not null,
    reason      text not null
);
create index access_log_by_tenant on access_log (tenant_id, at);
