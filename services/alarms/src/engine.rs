//! The engine loop: committed fixes and device alarms in, alarms (with outbox rows) out.
//!
//! Ingest hands every commit to [`EngineSink`], which never blocks: it queues the data for the
//! engine task, and if the queue is full it only raises a flag, because everything queued is
//! already in the database. The task takes what is queued as one batch and runs it through
//! [`Engine::process`]; whenever the flag is up (a full queue, a failed commit) and at start it
//! runs [`Engine::recover`], which finds in the database every fix newer than a device's stored
//! zone state and every device alarm not yet handled. Both paths end in one
//! [`Alarms::engine_commit`](trygg_store::Alarms::engine_commit) per batch, and the in-memory zone
//! states are updated only after it succeeds. A device's state is stored when it decides
//! something new and otherwise every few minutes of fix time; what lies between is rebuilt by
//! replaying the fixes since, which gives the same decisions.
//!
//! Device alarms are always read back from the database ([`pending_device_alarms`]), never taken
//! from the queue: whichever path sees one first raises it and marks it handled in the same
//! transaction, so a restart in the middle raises nothing twice.
//!
//! Fixes of one device are evaluated in time order; a fix older than the newest one evaluated (a
//! buffered upload arriving late) is stored and shown in the trail but changes no zone state.
//!
//! [`pending_device_alarms`]: trygg_store::Alarms::pending_device_alarms

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use trygg_core::{AlarmKind, DeviceId, Fix, TenantId, WearerId};
use trygg_geofence::{DeviceState, Event, EventKind, Policy};
use trygg_ingest::{Committed, CommittedSink};
use trygg_store::{
    EngineCommit, NewAlarm, PendingDeviceAlarm, Position, Signal, SignalOutcome, Store, ZoneStateRow,
};

use crate::{EngineError, ZoneIndexes};

/// Most commits taken from the queue into one batch.
const MAX_BATCH: usize = 1024;
/// How long after a failure the engine tries again from the database.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A device's zone state is stored when it decides something new (a side confirmed, an alarm
/// raised or ended), and otherwise at least this often in fix time, which bounds how many of its
/// fixes a restart replays. Storing every fix's state would double the writes of ingest.
const STORE_STATE_EVERY: chrono::Duration = chrono::Duration::minutes(5);
/// Fixes read per page when catching up from the database.
const RECOVERY_PAGE: u32 = 5000;
/// How often the engine looks for device alarms committed but never handed to it.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How far back recovery looks for fixes of devices the engine has never evaluated (devices
/// with a stored zone state are caught up from it, however long ago that was).
const RECOVERY_WINDOW: chrono::Duration = chrono::Duration::hours(6);

/// The fixes of one device in a batch.
#[derive(Debug)]
struct DeviceFixes {
    tenant: TenantId,
    wearer: Option<WearerId>,
    fixes: Vec<Fix>,
}

/// The alarm engine's state: the zone state of every device, as stored.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    zones: Arc<ZoneIndexes>,
    states: HashMap<DeviceId, DeviceState>,
    /// The `last_fix_at` of each device's stored state.
    stored_at: HashMap<DeviceId, DateTime<Utc>>,
    /// Woken after a commit that raised an alarm: the push worker, so a push does not wait
    /// for its next poll.
    raised: Option<Arc<Notify>>,
}

impl Engine {
    /// Loads every device's stored zone state.
    pub async fn load(store: Arc<dyn Store>, zones: Arc<ZoneIndexes>) -> Result<Self, EngineError> {
        let (mut states, mut stored_at) = (HashMap::new(), HashMap::new());
        for row in store.zone_states().await? {
            let state: DeviceState = serde_json::from_str(&row.state)
                .map_err(|e| EngineError::Corrupt(format!("stored zone state of {}: {e}", row.device)))?;
            stored_at.insert(row.device.clone(), row.last_fix_at);
            states.insert(row.device, state);
        }
        Ok(Self { store, zones, states, stored_at, raised: None })
    }

    /// Wakes `waker` after every commit that raised an alarm.
    pub fn wake_on_raise(mut self, waker: Arc<Notify>) -> Self {
        self.raised = Some(waker);
        self
    }

    /// Runs one batch of committed data through the engine and stores what it leads to.
    pub async fn process(
        &mut self,
        batch: Vec<Committed>,
        now: DateTime<Utc>,
    ) -> Result<Vec<SignalOutcome>, EngineError> {
        let mut fixes: BTreeMap<DeviceId, DeviceFixes> = BTreeMap::new();
        let mut device_alarms = false;
        for data in batch {
            let (tenant, wearer, device, new) = match data {
                Committed::Fixes { tenant, wearer, device, fixes } => (tenant, wearer, device, fixes),
                Committed::Alarm { tenant, wearer, device, fix, .. } => {
                    device_alarms = true;
                    (tenant, wearer, device, fix.into_iter().collect())
                }
            };
            fixes
                .entry(device)
                .or_insert(DeviceFixes { tenant, wearer, fixes: Vec::new() })
                .fixes
                .extend(new);
        }
        let pending = if device_alarms { self.store.pending_device_alarms().await? } else { Vec::new() };
        self.run(pending, fixes, now).await
    }

    /// Evaluates everything in the database the engine has not handled: device alarms not yet
    /// turned into alarms and fixes newer than their device's stored zone state.
    pub async fn recover(&mut self, now: DateTime<Utc>) -> Result<Vec<SignalOutcome>, EngineError> {
        // Device alarms first: an SOS must not wait behind a backlog of fixes.
        let pending = self.store.pending_device_alarms().await?;
        let mut outcomes = self.run(pending, BTreeMap::new(), now).await?;
        // Then the fixes, a page at a time, so a long outage's backlog is never one huge read.
        let mut owners: HashMap<DeviceId, Option<(TenantId, Option<WearerId>)>> = HashMap::new();
        let mut after: Option<(DeviceId, DateTime<Utc>)> = None;
        loop {
            let cursor = after.as_ref().map(|(d, t)| (d, *t));
            let page = self.store.unevaluated_fixes(now - RECOVERY_WINDOW, cursor, RECOVERY_PAGE).await?;
            let full = page.len() == RECOVERY_PAGE as usize;
            after = page.last().map(|(d, f)| (d.clone(), f.time));
            let mut fixes: BTreeMap<DeviceId, DeviceFixes> = BTreeMap::new();
            for (device, fix) in page {
                if let Some(entry) = fixes.get_mut(&device) {
                    entry.fixes.push(fix);
                    continue;
                }
                let owner = match owners.get(&device) {
                    Some(owner) => *owner,
                    None => {
                        let owner = self.store.device_auth(&device).await?.map(|a| (a.tenant, a.wearer));
                        owners.insert(device.clone(), owner);
                        owner
                    }
                };
                // A device deleted since is skipped: it has nobody to alarm for.
                let Some((tenant, wearer)) = owner else { continue };
                fixes.insert(device, DeviceFixes { tenant, wearer, fixes: vec![fix] });
            }
            outcomes.extend(self.run(Vec::new(), fixes, now).await?);
            if !full {
                break;
            }
        }
        if !outcomes.is_empty() {
            tracing::info!(signals = outcomes.len(), "Recovered alarms from the database");
        }
        Ok(outcomes)
    }

    /// Raises the device alarms that are in the database but were never handed to the engine
    /// (a device that disconnected while its alarm was being committed drops the request before
    /// ingest hands it over). Cheap: an index on the unhandled ones.
    pub async fn sweep(&mut self, now: DateTime<Utc>) -> Result<Vec<SignalOutcome>, EngineError> {
        let pending = self.store.pending_device_alarms().await?;
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        tracing::warn!(
            alarms = pending.len(),
            "Device alarms committed but never handed to the engine: raising them now"
        );
        self.run(pending, BTreeMap::new(), now).await
    }

    async fn run(
        &mut self,
        pending: Vec<PendingDeviceAlarm>,
        fixes: BTreeMap<DeviceId, DeviceFixes>,
        now: DateTime<Utc>,
    ) -> Result<Vec<SignalOutcome>, EngineError> {
        let mut signals = Vec::new();
        for alarm in pending {
            signals.push(self.device_alarm_signal(alarm).await?);
        }
        // Changed states, and whether each decided something new.
        let mut touched: HashMap<DeviceId, (DeviceState, bool)> = HashMap::new();
        let mut policies: HashMap<TenantId, Policy> = HashMap::new();
        for (device, mut batch) in fixes {
            batch.fixes.sort_by_key(|f| f.time);
            let index = self.zones.get(batch.tenant);
            let policy = match policies.get(&batch.tenant) {
                Some(p) => p.clone(),
                None => {
                    let p = self.policy(batch.tenant).await?;
                    policies.insert(batch.tenant, p.clone());
                    p
                }
            };
            let before = self.states.get(&device).cloned().unwrap_or_default();
            let mut state = before.clone();
            for fix in &batch.fixes {
                for event in policy.evaluate(&index, &device, &mut state, fix) {
                    // The index holds only zones of bound wearers, so an event has a wearer.
                    let Some(wearer) = batch.wearer else { continue };
                    if let Some(signal) = self.zone_signal(batch.tenant, wearer, &device, event, fix).await? {
                        signals.push(signal);
                    }
                }
            }
            if state != before {
                let decided = !before.decides_as(&state);
                touched.insert(device, (state, decided));
            }
        }
        let mut states = Vec::with_capacity(touched.len());
        for (device, (state, decided)) in &touched {
            let Some(last_fix_at) = state.last_time() else { continue };
            let due = self.stored_at.get(device).is_none_or(|at| last_fix_at - *at >= STORE_STATE_EVERY);
            if !(*decided || due) {
                continue;
            }
            let state = serde_json::to_string(state)
                .map_err(|e| EngineError::Corrupt(format!("encoding the zone state of {device}: {e}")))?;
            states.push(ZoneStateRow { device: device.clone(), state, last_fix_at });
        }
        let commit = EngineCommit { states, signals };
        let outcomes = if commit.states.is_empty() && commit.signals.is_empty() {
            Vec::new()
        } else {
            self.store.engine_commit(&commit, now).await?
        };
        for row in &commit.states {
            self.stored_at.insert(row.device.clone(), row.last_fix_at);
        }
        self.states.extend(touched.into_iter().map(|(device, (state, _))| (device, state)));
        if let Some(waker) = &self.raised
            && outcomes.iter().any(|o| matches!(o, SignalOutcome::Raised(_)))
        {
            waker.notify_one();
        }
        for (signal, outcome) in commit.signals.iter().zip(&outcomes) {
            if let (Signal::Raise(a), SignalOutcome::Raised(id)) = (signal, outcome) {
                tracing::info!(alarm = %id, kind = %a.kind, wearer = ?a.wearer, device = ?a.device, recipients = a.recipients.len(), "Alarm raised");
            }
        }
        Ok(outcomes)
    }

    async fn device_alarm_signal(&self, alarm: PendingDeviceAlarm) -> Result<Signal, EngineError> {
        // A person pressed the button: a watch bound to nobody still raises an alarm, keyed by
        // its device and pushed to the tenant's fallback responders.
        if alarm.wearer.is_none() {
            tracing::warn!(device = %alarm.device, kind = %alarm.kind, "Device alarm from a device bound to nobody: alerting the fallback responders");
        }
        // An SOS without a GPS fix is still an alarm: staff get the last known position, with
        // its own time so its age shows, never nothing.
        let (fix, last_known_position) = match alarm.fix {
            Some(fix) => (Some(fix), false),
            None => {
                let last = self.store.recent_fixes(&alarm.device, 1).await?.pop().map(|s| s.fix);
                let found = last.is_some();
                (last, found)
            }
        };
        Ok(Signal::Raise(NewAlarm {
            tenant: alarm.tenant,
            wearer: alarm.wearer,
            device: Some(alarm.device),
            kind: alarm.kind.into(),
            zone: None,
            trigger_time: alarm.time,
            position: fix.as_ref().map(|f| (Position::of(f), f.time)),
            last_known_position,
            recipients: self.store.alarm_recipients(alarm.tenant, alarm.wearer, 0).await?.unwrap_or_default(),
            device_alarm: Some(alarm.id),
        }))
    }

    async fn zone_signal(
        &self,
        tenant: TenantId,
        wearer: WearerId,
        device: &DeviceId,
        event: Event,
        fix: &Fix,
    ) -> Result<Option<Signal>, EngineError> {
        let kind = match event.kind {
            EventKind::Return => {
                return Ok(Some(Signal::Returned {
                    wearer,
                    zone: event.zone.to_string(),
                    at: event.time,
                    position: Position::of(fix),
                }));
            }
            EventKind::Exit => AlarmKind::ZoneExit,
            EventKind::Enter => AlarmKind::ZoneEnter,
        };
        // The index is rebuilt when consent changes, but a consent can lapse by its end date
        // between rebuilds: check it at the time of the fix.
        let consented = self
            .store
            .consents(tenant, Some(wearer))
            .await?
            .iter()
            .any(|c| c.consent.passive_alarms && c.in_force_at(event.time));
        if !consented {
            tracing::warn!(%wearer, zone = %event.zone, "Zone event without consent for passive alarms: no alarm raised");
            return Ok(None);
        }
        Ok(Some(Signal::Raise(NewAlarm {
            tenant,
            wearer: Some(wearer),
            device: Some(device.clone()),
            kind,
            zone: Some(event.zone.to_string()),
            trigger_time: event.time,
            position: Some((Position::of(fix), fix.time)),
            last_known_position: false,
            recipients: self.store.alarm_recipients(tenant, Some(wearer), 0).await?.unwrap_or_default(),
            device_alarm: None,
        })))
    }

    async fn policy(&self, tenant: TenantId) -> Result<Policy, EngineError> {
        match self.store.settings(tenant).await? {
            None => Ok(Policy::default()),
            Some(s) => serde_json::from_str(&s.exit_policy)
                .map_err(|e| EngineError::Corrupt(format!("stored exit policy of {tenant}: {e}"))),
        }
    }

    /// Starts the engine task: it first recovers from the database, then processes what the
    /// returned sink queues, and ends when every sink is dropped and the queue is empty.
    pub fn spawn(mut self, capacity: usize) -> (EngineSink, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel(capacity);
        let lagged = Arc::new(AtomicBool::new(true));
        let passes = Arc::new(AtomicU64::new(0));
        let sink = EngineSink { tx, lagged: lagged.clone(), passes: passes.clone() };
        let task = tokio::spawn(async move {
            let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                passes.fetch_add(1, Ordering::Relaxed);
                if lagged.swap(false, Ordering::SeqCst) {
                    // What waits in the queue is in the database, and recovery reads it there in
                    // time order with the rest. Evaluating it before recovery has succeeded could
                    // take a newer fix before an older one not yet replayed, which would then be
                    // dropped as out of order and its exit missed.
                    let closed = loop {
                        match rx.try_recv() {
                            Ok(_) => {}
                            Err(mpsc::error::TryRecvError::Empty) => break false,
                            Err(mpsc::error::TryRecvError::Disconnected) => break true,
                        }
                    };
                    if let Err(e) = self.recover(Utc::now()).await {
                        tracing::error!(error = %e, "Alarm engine recovery failed; retrying");
                        lagged.store(true, Ordering::SeqCst);
                        if closed {
                            break; // shutting down: the next start recovers
                        }
                        tokio::time::sleep(RETRY_AFTER).await;
                        continue;
                    }
                }
                let first = tokio::select! {
                    next = rx.recv() => match next {
                        Some(first) => first,
                        None => break,
                    },
                    _ = sweep.tick() => {
                        if let Err(e) = self.sweep(Utc::now()).await {
                            tracing::error!(error = %e, "Alarm engine sweep failed; recovering from the database");
                            lagged.store(true, Ordering::SeqCst);
                        }
                        continue;
                    }
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH
                    && let Ok(more) = rx.try_recv()
                {
                    batch.push(more);
                }
                if let Err(e) = self.process(batch, Utc::now()).await {
                    // Everything in the batch is in the database: recovery picks it up.
                    tracing::error!(error = %e, "Alarm engine batch failed; recovering from the database");
                    lagged.store(true, Ordering::SeqCst);
                }
            }
            tracing::info!("Alarm engine stopped");
        });
        (sink, task)
    }
}

/// Ingest's handle on the engine: queues committed data without ever blocking.
#[derive(Debug, Clone)]
pub struct EngineSink {
    tx: mpsc::Sender<Committed>,
    lagged: Arc<AtomicBool>,
    passes: Arc<AtomicU64>,
}

impl EngineSink {
    /// A view of the engine task for its supervisor, which does not keep the queue open.
    pub fn probe(&self) -> EngineProbe {
        EngineProbe { tx: self.tx.downgrade(), passes: self.passes.clone() }
    }
}

/// What a supervisor reads of the engine task: whether it still takes work, how much waits,
/// and a count that moves while it works.
#[derive(Debug, Clone)]
pub struct EngineProbe {
    tx: mpsc::WeakSender<Committed>,
    passes: Arc<AtomicU64>,
}

impl EngineProbe {
    /// The task has ended (its queue is closed): what is handed over now waits for a restart.
    pub fn is_closed(&self) -> bool {
        self.tx.upgrade().is_none_or(|tx| tx.is_closed())
    }

    /// Commits queued for the engine, not yet taken.
    pub fn queued(&self) -> usize {
        self.tx.upgrade().map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    /// Turns of the engine loop so far (a batch or a recovery, whether it succeeded or not).
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }
}

impl CommittedSink for EngineSink {
    fn committed(&self, data: Committed) {
        if self.tx.try_send(data).is_err() {
            // Full (or the engine stopped): the data is in the database; recovery finds it.
            if !self.lagged.swap(true, Ordering::SeqCst) {
                tracing::warn!("Alarm engine queue full; it will catch up from the database");
            }
        }
    }
}
