-- Accounts can be disabled and deleted, and their tokens revoked (PostgreSQL).

-- Disabled: no login, and every token of the account is refused. Null: active.
alter table users add column disabled_at timestamptz;
-- Deleted: like disabled, for good; the row stays because alarm events and the access log name
-- the account, but its email is freed and it is listed nowhere.
alter table users add column deleted_at timestamptz;
-- Tokens carry the version they were issued at; disabling, deleting and every password change or
-- reset increment it, which refuses every token issued before.
alter table users add column token_version bigint not null default 0;

-- Native devices are authenticated by their token before their request body is read.
create index devices_by_token_hash on devices (token_hash);
