-- SQLite's migration 0010 renames its 0001 columns (`time_ms`, `received_ms`, `created_ms`,
-- `fix_time_ms`) to the names PostgreSQL has had from the start. Nothing changes here; the
-- version exists on both backends so that one number means the same schema on both.
select 1;
