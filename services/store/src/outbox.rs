//! The push worker's side of the store: claiming due outbox rows and alarm timers, recording
//! what became of them, escalating an alarm to its next responder step, receipts, push tokens
//! and the tenant's push settings.
//!
//! Every timer is a row (DESIGN, "every timer is a row"): a push to retry, an escalation
//! deadline, a receipt deadline and an alarm-centre delivery each have a `due_at` that workers
//! claim. A claim pushes `due_at` forward by a lease instead of taking the row away, so the
//! claim of a worker that crashed comes back when the lease runs out, and nothing is held only
//! in memory. A claim also names the node that holds it: a node that starts again releases its
//! previous process's claims at once (an SOS push that process was sending when it was killed
//! must not wait out the lease). On PostgreSQL the claim is `FOR UPDATE SKIP LOCKED`, so several workers (on
//! several nodes) take disjoint rows; SQLite has one writer, so its claim statement is already
//! exclusive. Finishing a row is conditional on it still being pending, and an escalation is
//! one transaction that marks its timer done and writes the next step (its outbox rows, its
//! deadline, its event): two workers firing the same deadline escalate once.
//!
//! Every transaction here writes first, so on SQLite it takes the write lock (waiting for a busy
//! writer) instead of failing to upgrade a read lock while the worker's tasks run side by side.
//!
//! Each query is written once for both backends; the claim's `skip locked` comes from
//! [`crate::dialect`].

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::instrument;
use trygg_core::{AlarmState, TenantId};
use uuid::Uuid;

use crate::alarms::{NewAlarm, NewAlarmEvent, PushToken, event_in, push_tokens_in};
use crate::dialect::{Db, On, Row, Tx, get_uuid, query};
use crate::{SqlStore, StoreError, conflict, narrow, parse_text};

/// How long an unacknowledged critical alarm waits at a step whose wait is not configured (a
/// wearer without responders, alerted through their team).
pub const DEFAULT_ESCALATE_AFTER_SECS: u32 = 120;

/// An outbox row a worker claimed: push alarm `alarm` to `recipient` (responder step `step`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Its id.
    pub id: i64,
    /// The alarm's tenant.
    pub tenant: TenantId,
    /// The alarm.
    pub alarm: Uuid,
    /// The responder step (0 first).
    pub step: u32,
    /// The staff account to push to.
    pub recipient: Uuid,
    /// Earlier attempts that ended in a retry.
    pub attempts: u32,
}

/// What an alarm timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Step `step` was not acknowledged in time: alert the next step.
    Escalate,
    /// The pushes of step `step` were not confirmed by an app receipt in time: treat them as
    /// undelivered and alert the next step.
    Receipt,
    /// Alert the wearer's alarm centre (the step after the last responder step).
    AlarmCentre,
}

impl TimerKind {
    /// The name stored in `alarm_timers.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Escalate => "escalate",
            Self::Receipt => "receipt",
            Self::AlarmCentre => "alarm_centre",
        }
    }
}

impl FromStr for TimerKind {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Escalate, Self::Receipt, Self::AlarmCentre]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt { what: "timer kind", value: s.to_owned() })
    }
}

/// An alarm timer a worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Its id.
    pub id: i64,
    /// The alarm's tenant.
    pub tenant: TenantId,
    /// The alarm.
    pub alarm: Uuid,
    /// The responder step it belongs to.
    pub step: u32,
    /// What it is for.
    pub kind: TimerKind,
    /// Earlier attempts that ended in a retry (alarm-centre deliveries).
    pub attempts: u32,
}

/// Where an alarm goes after step `timer.step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escalation {
    /// Push responder step `step`: one outbox row per recipient, and its own deadline after
    /// `escalate_after` (at once if it has no recipients).
    Responders {
        /// The next step.
        step: u32,
        /// Its staff.
        recipients: Vec<Uuid>,
        /// How long it has to acknowledge.
        escalate_after: Duration,
    },
    /// No responder step is left: alert the alarm centre (step `step`, due at once).
    AlarmCentre {
        /// The step after the last responder step.
        step: u32,
    },
}

impl Escalation {
    /// The step escalated to.
    pub fn step(&self) -> u32 {
        match self {
            Self::Responders { step, .. } | Self::AlarmCentre { step } => *step,
        }
    }
}

/// What became of an [`Outbox::escalate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalateOutcome {
    /// The next step was written.
    Escalated,
    /// The timer was no longer pending: another worker fired it.
    Stale,
    /// A receipt deadline whose pushes were confirmed by a receipt: nothing to do.
    Confirmed,
    /// The alarm is acknowledged (or further on): escalation stops.
    Stopped(AlarmState),
    /// The other deadline of the same step had already escalated.
    AlreadyEscalated,
}

/// What became of an [`Outbox::record_receipt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Recorded as a `received` event.
    Recorded,
    /// This account had already confirmed this alarm; nothing new recorded.
    Repeated,
    /// No such alarm in the tenant.
    NotFound,
}

/// A tenant's push settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushSettings {
    /// Put the wearer's name in critical pushes (off by default: the app fetches it).
    pub wearer_name_in_push: bool,
    /// The HMAC-SHA256 key that signs alarm-centre webhook bodies; without it none is sent.
    pub alarm_centre_secret: Option<String>,
}

/// The push worker's queries. Claims return rows whose lease ends at `now + lease`.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Claims for node `node` at most `limit` pending outbox rows due at `now`: those of
    /// critical alarms first (a backlog of technical alerts never holds back an SOS), then
    /// oldest due first.
    async fn claim_outbox(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    /// The row is done: every usable token was reached. False if it was not pending.
    async fn outbox_sent(&self, id: i64) -> Result<bool, StoreError>;
    /// The row failed for now: one more attempt, due again at `due`.
    async fn outbox_retry(&self, id: i64, due: DateTime<Utc>, error: &str) -> Result<bool, StoreError>;
    /// The row cannot be sent; escalation takes over.
    async fn outbox_failed(&self, id: i64, error: &str) -> Result<bool, StoreError>;
    /// The tokens the row was already accepted for.
    async fn outbox_tokens_sent(&self, id: i64) -> Result<Vec<String>, StoreError>;
    /// FCM accepted the row's push to `token`.
    async fn outbox_token_sent(&self, id: i64, token: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Makes the outbox rows and timers node `node` still holds due at `now`: called when the
    /// node starts, so what its previous process had claimed (and may have been sending when it
    /// died) goes out at once instead of when the lease runs out. Returns how many. Two running
    /// processes must not share a node name.
    async fn release_claims(&self, node: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Makes every pending row waiting on a retry due at `now` (FCM is back after an outage:
    /// their back-off would only delay alarms). Returns how many.
    async fn hasten_retries(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// If no outbox row of the alarm's step `step` is pending or sent (every push failed),
    /// brings the step's escalation deadline forward to `now`. True if it did.
    async fn hasten_escalation(&self, alarm: Uuid, step: u32, now: DateTime<Utc>)
    -> Result<bool, StoreError>;

    /// Moves a `raised` alarm to `notified` with its event (the first accepted push). False if
    /// it was in another state or is not in the tenant.
    async fn mark_notified(
        &self,
        tenant: TenantId,
        alarm: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Appends a worker event to an alarm of the tenant; false if there is no such alarm. One
    /// statement: on SQLite it never has to upgrade a read lock, so it waits for a busy writer
    /// instead of failing.
    async fn log_event(
        &self,
        tenant: TenantId,
        alarm: Uuid,
        event: &NewAlarmEvent,
    ) -> Result<bool, StoreError>;

    /// An account's tokens that FCM has not declared dead, newest first.
    async fn active_push_tokens(&self, tenant: TenantId, user: Uuid) -> Result<Vec<PushToken>, StoreError>;
    /// FCM declared `token` dead (unregistered or invalid). False if it was unknown or disabled.
    async fn disable_push_token(&self, token: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Adds a timer unless the alarm has one of this kind for this step. True if added.
    async fn add_timer(
        &self,
        tenant: TenantId,
        alarm: Uuid,
        step: u32,
        kind: TimerKind,
        due: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Claims for node `node` at most `limit` pending timers due at `now`, oldest due first.
    async fn claim_timers(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Timer>, StoreError>;
    /// The timer is done. False if it was not pending.
    async fn timer_done(&self, id: i64) -> Result<bool, StoreError>;
    /// The timer's work failed for now: one more attempt, due again at `due`.
    async fn timer_retry(&self, id: i64, due: DateTime<Utc>, error: &str) -> Result<bool, StoreError>;
    /// The timer's work cannot be done.
    async fn timer_failed(&self, id: i64, error: &str) -> Result<bool, StoreError>;
    /// Fires an `escalate` or `receipt` timer in one transaction: marks it (and the other
    /// deadline of its step) done and, if the alarm is still unacknowledged and the step not
    /// escalated yet, writes `next` — its outbox rows or alarm-centre timer, its deadline and an
    /// `escalated` event.
    async fn escalate(
        &self,
        timer: &Timer,
        next: &Escalation,
        now: DateTime<Utc>,
    ) -> Result<EscalateOutcome, StoreError>;

    /// The app confirms `user` received the push of alarm `alarm` (`POST …/received`).
    async fn record_receipt(
        &self,
        tenant: TenantId,
        alarm: Uuid,
        user: Uuid,
        at: DateTime<Utc>,
    ) -> Result<ReceiptOutcome, StoreError>;

    /// The tenant's push settings (defaults if never set).
    async fn push_settings(&self, tenant: TenantId) -> Result<PushSettings, StoreError>;
    /// Replaces the tenant's push settings.
    async fn put_push_settings(&self, tenant: TenantId, settings: &PushSettings) -> Result<(), StoreError>;
}

/// `std` duration to chrono, saturating (a lease or delay is never near the limits).
pub(crate) fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[async_trait]
impl Outbox for SqlStore {
    #[instrument(level = "debug", skip_all)]
    async fn claim_outbox(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let columns = "id, tenant_id, alarm_id, step, recipient, attempts";
        claim(&self.db, "outbox", columns, (node, now, lease), limit, |r| {
            Ok(OutboxRow {
                id: r.get(0),
                tenant: TenantId(get_uuid(r, 1)?),
                alarm: get_uuid(r, 2)?,
                step: narrow("outbox step", r.get(3))?,
                recipient: get_uuid(r, 4)?,
                attempts: narrow("outbox attempts", r.get(5))?,
            })
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn outbox_sent(&self, id: i64) -> Result<bool, StoreError> {
        settle(&self.db, "outbox", id, "sent", None).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn outbox_retry(&self, id: i64, due: DateTime<Utc>, error: &str) -> Result<bool, StoreError> {
        postpone(&self.db, "outbox", id, due, error).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn outbox_failed(&self, id: i64, error: &str) -> Result<bool, StoreError> {
        settle(&self.db, "outbox", id, "failed", Some(error)).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn outbox_tokens_sent(&self, id: i64) -> Result<Vec<String>, StoreError> {
        let rows = query("select token from outbox_tokens where outbox_id = $1")
            .bind(id)
            .fetch_all(&self.db)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    #[instrument(level = "debug", skip_all)]
    async fn release_claims(&self, node: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut released = 0;
        for table in ["outbox", "alarm_timers"] {
            let sql = format!(
                "update {table} set due_at = $2, claimed_by = null \
                 where claimed_by = $1 and status = 'pending' and due_at > $2"
            );
            released += query(&sql).bind(node).bind(now).execute(&self.db).await?.rows_affected();
        }
        Ok(released)
    }

    #[instrument(level = "debug", skip_all)]
    async fn hasten_retries(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done =
            query("update outbox set due_at = $1 where status = 'pending' and attempts > 0 and due_at > $1")
                .bind(now)
                .execute(&self.db)
                .await?;
        Ok(done.rows_affected())
    }

    #[instrument(level = "debug", skip_all)]
    async fn outbox_token_sent(&self, id: i64, token: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        query(
                    "insert into outbox_tokens (outbox_id, token, sent_at) values ($1, $2, $3) on conflict do nothing",
                )
                .bind(id)
                .bind(token)
                .bind(at)
                .execute(&self.db)
                .await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn hasten_escalation(
        &self,
        alarm: Uuid,
        step: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = query(
            "update alarm_timers set due_at = $3 where alarm_id = $1 and step = $2 and kind = 'escalate' \
                     and status = 'pending' and due_at > $3 and not exists (select 1 from outbox \
                     where alarm_id = $1 and step = $2 and status in ('pending', 'sent'))",
        )
        .bind(alarm)
        .bind(i64::from(step))
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn mark_notified(
        &self,
        tenant: TenantId,
        alarm: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let changed = query(
            "update alarms set state = 'notified' where id = $1 and tenant_id = $2 and state = 'raised'",
        )
        .bind(alarm)
        .bind(tenant.0)
        .execute(&mut tx)
        .await?
        .rows_affected();
        if changed == 1 {
            let event = NewAlarmEvent {
                at,
                kind: trygg_core::Step::Notify.event().into(),
                actor: None,
                position: None,
                detail: String::new(),
            };
            event_in(&mut tx, alarm, &event, None).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn log_event(&self, tenant: TenantId, alarm: Uuid, e: &NewAlarmEvent) -> Result<bool, StoreError> {
        event_in(&self.db, alarm, e, Some(tenant)).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn active_push_tokens(
        &self,
        tenant: TenantId,
        user: Uuid,
    ) -> Result<Vec<crate::alarms::PushToken>, StoreError> {
        push_tokens_in(&self.db, tenant, user, true).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn disable_push_token(&self, token: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = query("update push_tokens set disabled_at = $2 where token = $1 and disabled_at is null")
            .bind(token)
            .bind(at)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn add_timer(
        &self,
        tenant: TenantId,
        alarm: Uuid,
        step: u32,
        kind: TimerKind,
        due: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        timer_in(&self.db, tenant, alarm, step, kind, Utc::now(), due).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn claim_timers(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Timer>, StoreError> {
        let columns = "id, tenant_id, alarm_id, step, kind, attempts";
        claim(&self.db, "alarm_timers", columns, (node, now, lease), limit, |r| {
            Ok(Timer {
                id: r.get(0),
                tenant: TenantId(get_uuid(r, 1)?),
                alarm: get_uuid(r, 2)?,
                step: narrow("timer step", r.get(3))?,
                kind: parse_text("timer kind", r.get(4))?,
                attempts: narrow("timer attempts", r.get(5))?,
            })
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn timer_done(&self, id: i64) -> Result<bool, StoreError> {
        settle(&self.db, "alarm_timers", id, "done", None).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn timer_retry(&self, id: i64, due: DateTime<Utc>, error: &str) -> Result<bool, StoreError> {
        postpone(&self.db, "alarm_timers", id, due, error).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn timer_failed(&self, id: i64, error: &str) -> Result<bool, StoreError> {
        settle(&self.db, "alarm_timers", id, "failed", Some(error)).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn escalate(
        &self,
        timer: &Timer,
        next: &Escalation,
        now: DateTime<Utc>,
    ) -> Result<EscalateOutcome, StoreError> {
        use {EscalateOutcome, Escalation, TimerKind};
        let mut tx = self.db.begin_write().await?;
        let fired = query("update alarm_timers set status = 'done' where id = $1 and status = 'pending'")
            .bind(timer.id)
            .execute(&mut tx)
            .await?
            .rows_affected();
        if fired == 0 {
            return Ok(EscalateOutcome::Stale);
        }
        let step = i64::from(timer.step);
        if timer.kind == TimerKind::Receipt {
            let confirmed = query(
                        "select 1 from alarm_events e join outbox o on o.alarm_id = e.alarm_id and o.recipient = e.actor \
                         where e.alarm_id = $1 and e.kind = 'received' and o.step = $2 limit 1",
                    )
                    .bind(timer.alarm)
                    .bind(step)
                    .fetch_optional(&mut tx)
                    .await?
                    .is_some();
            if confirmed {
                tx.commit().await?;
                return Ok(EscalateOutcome::Confirmed);
            }
        }
        let state: Option<String> = query("select state from alarms where id = $1")
            .bind(timer.alarm)
            .fetch_optional(&mut tx)
            .await?
            .map(|r| r.get(0));
        let state: AlarmState = parse_text("alarm state", state.ok_or(StoreError::NotFound("alarm"))?)?;
        if !matches!(state, AlarmState::Raised | AlarmState::Notified) {
            query(
                "update alarm_timers set status = 'done' where alarm_id = $1 and status = 'pending' \
                         and kind in ('escalate', 'receipt')",
            )
            .bind(timer.alarm)
            .execute(&mut tx)
            .await?;
            tx.commit().await?;
            return Ok(EscalateOutcome::Stopped(state));
        }
        query(
            "update alarm_timers set status = 'done' where alarm_id = $1 and step = $2 \
                     and kind in ('escalate', 'receipt') and status = 'pending'",
        )
        .bind(timer.alarm)
        .bind(step)
        .execute(&mut tx)
        .await?;
        let (kind, due, recipients, detail) = match next {
            Escalation::Responders { step, recipients, escalate_after } => {
                let due = if recipients.is_empty() { now } else { now + chrono_duration(*escalate_after) };
                let detail = format!(
                    "step {step}: {} recipient(s) ({} deadline)",
                    recipients.len(),
                    if timer.kind == TimerKind::Receipt { "receipt" } else { "acknowledgement" }
                );
                (TimerKind::Escalate, due, recipients.as_slice(), detail)
            }
            Escalation::AlarmCentre { step } => {
                (TimerKind::AlarmCentre, now, &[][..], format!("step {step}: alarm centre"))
            }
        };
        let next_step = next.step();
        if !timer_in(&mut tx, timer.tenant, timer.alarm, next_step, kind, now, due).await? {
            tx.commit().await?;
            return Ok(EscalateOutcome::AlreadyEscalated);
        }
        for recipient in recipients {
            query(
                "insert into outbox (tenant_id, alarm_id, step, recipient, created_at, due_at) \
                         values ($1, $2, $3, $4, $5, $5) on conflict do nothing",
            )
            .bind(timer.tenant.0)
            .bind(timer.alarm)
            .bind(i64::from(next_step))
            .bind(*recipient)
            .bind(now)
            .execute(&mut tx)
            .await?;
        }
        let event = NewAlarmEvent { at: now, kind: "escalated".into(), actor: None, position: None, detail };
        event_in(&mut tx, timer.alarm, &event, None).await?;
        tx.commit().await?;
        Ok(EscalateOutcome::Escalated)
    }

    #[instrument(level = "debug", skip_all)]
    async fn record_receipt(
        &self,
        tenant: TenantId,
        alarm: Uuid,
        user: Uuid,
        at: DateTime<Utc>,
    ) -> Result<ReceiptOutcome, StoreError> {
        use ReceiptOutcome;
        // One statement (see the module docs); a second read says why nothing was added.
        let added = query(
                    "insert into alarm_events (alarm_id, at, kind, actor, detail) select $1, $2, 'received', $3, '' \
                     where exists (select 1 from alarms where id = $1 and tenant_id = $4) \
                     and not exists (select 1 from alarm_events where alarm_id = $1 and kind = 'received' and actor = $3)",
                )
                .bind(alarm)
                .bind(at)
                .bind(user)
                .bind(tenant.0)
                .execute(&self.db)
                .await?
                .rows_affected();
        if added == 1 {
            return Ok(ReceiptOutcome::Recorded);
        }
        let exists = query("select 1 from alarms where id = $1 and tenant_id = $2")
            .bind(alarm)
            .bind(tenant.0)
            .fetch_optional(&self.db)
            .await?
            .is_some();
        Ok(if exists { ReceiptOutcome::Repeated } else { ReceiptOutcome::NotFound })
    }

    #[instrument(level = "debug", skip_all)]
    async fn push_settings(&self, tenant: TenantId) -> Result<PushSettings, StoreError> {
        let row = query(
            "select wearer_name_in_push, alarm_centre_secret from tenant_push_settings where tenant_id = $1",
        )
        .bind(tenant.0)
        .fetch_optional(&self.db)
        .await?;
        Ok(row
            .map(|r| PushSettings { wearer_name_in_push: r.get(0), alarm_centre_secret: r.get(1) })
            .unwrap_or_default())
    }

    #[instrument(level = "debug", skip_all)]
    async fn put_push_settings(&self, tenant: TenantId, settings: &PushSettings) -> Result<(), StoreError> {
        query(
            "insert into tenant_push_settings (tenant_id, wearer_name_in_push, alarm_centre_secret) \
                     values ($1, $2, $3) on conflict (tenant_id) do update set \
                     wearer_name_in_push = excluded.wearer_name_in_push, \
                     alarm_centre_secret = excluded.alarm_centre_secret",
        )
        .bind(tenant.0)
        .bind(settings.wearer_name_in_push)
        .bind(settings.alarm_centre_secret.as_deref())
        .execute(&self.db)
        .await
        .map_err(conflict("push settings"))?;
        Ok(())
    }
}

/// Claims for `node` up to `limit` due pending rows of `table` (`outbox` or `alarm_timers`) for
/// `lease` and returns their `columns`, each read by `read`: rows of critical alarms first, then
/// oldest due first; rows another worker holds are skipped on PostgreSQL. The table and columns
/// are our own fixed names.
async fn claim<T>(
    db: &Db,
    table: &'static str,
    columns: &'static str,
    (node, now, lease): (&str, DateTime<Utc>, Duration),
    limit: u32,
    read: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let critical = crate::alarms::critical_kinds_sql();
    let sql = format!(
        "update {table} set due_at = $1, claimed_by = $4 where id in (select t.id from {table} t \
         where t.status = 'pending' and t.due_at <= $2 \
         order by (select case when a.kind in ({critical}) then 0 else 1 end from alarms a where a.id = t.alarm_id), \
         t.due_at limit $3{skip_locked}) returning {columns}",
        skip_locked = db.skip_locked()
    );
    let rows = query(sql)
        .bind(now + chrono_duration(lease))
        .bind(now)
        .bind(i64::from(limit))
        .bind(node)
        .fetch_all(db)
        .await?;
    rows.iter().map(read).collect()
}

/// Ends a pending outbox row or timer (`table`) with `status`; false if it was not pending.
/// The table and status are our own fixed names.
async fn settle(
    pool: &Db,
    table: &'static str,
    id: i64,
    status: &'static str,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let sql = format!(
        "update {table} set status = '{status}', last_error = coalesce($2, last_error) \
                 where id = $1 and status = 'pending'"
    );
    let done = query(&sql).bind(id).bind(error).execute(pool).await?;
    Ok(done.rows_affected() == 1)
}

/// Counts a failed attempt on a pending outbox row or timer (`table`) and moves it to
/// `due`; false if it was not pending.
async fn postpone(
    pool: &Db,
    table: &'static str,
    id: i64,
    due: DateTime<Utc>,
    error: &str,
) -> Result<bool, StoreError> {
    let sql = format!(
        "update {table} set attempts = attempts + 1, due_at = $2, last_error = $3, claimed_by = null \
                 where id = $1 and status = 'pending'"
    );
    let done = query(&sql).bind(id).bind(due).bind(error).execute(pool).await?;
    Ok(done.rows_affected() == 1)
}

/// Adds a timer unless the alarm has one of this kind for this step. True if added.
pub(crate) async fn timer_in(
    on: impl Into<On<'_>>,
    tenant: TenantId,
    alarm: Uuid,
    step: u32,
    kind: TimerKind,
    now: DateTime<Utc>,
    due: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = query(
        "insert into alarm_timers (tenant_id, alarm_id, step, kind, created_at, due_at) \
                 values ($1, $2, $3, $4, $5, $6) on conflict do nothing",
    )
    .bind(tenant.0)
    .bind(alarm)
    .bind(i64::from(step))
    .bind(kind.as_str())
    .bind(now)
    .bind(due)
    .execute(on)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The first escalation deadline of a critical alarm `a` raised as `id`, written in the
/// transaction that raises it: the wearer's first responder step's wait (the default
/// for a team without responder steps), or at once if nobody was alerted.
pub(crate) async fn escalation_deadline_in(
    tx: &mut Tx,
    a: &NewAlarm,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if !a.kind.is_critical() {
        return Ok(());
    }
    let wait: Option<i64> = query(
        "select r.escalate_after_secs from responders r join wearers w on w.id = r.wearer_id \
                 where r.wearer_id = $1 and w.tenant_id = $2 order by r.position limit 1",
    )
    .bind(a.wearer.map(|w| w.0))
    .bind(a.tenant.0)
    .fetch_optional(&mut *tx)
    .await?
    .map(|r| r.get(0));
    let wait = wait.unwrap_or(i64::from(DEFAULT_ESCALATE_AFTER_SECS));
    let due = if a.recipients.is_empty() { now } else { now + chrono::Duration::seconds(wait) };
    timer_in(&mut *tx, a.tenant, id, 0, TimerKind::Escalate, now, due).await?;
    Ok(())
}
