-- Browser sessions of the web console (SQLite). The console's cookie carries a token naming one
-- session; logging out ends that session server-side, without revoking the account's other
-- tokens (a staff member's companion app stays logged in). Times are integer milliseconds since
-- the Unix epoch (UTC), as in 0001.
create table sessions (
    id         text primary key,
    user_id    text not null references users (id),
    created_at integer not null,
    -- The token's expiry: past it the row is useless and is deleted at a later login.
    expires_at integer not null,
    -- Logged out. Null: open.
    ended_at   integer
);
create index sessions_by_expiry on sessions (expires_at);
