-- Escalation and receipt deadlines and alarm-centre deliveries as rows with a due time, claimed
-- like the outbox, so a restart skips none and fires none twice; the device tokens each outbox
-- row has reached (a retry resends only to the others); per-tenant push settings (PostgreSQL).

-- kind: 'escalate' (step `step` not acknowledged in time), 'receipt' (no app receipt for the
-- pushes of step `step` in time), 'alarm_centre' (POST to the wearer's alarm centre webhook,
-- `step` being the one after the last responder step). One of each per alarm and step.
create table alarm_timers (
    id          bigserial primary key,
    tenant_id   uuid not null references tenants (id),
    alarm_id    uuid not null references alarms (id),
    step        bigint not null,
    kind        text not null check (kind in ('escalate', 'receipt', 'alarm_centre')),
    created_at  timestamptz not null,
    -- When it fires; a claim moves it forward by a lease, a retry by the back-off.
    due_at      timestamptz not null,
    attempts    bigint not null default 0,
    status      text not null default 'pending' check (status in ('pending', 'done', 'failed')),
    last_error  text,
    unique (alarm_id, step, kind)
);
create index alarm_timers_due on alarm_timers (status, due_at);

-- The device tokens an outbox row was accepted for by FCM.
create table outbox_tokens (
    outbox_id   bigint not null references outbox (id),
    token       text not null,
    sent_at     timestamptz not null,
    primary key (outbox_id, token)
);

create table tenant_push_settings (
    tenant_id           uuid primary key references tenants (id),
    -- Put the wearer's name in critical pushes (personal data on Google's and Apple's servers).
    wearer_name_in_push boolean not null default false,
    -- The HMAC-SHA256 key of alarm-centre webhook bodies; no webhook is sent without one.
    alarm_centre_secret text
);
