//! The push worker's side of the store: claiming due outbox rows and alarm timers, recording
//! what became of them, escalating an alarm to its next responder step, receipts, push tokens
//! and the tenant's push settings.
//!
//! Every timer is a row (DESIGN, "every timer is a row"): a push to retry, an escalation
//! deadline, a receipt deadline and an alarm-centre delivery each have a `due_at` that workers
//! claim. A claim pushes `due_at` forward by a lease instead of taking the row away, so the
//! claim of a worker that crashed comes back when the lease runs out, and nothing is held only
//! in memory. On PostgreSQL the claim is `FOR UPDATE SKIP LOCKED`, so several workers (on
//! several nodes) take disjoint rows; SQLite has one writer, so its claim statement is already
//! exclusive. Finishing a row is conditional on it still being pending, and an escalation is
//! one transaction that marks its timer done and writes the next step (its outbox rows, its
//! deadline, its event): two workers firing the same deadline escalate once.
//!
//! Every transaction here writes first, so on SQLite it takes the write lock (waiting for a busy
//! writer) instead of failing to upgrade a read lock while the worker's tasks run side by side.
//!
//! Queries are written once in [`impl_outbox!`] and expanded per backend, like the alarms'.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use trygg_core::{AlarmState, TenantId};
use uuid::Uuid;

use crate::StoreError;
use crate::alarms::{NewAlarmEvent, PushToken};

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
    /// Claims at most `limit` pending outbox rows due at `now`: those of critical alarms first
    /// (a backlog of technical alerts never holds back an SOS), then oldest due first.
    async fn claim_outbox(
        &self,
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
    /// Claims at most `limit` pending timers due at `now`, oldest due first.
    async fn claim_timers(
        &self,
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

/// Expands to `impl Outbox for $store` (backend `$db`) and `escalation_deadline_in`, which
/// [`raise_in`](crate::alarms) calls. The invoking module provides the value conversions of
/// [`impl_directory`](crate::directory) and the alarms' `event_in`, `push_tokens_in` and `AlarmTx`;
/// `$skip_locked` ends the claim's row selection (`for update skip locked` on PostgreSQL).
macro_rules! impl_outbox {
    ($store:ty, $db:ty, skip_locked = $skip_locked:literal) => {
        #[async_trait::async_trait]
        impl $crate::outbox::Outbox for $store {
            async fn claim_outbox(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                lease: std::time::Duration,
                limit: u32,
            ) -> Result<Vec<$crate::outbox::OutboxRow>, $crate::StoreError> {
                let critical = $crate::alarms::critical_kinds_sql();
                let rows = sqlx::query(&format!(
                    "update outbox set due_at = $1 where id in (select o.id from outbox o \
                     where o.status = 'pending' and o.due_at <= $2 \
                     order by (select case when a.kind in ({critical}) then 0 else 1 end \
                     from alarms a where a.id = o.alarm_id), o.due_at limit $3{skip_locked}) \
                     returning id, tenant_id, alarm_id, step, recipient, attempts",
                    skip_locked = $skip_locked,
                ))
                .bind(db_time(now + $crate::outbox::chrono_duration(lease)))
                .bind(db_time(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::outbox::OutboxRow {
                            id: r.get(0),
                            tenant: trygg_core::TenantId(get_uuid(r, 1)?),
                            alarm: get_uuid(r, 2)?,
                            step: $crate::narrow("outbox step", r.get(3))?,
                            recipient: get_uuid(r, 4)?,
                            attempts: $crate::narrow("outbox attempts", r.get(5))?,
                        })
                    })
                    .collect()
            }

            async fn outbox_sent(&self, id: i64) -> Result<bool, $crate::StoreError> {
                settle(&self.pool, "outbox", id, "sent", None).await
            }

            async fn outbox_retry(
                &self,
                id: i64,
                due: chrono::DateTime<chrono::Utc>,
                error: &str,
            ) -> Result<bool, $crate::StoreError> {
                postpone(&self.pool, "outbox", id, due, error).await
            }

            async fn outbox_failed(&self, id: i64, error: &str) -> Result<bool, $crate::StoreError> {
                settle(&self.pool, "outbox", id, "failed", Some(error)).await
            }

            async fn outbox_tokens_sent(&self, id: i64) -> Result<Vec<String>, $crate::StoreError> {
                Ok(sqlx::query_scalar("select token from outbox_tokens where outbox_id = $1")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn hasten_retries(&self, now: chrono::DateTime<chrono::Utc>) -> Result<u64, $crate::StoreError> {
                let done = sqlx::query(
                    "update outbox set due_at = $1 where status = 'pending' and attempts > 0 and due_at > $1",
                )
                .bind(db_time(now))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn outbox_token_sent(
                &self,
                id: i64,
                token: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query(
                    "insert into outbox_tokens (outbox_id, token, sent_at) values ($1, $2, $3) on conflict do nothing",
                )
                .bind(id)
                .bind(token)
                .bind(db_time(at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn hasten_escalation(
                &self,
                alarm: uuid::Uuid,
                step: u32,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query(
                    "update alarm_timers set due_at = $3 where alarm_id = $1 and step = $2 and kind = 'escalate' \
                     and status = 'pending' and due_at > $3 and not exists (select 1 from outbox \
                     where alarm_id = $1 and step = $2 and status in ('pending', 'sent'))",
                )
                .bind(db_id(alarm))
                .bind(i64::from(step))
                .bind(db_time(now))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn mark_notified(
                &self,
                tenant: trygg_core::TenantId,
                alarm: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = begin_write(&self.pool).await?;
                let changed = sqlx::query(
                    "update alarms set state = 'notified' where id = $1 and tenant_id = $2 and state = 'raised'",
                )
                .bind(db_id(alarm))
                .bind(db_id(tenant.0))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 1 {
                    let event = $crate::alarms::NewAlarmEvent {
                        at,
                        kind: trygg_core::Step::Notify.event().into(),
                        actor: None,
                        position: None,
                        detail: String::new(),
                    };
                    event_in(&mut tx, alarm, &event).await?;
                }
                tx.commit().await?;
                Ok(changed == 1)
            }

            async fn log_event(
                &self,
                tenant: trygg_core::TenantId,
                alarm: uuid::Uuid,
                e: &$crate::alarms::NewAlarmEvent,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query(
                    "insert into alarm_events (alarm_id, at, kind, actor, lat, lon, accuracy_m, detail) \
                     select $1, $2, $3, $4, $5, $6, $7, $8 \
                     where exists (select 1 from alarms where id = $1 and tenant_id = $9)",
                )
                .bind(db_id(alarm))
                .bind(db_time(e.at))
                .bind(&e.kind)
                .bind(e.actor.map(db_id))
                .bind(e.position.map(|p| p.lat))
                .bind(e.position.map(|p| p.lon))
                .bind(e.position.and_then(|p| p.accuracy_m))
                .bind(&e.detail)
                .bind(db_id(tenant.0))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn active_push_tokens(
                &self,
                tenant: trygg_core::TenantId,
                user: uuid::Uuid,
            ) -> Result<Vec<$crate::alarms::PushToken>, $crate::StoreError> {
                push_tokens_in(&self.pool, tenant, user, true).await
            }

            async fn disable_push_token(
                &self,
                token: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                let done =
                    sqlx::query("update push_tokens set disabled_at = $2 where token = $1 and disabled_at is null")
                        .bind(token)
                        .bind(db_time(at))
                        .execute(&self.pool)
                        .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn add_timer(
                &self,
                tenant: trygg_core::TenantId,
                alarm: uuid::Uuid,
                step: u32,
                kind: $crate::outbox::TimerKind,
                due: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                let mut conn = self.pool.acquire().await?;
                timer_in(&mut conn, tenant, alarm, step, kind, chrono::Utc::now(), due).await
            }

            async fn claim_timers(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                lease: std::time::Duration,
                limit: u32,
            ) -> Result<Vec<$crate::outbox::Timer>, $crate::StoreError> {
                let rows = sqlx::query(concat!(
                    "update alarm_timers set due_at = $1 where id in (select id from alarm_timers \
                     where status = 'pending' and due_at <= $2 order by due_at limit $3",
                    $skip_locked,
                    ") returning id, tenant_id, alarm_id, step, kind, attempts"
                ))
                .bind(db_time(now + $crate::outbox::chrono_duration(lease)))
                .bind(db_time(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::outbox::Timer {
                            id: r.get(0),
                            tenant: trygg_core::TenantId(get_uuid(r, 1)?),
                            alarm: get_uuid(r, 2)?,
                            step: $crate::narrow("timer step", r.get(3))?,
                            kind: $crate::parse_text("timer kind", r.get(4))?,
                            attempts: $crate::narrow("timer attempts", r.get(5))?,
                        })
                    })
                    .collect()
            }

            async fn timer_done(&self, id: i64) -> Result<bool, $crate::StoreError> {
                settle(&self.pool, "alarm_timers", id, "done", None).await
            }

            async fn timer_retry(
                &self,
                id: i64,
                due: chrono::DateTime<chrono::Utc>,
                error: &str,
            ) -> Result<bool, $crate::StoreError> {
                postpone(&self.pool, "alarm_timers", id, due, error).await
            }

            async fn timer_failed(&self, id: i64, error: &str) -> Result<bool, $crate::StoreError> {
                settle(&self.pool, "alarm_timers", id, "failed", Some(error)).await
            }

            async fn escalate(
                &self,
                timer: &$crate::outbox::Timer,
                next: &$crate::outbox::Escalation,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::outbox::EscalateOutcome, $crate::StoreError> {
                use $crate::outbox::{EscalateOutcome, Escalation, TimerKind};
                let mut tx = begin_write(&self.pool).await?;
                let fired = sqlx::query("update alarm_timers set status = 'done' where id = $1 and status = 'pending'")
                    .bind(timer.id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if fired == 0 {
                    return Ok(EscalateOutcome::Stale);
                }
                let step = i64::from(timer.step);
                if timer.kind == TimerKind::Receipt {
                    let confirmed = sqlx::query(
                        "select 1 from alarm_events e join outbox o on o.alarm_id = e.alarm_id and o.recipient = e.actor \
                         where e.alarm_id = $1 and e.kind = 'received' and o.step = $2 limit 1",
                    )
                    .bind(db_id(timer.alarm))
                    .bind(step)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                    if confirmed {
                        tx.commit().await?;
                        return Ok(EscalateOutcome::Confirmed);
                    }
                }
                let state: Option<String> = sqlx::query_scalar("select state from alarms where id = $1")
                    .bind(db_id(timer.alarm))
                    .fetch_optional(&mut *tx)
                    .await?;
                let state: trygg_core::AlarmState =
                    $crate::parse_text("alarm state", state.ok_or($crate::StoreError::NotFound("alarm"))?)?;
                if !matches!(state, trygg_core::AlarmState::Raised | trygg_core::AlarmState::Notified) {
                    sqlx::query(
                        "update alarm_timers set status = 'done' where alarm_id = $1 and status = 'pending' \
                         and kind in ('escalate', 'receipt')",
                    )
                    .bind(db_id(timer.alarm))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(EscalateOutcome::Stopped(state));
                }
                sqlx::query(
                    "update alarm_timers set status = 'done' where alarm_id = $1 and step = $2 \
                     and kind in ('escalate', 'receipt') and status = 'pending'",
                )
                .bind(db_id(timer.alarm))
                .bind(step)
                .execute(&mut *tx)
                .await?;
                let (kind, due, recipients, detail) = match next {
                    Escalation::Responders { step, recipients, escalate_after } => {
                        let due = if recipients.is_empty() {
                            now
                        } else {
                            now + $crate::outbox::chrono_duration(*escalate_after)
                        };
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
                if !timer_in(&mut *tx, timer.tenant, timer.alarm, next_step, kind, now, due).await? {
                    tx.commit().await?;
                    return Ok(EscalateOutcome::AlreadyEscalated);
                }
                for recipient in recipients {
                    sqlx::query(
                        "insert into outbox (tenant_id, alarm_id, step, recipient, created_at, due_at) \
                         values ($1, $2, $3, $4, $5, $5) on conflict do nothing",
                    )
                    .bind(db_id(timer.tenant.0))
                    .bind(db_id(timer.alarm))
                    .bind(i64::from(next_step))
                    .bind(db_id(*recipient))
                    .bind(db_time(now))
                    .execute(&mut *tx)
                    .await?;
                }
                let event = $crate::alarms::NewAlarmEvent {
                    at: now,
                    kind: "escalated".into(),
                    actor: None,
                    position: None,
                    detail,
                };
                event_in(&mut tx, timer.alarm, &event).await?;
                tx.commit().await?;
                Ok(EscalateOutcome::Escalated)
            }

            async fn record_receipt(
                &self,
                tenant: trygg_core::TenantId,
                alarm: uuid::Uuid,
                user: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::outbox::ReceiptOutcome, $crate::StoreError> {
                use $crate::outbox::ReceiptOutcome;
                // One statement (see the module docs); a second read says why nothing was added.
                let added = sqlx::query(
                    "insert into alarm_events (alarm_id, at, kind, actor, detail) select $1, $2, 'received', $3, '' \
                     where exists (select 1 from alarms where id = $1 and tenant_id = $4) \
                     and not exists (select 1 from alarm_events where alarm_id = $1 and kind = 'received' and actor = $3)",
                )
                .bind(db_id(alarm))
                .bind(db_time(at))
                .bind(db_id(user))
                .bind(db_id(tenant.0))
                .execute(&self.pool)
                .await?
                .rows_affected();
                if added == 1 {
                    return Ok(ReceiptOutcome::Recorded);
                }
                let exists = sqlx::query("select 1 from alarms where id = $1 and tenant_id = $2")
                    .bind(db_id(alarm))
                    .bind(db_id(tenant.0))
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some();
                Ok(if exists { ReceiptOutcome::Repeated } else { ReceiptOutcome::NotFound })
            }

            async fn push_settings(
                &self,
                tenant: trygg_core::TenantId,
            ) -> Result<$crate::outbox::PushSettings, $crate::StoreError> {
                let row = sqlx::query(
                    "select wearer_name_in_push, alarm_centre_secret from tenant_push_settings where tenant_id = $1",
                )
                .bind(db_id(tenant.0))
                .fetch_optional(&self.pool)
                .await?;
                Ok(row
                    .map(|r| $crate::outbox::PushSettings {
                        wearer_name_in_push: r.get(0),
                        alarm_centre_secret: r.get(1),
                    })
                    .unwrap_or_default())
            }

            async fn put_push_settings(
                &self,
                tenant: trygg_core::TenantId,
                settings: &$crate::outbox::PushSettings,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query(
                    "insert into tenant_push_settings (tenant_id, wearer_name_in_push, alarm_centre_secret) \
                     values ($1, $2, $3) on conflict (tenant_id) do update set \
                     wearer_name_in_push = excluded.wearer_name_in_push, \
                     alarm_centre_secret = excluded.alarm_centre_secret",
                )
                .bind(db_id(tenant.0))
                .bind(settings.wearer_name_in_push)
                .bind(settings.alarm_centre_secret.as_deref())
                .execute(&self.pool)
                .await
                .map_err($crate::conflict("push settings"))?;
                Ok(())
            }
        }

        /// Ends a pending outbox row or timer (`table`) with `status`; false if it was not pending.
        /// The table and status are our own fixed names.
        async fn settle(
            pool: &sqlx::Pool<$db>,
            table: &'static str,
            id: i64,
            status: &'static str,
            error: Option<&str>,
        ) -> Result<bool, $crate::StoreError> {
            let sql = format!(
                "update {table} set status = '{status}', last_error = coalesce($2, last_error) \
                 where id = $1 and status = 'pending'"
            );
            let done = sqlx::query(&sql).bind(id).bind(error).execute(pool).await?;
            Ok(done.rows_affected() == 1)
        }

        /// Counts a failed attempt on a pending outbox row or timer (`table`) and moves it to
        /// `due`; false if it was not pending.
        async fn postpone(
            pool: &sqlx::Pool<$db>,
            table: &'static str,
            id: i64,
            due: chrono::DateTime<chrono::Utc>,
            error: &str,
        ) -> Result<bool, $crate::StoreError> {
            let sql = format!(
                "update {table} set attempts = attempts + 1, due_at = $2, last_error = $3 \
                 where id = $1 and status = 'pending'"
            );
            let done = sqlx::query(&sql).bind(id).bind(db_time(due)).bind(error).execute(pool).await?;
            Ok(done.rows_affected() == 1)
        }

        /// Adds a timer unless the alarm has one of this kind for this step. True if added.
        async fn timer_in(
            conn: &mut <$db as sqlx::Database>::Connection,
            tenant: trygg_core::TenantId,
            alarm: uuid::Uuid,
            step: u32,
            kind: $crate::outbox::TimerKind,
            now: chrono::DateTime<chrono::Utc>,
            due: chrono::DateTime<chrono::Utc>,
        ) -> Result<bool, $crate::StoreError> {
            let done = sqlx::query(
                "insert into alarm_timers (tenant_id, alarm_id, step, kind, created_at, due_at) \
                 values ($1, $2, $3, $4, $5, $6) on conflict do nothing",
            )
            .bind(db_id(tenant.0))
            .bind(db_id(alarm))
            .bind(i64::from(step))
            .bind(kind.as_str())
            .bind(db_time(now))
            .bind(db_time(due))
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// The first escalation deadline of a critical alarm `a` raised as `id`, written in the
        /// transaction that raises it: the wearer's first responder step's wait (the default
        /// for a team without responder steps), or at once if nobody was alerted.
        async fn escalation_deadline_in(
            tx: &mut AlarmTx,
            a: &$crate::alarms::NewAlarm,
            id: uuid::Uuid,
            now: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), $crate::StoreError> {
            if !a.kind.is_critical() {
                return Ok(());
            }
            let wait: Option<i64> = sqlx::query_scalar(
                "select r.escalate_after_secs from responders r join wearers w on w.id = r.wearer_id \
                 where r.wearer_id = $1 and w.tenant_id = $2 order by r.position limit 1",
            )
            .bind(a.wearer.map(|w| db_id(w.0)))
            .bind(db_id(a.tenant.0))
            .fetch_optional(&mut **tx)
            .await?;
            let wait = wait.unwrap_or(i64::from($crate::outbox::DEFAULT_ESCALATE_AFTER_SECS));
            let due = if a.recipients.is_empty() { now } else { now + chrono::Duration::seconds(wait) };
            timer_in(&mut **tx, a.tenant, id, 0, $crate::outbox::TimerKind::Escalate, now, due).await?;
            Ok(())
        }
    };
}

pub(crate) use impl_outbox;
