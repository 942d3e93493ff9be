-- Browser sessions of the web console (PostgreSQL). The console's cookie carries a token naming
-- one session; logging out ends that session server-side, without revoking the account's other
-- tokens (a staff member's companion app stays logged in).
create table sessions (
    id         uuid primary key,
    user_id    uuid not null references users (id),
    created_at timestamptz not null,
    -- The token's expiry: past it the row is useless and is deleted at a later login.
    expires_at timestamptz not null,
    -- Logged out. Null: open.
    ended_at   timestamptz
);
create index sessions_by_expiry on sessions (expires_at);
