//! The delivery worker: outbox rows become FCM pushes, deadlines become escalations, and the
//! last step becomes a signed POST to the wearer's alarm centre.
//!
//! Everything it does starts from a row it claimed in the database ([`trygg_store::Outbox`]):
//! a push due now, an escalation or receipt deadline that ran out, an alarm-centre delivery.
//! It holds no queue and no timer of its own, so a restart (or a second worker, on another
//! node with PostgreSQL) carries on where it stopped: a claim that was not finished comes back
//! at once when its node starts again (claims carry the node's name), or to another node when
//! its lease runs out; a finished one is never claimed again.
//!
//! Nothing is dropped. A push FCM refuses for good, a recipient without a usable phone, a
//! broken Firebase setup: each is recorded on the alarm, and when no push of a step got through
//! the step's escalation deadline is brought forward, so the next responders (and finally the
//! alarm centre) are alerted instead. Transient failures (429, 5xx, network, no answer within
//! [`WorkerConfig::send_timeout`]) are retried with [`Backoff`], never before FCM's
//! `Retry-After`.
//!
//! Timers have their own loop. On the worst day FCM is slow or hangs, and a deadline must not
//! wait for a send: escalation and the alarm-centre webhook are how an alarm gets through when
//! pushes do not. So one loop claims outbox rows and another claims timers, each with its own
//! slots ([`WorkerConfig::concurrency`]), and neither waits for the tasks it starts: a loop
//! claims what is due as soon as it has a free slot, so one hanging send holds up only its own
//! recipient. [`Worker::pass`] does both once and waits, for tests in virtual time.
//!
//! After an outage the first push FCM accepts brings every waiting row forward. To notice the
//! return without waiting out a long back-off, a critical push failing because FCM is out
//! waits at most [`WorkerConfig::outage_probe`] (and at least the `Retry-After`) before its next
//! try, and is not given up for running out of tries while FCM is out.
//!
//! The engine wakes the worker through [`Worker::waker`] right after it commits an alarm;
//! otherwise the worker polls.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use trygg_core::{AlarmState, TenantId};
use trygg_store::{
    Alarm, EscalateOutcome, Escalation, NewAlarmEvent, OutboxRow, PushToken, Store, Timer, TimerKind,
};

use crate::Backoff;
use crate::client::{FcmClient, RetryCause, SendOutcome, parse_retry_after};
use crate::message::{AlarmPush, Message, MessageBuilder};

/// The header carrying an alarm-centre body's signature: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "x-trygg-signature";

/// How the worker paces itself.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The name claims are recorded under. At start the worker releases what this name still
    /// holds (a previous process's claims), so two running workers must not share it. The
    /// default is unique to this config, and so releases nothing.
    pub node: String,
    /// How often to look for due rows when nobody wakes the worker.
    pub poll_interval: Duration,
    /// How long a claim lasts; an unfinished claim comes back to any worker after it.
    pub lease: Duration,
    /// Most outbox rows (and, separately, timers) handled at once.
    pub batch: u32,
    /// A critical alarm's pushes of a step not confirmed by an app receipt within this time
    /// count as undelivered: the next step is alerted.
    pub receipt_timeout: Duration,
    /// Tries of one push (or one alarm-centre delivery) before it is given up as failed; a
    /// critical push failing because FCM is out (not throttling) keeps trying.
    pub max_attempts: u32,
    /// The delay between tries.
    pub backoff: Backoff,
    /// Most deliveries in flight at once (each one recipient's claimed rows); timers have as
    /// many again of their own.
    pub concurrency: usize,
    /// Longest wait for one FCM send (OAuth2 token included) or alarm-centre POST; a send
    /// without an answer by then is a transient failure, retried like a network error.
    pub send_timeout: Duration,
    /// While FCM fails on its side or cannot be reached, a critical push waiting in back-off
    /// is tried again at most this long after its last try (never before FCM's `Retry-After`),
    /// so FCM's return is noticed within it.
    pub outage_probe: Duration,
    /// Hosts the alarm-centre webhook may reach beyond public https addresses (see
    /// [`webhook`](crate::webhook)).
    pub webhook_allow_hosts: crate::webhook::AllowHosts,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            node: format!("worker-{}", uuid::Uuid::new_v4()),
            poll_interval: Duration::from_millis(250),
            lease: Duration::from_secs(30),
            batch: 64,
            receipt_timeout: Duration::from_secs(30),
            max_attempts: 30,
            backoff: Backoff::default(),
            concurrency: 32,
            send_timeout: Duration::from_secs(4),
            outage_probe: Duration::from_secs(5),
            webhook_allow_hosts: crate::webhook::AllowHosts::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The worker's Prometheus metrics.
#[derive(Debug, Clone, Default)]
pub struct PushMetrics {
    sends: Family<OutcomeLabel, Counter>,
    auth_errors: Counter,
    pushes_failed: Counter,
    escalations: Counter,
    alarm_centre: Family<OutcomeLabel, Counter>,
}

impl PushMetrics {
    /// Creates the metrics and registers them (counters get Prometheus' `_total` suffix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "trygg_push_sends",
            "FCM sends by outcome (delivered, retry, token_invalid, auth_error, permanent)",
            m.sends.clone(),
        );
        registry.register(
            "trygg_push_auth_errors",
            "FCM sends refused because our credentials or the Firebase project setup are broken",
            m.auth_errors.clone(),
        );
        registry.register(
            "trygg_push_failed",
            "Outbox rows given up (no usable token, refused, out of attempts); escalation takes over",
            m.pushes_failed.clone(),
        );
        registry.register("trygg_push_escalations", "Alarms escalated to a next step", m.escalations.clone());
        registry.register(
            "trygg_push_alarm_centre",
            "Alarm-centre webhook deliveries by outcome (delivered, retry, failed, none)",
            m.alarm_centre.clone(),
        );
        m
    }

    /// How many sends FCM refused for credential or project-setup reasons.
    pub fn auth_errors(&self) -> u64 {
        self.auth_errors.get()
    }
}

/// Pushes outbox rows, fires deadlines and alerts alarm centres. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    fcm: Option<FcmClient>,
    /// The alarm-centre client: no redirects, public addresses only.
    webhook: reqwest::Client,
    messages: MessageBuilder,
    config: WorkerConfig,
    metrics: PushMetrics,
    /// Wakes the push loop: new outbox rows, or retries brought forward.
    wake: Arc<Notify>,
    /// Wakes the timer loop: a deadline brought forward.
    timer_wake: Notify,
    /// Deliveries in flight at most ([`WorkerConfig::concurrency`]).
    delivery_slots: Arc<Semaphore>,
    /// Timers in flight at most, apart from deliveries so that no send holds one up.
    timer_slots: Arc<Semaphore>,
    /// Outbox rows a task of this worker is delivering. Such a row can be claimed again
    /// (`hasten_retries` makes every waiting row due, in-flight ones included; a delivery
    /// slower than the lease loses its claim) and must not then be sent twice.
    in_flight: Mutex<HashSet<i64>>,
    /// FCM failed on its side or could not be reached since the last accepted push: rows
    /// are backing off, and the next accepted push brings them all forward.
    outage: AtomicBool,
}

/// What one pass of the worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Outbox rows handled.
    pub pushes: usize,
    /// Timers handled.
    pub timers: usize,
}

impl Worker {
    /// A worker on `store`. Without `fcm` (no credentials configured) push is off: every
    /// outbox row fails at once and alarms escalate to the alarm centre.
    pub fn new(
        store: Arc<dyn Store>,
        fcm: Option<FcmClient>,
        config: WorkerConfig,
        metrics: PushMetrics,
    ) -> Self {
        let slots = config.concurrency.clamp(1, Semaphore::MAX_PERMITS);
        let inner = Inner {
            store,
            fcm,
            webhook: crate::webhook::client(&config.webhook_allow_hosts),
            messages: MessageBuilder::default(),
            config,
            metrics,
            wake: Arc::new(Notify::new()),
            timer_wake: Notify::new(),
            delivery_slots: Arc::new(Semaphore::new(slots)),
            timer_slots: Arc::new(Semaphore::new(slots)),
            in_flight: Mutex::new(HashSet::new()),
            outage: AtomicBool::new(false),
        };
        Self { inner: Arc::new(inner) }
    }

    /// `notify_one()` on this after committing outbox rows makes the worker look at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.inner.wake.clone()
    }

    /// Runs until `shutdown` resolves: one loop claims due outbox rows, another due timers, each
    /// starting a task per claim as soon as it has a free slot and never waiting for the tasks
    /// it started. First it releases the claims its node's previous process left (they would
    /// otherwise wait out their lease); claims in progress at shutdown come back at the next
    /// start, or after their lease to another node.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let node = &self.inner.config.node;
        match self.inner.store.release_claims(node, Utc::now()).await {
            Ok(0) => {}
            Ok(released) => tracing::warn!(
                released,
                node,
                "Released the claims this node's previous process left unfinished; they go out now"
            ),
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                node,
                "Push worker could not release its previous claims; they come back after their lease"
            ),
        }
        tokio::select! {
            () = shutdown => {}
            () = self.inner.clone().keep_claiming(Lane::Pushes) => {}
            () = self.inner.clone().keep_claiming(Lane::Timers) => {}
        }
    }

    /// One pass at `now` (virtual time, for tests and tools): claims the due outbox rows and
    /// timers, handles them concurrently and waits for all of them.
    pub async fn pass(&self, now: DateTime<Utc>) -> anyhow::Result<Pass> {
        let mut tasks = JoinSet::new();
        let clock = Clock::At(now);
        let pushes = self.inner.claim(Lane::Pushes, clock, &mut tasks).await?;
        let timers = self.inner.claim(Lane::Timers, clock, &mut tasks).await?;
        while let Some(done) = tasks.join_next().await {
            report(done?);
        }
        Ok(Pass { pushes, timers })
    }
}

/// The two kinds of claimed work, each with its own loop, slots and wake-up: pushes wait on FCM,
/// timers (escalation, receipt and alarm-centre deadlines) must not.
#[derive(Debug, Clone, Copy)]
enum Lane {
    Pushes,
    Timers,
}

/// Where a task reads the time: the wall clock when running, a pass's instant when a test
/// drives the worker through virtual time.
#[derive(Debug, Clone, Copy)]
enum Clock {
    Wall,
    At(DateTime<Utc>),
}

impl Clock {
    fn now(self) -> DateTime<Utc> {
        match self {
            Self::Wall => Utc::now(),
            Self::At(now) => now,
        }
    }
}

/// Logs a task's failure: the row's (or timer's) lease brings it back; the error is for the operator.
fn report(done: anyhow::Result<()>) {
    if let Err(error) = done {
        tracing::error!(
            error = format!("{error:#}"),
            "Push worker could not finish a row; it comes back after its lease"
        );
    }
}

/// Takes outbox rows out of [`Inner::in_flight`] when their delivery task ends, however it ends.
struct InFlight {
    inner: Arc<Inner>,
    ids: Vec<i64>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = self.inner.in_flight.lock().expect("in-flight set lock poisoned");
        for id in &self.ids {
            in_flight.remove(id);
        }
    }
}

impl Inner {
    /// Claims and starts `lane`'s due work until the worker is dropped, sleeping for the poll
    /// interval (or until woken) whenever nothing is due.
    async fn keep_claiming(self: Arc<Self>, lane: Lane) {
        let wake = match lane {
            Lane::Pushes => &self.wake,
            Lane::Timers => &self.timer_wake,
        };
        let mut tasks = JoinSet::new();
        loop {
            while let Some(done) = tasks.try_join_next() {
                match done {
                    Ok(done) => report(done),
                    Err(error) => tracing::error!(%error, ?lane, "Push worker task panicked"),
                }
            }
            let claimed = match self.claim(lane, Clock::Wall, &mut tasks).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        ?lane,
                        "Push worker claim failed; retrying"
                    );
                    0
                }
            };
            if claimed == 0 {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
        }
    }

    /// Claims `lane`'s due work, no more than there are free slots (a claim waiting for a slot
    /// would use up its lease), and spawns one task per recipient (outbox rows, so a recipient's
    /// technical alerts go out as one bundle) or per timer. Waits only for the first free slot.
    async fn claim(
        self: &Arc<Self>,
        lane: Lane,
        clock: Clock,
        tasks: &mut JoinSet<anyhow::Result<()>>,
    ) -> anyhow::Result<usize> {
        let slots = match lane {
            Lane::Pushes => &self.delivery_slots,
            Lane::Timers => &self.timer_slots,
        };
        let mut first = Some(slots.clone().acquire_owned().await?);
        let room = u32::try_from(1 + slots.available_permits()).unwrap_or(u32::MAX).min(self.config.batch);
        let (now, lease) = (clock.now(), self.config.lease);
        match lane {
            Lane::Pushes => {
                let rows = self.store.claim_outbox(&self.config.node, now, lease, room).await?;
                let claimed = rows.len();
                let mut per_recipient: HashMap<(TenantId, uuid::Uuid), Vec<OutboxRow>> = HashMap::new();
                {
                    let mut in_flight = self.in_flight.lock().expect("in-flight set lock poisoned");
                    for row in rows {
                        if in_flight.insert(row.id) {
                            per_recipient.entry((row.tenant, row.recipient)).or_default().push(row);
                        } else {
                            // Hastened or out of lease while a task still delivers it: that task settles it.
                            tracing::debug!(
                                row = row.id,
                                "Outbox row claimed again while in flight; left to its task"
                            );
                        }
                    }
                }
                for ((_, recipient), rows) in per_recipient {
                    let slot = match first.take() {
                        Some(slot) => slot,
                        None => slots.clone().acquire_owned().await?,
                    };
                    let guard = InFlight { inner: self.clone(), ids: rows.iter().map(|r| r.id).collect() };
                    tasks.spawn(async move {
                        let _slot = slot;
                        let result = guard.inner.deliver(rows, clock).await;
                        result.with_context(|| format!("outbox rows of {recipient}"))
                    });
                }
                Ok(claimed)
            }
            Lane::Timers => {
                let timers = self.store.claim_timers(&self.config.node, now, lease, room).await?;
                let claimed = timers.len();
                for timer in timers {
                    let slot = match first.take() {
                        Some(slot) => slot,
                        None => slots.clone().acquire_owned().await?,
                    };
                    let inner = self.clone();
                    tasks.spawn(async move {
                        let _slot = slot;
                        let id = timer.id;
                        inner.fire(timer, clock).await.with_context(|| format!("alarm timer {id}"))
                    });
                }
                Ok(claimed)
            }
        }
    }
}

/// How the sends of one outbox row went.
#[derive(Debug, Default)]
struct RowResult {
    /// A message for it was built or sent to at least one phone.
    attempted: bool,
    delivered: usize,
    /// Some send failed transiently: try the row again.
    retry: bool,
    /// Some send failed because FCM is out (failing on its side or unreachable), not throttling.
    outage: bool,
    /// The longest `Retry-After` FCM asked for.
    retry_after: Option<Duration>,
    last_error: Option<String>,
}

impl Inner {
    /// Pushes the claimed rows of one recipient: each critical alarm in its own message, the
    /// technical alerts bundled into one message per phone.
    async fn deliver(&self, rows: Vec<OutboxRow>, clock: Clock) -> anyhow::Result<()> {
        let store = &self.store;
        let (mut critical, mut technical) = (Vec::new(), Vec::new());
        for row in rows {
            let Some(alarm) = store.alarm(row.tenant, row.alarm, None).await? else {
                store.outbox_failed(row.id, "alarm not found").await?;
                continue;
            };
            // A repeat of an acknowledged alarm is pushed to the one who has it ("trycker igen").
            let repeat_for_holder = alarm.state == AlarmState::Acknowledged
                && alarm.acknowledged.as_ref().is_some_and(|a| a.user == row.recipient);
            if !matches!(alarm.state, AlarmState::Raised | AlarmState::Notified) && !repeat_for_holder {
                // Someone has it: further pushes would only alarm staff for nothing.
                store.outbox_failed(row.id, &format!("not pushed: the alarm is {}", alarm.state)).await?;
                continue;
            }
            if alarm.kind.is_technical() {
                technical.push((row, alarm));
            } else {
                critical.push(vec![(row, alarm)]);
            }
        }
        for group in critical.into_iter().chain((!technical.is_empty()).then_some(technical)) {
            self.deliver_group(&group, clock).await?;
        }
        Ok(())
    }

    /// Sends one message per phone of the group's recipient covering every row of the group
    /// that phone has not had yet, then settles each row.
    async fn deliver_group(&self, group: &[(OutboxRow, Alarm)], clock: Clock) -> anyhow::Result<()> {
        let store = &self.store;
        let now = clock.now();
        let Some(fcm) = &self.fcm else {
            for (row, alarm) in group {
                self.give_up(row, alarm, "push is off: no FCM credentials configured", true, now).await?;
            }
            return Ok(());
        };
        let (tenant, recipient) = (group[0].0.tenant, group[0].0.recipient);
        // The phones a row already reached (a row resumed after a crash) do not get it again.
        let mut already = Vec::with_capacity(group.len());
        let mut pushes = Vec::with_capacity(group.len());
        for (row, alarm) in group {
            already.push(store.outbox_tokens_sent(row.id).await?);
            pushes.push(self.alarm_push(alarm).await?);
        }
        let mut results: Vec<RowResult> = group.iter().map(|_| RowResult::default()).collect();
        for token in store.active_push_tokens(tenant, recipient).await? {
            let due: Vec<usize> = (0..group.len()).filter(|&i| !already[i].contains(&token.token)).collect();
            if due.is_empty() {
                continue;
            }
            let bundle: Vec<AlarmPush> = due
                .iter()
                .map(|&i| AlarmPush { push_token: token.token.clone(), ..pushes[i].clone() })
                .collect();
            let outcome = match self.message(&bundle, clock.now()) {
                Ok(message) => self.send(fcm, &message).await,
                Err(error) => {
                    for &i in &due {
                        let (row, _) = &group[i];
                        let detail = format!("recipient {}, step {}: {error}", row.recipient, row.step);
                        event(store.as_ref(), row, "push_failed", detail, now).await?;
                        (results[i].attempted, results[i].last_error) = (true, Some(error.clone()));
                    }
                    continue;
                }
            };
            self.metrics.sends.get_or_create(&OutcomeLabel { outcome: outcome.label() }).inc();
            // After the send, which may have taken up to the send timeout.
            let now = clock.now();
            for &i in &due {
                self.record(&group[i].0, &token, &outcome, &mut results[i], now).await?;
            }
        }
        let now = clock.now();
        for (((row, alarm), result), already) in group.iter().zip(results).zip(&already) {
            self.settle(row, alarm, result, !already.is_empty(), now).await?;
        }
        Ok(())
    }

    /// One FCM send, given up after [`WorkerConfig::send_timeout`]: a hanging FCM (or token
    /// endpoint) is a transient failure like a broken connection, never a task that holds its
    /// rows and a slot until the lease runs out.
    async fn send(&self, fcm: &FcmClient, message: &Message) -> SendOutcome {
        let limit = self.config.send_timeout;
        match tokio::time::timeout(limit, fcm.send(message)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(timeout_ms, "FCM did not answer in time; the push will be retried");
                let detail = format!("no answer from FCM within {timeout_ms} ms");
                SendOutcome::Retry { cause: RetryCause::Network, retry_after: None, detail }
            }
        }
    }

    /// After the sends: the row is sent, retried later, or given up (escalation takes over).
    async fn settle(
        &self,
        row: &OutboxRow,
        alarm: &Alarm,
        result: RowResult,
        reached_before: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let store = &self.store;
        if !result.attempted && !reached_before {
            return self.give_up(row, alarm, "the recipient has no active push token", true, now).await;
        }
        // A row resumed after a crash may have reached every phone already: notify all the same.
        if result.delivered > 0 || reached_before {
            self.notified(row, alarm, now).await?;
        }
        // Giving up because FCM is out would swallow the alarm the moment FCM is back; escalation
        // goes on meanwhile, and acknowledging the alarm ends its pushes.
        let waits_for_fcm = result.outage && alarm.kind.is_critical();
        match result.retry {
            true if row.attempts + 1 < self.config.max_attempts || waits_for_fcm => {
                let delay = self.retry_delay(row.attempts, waits_for_fcm, result.retry_after);
                let due = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                let error = result.last_error.unwrap_or_default();
                store.outbox_retry(row.id, due, &error).await?;
                tracing::info!(alarm = %row.alarm, attempt = row.attempts + 1, delay_ms = delay.as_millis() as u64, %error, "Push will be retried");
                Ok(())
            }
            _ if result.delivered > 0 || reached_before => {
                store.outbox_sent(row.id).await?;
                Ok(())
            }
            _ => {
                let error = result.last_error.unwrap_or_else(|| "no push could be sent".to_owned());
                // Each failed send is already on the alarm's log.
                self.give_up(row, alarm, &error, false, now).await
            }
        }
    }

    /// How long a row (or alarm-centre delivery) waits before its next try: its back-off, but
    /// for a critical push while FCM is out at most [`WorkerConfig::outage_probe`], so that
    /// FCM's return is noticed that soon and every waiting row brought forward; never less than
    /// FCM's `Retry-After`.
    fn retry_delay(&self, attempts: u32, probe: bool, retry_after: Option<Duration>) -> Duration {
        let backoff = self.config.backoff.delay(attempts, None, &mut rand::thread_rng());
        let backoff = if probe { backoff.min(self.config.outage_probe) } else { backoff };
        backoff.max(retry_after.unwrap_or_default())
    }

    /// Records one send's outcome on the alarm and on the token.
    async fn record(
        &self,
        row: &OutboxRow,
        token: &PushToken,
        outcome: &SendOutcome,
        result: &mut RowResult,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let store = &self.store;
        result.attempted = true;
        let to = format!("recipient {} ({}), step {}", row.recipient, token.platform, row.step);
        let (kind, detail) = match outcome {
            SendOutcome::Delivered { .. } => {
                store.outbox_token_sent(row.id, &token.token, now).await?;
                if self.outage.swap(false, Ordering::SeqCst) {
                    let hastened = store.hasten_retries(now).await?;
                    tracing::info!(hastened, "FCM accepts pushes again: retrying the waiting ones now");
                    self.wake.notify_one();
                }
                result.delivered += 1;
                ("push_sent", to)
            }
            SendOutcome::Retry { retry_after, detail, cause } => {
                if !matches!(cause, RetryCause::Throttled) {
                    self.outage.store(true, Ordering::SeqCst);
                    result.outage = true;
                }
                result.retry = true;
                result.retry_after = result.retry_after.max(*retry_after);
                result.last_error = Some(detail.clone());
                ("push_retry", format!("{to}, attempt {}: {detail}", row.attempts + 1))
            }
            SendOutcome::TokenInvalid { cause, detail } => {
                store.disable_push_token(&token.token, now).await?;
                tracing::info!(recipient = %row.recipient, ?cause, "Disabled a dead push token");
                result.last_error = Some(detail.clone());
                ("push_failed", format!("{to}: token disabled ({cause:?}): {detail}"))
            }
            SendOutcome::AuthError { cause, detail } => {
                self.metrics.auth_errors.inc();
                tracing::error!(alarm = %row.alarm, ?cause, %detail, "PUSH IS BROKEN: FCM refused our credentials or the Firebase project setup; alarms escalate instead");
                result.last_error = Some(detail.clone());
                ("push_failed", format!("{to}: FCM setup error ({cause:?}): {detail}"))
            }
            SendOutcome::Permanent { detail, .. } => {
                result.last_error = Some(detail.clone());
                ("push_failed", format!("{to}: {detail}"))
            }
        };
        event(store.as_ref(), row, kind, detail, now).await
    }

    /// The first accepted push of an alarm moves it to `notified`; a critical alarm's step
    /// gets its receipt deadline.
    async fn notified(&self, row: &OutboxRow, alarm: &Alarm, now: DateTime<Utc>) -> anyhow::Result<()> {
        // False when another push of the alarm got there first.
        if alarm.state == AlarmState::Raised && self.store.mark_notified(row.tenant, row.alarm, now).await? {
            tracing::debug!(alarm = %row.alarm, "Alarm notified");
        }
        if alarm.kind.is_critical() {
            let due = now
                + chrono::Duration::from_std(self.config.receipt_timeout).unwrap_or(chrono::Duration::MAX);
            self.store.add_timer(row.tenant, row.alarm, row.step, TimerKind::Receipt, due).await?;
        }
        Ok(())
    }

    /// The row cannot be pushed: record it (a `push_failed` event if `log_event`), and if no
    /// push of its step got through, bring the step's escalation forward so the next
    /// responders are alerted now.
    async fn give_up(
        &self,
        row: &OutboxRow,
        alarm: &Alarm,
        error: &str,
        log_event: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.metrics.pushes_failed.inc();
        if self.store.outbox_failed(row.id, error).await? {
            tracing::warn!(alarm = %alarm.id, recipient = %row.recipient, step = row.step, %error, "Push given up; escalation takes over");
            if log_event {
                let detail = format!("recipient {}, step {}: {error}", row.recipient, row.step);
                event(self.store.as_ref(), row, "push_failed", detail, now).await?;
            }
            if self.store.hasten_escalation(row.alarm, row.step, now).await? {
                self.timer_wake.notify_one();
            }
        }
        Ok(())
    }

    async fn alarm_push(&self, alarm: &Alarm) -> anyhow::Result<AlarmPush> {
        let settings = self.store.push_settings(alarm.tenant).await?;
        let wearer_name = if settings.wearer_name_in_push {
            match alarm.wearer {
                Some(w) => self.store.wearer(alarm.tenant, w).await?.map(|w| w.fields.name),
                None => None,
            }
        } else {
            None
        };
        Ok(AlarmPush {
            alarm_id: alarm.id.to_string(),
            kind: alarm.kind,
            position: alarm.position,
            push_token: String::new(),
            wearer_name,
        })
    }

    /// One message for `bundle` (one phone): a critical alarm alone, or technical alerts bundled.
    fn message(&self, bundle: &[AlarmPush], now: DateTime<Utc>) -> Result<Message, String> {
        let mut builder = self.messages.clone();
        builder.include_wearer_name = bundle.iter().any(|p| p.wearer_name.is_some());
        let built = match bundle {
            [alarm] if !alarm.kind.is_technical() => builder.critical(alarm, now),
            _ => builder.technical(bundle, now),
        };
        built.map_err(|e| e.to_string())
    }

    async fn fire(&self, timer: Timer, clock: Clock) -> anyhow::Result<()> {
        match timer.kind {
            TimerKind::Escalate | TimerKind::Receipt => self.escalate(timer, clock.now()).await,
            TimerKind::AlarmCentre => self.alarm_centre(timer, clock).await,
        }
    }

    async fn escalate(&self, timer: Timer, now: DateTime<Utc>) -> anyhow::Result<()> {
        let store = self.store.as_ref();
        let Some(alarm) = store.alarm(timer.tenant, timer.alarm, None).await? else {
            store.timer_failed(timer.id, "alarm not found").await?;
            return Ok(());
        };
        let step = timer.step + 1;
        let index = usize::try_from(step)?;
        let next = match store.alarm_recipients(alarm.tenant, alarm.wearer, index).await? {
            Some(recipients) => {
                let wait = match alarm.wearer {
                    Some(w) => store
                        .responders(alarm.tenant, w)
                        .await?
                        .steps
                        .get(index)
                        .map(|s| s.escalate_after_secs),
                    None => None,
                };
                let wait = wait.unwrap_or(trygg_store::outbox::DEFAULT_ESCALATE_AFTER_SECS);
                Escalation::Responders { step, recipients, escalate_after: Duration::from_secs(wait.into()) }
            }
            None => Escalation::AlarmCentre { step },
        };
        let outcome = store.escalate(&timer, &next, now).await?;
        if outcome == EscalateOutcome::Escalated {
            self.metrics.escalations.inc();
            tracing::warn!(alarm = %alarm.id, step, reason = timer.kind.as_str(), "Alarm escalated");
            // The next step's pushes, or the alarm centre's timer, due now.
            self.wake.notify_one();
            self.timer_wake.notify_one();
        }
        Ok(())
    }

    async fn alarm_centre(&self, timer: Timer, clock: Clock) -> anyhow::Result<()> {
        let store = self.store.as_ref();
        let now = clock.now();
        let Some(alarm) = store.alarm(timer.tenant, timer.alarm, None).await? else {
            store.timer_failed(timer.id, "alarm not found").await?;
            return Ok(());
        };
        let label = |outcome| OutcomeLabel { outcome };
        if !matches!(alarm.state, AlarmState::Raised | AlarmState::Notified) {
            store.timer_done(timer.id).await?;
            return Ok(());
        }
        let url = store.alarm_centre_url(alarm.tenant, alarm.wearer).await?;
        let secret = store.push_settings(alarm.tenant).await?.alarm_centre_secret;
        let (url, secret) = match (url, secret) {
            (Some(url), Some(secret)) => (url, secret),
            (url, _) => {
                let why = if url.is_none() {
                    "no responder step left and no alarm centre configured"
                } else {
                    "the tenant has no alarm-centre webhook secret"
                };
                self.metrics.alarm_centre.get_or_create(&label("none")).inc();
                tracing::error!(alarm = %alarm.id, why, "Alarm unacknowledged and nobody left to alert");
                if store.timer_failed(timer.id, why).await? {
                    alarm_event(store, &alarm, "escalation_exhausted", why.to_owned(), now).await?;
                }
                return Ok(());
            }
        };
        if let Some(why) = crate::webhook::check_url(&url, &self.config.webhook_allow_hosts) {
            // Saved before the rules were what they are, or by hand in the database: never called.
            self.metrics.alarm_centre.get_or_create(&label("failed")).inc();
            let error = format!("alarm centre URL refused: {why}");
            tracing::error!(alarm = %alarm.id, %error, "Alarm centre webhook not called");
            if store.timer_failed(timer.id, &error).await? {
                alarm_event(store, &alarm, "alarm_centre_failed", error, now).await?;
            }
            return Ok(());
        }
        let body = alarm_centre_body(&alarm, timer.step, now);
        let sent = self
            .webhook
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(secret.as_bytes(), now.timestamp(), &body))
            .body(body)
            .timeout(self.config.send_timeout)
            .send()
            .await;
        let now = clock.now();
        let (retry_after, error) = match sent {
            Ok(response) if response.status().is_success() => {
                self.metrics.alarm_centre.get_or_create(&label("delivered")).inc();
                if store.timer_done(timer.id).await? {
                    let detail = format!("HTTP {}", response.status().as_u16());
                    alarm_event(store, &alarm, "alarm_centre_notified", detail, now).await?;
                }
                return Ok(());
            }
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                let retryable = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
                (retryable.then_some(retry_after), format!("HTTP {}", status.as_u16()))
            }
            Err(error) => (Some(None), error.to_string()),
        };
        match retry_after {
            Some(retry_after) if timer.attempts + 1 < self.config.max_attempts => {
                self.metrics.alarm_centre.get_or_create(&label("retry")).inc();
                let delay = self.retry_delay(timer.attempts, false, retry_after);
                let due = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                store.timer_retry(timer.id, due, &error).await?;
                let detail = format!("attempt {}: {error}", timer.attempts + 1);
                alarm_event(store, &alarm, "alarm_centre_retry", detail, now).await?;
            }
            _ => {
                self.metrics.alarm_centre.get_or_create(&label("failed")).inc();
                tracing::error!(alarm = %alarm.id, %error, "Alarm centre webhook failed for good");
                if store.timer_failed(timer.id, &error).await? {
                    alarm_event(store, &alarm, "alarm_centre_failed", error, now).await?;
                }
            }
        }
        Ok(())
    }
}

async fn event(
    store: &dyn Store,
    row: &OutboxRow,
    kind: &str,
    detail: String,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let event = NewAlarmEvent { at: now, kind: kind.to_owned(), actor: None, position: None, detail };
    store.log_event(row.tenant, row.alarm, &event).await?;
    Ok(())
}

async fn alarm_event(
    store: &dyn Store,
    alarm: &Alarm,
    kind: &str,
    detail: String,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let event = NewAlarmEvent { at: now, kind: kind.to_owned(), actor: None, position: None, detail };
    store.log_event(alarm.tenant, alarm.id, &event).await?;
    Ok(())
}

/// The JSON an alarm centre receives: ids, kind, state, times and the position with its age and
/// accuracy. No name: the centre looks the wearer up in its own register by `wearer_id`.
fn alarm_centre_body(alarm: &Alarm, step: u32, now: DateTime<Utc>) -> Vec<u8> {
    let position = alarm.position.map(|(p, time)| {
        json!({"lat": p.lat, "lon": p.lon, "accuracy_m": p.accuracy_m, "time": time,
               "age_secs": (now - time).num_seconds().max(0)})
    });
    let body = json!({
        "type": "trygg.alarm.escalated",
        "alarm_id": alarm.id,
        "tenant_id": alarm.tenant.0,
        "wearer_id": alarm.wearer.map(|w| w.0),
        "device_id": alarm.device.as_ref().map(|d| d.as_str()),
        "kind": alarm.kind.as_str(),
        "critical": alarm.kind.is_critical(),
        "state": alarm.state.to_string(),
        "raised_at": alarm.raised_at,
        "escalation_step": step,
        "position": position,
        "sent_at": now,
    });
    serde_json::to_vec(&body).expect("JSON values always serialise")
}

/// `t=<unix seconds>,v1=<hex>`: the time of sending and the HMAC-SHA256 under `secret` of
/// `"<t>.<body>"`, as sent in [`SIGNATURE_HEADER`]. The time is signed so a receiver can refuse a
/// replayed request.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body).finalize().into_bytes()))
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Whether `header` (a [`SIGNATURE_HEADER`] value) is `body`'s signature under `secret`, made
/// within `tolerance_secs` of `now` (unix seconds), compared in constant time. What an alarm
/// centre (or a test) runs on each request.
pub fn verify(secret: &[u8], body: &[u8], header: &str, now: i64, tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t.filter(|t| (now - t).abs() <= tolerance_secs) else { return false };
    signatures.iter().any(|s| mac(secret, t, body).verify_slice(s).is_ok())
}
