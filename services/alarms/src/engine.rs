//! The engine loop: committed fixes and device alarms in, alarms (with outbox rows) out.
//!
//! Ingest hands every commit to [`EngineSink`], which never blocks: it queues the data for the
//! engine task, and if the queue is full it only raises a flag, because everything queued is
//! already in the database. The task takes what is queued as one batch and runs it through
//! [`Engine::process`]. At start it runs [`Engine::recover`], which finds in the database every
//! fix newer than a device's stored zone state and every device alarm not yet handled. Whenever
//! the flag is up later (a full queue, a failed commit) it runs [`Engine::catch_up`] instead:
//! the fixes received since shortly before the oldest commit it did not evaluate, in the order
//! received, as the queue would have brought them. Reading from the stored states would read
//! again minutes of every device's fixes the engine has already evaluated (states are stored
//! every few minutes), which under load took longer than the load it was catching up with.
//! Every path ends in one
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
//! **Offline supervision.** Every device bound to a wearer that reports (a fix or a device
//! alarm) arms its `offline` deadline, a row due at the report plus the tenant's
//! `offline_after_secs`, in the same commit as the rest of the batch; the row is written only
//! when its due time moves by a quarter of the threshold, so a device reporting every minute
//! costs a row update every few minutes, not one per fix. [`Engine::supervise`] (every few
//! seconds) reads the rows that are due — an index range, never every device — and asks the
//! database when the device was really last heard (keep-alives of TCP watches update it without
//! passing through the engine): heard since, the row is moved on; silent, one `device_offline`
//! alert is raised and the row marked fired in one transaction, so a restart neither skips nor
//! repeats it. The first report after that closes the alert (`resolved_by_device`).
//!
//! **Battery.** The battery level of each bound device's fixes and keep-alives (3G `LK`, GT06
//! heartbeats, in [`Committed::KeepAlive`]) goes, in time order, through one
//! [`BatteryTrack`](crate::supervision::BatteryTrack) (one alert per discharge, early from the
//! trend, quiet hours); an alert is raised in the batch's commit, and where it stands is a
//! `low_battery` row in the same table: fired while alerted, due in the morning while a low
//! battery waits out the night (then [`Engine::supervise`] raises it), absent when re-armed.
//! Re-arming (a charge) also resolves an alert of that discharge still open, so the next
//! discharge is an alert of its own instead of a silent repeat of a stale one.
//!
//! **Daily test alarm.** Where the tenant names a window, each bound device heard arms a
//! `test_alarm` row due at the end of the first whole window after; a `test` device alarm in a
//! window moves it to the end of the next one (in the commit that records the test, which is
//! stored closed as `test` and pages nobody). A row that comes due raises one
//! `test_alarm_missing` technical alert and moves on a day; a later test alarm resolves it.
//!
//! **Battery-aware reporting.** While the exit policy suspects an exit it has not confirmed
//! ([`DeviceState::awaits_confirmation`]) the device is told to report at the tenant's fast
//! interval, and at its normal one once the exit is confirmed or cleared (or after
//! [`FAST_REPORTING_AT_MOST`](crate::supervision::FAST_REPORTING_AT_MOST) of one suspicion): `UPLOAD` on a watch's open connection, the
//! interval in a native device's ingest answers. Each command is logged on the device.
//!
//! [`pending_device_alarms`]: trygg_store::Alarms::pending_device_alarms

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::supervision::{
    BatteryDecision, BatteryRule, BatteryState, BatteryTrack, DailyHours, Reporting, Tell, reporting_change,
};
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use trygg_core::{
    AlarmKind, Committed, CommittedSink, DeviceAlarmKind, DeviceCommand, DeviceCommands, DeviceId, Fix,
    ReportIntervals, TenantId, WearerId,
};
use trygg_geofence::{DeviceState, Event, EventKind, Policy};
use trygg_store::{
    DEADLINE_LOW_BATTERY, DEADLINE_OFFLINE, DEADLINE_TEST_ALARM, DEFAULT_OFFLINE_AFTER_SECS, DeadlineChange,
    DeviceCommandLog, DueDeadline, EngineCommit, NewAlarm, PendingDeviceAlarm, Position, Protocol,
    ReceivedFix, Signal, SignalOutcome, Store, SupervisionSettings, ZoneStateRow,
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
/// How much further back than the oldest receipt it missed a catch-up reads: the stored time
/// is rounded (SQLite keeps milliseconds), and the clock may step back a little.
const CATCH_UP_MARGIN: chrono::Duration = chrono::Duration::seconds(2);

/// How often a device under an offline alert is looked at again (has it been heard?), for
/// the keep-alives of TCP watches, which reach the database without passing through the engine.
const OFFLINE_RECHECK: chrono::Duration = chrono::Duration::seconds(60);
/// How often an alerted discharge's row comes due (it only waits for a report that re-arms it).
const ALERTED_RECHECK: chrono::Duration = chrono::Duration::days(7);
/// The battery threshold when a tenant has saved no settings.
const DEFAULT_BATTERY_LOW_PCT: u8 = 20;
/// Most due deadlines handled in one supervision pass.
const DEADLINES_PER_PASS: u32 = 500;

/// The fixes (and keep-alive battery levels) of one device in a batch.
#[derive(Debug)]
struct DeviceFixes {
    tenant: TenantId,
    wearer: Option<WearerId>,
    fixes: Vec<Fix>,
    /// Battery levels of keep-alives, with the time they were received.
    keep_alives: Vec<(DateTime<Utc>, u8)>,
}

/// What the engine needs of a tenant's settings, read once per batch or pass.
#[derive(Debug, Clone)]
struct TenantRules {
    policy: Policy,
    battery: BatteryRule,
    offline_after: chrono::Duration,
    /// The daily test-alarm window; `None`: the tenant has no daily test alarm.
    test_window: Option<DailyHours>,
    /// The normal report interval and the one while an exit is suspected, in seconds.
    report_secs: u32,
    report_fast_secs: u32,
}

/// The alarm engine's state: the zone state of every device, as stored.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    zones: Arc<ZoneIndexes>,
    states: HashMap<DeviceId, DeviceState>,
    /// The `last_fix_at` of each device's stored state.
    stored_at: HashMap<DeviceId, DateTime<Utc>>,
    /// The due time of each device's stored offline deadline, as far as this engine wrote it
    /// (empty after a start: each device's first report writes it again).
    offline_due: HashMap<DeviceId, DateTime<Utc>>,
    /// Devices whose offline alert has fired and who have not been heard since.
    offline: HashSet<DeviceId>,
    /// Each device's battery readings and low-battery alert state.
    battery: HashMap<DeviceId, BatteryTrack>,
    /// Devices with a daily test-alarm row (armed or fired).
    test_armed: HashSet<DeviceId>,
    /// Devices told to report other than normally.
    reporting: HashMap<DeviceId, Reporting>,
    /// Where report-interval commands go: watches' open connections, native ingest answers.
    commands: Option<(Arc<dyn DeviceCommands>, ReportIntervals)>,
    /// Woken after a commit that raised an alarm: the push worker, so a push does not wait
    /// for its next poll.
    raised: Option<Arc<Notify>>,
    /// Turns of the task's loop and evaluation passes (a batch, or one page of a recovery):
    /// the count its supervisor watches move.
    passes: Arc<AtomicU64>,
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
        let offline = store
            .deadlines_of_kind(DEADLINE_OFFLINE)
            .await?
            .into_iter()
            .filter(|d| d.fired_at.is_some())
            .map(|d| d.device)
            .collect();
        let battery = store
            .deadlines_of_kind(DEADLINE_LOW_BATTERY)
            .await?
            .into_iter()
            .map(|d| {
                // The level it alerted at is not stored: only charging re-arms it after a restart.
                let state = if d.fired_at.is_some() {
                    BatteryState::Alerted(100)
                } else {
                    BatteryState::Waiting(d.due_at)
                };
                (d.device, BatteryTrack::new(state))
            })
            .collect();
        let test_armed =
            store.deadlines_of_kind(DEADLINE_TEST_ALARM).await?.into_iter().map(|d| d.device).collect();
        // A device whose stored state suspects an exit may have been told to report fast before
        // the restart: it is told to report normally once the suspicion ends.
        let reporting = states
            .iter()
            .filter(|(_, s)| s.awaits_confirmation())
            .filter_map(|(d, s)| Some((d.clone(), Reporting::Fast(s.last_time()?))))
            .collect();
        Ok(Self {
            store,
            zones,
            states,
            stored_at,
            offline_due: HashMap::new(),
            offline,
            battery,
            test_armed,
            reporting,
            commands: None,
            raised: None,
            passes: Arc::default(),
        })
    }

    /// Wakes `waker` after every commit that raised an alarm.
    pub fn wake_on_raise(mut self, waker: Arc<Notify>) -> Self {
        self.raised = Some(waker);
        self
    }

    /// Sends battery-aware reporting commands: `UPLOAD` to watches on their open connection in
    /// `links`, the interval in the ingest answers of native devices through `answers`. Without
    /// this the engine decides the intervals but tells no device.
    pub fn command_devices(mut self, links: impl DeviceCommands, answers: ReportIntervals) -> Self {
        self.commands = Some((Arc::new(links), answers));
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
            let (tenant, wearer, device, new, keep_alive) = match data {
                Committed::Fixes { tenant, wearer, device, fixes, .. } => {
                    (tenant, wearer, device, fixes, None)
                }
                Committed::Alarm { tenant, wearer, device, fix, .. } => {
                    device_alarms = true;
                    (tenant, wearer, device, fix.into_iter().collect(), None)
                }
                Committed::KeepAlive { tenant, wearer, device, at, battery_pct } => {
                    (tenant, wearer, device, Vec::new(), Some((at, battery_pct)))
                }
            };
            let entry = fixes.entry(device).or_insert(DeviceFixes {
                tenant,
                wearer,
                fixes: Vec::new(),
                keep_alives: Vec::new(),
            });
            entry.fixes.extend(new);
            entry.keep_alives.extend(keep_alive);
        }
        let pending = if device_alarms { self.store.pending_device_alarms().await? } else { Vec::new() };
        self.run(pending, fixes, now).await
    }

    /// Evaluates everything in the database the engine has not handled: device alarms not yet
    /// turned into alarms and fixes newer than their device's stored zone state.
    pub async fn recover(&mut self, now: DateTime<Utc>) -> Result<Vec<SignalOutcome>, EngineError> {
        let outcomes = self.replay(Backlog::Unevaluated { since: now - RECOVERY_WINDOW }, now).await?;
        if !outcomes.is_empty() {
            tracing::info!(signals = outcomes.len(), "Recovered alarms from the database");
        }
        Ok(outcomes)
    }

    /// Evaluates what was committed without reaching the engine (its queue overflowed, or a
    /// batch failed), `since` being the earliest receipt missed: the device alarms not yet
    /// handled, then the fixes received since `since` (less a small margin), in the order
    /// received, as the queue would have brought them. Fixes evaluated already are older than
    /// their device's state by then and change nothing.
    pub async fn catch_up(
        &mut self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<SignalOutcome>, EngineError> {
        let outcomes = self.replay(Backlog::Received { since: since - CATCH_UP_MARGIN }, now).await?;
        if !outcomes.is_empty() {
            tracing::info!(signals = outcomes.len(), "Caught up alarms from the database");
        }
        Ok(outcomes)
    }

    /// Evaluates the device alarms not yet handled, first (an SOS must not wait behind a backlog
    /// of fixes), then `backlog`'s fixes a page at a time, so a long outage's backlog is never
    /// one huge read. A device deleted since is not in them: it has nobody to alarm for.
    async fn replay(
        &mut self,
        backlog: Backlog,
        now: DateTime<Utc>,
    ) -> Result<Vec<SignalOutcome>, EngineError> {
        let pending = self.store.pending_device_alarms().await?;
        let mut outcomes = self.run(pending, BTreeMap::new(), now).await?;
        let mut after = None;
        loop {
            let page = match backlog {
                Backlog::Unevaluated { since } => {
                    self.store.unevaluated_fixes(since, after.as_ref(), RECOVERY_PAGE).await?
                }
                Backlog::Received { since } => {
                    self.store.fixes_received_since(since, after.as_ref(), RECOVERY_PAGE).await?
                }
            };
            let full = page.len() == RECOVERY_PAGE as usize;
            after = page.last().cloned();
            outcomes.extend(self.run(Vec::new(), by_device(page), now).await?);
            if !full {
                return Ok(outcomes);
            }
        }
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
        // A recovery after a long lag is many passes: each one counts as progress.
        self.passes.fetch_add(1, Ordering::Relaxed);
        let mut signals = Vec::new();
        let mut deadlines = Vec::new();
        let mut rules: HashMap<TenantId, TenantRules> = HashMap::new();
        // Devices whose test-alarm row this batch writes.
        let mut tested = HashSet::new();
        for alarm in pending {
            if alarm.kind == DeviceAlarmKind::Test
                && let Some(wearer) = alarm.wearer
            {
                let window = self.rules(alarm.tenant, &mut rules).await?.test_window;
                self.test_alarm_sent(&alarm, wearer, window, &mut signals, &mut deadlines);
                tested.insert(alarm.device.clone());
            }
            signals.push(self.device_alarm_signal(alarm).await?);
        }
        // Every bound device in the batch was heard now.
        let heard: Vec<(DeviceId, TenantId)> =
            fixes.iter().filter(|(_, b)| b.wearer.is_some()).map(|(d, b)| (d.clone(), b.tenant)).collect();
        // Changed states, and whether each decided something new.
        let mut touched: HashMap<DeviceId, (DeviceState, bool)> = HashMap::new();
        let mut tracks = Vec::new();
        let mut reporting = Vec::new();
        for (device, mut batch) in fixes {
            batch.fixes.sort_by_key(|f| f.time);
            let index = self.zones.get(batch.tenant);
            let tenant_rules = self.rules(batch.tenant, &mut rules).await?;
            if let Some(wearer) = batch.wearer {
                let track = self
                    .battery_readings(
                        (batch.tenant, wearer, &device),
                        &batch,
                        &tenant_rules.battery,
                        &mut signals,
                        &mut deadlines,
                    )
                    .await?;
                if let Some(track) = track {
                    tracks.push((device.clone(), track));
                }
            }
            let before = self.states.get(&device).cloned().unwrap_or_default();
            let mut state = before.clone();
            for fix in &batch.fixes {
                for event in tenant_rules.policy.evaluate(&index, &device, &mut state, fix) {
                    // The index holds only zones of bound wearers, so an event has a wearer.
                    let Some(wearer) = batch.wearer else { continue };
                    if let Some(signal) = self.zone_signal(batch.tenant, wearer, &device, event, fix).await? {
                        signals.push(signal);
                    }
                }
            }
            if let (Some(_), Some(last)) = (batch.wearer, batch.fixes.last()) {
                let told = self.reporting.get(&device).copied();
                let fast_on = tenant_rules.report_fast_secs < tenant_rules.report_secs;
                let suspected = fast_on && state.awaits_confirmation();
                if let Some((next, tell)) = reporting_change(told, suspected, last.time) {
                    let secs = match tell {
                        Tell::Fast => Some(tenant_rules.report_fast_secs),
                        Tell::Normal => Some(tenant_rules.report_secs),
                        Tell::Nothing => None,
                    };
                    reporting.push((device.clone(), batch.tenant, next, secs));
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
        for (device, tenant) in heard {
            let tenant_rules = self.rules(tenant, &mut rules).await?;
            let after = tenant_rules.offline_after;
            let due_at = now + after;
            let back = self.offline.contains(&device);
            if back {
                signals.push(Signal::ResolvedByDevice {
                    device: device.clone(),
                    kind: AlarmKind::DeviceOffline,
                    at: now,
                    reason: "heard again".to_owned(),
                });
            }
            let moved = self.offline_due.get(&device).is_none_or(|at| due_at - *at >= after / 4);
            if back || moved {
                deadlines.push(DeadlineChange::Arm {
                    device: device.clone(),
                    tenant,
                    kind: DEADLINE_OFFLINE,
                    due_at,
                });
            }
            // The daily test alarm is due at the end of the first whole window after the
            // device was first heard.
            if let Some(window) = tenant_rules.test_window
                && !self.test_armed.contains(&device)
                && tested.insert(device.clone())
            {
                let due_at = window.end_of_next_whole(now);
                deadlines.push(DeadlineChange::Arm { device, tenant, kind: DEADLINE_TEST_ALARM, due_at });
            }
        }
        let commit = EngineCommit { states, signals, deadlines };
        let outcomes = if commit.states.is_empty() && commit.signals.is_empty() && commit.deadlines.is_empty()
        {
            Vec::new()
        } else {
            self.store.engine_commit(&commit, now).await?
        };
        for row in &commit.states {
            self.stored_at.insert(row.device.clone(), row.last_fix_at);
        }
        self.states.extend(touched.into_iter().map(|(device, (state, _))| (device, state)));
        self.deadlines_stored(&commit.deadlines);
        self.battery.extend(tracks);
        for (device, tenant, next, secs) in reporting {
            if let Some(secs) = secs {
                self.tell_interval(tenant, &device, secs).await;
            }
            match next {
                Some(r) => self.reporting.insert(device, r),
                None => self.reporting.remove(&device),
            };
        }
        if let Some(waker) = &self.raised
            && outcomes.iter().any(|o| matches!(o, SignalOutcome::Raised(_)))
        {
            waker.notify_one();
        }
        log_outcomes(&commit, &outcomes);
        Ok(outcomes)
    }

    /// A test alarm from a bound device: it resolves an open `test_alarm_missing` alert, and
    /// one sent in the tenant's window moves the device's test-alarm row to the end of the next
    /// window (in the same commit as the test alarm, so a restart neither loses nor repeats it).
    /// One sent outside the window is recorded and counts for no window.
    fn test_alarm_sent(
        &self,
        alarm: &PendingDeviceAlarm,
        wearer: WearerId,
        window: Option<DailyHours>,
        signals: &mut Vec<Signal>,
        deadlines: &mut Vec<DeadlineChange>,
    ) {
        tracing::info!(device = %alarm.device, %wearer, time = %alarm.time, "Test alarm from the device");
        signals.push(Signal::ResolvedByDevice {
            device: alarm.device.clone(),
            kind: AlarmKind::TestAlarmMissing,
            at: alarm.time,
            reason: "sent a test alarm".to_owned(),
        });
        if let Some(window) = window.filter(|w| w.contains(alarm.time)) {
            deadlines.push(DeadlineChange::Arm {
                device: alarm.device.clone(),
                tenant: alarm.tenant,
                kind: DEADLINE_TEST_ALARM,
                due_at: window.end_of_next_whole(alarm.time),
            });
        }
    }

    /// Tells a device to report every `secs` seconds (after the batch that decided it is
    /// stored) and logs the command on the device: `UPLOAD` on a watch's open connection, the
    /// interval in a native device's next ingest answers. A failure is logged, not an error:
    /// the interval saves battery, it raises no alarm, and the next decision tells it again.
    async fn tell_interval(&self, tenant: TenantId, device: &DeviceId, secs: u32) {
        let Some((links, answers)) = &self.commands else { return };
        let command = DeviceCommand::UploadInterval { secs };
        let protocol = match self.store.device_profile(device).await {
            Ok(Some(profile)) => profile.protocol,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, %device, secs, "Report interval not sent: the device could not be read");
                return;
            }
        };
        match protocol {
            Protocol::Native => answers.set(device, secs),
            Protocol::Watch => {
                if let Err(e) = links.send(device, command) {
                    tracing::info!(error = %e, %device, secs, "Report interval not sent to the watch");
                    return;
                }
            }
            // GT06 trackers and OsmAnd phones take no interval command from trygg.
            Protocol::Gt06 | Protocol::Osmand => return,
        }
        tracing::info!(%device, secs, protocol = protocol.as_str(), "Report interval commanded");
        let entry = DeviceCommandLog {
            device: device.clone(),
            command: command.describe(),
            sent_by: None,
            sent_at: Utc::now(),
        };
        if let Err(e) = self.store.log_device_command(tenant, &entry).await {
            tracing::warn!(error = %e, %device, "Logging a report-interval command failed");
        }
    }

    /// Runs a device's battery readings — of its fixes and its keep-alives alike, in time
    /// order — through its track (a copy: kept once the batch is stored), adding the alerts and
    /// row changes they lead to. `None` without readings.
    async fn battery_readings(
        &self,
        (tenant, wearer, device): (TenantId, WearerId, &DeviceId),
        batch: &DeviceFixes,
        rule: &BatteryRule,
        signals: &mut Vec<Signal>,
        deadlines: &mut Vec<DeadlineChange>,
    ) -> Result<Option<BatteryTrack>, EngineError> {
        let mut readings: Vec<(DateTime<Utc>, u8, Option<&Fix>)> = batch
            .fixes
            .iter()
            .filter_map(|f| Some((f.time, f.battery_pct?, Some(f))))
            .chain(batch.keep_alives.iter().map(|&(at, pct)| (at, pct, None)))
            .collect();
        if readings.is_empty() {
            return Ok(None);
        }
        readings.sort_by_key(|r| r.0);
        let mut track = self.battery.get(device).cloned().unwrap_or_default();
        let kind = DEADLINE_LOW_BATTERY;
        for (at, pct, fix) in readings {
            let alerted = matches!(track.state, BatteryState::Alerted(_));
            let decision = track.reading(rule, at, pct);
            track.settle(decision);
            match decision {
                BatteryDecision::Nothing => {}
                BatteryDecision::Raise { early, empty_at, pct } => {
                    tracing::info!(%device, pct, early, ?empty_at, "Low battery");
                    let who = (tenant, wearer, device);
                    signals.push(self.technical_signal(AlarmKind::LowBattery, who, at, fix).await?);
                    deadlines.push(DeadlineChange::Fired {
                        device: device.clone(),
                        tenant,
                        kind,
                        at,
                        recheck_at: at + ALERTED_RECHECK,
                    });
                }
                BatteryDecision::WaitUntil(due_at) => {
                    tracing::info!(%device, pct, %due_at, "Low battery at night: the alert waits for the morning");
                    deadlines.push(DeadlineChange::Arm { device: device.clone(), tenant, kind, due_at });
                }
                BatteryDecision::Rearm => {
                    // The discharge is over: an alert of it still open is resolved, so the
                    // next discharge raises its own alert instead of joining a stale one.
                    if alerted {
                        signals.push(Signal::ResolvedByDevice {
                            device: device.clone(),
                            kind: AlarmKind::LowBattery,
                            at,
                            reason: format!("battery at {pct} %"),
                        });
                    }
                    deadlines.push(DeadlineChange::Drop { device: device.clone(), kind })
                }
            }
        }
        Ok(Some(track))
    }

    /// A technical alert of `kind` about the wearer's device at `at`: with the position of
    /// `fix`, or else the device's last known one, for the wearer's first responders.
    async fn technical_signal(
        &self,
        kind: AlarmKind,
        (tenant, wearer, device): (TenantId, WearerId, &DeviceId),
        at: DateTime<Utc>,
        fix: Option<&Fix>,
    ) -> Result<Signal, EngineError> {
        let last = match fix {
            Some(f) => Some(f.clone()),
            None => self.store.recent_fixes(device, 1).await?.pop().map(|s| s.fix),
        };
        Ok(Signal::Raise(NewAlarm {
            tenant,
            wearer: Some(wearer),
            device: Some(device.clone()),
            kind,
            zone: None,
            trigger_time: at,
            position: last.as_ref().map(|f| (Position::of(f), f.time)),
            last_known_position: fix.is_none() && last.is_some(),
            recipients: self.store.alarm_recipients(tenant, Some(wearer), 0).await?.unwrap_or_default(),
            device_alarm: None,
        }))
    }

    /// The tenant's rules, read once per batch or pass into `cache`.
    async fn rules(
        &self,
        tenant: TenantId,
        cache: &mut HashMap<TenantId, TenantRules>,
    ) -> Result<TenantRules, EngineError> {
        if let Some(rules) = cache.get(&tenant) {
            return Ok(rules.clone());
        }
        let settings = self.store.settings(tenant).await?;
        let supervision: SupervisionSettings = settings.as_ref().map(|s| s.supervision).unwrap_or_default();
        let (policy, tz) = match &settings {
            Some(s) => (
                serde_json::from_str(&s.exit_policy)
                    .map_err(|e| EngineError::Corrupt(format!("stored exit policy of {tenant}: {e}")))?,
                s.time_zone
                    .parse()
                    .map_err(|e| EngineError::Corrupt(format!("stored time zone of {tenant}: {e}")))?,
            ),
            None => (Policy::default(), chrono_tz::Europe::Stockholm),
        };
        let hours = |from_hour, until_hour| DailyHours { tz, from_hour, until_hour };
        let offline_secs = settings.as_ref().map_or(DEFAULT_OFFLINE_AFTER_SECS, |s| s.offline_after_secs);
        let rules = TenantRules {
            policy,
            battery: BatteryRule {
                low_pct: settings.as_ref().map_or(DEFAULT_BATTERY_LOW_PCT, |s| s.battery_low_pct),
                rearm_margin_pct: supervision.battery_rearm_margin_pct,
                quiet: hours(supervision.quiet_from_hour, supervision.quiet_until_hour),
            },
            offline_after: chrono::Duration::seconds(i64::from(offline_secs)),
            test_window: Some(hours(supervision.test_alarm_from_hour, supervision.test_alarm_until_hour))
                .filter(|w| !w.is_empty()),
            report_secs: supervision.report_interval_secs,
            report_fast_secs: supervision.report_interval_fast_secs,
        };
        cache.insert(tenant, rules.clone());
        Ok(rules)
    }

    /// Remembers what a committed batch wrote to the deadlines.
    fn deadlines_stored(&mut self, changes: &[DeadlineChange]) {
        for change in changes {
            let kind = match change {
                DeadlineChange::Arm { kind, .. }
                | DeadlineChange::Fired { kind, .. }
                | DeadlineChange::Postpone { kind, .. }
                | DeadlineChange::Drop { kind, .. } => *kind,
            };
            if kind == DEADLINE_TEST_ALARM {
                match change {
                    DeadlineChange::Drop { device, .. } => self.test_armed.remove(device),
                    DeadlineChange::Arm { device, .. } | DeadlineChange::Fired { device, .. } => {
                        self.test_armed.insert(device.clone())
                    }
                    DeadlineChange::Postpone { .. } => false,
                };
                continue;
            }
            if kind != DEADLINE_OFFLINE {
                continue;
            }
            match change {
                DeadlineChange::Arm { device, due_at, .. } => {
                    self.offline.remove(device);
                    self.offline_due.insert(device.clone(), *due_at);
                }
                DeadlineChange::Fired { device, .. } => {
                    self.offline.insert(device.clone());
                    self.offline_due.remove(device);
                }
                DeadlineChange::Postpone { device, due_at, .. } => {
                    if !self.offline.contains(device) {
                        self.offline_due.insert(device.clone(), *due_at);
                    }
                }
                DeadlineChange::Drop { device, .. } => {
                    self.offline.remove(device);
                    self.offline_due.remove(device);
                }
            }
        }
    }

    /// Handles the supervision deadlines due at `now`: a device silent past its tenant's
    /// threshold raises one `device_offline` alert for its wearer; one heard since is moved on;
    /// one under an alert that has been heard again (a keep-alive) closes it.
    pub async fn supervise(&mut self, now: DateTime<Utc>) -> Result<Vec<SignalOutcome>, EngineError> {
        let due = self.store.due_deadlines(now, DEADLINES_PER_PASS).await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let (mut signals, mut deadlines) = (Vec::new(), Vec::new());
        let mut rules = HashMap::new();
        let mut alerted = Vec::new();
        for d in due {
            if d.kind == DEADLINE_LOW_BATTERY {
                if let Some(device) = self.battery_morning(d, now, &mut signals, &mut deadlines).await? {
                    alerted.push(device);
                }
            } else if d.kind == DEADLINE_TEST_ALARM {
                self.test_alarm_deadline(d, now, &mut rules, &mut signals, &mut deadlines).await?;
            } else {
                self.offline_deadline(d, now, &mut rules, &mut signals, &mut deadlines).await?;
            }
        }
        let commit = EngineCommit { states: Vec::new(), signals, deadlines };
        let outcomes = self.store.engine_commit(&commit, now).await?;
        self.deadlines_stored(&commit.deadlines);
        for device in alerted {
            let track = self.battery.entry(device).or_default();
            let pct = track.last_pct().unwrap_or(100);
            track.settle(BatteryDecision::Raise { early: false, empty_at: None, pct });
        }
        if let Some(waker) = &self.raised
            && outcomes.iter().any(|o| matches!(o, SignalOutcome::Raised(_)))
        {
            waker.notify_one();
        }
        log_outcomes(&commit, &outcomes);
        Ok(outcomes)
    }

    /// A low battery that waited out the night: raised in the morning (if the device is still
    /// bound; a report that re-armed it has removed the row). An alerted row only waits for a
    /// report: it is moved on. Returns the device alerted.
    async fn battery_morning(
        &self,
        d: DueDeadline,
        now: DateTime<Utc>,
        signals: &mut Vec<Signal>,
        deadlines: &mut Vec<DeadlineChange>,
    ) -> Result<Option<DeviceId>, EngineError> {
        let kind = DEADLINE_LOW_BATTERY;
        let device = d.device;
        if d.fired_at.is_some() {
            deadlines.push(DeadlineChange::Postpone { device, kind, due_at: now + ALERTED_RECHECK });
            return Ok(None);
        }
        let Some((tenant, wearer)) = self.bound_wearer(&device, d.tenant).await? else {
            deadlines.push(DeadlineChange::Drop { device, kind });
            return Ok(None);
        };
        signals.push(
            self.technical_signal(AlarmKind::LowBattery, (tenant, wearer, &device), d.due_at, None).await?,
        );
        deadlines.push(DeadlineChange::Fired {
            device: device.clone(),
            tenant,
            kind,
            at: now,
            recheck_at: now + ALERTED_RECHECK,
        });
        Ok(Some(device))
    }

    /// A device that sent no test alarm in its tenant's window raises one `test_alarm_missing`
    /// alert (a repeat joins it while it is open), and the row moves on to the next window. A
    /// device bound to nobody since, or a tenant that turned the daily test alarm off: the row
    /// goes.
    async fn test_alarm_deadline(
        &self,
        d: DueDeadline,
        now: DateTime<Utc>,
        cache: &mut HashMap<TenantId, TenantRules>,
        signals: &mut Vec<Signal>,
        deadlines: &mut Vec<DeadlineChange>,
    ) -> Result<(), EngineError> {
        let kind = DEADLINE_TEST_ALARM;
        let device = d.device;
        let bound = self.bound_wearer(&device, d.tenant).await?;
        let window = match bound {
            Some((tenant, _)) => self.rules(tenant, cache).await?.test_window,
            None => None,
        };
        let (Some((tenant, wearer)), Some(window)) = (bound, window) else {
            deadlines.push(DeadlineChange::Drop { device, kind });
            return Ok(());
        };
        tracing::info!(%device, %wearer, window_end = %d.due_at, "No test alarm in the daily window");
        let who = (tenant, wearer, &device);
        signals.push(self.technical_signal(AlarmKind::TestAlarmMissing, who, d.due_at, None).await?);
        // After an outage, the next window from now: a missed day is reported once, not once
        // for every day the engine was down.
        let recheck_at = window.end_of_next_whole(now.max(d.due_at));
        deadlines.push(DeadlineChange::Fired { device, tenant, kind, at: now, recheck_at });
        Ok(())
    }

    async fn offline_deadline(
        &self,
        d: DueDeadline,
        now: DateTime<Utc>,
        cache: &mut HashMap<TenantId, TenantRules>,
        signals: &mut Vec<Signal>,
        deadlines: &mut Vec<DeadlineChange>,
    ) -> Result<(), EngineError> {
        let kind = DEADLINE_OFFLINE;
        if d.kind != kind {
            // A kind this version does not know (written by a newer one): leave it be.
            return Ok(());
        }
        let device = d.device;
        let Some((tenant, wearer)) = self.bound_wearer(&device, d.tenant).await? else {
            deadlines.push(DeadlineChange::Drop { device, kind });
            return Ok(());
        };
        let after = self.rules(tenant, cache).await?.offline_after;
        let heard = self.store.last_heard(&device).await?;
        if let Some(fired_at) = d.fired_at {
            match heard {
                Some(heard) if heard > fired_at => {
                    signals.push(Signal::ResolvedByDevice {
                        device: device.clone(),
                        kind: AlarmKind::DeviceOffline,
                        at: heard,
                        reason: "heard again".to_owned(),
                    });
                    deadlines.push(DeadlineChange::Arm { device, tenant, kind, due_at: heard + after });
                }
                _ => deadlines.push(DeadlineChange::Postpone { device, kind, due_at: now + OFFLINE_RECHECK }),
            }
            return Ok(());
        }
        // The row is armed at most a quarter of the threshold early: the database says when.
        let last = heard.unwrap_or(d.due_at - after);
        if last + after > now {
            deadlines.push(DeadlineChange::Postpone { device, kind, due_at: last + after });
            return Ok(());
        }
        let who = (tenant, wearer, &device);
        signals.push(self.technical_signal(AlarmKind::DeviceOffline, who, last + after, None).await?);
        deadlines.push(DeadlineChange::Fired {
            device,
            tenant,
            kind,
            at: now,
            recheck_at: now + OFFLINE_RECHECK,
        });
        Ok(())
    }

    /// The wearer `device` is bound to now, if it is still in `tenant` (the tenant its deadline
    /// was written for). A device bound to nobody, or moved to another tenant, since: nobody to
    /// tell, and its supervision row goes.
    async fn bound_wearer(
        &self,
        device: &DeviceId,
        tenant: TenantId,
    ) -> Result<Option<(TenantId, WearerId)>, EngineError> {
        let auth = self.store.device_auth(device).await?;
        Ok(auth.filter(|a| a.tenant == tenant).and_then(|a| a.wearer.map(|w| (a.tenant, w))))
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
            // A test alarm pages nobody: it is stored closed.
            recipients: if alarm.kind == DeviceAlarmKind::Test {
                Vec::new()
            } else {
                self.store.alarm_recipients(alarm.tenant, alarm.wearer, 0).await?.unwrap_or_default()
            },
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

    /// Starts the engine task: it first recovers from the database, then processes what the
    /// returned sink queues, and ends when every sink is dropped and the queue is empty.
    pub fn spawn(mut self, capacity: usize) -> (EngineSink, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Queued>(capacity);
        let lagged = Arc::new(AtomicBool::new(true));
        let overflowed_at = Arc::new(AtomicI64::new(NEVER));
        let passes = self.passes.clone();
        let sink = EngineSink {
            tx,
            lagged: lagged.clone(),
            overflowed_at: overflowed_at.clone(),
            passes: passes.clone(),
        };
        let task = tokio::spawn(async move {
            let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Until the first recovery succeeds, what is unevaluated is found from the stored
            // states; after it, a catch-up reads from the oldest commit the engine missed.
            let mut recovered = false;
            let mut missed_since: Option<DateTime<Utc>> = None;
            loop {
                passes.fetch_add(1, Ordering::Relaxed);
                if lagged.swap(false, Ordering::SeqCst) {
                    let overflowed = overflowed_at.swap(NEVER, Ordering::SeqCst);
                    let overflowed =
                        (overflowed != NEVER).then(|| DateTime::from_timestamp_millis(overflowed));
                    missed_since = earliest(missed_since, overflowed.flatten());
                    // What waits in the queue is in the database, and recovery reads it there in
                    // time order with the rest. Evaluating it before recovery has succeeded could
                    // take a newer fix before an older one not yet replayed, which would then be
                    // dropped as out of order and its exit missed.
                    let closed = loop {
                        match rx.try_recv() {
                            Ok((queued_at, _)) => missed_since = earliest(missed_since, Some(queued_at)),
                            Err(mpsc::error::TryRecvError::Empty) => break false,
                            Err(mpsc::error::TryRecvError::Disconnected) => break true,
                        }
                    };
                    let now = Utc::now();
                    let done = if recovered {
                        self.catch_up(missed_since.unwrap_or(now), now).await
                    } else {
                        self.recover(now).await
                    };
                    if let Err(e) = done {
                        tracing::error!(error = %e, "Alarm engine recovery failed; retrying");
                        lagged.store(true, Ordering::SeqCst);
                        if closed {
                            break; // shutting down: the next start recovers
                        }
                        tokio::time::sleep(RETRY_AFTER).await;
                        continue;
                    }
                    (recovered, missed_since) = (true, None);
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
                        if let Err(e) = self.supervise(Utc::now()).await {
                            // The deadlines stay due in the database: the next tick retries.
                            tracing::error!(error = %e, "Device supervision pass failed; retrying at the next tick");
                        }
                        continue;
                    }
                };
                // The queue is in commit order, which is not quite the order received.
                let (mut oldest, first) = first;
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH
                    && let Ok((received_at, more)) = rx.try_recv()
                {
                    oldest = oldest.min(received_at);
                    batch.push(more);
                }
                if let Err(e) = self.process(batch, Utc::now()).await {
                    // Everything in the batch is in the database: the catch-up reads it again.
                    tracing::error!(error = %e, "Alarm engine batch failed; recovering from the database");
                    missed_since = earliest(missed_since, Some(oldest));
                    lagged.store(true, Ordering::SeqCst);
                }
            }
            tracing::info!("Alarm engine stopped");
        });
        (sink, task)
    }
}

fn log_outcomes(commit: &EngineCommit, outcomes: &[SignalOutcome]) {
    for (signal, outcome) in commit.signals.iter().zip(outcomes) {
        match (signal, outcome) {
            (Signal::Raise(a), SignalOutcome::Raised(id)) => {
                tracing::info!(alarm = %id, kind = %a.kind, wearer = ?a.wearer, device = ?a.device, recipients = a.recipients.len(), "Alarm raised");
            }
            (Signal::ResolvedByDevice { device, kind, reason, .. }, SignalOutcome::Joined(id)) => {
                tracing::info!(alarm = %id, %device, %kind, %reason, "Technical alert resolved by the device");
            }
            _ => {}
        }
    }
}

/// Which fixes the engine reads back from the database.
#[derive(Debug, Clone, Copy)]
enum Backlog {
    /// Every fix newer than its device's stored zone state, and those received since `since`
    /// of devices without one (at start).
    Unevaluated { since: DateTime<Utc> },
    /// The fixes received since `since`, in that order (a catch-up while running).
    Received { since: DateTime<Utc> },
}

/// A page of fixes read back from the database, grouped by device for [`Engine::run`].
fn by_device(page: Vec<ReceivedFix>) -> BTreeMap<DeviceId, DeviceFixes> {
    let mut fixes: BTreeMap<DeviceId, DeviceFixes> = BTreeMap::new();
    for row in page {
        let (tenant, wearer) = (row.tenant, row.wearer);
        fixes
            .entry(row.device)
            .or_insert_with(|| DeviceFixes { tenant, wearer, fixes: Vec::new(), keep_alives: Vec::new() })
            .fixes
            .push(row.fix);
    }
    fixes
}

/// Committed data in the engine's queue, with when its request was received (for fixes: the
/// time stored with them, which a catch-up reads by).
type Queued = (DateTime<Utc>, Committed);

/// `overflowed_at` when the queue has not overflowed since the engine last looked.
const NEVER: i64 = i64::MAX;

/// The earlier of two times, either of which may be unknown.
fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Ingest's handle on the engine: queues committed data without ever blocking.
#[derive(Debug, Clone)]
pub struct EngineSink {
    tx: mpsc::Sender<Queued>,
    lagged: Arc<AtomicBool>,
    /// The earliest receipt whose data the queue had no room for since the engine last caught
    /// up (Unix milliseconds).
    overflowed_at: Arc<AtomicI64>,
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
    tx: mpsc::WeakSender<Queued>,
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

    /// Turns of the engine loop and evaluation passes so far (a batch, or one page of a
    /// recovery), whether they succeeded or not.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }
}

impl CommittedSink for EngineSink {
    fn committed(&self, data: Committed) {
        // A fix may be committed long after it was received (a slow commit, a request that
        // waited for room), and the catch-up reads fixes by the time received: so a fix is
        // stamped with it. Alarms are caught up from the unhandled ones, whatever the stamp.
        let received_at = match &data {
            Committed::Fixes { received_at, .. } => *received_at,
            Committed::Alarm { .. } | Committed::KeepAlive { .. } => Utc::now(),
        };
        if self.tx.try_send((received_at, data)).is_err() {
            // Full (or the engine stopped): the data is in the database; the catch-up reads
            // what was received from this time on.
            self.overflowed_at.fetch_min(received_at.timestamp_millis(), Ordering::SeqCst);
            if !self.lagged.swap(true, Ordering::SeqCst) {
                tracing::warn!("Alarm engine queue full; it will catch up from the database");
            }
        }
    }
}
