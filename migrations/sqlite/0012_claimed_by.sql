-- Which node holds the claim on a pending outbox row or alarm timer (null: none, or a retry
-- waiting for its back-off). A node that starts again makes its previous process's claims due
-- at once: a push that process was sending when it died goes out now, not when the lease ends.
alter table outbox add column claimed_by text;
alter table alarm_timers add column claimed_by text;
