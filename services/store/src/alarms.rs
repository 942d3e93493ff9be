//! The alarm side of the store: alarms and their append-only events, the notification outbox,
//! staff push tokens, and the alarm engine's per-device zone state.
//!
//! The engine writes everything one batch of input leads to — zone states, new alarms, their
//! first events and outbox rows, repeats joined to open alarms — in **one** transaction
//! ([`Alarms::engine_commit`]), so nothing is raised only in memory and a restart neither loses
//! nor repeats an alarm. Lifecycle steps are conditional updates on the alarm's state, so two
//! staff acknowledging at once cannot both win. Each query is written once for both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::instrument;
pub use trygg_core::Position;
use trygg_core::{AlarmKind, AlarmState, DeviceAlarmKind, DeviceId, Fix, Outcome, Step, TenantId, WearerId};
use uuid::Uuid;

use crate::dialect::{Db, On, Row, Tx, get_opt_time, get_opt_uuid, get_time, get_uuid, query};
use crate::fixes::{FIX_COLUMNS, stored_fix};
use crate::outbox::escalation_deadline_in;
use crate::{SqlStore, StoreError, parse_device, parse_kind, parse_text};

/// How far before an alarm's trigger its trail starts. Fixes in a critical alarm's trail
/// (through the alarm's close) are kept past the retention period, with the alarm.
pub const TRAIL_BEFORE: chrono::Duration = chrono::Duration::minutes(10);
/// How far after an alarm's trigger its trail is kept past retention, at most (an alarm left
/// open for weeks must not keep every later fix of its device).
pub const TRAIL_AFTER_MAX: chrono::Duration = chrono::Duration::days(1);

/// The critical alarm kinds as an SQL list (`'sos', 'fall', …`), from
/// [`AlarmKind::is_critical`]: our own fixed names, safe to inline.
pub(crate) fn critical_kinds_sql() -> String {
    let critical = AlarmKind::ALL.iter().filter(|k| k.is_critical());
    critical.map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
}

/// An alarm the engine wants raised, or joined to the open alarm of the same wearer, kind and
/// zone while that alarm still takes repeats (see [`Alarms::engine_commit`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlarm {
    /// The tenant.
    pub tenant: TenantId,
    /// Whose alarm it is; `None` for a device bound to nobody (then its device is the key).
    pub wearer: Option<WearerId>,
    /// The device that caused it.
    pub device: Option<DeviceId>,
    /// What kind.
    pub kind: AlarmKind,
    /// The zone, for zone alarms.
    pub zone: Option<String>,
    /// The device's time of the fix or device alarm behind it.
    pub trigger_time: DateTime<Utc>,
    /// Where the wearer was, with the fix's own time.
    pub position: Option<(Position, DateTime<Utc>)>,
    /// `position` is not the alarm's own but the device's last known one (the alarm came
    /// without a fix); said on the alarm's `raised` event.
    pub last_known_position: bool,
    /// Who is pushed first (escalation step 0); each gets one outbox row.
    pub recipients: Vec<Uuid>,
    /// The stored device alarm it comes from, marked handled in the same transaction.
    pub device_alarm: Option<i64>,
}

/// One thing the engine concluded from its input.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Raise an alarm, or add a `repeated` event to the open one if it still takes repeats.
    Raise(NewAlarm),
    /// The wearer is back inside a zone: record it on the open exit alarm, if any (a human
    /// closes alarms, a return does not).
    Returned {
        /// The wearer.
        wearer: WearerId,
        /// The zone.
        zone: String,
        /// Time of the confirming fix.
        at: DateTime<Utc>,
        /// Where.
        position: Position,
    },
    /// The device itself ended what a technical alert is about (heard again after an offline
    /// alert, charged after a low battery, sent its test alarm after a missing one): its open
    /// alerts of `kind` get a `resolved_by_device` event and close (outcome `other`, nobody as
    /// the actor, the note says why).
    ResolvedByDevice {
        /// The device.
        device: DeviceId,
        /// The technical alert kind it resolves.
        kind: AlarmKind,
        /// When the device did so.
        at: DateTime<Utc>,
        /// What the device did, for the note (`heard again`, `charged to 95 %`).
        reason: String,
    },
}

/// The kind of the offline deadline in `device_deadlines`.
pub const DEADLINE_OFFLINE: &str = "offline";
/// The kind of the low-battery row in `device_deadlines`: due in the morning while a low battery
/// waits out the quiet hours; fired while the discharge has been alerted.
pub const DEADLINE_LOW_BATTERY: &str = "low_battery";
/// The kind of the daily test-alarm row in `device_deadlines`: due at the end of the next
/// test-alarm window the device has not yet sent its test alarm in.
pub const DEADLINE_TEST_ALARM: &str = "test_alarm";

/// A change to a device's supervision deadline (`device_deadlines`), stored with the engine's
/// batch.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadlineChange {
    /// The device was heard: due at `due_at`, no alert outstanding.
    Arm {
        /// The device.
        device: DeviceId,
        /// Its tenant.
        tenant: TenantId,
        /// [`DEADLINE_OFFLINE`].
        kind: &'static str,
        /// When it comes due.
        due_at: DateTime<Utc>,
    },
    /// The alert was raised at `at` (in the same transaction); look again at `recheck_at`.
    Fired {
        /// The device.
        device: DeviceId,
        /// Its tenant.
        tenant: TenantId,
        /// [`DEADLINE_OFFLINE`].
        kind: &'static str,
        /// When the alert was raised.
        at: DateTime<Utc>,
        /// When to check again whether it was heard.
        recheck_at: DateTime<Utc>,
    },
    /// Not due after all (heard since, or an alert still outstanding): due again at `due_at`.
    Postpone {
        /// The device.
        device: DeviceId,
        /// [`DEADLINE_OFFLINE`].
        kind: &'static str,
        /// When it comes due.
        due_at: DateTime<Utc>,
    },
    /// Nothing to supervise any more (the device is bound to nobody).
    Drop {
        /// The device.
        device: DeviceId,
        /// [`DEADLINE_OFFLINE`].
        kind: &'static str,
    },
}

/// A supervision deadline that has come due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDeadline {
    /// The device.
    pub device: DeviceId,
    /// Its kind ([`DEADLINE_OFFLINE`]).
    pub kind: String,
    /// The tenant it was armed in.
    pub tenant: TenantId,
    /// When it came due.
    pub due_at: DateTime<Utc>,
    /// When its alert was raised, if it was.
    pub fired_at: Option<DateTime<Utc>>,
}

/// A fix as the engine's catch-up reads it: with its device's owner and when it was received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedFix {
    /// The device.
    pub device: DeviceId,
    /// The device's tenant.
    pub tenant: TenantId,
    /// The wearer the device is bound to now.
    pub wearer: Option<WearerId>,
    /// When the server received it.
    pub received_at: DateTime<Utc>,
    /// The fix.
    pub fix: Fix,
}

/// The exit policy's memory of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneStateRow {
    /// The device.
    pub device: DeviceId,
    /// `trygg_geofence::DeviceState` as JSON.
    pub state: String,
    /// Time of the newest fix evaluated.
    pub last_fix_at: DateTime<Utc>,
}

/// Everything one engine batch leads to; stored in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineCommit {
    /// Changed zone states.
    pub states: Vec<ZoneStateRow>,
    /// Alarms to raise or join, returns, devices heard again.
    pub signals: Vec<Signal>,
    /// Supervision deadlines armed, fired, postponed or dropped.
    pub deadlines: Vec<DeadlineChange>,
}

/// What became of one [`Signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalOutcome {
    /// A new alarm was raised.
    Raised(Uuid),
    /// The signal was added to this open alarm.
    Joined(Uuid),
    /// Nothing to attach it to (a return without an open exit alarm).
    Nothing,
}

/// A device alarm the engine has not handled yet (found again after a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDeviceAlarm {
    /// Its row id.
    pub id: i64,
    /// The device.
    pub device: DeviceId,
    /// The device's tenant.
    pub tenant: TenantId,
    /// The wearer the device is bound to now.
    pub wearer: Option<WearerId>,
    /// What kind.
    pub kind: DeviceAlarmKind,
    /// The device's time for it.
    pub time: DateTime<Utc>,
    /// The fix sent with it.
    pub fix: Option<Fix>,
}

/// Somebody and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The account.
    pub user: Uuid,
    /// Its display name.
    pub name: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A stored alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// Its id.
    pub id: Uuid,
    /// Its tenant.
    pub tenant: TenantId,
    /// Whose alarm it is; `None` for an alarm from a device bound to nobody.
    pub wearer: Option<WearerId>,
    /// The device that caused it.
    pub device: Option<DeviceId>,
    /// What kind.
    pub kind: AlarmKind,
    /// The zone of a zone alarm.
    pub zone: Option<String>,
    /// Where it is in its lifecycle.
    pub state: AlarmState,
    /// When the server raised it.
    pub raised_at: DateTime<Utc>,
    /// The device's time of what raised it.
    pub trigger_time: DateTime<Utc>,
    /// The position it was raised with, and that fix's time.
    pub position: Option<(Position, DateTime<Utc>)>,
    /// When the wearer came back inside the zone (exit alarms), the latest return.
    pub returned_at: Option<DateTime<Utc>>,
    /// Who took it.
    pub acknowledged: Option<Stamp>,
    /// Who marked on site.
    pub on_site: Option<Stamp>,
    /// Who closed it.
    pub closed: Option<Stamp>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// The closing note.
    pub note: String,
}

/// Which alarms to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmFilter {
    /// Only alarms this staff account may see (its teams' wearers, its responder steps, its
    /// pushes); `None` for roles that see the tenant's every alarm.
    pub viewer: Option<Uuid>,
    /// Only open (true) or closed (false) alarms.
    pub open: Option<bool>,
    /// Only this kind.
    pub kind: Option<AlarmKind>,
    /// Only this wearer.
    pub wearer: Option<WearerId>,
    /// Raised at or after.
    pub from: Option<DateTime<Utc>>,
    /// Raised before.
    pub to: Option<DateTime<Utc>>,
    /// At most this many, newest first.
    pub limit: u32,
    /// Triage order instead of newest first: critical alarms first (newest first), then the
    /// others grouped per wearer, so technical alerts never push a critical one off the list.
    pub triage: bool,
}

/// A lifecycle step someone asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRequest {
    /// Which step.
    pub step: Step,
    /// Who (none for the system, e.g. the push worker's `notified`).
    pub actor: Option<Uuid>,
    /// When.
    pub at: DateTime<Utc>,
    /// The staff member's own position, if the app sent it.
    pub position: Option<Position>,
    /// Free text (the closing note).
    pub note: String,
}

/// What became of a [`StepRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// Taken; the alarm as it is now.
    Done(Alarm),
    /// Refused: the alarm's state does not allow it. The alarm as it is, so the caller can
    /// say who has it.
    Refused(Alarm),
}

/// An event to append to an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlarmEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// What, e.g. `raised`, `acknowledged`, `push_sent`, `escalated`.
    pub kind: String,
    /// Who, if a person.
    pub actor: Option<Uuid>,
    /// Where, if sent.
    pub position: Option<Position>,
    /// Details, free text or JSON.
    pub detail: String,
}

/// A stored alarm event.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEvent {
    /// Its sequence number.
    pub id: i64,
    /// The event.
    pub event: NewAlarmEvent,
    /// The actor's display name.
    pub actor_name: Option<String>,
}

/// A staff phone's push registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushToken {
    /// The FCM registration token.
    pub token: String,
    /// `android` or `ios`.
    pub platform: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When FCM said it is no longer valid.
    pub disabled_at: Option<DateTime<Utc>>,
}

/// Alarms, their events, outbox, push tokens and zone state, every staff call scoped to a tenant.
#[async_trait]
pub trait Alarms: Send + Sync {
    /// Stores one engine batch in one transaction; one outcome per signal, in order.
    ///
    /// A [`Signal::Raise`] joins the newest open alarm of the same wearer (or, without one, the
    /// same device), kind and zone only while that alarm is `raised` or `notified`, or
    /// `acknowledged` and last triggered within the tenant's `repeat_join_secs`; a repeat joined
    /// to an acknowledged alarm is pushed again to the staff member who has it. Anything else —
    /// an alarm left on site, or acknowledged long ago and never closed — raises a new alarm with
    /// its own pushes and timers, and the old one gets a `superseded` event naming the new one.
    async fn engine_commit(
        &self,
        commit: &EngineCommit,
        now: DateTime<Utc>,
    ) -> Result<Vec<SignalOutcome>, StoreError>;
    /// Every device's stored zone state (the engine loads them at start).
    async fn zone_states(&self) -> Result<Vec<ZoneStateRow>, StoreError>;
    /// Fixes of registered devices the engine has not evaluated, by device and time, each with
    /// its device's owner: every fix newer than its device's stored `last_fix_at`, and for
    /// devices without a stored state the fixes received at or after `since`. One page of at
    /// most `limit`, after (by device and fix time) `after`, the last row of the previous page.
    async fn unevaluated_fixes(
        &self,
        since: DateTime<Utc>,
        after: Option<&ReceivedFix>,
        limit: u32,
    ) -> Result<Vec<ReceivedFix>, StoreError>;
    /// Fixes of registered devices received at or after `since`, in the order received (then
    /// by device and fix time), after `after` (the last row of the previous page), at most
    /// `limit`: the engine's catch-up after its queue overflowed. An index range on the time
    /// received, so it never reads the older fixes the engine has evaluated already.
    async fn fixes_received_since(
        &self,
        since: DateTime<Utc>,
        after: Option<&ReceivedFix>,
        limit: u32,
    ) -> Result<Vec<ReceivedFix>, StoreError>;
    /// Device alarms not handled by the engine yet, oldest first.
    async fn pending_device_alarms(&self) -> Result<Vec<PendingDeviceAlarm>, StoreError>;
    /// Supervision deadlines due at `now`, earliest first, at most `limit` (an index range on
    /// the due time: never a scan of every device).
    async fn due_deadlines(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<DueDeadline>, StoreError>;
    /// Every stored deadline of `kind` (the engine loads which alerts are outstanding at start).
    async fn deadlines_of_kind(&self, kind: &str) -> Result<Vec<DueDeadline>, StoreError>;
    /// When a device was last heard from, as far as the database knows: its last connection or
    /// keep-alive, its newest fix and its newest device alarm (each by the time received).
    async fn last_heard(&self, device: &DeviceId) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// The tenant's alarms matching `filter`, newest first.
    async fn alarms(&self, tenant: TenantId, filter: &AlarmFilter) -> Result<Vec<Alarm>, StoreError>;
    /// One alarm, if it exists in the tenant and `viewer` (if given) may see it.
    async fn alarm(
        &self,
        tenant: TenantId,
        id: Uuid,
        viewer: Option<Uuid>,
    ) -> Result<Option<Alarm>, StoreError>;
    /// Takes a lifecycle step if the alarm's state allows it, with its event, in one
    /// transaction. `None` if there is no such alarm in the tenant.
    async fn step_alarm(
        &self,
        tenant: TenantId,
        id: Uuid,
        step: &StepRequest,
    ) -> Result<Option<StepOutcome>, StoreError>;
    /// An alarm's events, oldest first.
    async fn alarm_events(&self, tenant: TenantId, id: Uuid) -> Result<Vec<AlarmEvent>, StoreError>;

    /// Registers a phone's push token for an account (moving it from any other account of the
    /// tenant). [`StoreError::Conflict`] if another tenant's account has it.
    async fn put_push_token(
        &self,
        tenant: TenantId,
        user: Uuid,
        token: &str,
        platform: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Removes one of an account's tokens; false if it has no such token.
    async fn delete_push_token(&self, tenant: TenantId, user: Uuid, token: &str) -> Result<bool, StoreError>;
    /// An account's tokens, newest first.
    async fn push_tokens(&self, tenant: TenantId, user: Uuid) -> Result<Vec<PushToken>, StoreError>;
}

/// What identifies "the same alarm again": the wearer (or, for a device bound to nobody, the
/// device), the kind and the zone (`""` for none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenKey<'a> {
    pub(crate) wearer: Option<WearerId>,
    pub(crate) device: Option<&'a DeviceId>,
    pub(crate) kind: AlarmKind,
    pub(crate) zone: &'a str,
}

/// The newest open alarm with an [`OpenKey`], as far as the repeat rule needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenAlarm {
    pub(crate) id: Uuid,
    pub(crate) state: AlarmState,
    pub(crate) last_triggered_at: DateTime<Utc>,
    pub(crate) acknowledged_by: Option<Uuid>,
}

impl OpenAlarm {
    /// Whether a repeat at `now` joins this alarm: while nobody has taken it, or while it is
    /// acknowledged and was last triggered less than `join_window` ago. An alarm on site, or
    /// acknowledged and forgotten, must not silence a new one.
    pub(crate) fn takes_repeat(&self, now: DateTime<Utc>, join_window: chrono::Duration) -> bool {
        match self.state {
            AlarmState::Raised | AlarmState::Notified => true,
            AlarmState::Acknowledged => now - self.last_triggered_at <= join_window,
            AlarmState::OnSite | AlarmState::Closed => false,
        }
    }
}

/// The columns [`alarm_row`] reads, in order, from `alarms a` joined with the three user stamps.
const ALARM_SELECT: &str = "select a.id, a.tenant_id, a.wearer_id, a.device_id, a.kind, a.zone_id, a.state, \
     a.raised_at, a.trigger_time, a.lat, a.lon, a.accuracy_m, a.position_time, a.returned_at, \
     a.acknowledged_by, ua.name, a.acknowledged_at, a.on_site_by, uo.name, a.on_site_at, \
     a.closed_by, uc.name, a.closed_at, a.outcome, a.note \
     from alarms a \
     left join users ua on ua.id = a.acknowledged_by \
     left join users uo on uo.id = a.on_site_by \
     left join users uc on uc.id = a.closed_by ";

/// Staff visibility of alarm `a`: its wearer is in one of the viewer's teams, or the viewer (or
/// a team of theirs) is one of the wearer's responder steps, or a push for it was addressed to
/// them. `viewer` is the viewer's placeholder (null: no restriction).
fn visible_to(viewer: &str) -> String {
    format!(
        "({viewer} is null \
         or exists (select 1 from wearers w join team_members tm on tm.team_id = w.team_id \
                    where w.id = a.wearer_id and tm.user_id = {viewer}) \
         or exists (select 1 from responders r join wearers rw on rw.id = r.wearer_id \
                    where rw.tenant_id = a.tenant_id and r.wearer_id = a.wearer_id and (r.user_id = {viewer} \
                    or r.team_id in (select team_id from team_members where user_id = {viewer}))) \
         or exists (select 1 from outbox o where o.alarm_id = a.id and o.recipient = {viewer}))"
    )
}

#[async_trait]
impl Alarms for SqlStore {
    #[instrument(level = "debug", skip_all)]
    async fn engine_commit(
        &self,
        commit: &EngineCommit,
        now: DateTime<Utc>,
    ) -> Result<Vec<SignalOutcome>, StoreError> {
        use {Signal, SignalOutcome};
        let mut tx = self.db.begin_write().await?;
        for s in &commit.states {
            query(
                        "insert into device_zone_state (device_id, state, last_fix_at, updated_at) \
                         values ($1, $2, $3, $4) on conflict (device_id) do update set \
                         state = excluded.state, last_fix_at = excluded.last_fix_at, updated_at = excluded.updated_at",
                    )
                    .bind(s.device.as_str())
                    .bind(&s.state)
                    .bind(s.last_fix_at)
                    .bind(now)
                    .execute(&mut tx)
                    .await?;
        }
        for change in &commit.deadlines {
            deadline_in(&mut tx, change).await?;
        }
        let mut outcomes = Vec::with_capacity(commit.signals.len());
        for signal in &commit.signals {
            let outcome = match signal {
                Signal::Raise(a) => raise_in(&mut tx, a, now).await?,
                Signal::Returned { wearer, zone, at, position } => {
                    let key = OpenKey {
                        wearer: Some(*wearer),
                        device: None,
                        kind: trygg_core::AlarmKind::ZoneExit,
                        zone,
                    };
                    match open_alarm_in(&mut tx, &key).await? {
                        Some(OpenAlarm { id, .. }) => {
                            query("update alarms set returned_at = $1 where id = $2")
                                .bind(*at)
                                .bind(id)
                                .execute(&mut tx)
                                .await?;
                            let event = NewAlarmEvent {
                                at: *at,
                                kind: "returned".into(),
                                actor: None,
                                position: Some(*position),
                                detail: String::new(),
                            };
                            event_in(&mut tx, id, &event, None).await?;
                            SignalOutcome::Joined(id)
                        }
                        None => SignalOutcome::Nothing,
                    }
                }
                Signal::ResolvedByDevice { device, kind, at, reason } => {
                    resolved_in(&mut tx, device, *kind, *at, reason).await?
                }
            };
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    #[instrument(level = "debug", skip_all)]
    async fn zone_states(&self) -> Result<Vec<ZoneStateRow>, StoreError> {
        let rows =
            query("select device_id, state, last_fix_at from device_zone_state").fetch_all(&self.db).await?;
        rows.iter()
            .map(|r| {
                Ok(ZoneStateRow {
                    device: parse_device(r.get(0))?,
                    state: r.get(1),
                    last_fix_at: get_time(r, 2)?,
                })
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn unevaluated_fixes(
        &self,
        since: DateTime<Utc>,
        after: Option<&ReceivedFix>,
        limit: u32,
    ) -> Result<Vec<ReceivedFix>, StoreError> {
        // Devices with a stored state: every later fix, however old (an index range per
        // device). Devices without: fixes received since `since` (fixes_by_received).
        let rows = query(format!(
            "select * from (select f.device_id, d.tenant_id, d.wearer_id, {FIX_COLUMNS} \
                     from device_zone_state s \
                     join fixes f on f.device_id = s.device_id and f.time > s.last_fix_at \
                     join devices d on d.id = f.device_id \
                     union all \
                     select f.device_id, d.tenant_id, d.wearer_id, {FIX_COLUMNS} from fixes f \
                     join devices d on d.id = f.device_id where f.received_at >= $1 \
                     and not exists (select 1 from device_zone_state s where s.device_id = f.device_id)) u \
                     where $2 is null or u.device_id > $2 or (u.device_id = $2 and u.time > $3) \
                     order by 1, 4 limit $4"
        ))
        .bind(since)
        .bind(after.map(|a| a.device.as_str()))
        .bind(after.map(|a| a.fix.time))
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(received_fix).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn fixes_received_since(
        &self,
        since: DateTime<Utc>,
        after: Option<&ReceivedFix>,
        limit: u32,
    ) -> Result<Vec<ReceivedFix>, StoreError> {
        // The range starts at the page's cursor: a page reads its own rows, not every earlier
        // page's again. Rows received at the cursor's instant are ordered by device and time.
        let from = after.map_or(since, |a| a.received_at.max(since));
        let rows = query(format!(
            "select f.device_id, d.tenant_id, d.wearer_id, {FIX_COLUMNS} from fixes f \
                     join devices d on d.id = f.device_id where f.received_at >= $1 \
                     and ($2 is null or f.received_at > $1 or f.device_id > $2 \
                          or (f.device_id = $2 and f.time > $3)) \
                     order by f.received_at, f.device_id, f.time limit $4"
        ))
        .bind(from)
        .bind(after.map(|a| a.device.as_str()))
        .bind(after.map(|a| a.fix.time))
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(received_fix).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn pending_device_alarms(&self) -> Result<Vec<PendingDeviceAlarm>, StoreError> {
        let rows = query(format!(
            "select da.id, da.device_id, d.tenant_id, d.wearer_id, da.kind, da.time, {FIX_COLUMNS} \
                     from device_alarms da join devices d on d.id = da.device_id \
                     left join fixes f on f.device_id = da.device_id and f.time = da.fix_time \
                     where da.handled_at is null order by da.id"
        ))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                let has_fix = r.get::<Option<f64>, _>(8).is_some();
                Ok(PendingDeviceAlarm {
                    id: r.get(0),
                    device: parse_device(r.get(1))?,
                    tenant: TenantId(get_uuid(r, 2)?),
                    wearer: get_opt_uuid(r, 3)?.map(WearerId),
                    kind: parse_kind(r.get(4))?,
                    time: get_time(r, 5)?,
                    fix: if has_fix { Some(stored_fix(r, 6)?.fix) } else { None },
                })
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn due_deadlines(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<DueDeadline>, StoreError> {
        let rows = query(
            "select device_id, kind, tenant_id, due_at, fired_at from device_deadlines \
                     where due_at <= $1 order by due_at limit $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(deadline_row).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn deadlines_of_kind(&self, kind: &str) -> Result<Vec<DueDeadline>, StoreError> {
        let rows = query(
            "select device_id, kind, tenant_id, due_at, fired_at from device_deadlines where kind = $1",
        )
        .bind(kind)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(deadline_row).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn last_heard(&self, device: &DeviceId) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Three index lookups; the newest of them, in Rust (SQLite's max() of a null is null).
        let row = query(
                    "select d.last_heard_at, \
                     (select f.received_at from fixes f where f.device_id = d.id order by f.time desc limit 1), \
                     (select max(da.received_at) from device_alarms da where da.device_id = d.id) \
                     from devices d where d.id = $1",
                )
                .bind(device.as_str())
                .fetch_optional(&self.db)
                .await?;
        let Some(r) = row else { return Ok(None) };
        Ok([get_opt_time(&r, 0)?, get_opt_time(&r, 1)?, get_opt_time(&r, 2)?].into_iter().flatten().max())
    }

    #[instrument(level = "debug", skip_all)]
    async fn alarms(&self, tenant: TenantId, f: &AlarmFilter) -> Result<Vec<Alarm>, StoreError> {
        // Triage: the critical bucket newest first, then the rest grouped per wearer.
        let triage = if f.triage {
            let critical = critical_kinds_sql();
            format!(
                "case when a.kind in ({critical}) then 0 else 1 end, \
                         case when a.kind in ({critical}) then null else a.wearer_id end, "
            )
        } else {
            String::new()
        };
        let sql = format!(
            "{ALARM_SELECT}where a.tenant_id = $1 and {visible} \
                     and ($3 is null or (a.state <> 'closed') = $3) \
                     and ($4 is null or a.kind = $4) and ($5 is null or a.wearer_id = $5) \
                     and ($6 is null or a.raised_at >= $6) and ($7 is null or a.raised_at < $7) \
                     order by {triage}a.raised_at desc limit $8",
            visible = visible_to("$2"),
        );
        let rows = query(&sql)
            .bind(tenant.0)
            .bind(f.viewer)
            .bind(f.open)
            .bind(f.kind.map(|k| k.as_str()))
            .bind(f.wearer.map(|w| w.0))
            .bind(f.from)
            .bind(f.to)
            .bind(i64::from(f.limit))
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(alarm_row).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn alarm(
        &self,
        tenant: TenantId,
        id: Uuid,
        viewer: Option<Uuid>,
    ) -> Result<Option<Alarm>, StoreError> {
        alarm_in(&self.db, tenant, id, viewer).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn step_alarm(
        &self,
        tenant: TenantId,
        id: Uuid,
        req: &StepRequest,
    ) -> Result<Option<StepOutcome>, StoreError> {
        use trygg_core::Step;
        let allowed: Vec<&str> = req.step.allowed_from().iter().map(|s| s.as_str()).collect();
        // The allowed states are a fixed, short list of our own names: safe to inline.
        let from = allowed.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
        let outcome = match req.step {
            Step::Close(o) => Some(o.as_str()),
            _ => None,
        };
        let mut tx = self.db.begin_write().await?;
        // Every step binds every parameter; the target state decides which columns change.
        let sql = format!(
            "update alarms set state = $1, \
                     acknowledged_by = case when $1 = 'acknowledged' then $4 else acknowledged_by end, \
                     acknowledged_at = case when $1 = 'acknowledged' then $3 else acknowledged_at end, \
                     on_site_by = case when $1 = 'on_site' then $4 else on_site_by end, \
                     on_site_at = case when $1 = 'on_site' then $3 else on_site_at end, \
                     closed_by = case when $1 = 'closed' then $4 else closed_by end, \
                     closed_at = case when $1 = 'closed' then $3 else closed_at end, \
                     outcome = coalesce($5, outcome), \
                     note = case when $1 = 'closed' then $6 else note end \
                     where id = $2 and tenant_id = $7 and state in ({from})"
        );
        let changed = query(&sql)
            .bind(req.step.target().as_str())
            .bind(id)
            .bind(req.at)
            .bind(req.actor)
            .bind(outcome)
            .bind(&req.note)
            .bind(tenant.0)
            .execute(&mut tx)
            .await?
            .rows_affected();
        if changed == 1 {
            let event = NewAlarmEvent {
                at: req.at,
                kind: req.step.event().into(),
                actor: req.actor,
                position: req.position,
                detail: match req.step {
                    Step::Close(o) if req.note.is_empty() => o.as_str().to_owned(),
                    Step::Close(o) => format!("{o}: {}", req.note),
                    _ => String::new(),
                },
            };
            event_in(&mut tx, id, &event, None).await?;
        }
        tx.commit().await?;
        let Some(alarm) = alarm_in(&self.db, tenant, id, None).await? else { return Ok(None) };
        Ok(Some(if changed == 1 { StepOutcome::Done(alarm) } else { StepOutcome::Refused(alarm) }))
    }

    #[instrument(level = "debug", skip_all)]
    async fn alarm_events(&self, tenant: TenantId, id: Uuid) -> Result<Vec<AlarmEvent>, StoreError> {
        let rows = query(
                    "select e.id, e.at, e.kind, e.actor, u.name, e.lat, e.lon, e.accuracy_m, e.detail \
                     from alarm_events e join alarms a on a.id = e.alarm_id left join users u on u.id = e.actor \
                     where a.id = $1 and a.tenant_id = $2 order by e.id",
                )
                .bind(id)
                .bind(tenant.0)
                .fetch_all(&self.db)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(AlarmEvent {
                    id: r.get(0),
                    event: NewAlarmEvent {
                        at: get_time(r, 1)?,
                        kind: r.get(2),
                        actor: get_opt_uuid(r, 3)?,
                        position: position_at(r, 5),
                        detail: r.get(8),
                    },
                    actor_name: r.get(4),
                })
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn put_push_token(
        &self,
        tenant: TenantId,
        user: Uuid,
        token: &str,
        platform: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = query(
                    "insert into push_tokens (token, tenant_id, user_id, platform, created_at) \
                     values ($1, $2, $3, $4, $5) on conflict (token) do update set \
                     user_id = excluded.user_id, platform = excluded.platform, created_at = excluded.created_at, \
                     disabled_at = null where push_tokens.tenant_id = excluded.tenant_id",
                )
                .bind(token)
                .bind(tenant.0)
                .bind(user)
                .bind(platform)
                .bind(at)
                .execute(&self.db)
                .await?;
        // Registered in another tenant: moving it would send one tenant's alarms to a
        // phone another tenant's account claimed.
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("push token"));
        }
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn delete_push_token(&self, tenant: TenantId, user: Uuid, token: &str) -> Result<bool, StoreError> {
        let done = query("delete from push_tokens where token = $1 and tenant_id = $2 and user_id = $3")
            .bind(token)
            .bind(tenant.0)
            .bind(user)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn push_tokens(&self, tenant: TenantId, user: Uuid) -> Result<Vec<PushToken>, StoreError> {
        push_tokens_in(&self.db, tenant, user, false).await
    }
}

/// An account's push tokens, newest first; with `active_only`, those FCM has not
/// declared dead.
pub(crate) async fn push_tokens_in(
    pool: &Db,
    tenant: TenantId,
    user: Uuid,
    active_only: bool,
) -> Result<Vec<PushToken>, StoreError> {
    let rows = query(
        "select token, platform, created_at, disabled_at from push_tokens \
                 where tenant_id = $1 and user_id = $2 and ($3 = false or disabled_at is null) \
                 order by created_at desc",
    )
    .bind(tenant.0)
    .bind(user)
    .bind(active_only)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PushToken {
                token: r.get(0),
                platform: r.get(1),
                created_at: get_time(r, 2)?,
                disabled_at: get_opt_time(r, 3)?,
            })
        })
        .collect()
}

/// The newest open alarm with `key`.
async fn open_alarm_in(tx: &mut Tx, key: &OpenKey<'_>) -> Result<Option<OpenAlarm>, StoreError> {
    // Without a wearer the device is the key (a watch bound to nobody).
    let row = query(
        "select id, state, last_triggered_at, acknowledged_by from alarms \
                 where ((wearer_id = $1) or ($1 is null and wearer_id is null and device_id = $2)) \
                 and kind = $3 and zone_id = $4 and state <> 'closed' \
                 order by raised_at desc limit 1",
    )
    .bind(key.wearer.map(|w| w.0))
    .bind(key.device.map(|d| d.as_str()))
    .bind(key.kind.as_str())
    .bind(key.zone)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|r| {
        Ok(OpenAlarm {
            id: get_uuid(&r, 0)?,
            state: parse_text("alarm state", r.get(1))?,
            last_triggered_at: get_time(&r, 2)?,
            acknowledged_by: get_opt_uuid(&r, 3)?,
        })
    })
    .transpose()
}

/// Raises `a`, or joins it to the open alarm of the same key while that still takes
/// repeats (the rule is on [`Alarms::engine_commit`](crate::Alarms::engine_commit)).
async fn raise_in(tx: &mut Tx, a: &NewAlarm, now: DateTime<Utc>) -> Result<SignalOutcome, StoreError> {
    use {NewAlarmEvent, SignalOutcome};
    let zone = a.zone.as_deref().unwrap_or("");
    let position = a.position.map(|(p, _)| p);
    let mut detail = a.device.as_ref().map(|d| format!("device {d}")).unwrap_or_default();
    if a.last_known_position {
        detail.push_str("; sent without a position: the last known position is shown");
    }
    if a.kind == AlarmKind::Test {
        return test_alarm_in(tx, a, now, position, detail).await;
    }
    let key = OpenKey { wearer: a.wearer, device: a.device.as_ref(), kind: a.kind, zone };
    let open = open_alarm_in(tx, &key).await?;
    if let Some(open) = &open {
        let join_secs: i64 =
            query("select coalesce((select repeat_join_secs from tenant_settings where tenant_id = $1), $2)")
                .bind(a.tenant.0)
                .bind(i64::from(crate::DEFAULT_REPEAT_JOIN_SECS))
                .fetch_one(&mut *tx)
                .await?
                .get(0);
        if open.takes_repeat(now, chrono::Duration::seconds(join_secs)) {
            let event = NewAlarmEvent { at: now, kind: "repeated".into(), actor: None, position, detail };
            event_in(&mut *tx, open.id, &event, None).await?;
            query("update alarms set last_triggered_at = $1 where id = $2")
                .bind(now)
                .bind(open.id)
                .execute(&mut *tx)
                .await?;
            // "Trycker igen": the staff member who has it hears of the repeat.
            if let (trygg_core::AlarmState::Acknowledged, Some(user)) = (open.state, open.acknowledged_by) {
                repush_in(tx, a.tenant, open.id, user, now).await?;
            }
            if let Some(da) = a.device_alarm {
                handled_in(tx, da, Some(open.id), now).await?;
            }
            return Ok(SignalOutcome::Joined(open.id));
        }
    }
    let id = insert_alarm_in(tx, a, zone, now, None).await?;
    let event = NewAlarmEvent { at: now, kind: "raised".into(), actor: None, position, detail };
    event_in(&mut *tx, id, &event, None).await?;
    if let Some(old) = open {
        let event = NewAlarmEvent {
            at: now,
            kind: "superseded".into(),
            actor: None,
            position,
            detail: format!(
                "superseded by alarm {id}: this one was {} when the same alarm came again",
                old.state
            ),
        };
        event_in(&mut *tx, old.id, &event, None).await?;
    }
    for recipient in &a.recipients {
        query(
            "insert into outbox (tenant_id, alarm_id, step, recipient, created_at, due_at) \
                     values ($1, $2, 0, $3, $4, $4) on conflict do nothing",
        )
        .bind(a.tenant.0)
        .bind(id)
        .bind(*recipient)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    escalation_deadline_in(tx, a, id, now).await?;
    if let Some(da) = a.device_alarm {
        handled_in(tx, da, Some(id), now).await?;
    }
    Ok(SignalOutcome::Raised(id))
}

/// Pushes `alarm` again to `user`: their step-0 outbox row is (re)armed due now and
/// forgets the phones it reached, so every phone of theirs hears the repeat.
async fn repush_in(
    tx: &mut Tx,
    tenant: TenantId,
    alarm: Uuid,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let id: i64 = query(
        "insert into outbox (tenant_id, alarm_id, step, recipient, created_at, due_at) \
                 values ($1, $2, 0, $3, $4, $4) on conflict (alarm_id, step, recipient) do update set \
                 status = 'pending', due_at = excluded.due_at, attempts = 0, last_error = null returning id",
    )
    .bind(tenant.0)
    .bind(alarm)
    .bind(user)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    query("delete from outbox_tokens where outbox_id = $1").bind(id).execute(&mut *tx).await?;
    Ok(())
}

/// Records a test alarm from a device: stored already closed as `test` (its `raised` and
/// `closed` events say so), never joined to another, never pushed, never escalated: it checks
/// the device and the path to the database, and pages nobody.
async fn test_alarm_in(
    tx: &mut Tx,
    a: &NewAlarm,
    now: DateTime<Utc>,
    position: Option<Position>,
    detail: String,
) -> Result<SignalOutcome, StoreError> {
    let note = "closed automatically: a test alarm from the device";
    let id = insert_alarm_in(tx, a, "", now, Some((trygg_core::Outcome::Test, note))).await?;
    for (kind, detail) in [("raised", detail), ("closed", note.to_owned())] {
        let event = NewAlarmEvent { at: now, kind: kind.into(), actor: None, position, detail };
        event_in(&mut *tx, id, &event, None).await?;
    }
    if let Some(da) = a.device_alarm {
        handled_in(tx, da, Some(id), now).await?;
    }
    Ok(SignalOutcome::Raised(id))
}

/// Writes the row of a new alarm `a` raised at `now` (in zone `zone`, `""` for none) and returns
/// its id: open (`raised`), or already `closed` at `now` with an outcome and note.
async fn insert_alarm_in(
    tx: &mut Tx,
    a: &NewAlarm,
    zone: &str,
    now: DateTime<Utc>,
    closed: Option<(trygg_core::Outcome, &str)>,
) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    let position = a.position.map(|(p, _)| p);
    query(
        "insert into alarms (id, tenant_id, wearer_id, device_id, kind, zone_id, state, raised_at, \
         trigger_time, lat, lon, accuracy_m, position_time, last_triggered_at, closed_at, outcome, note) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $8, $14, $15, $16)",
    )
    .bind(id)
    .bind(a.tenant.0)
    .bind(a.wearer.map(|w| w.0))
    .bind(a.device.as_ref().map(|d| d.as_str()))
    .bind(a.kind.as_str())
    .bind(zone)
    .bind(if closed.is_some() { "closed" } else { "raised" })
    .bind(now)
    .bind(a.trigger_time)
    .bind(position.map(|p| p.lat))
    .bind(position.map(|p| p.lon))
    .bind(position.and_then(|p| p.accuracy_m))
    .bind(a.position.map(|(_, t)| t))
    .bind(closed.map(|_| now))
    .bind(closed.map(|(outcome, _)| outcome.as_str()))
    .bind(closed.map_or("", |(_, note)| note))
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

async fn handled_in(
    tx: &mut Tx,
    device_alarm: i64,
    alarm: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    query("update device_alarms set handled_at = $1, alarm_id = $2 where id = $3")
        .bind(now)
        .bind(alarm)
        .bind(device_alarm)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

fn deadline_row(r: &Row) -> Result<DueDeadline, StoreError> {
    Ok(DueDeadline {
        device: parse_device(r.get(0))?,
        kind: r.get(1),
        tenant: TenantId(get_uuid(r, 2)?),
        due_at: get_time(r, 3)?,
        fired_at: get_opt_time(r, 4)?,
    })
}

/// Applies one change to a supervision deadline.
async fn deadline_in(tx: &mut Tx, change: &DeadlineChange) -> Result<(), StoreError> {
    use DeadlineChange;
    match change {
        DeadlineChange::Arm { device, tenant, kind, due_at } => {
            query(
                "insert into device_deadlines (device_id, kind, tenant_id, due_at, fired_at) \
                         values ($1, $2, $3, $4, null) on conflict (device_id, kind) do update set \
                         tenant_id = excluded.tenant_id, due_at = excluded.due_at, fired_at = null",
            )
            .bind(device.as_str())
            .bind(*kind)
            .bind(tenant.0)
            .bind(*due_at)
            .execute(&mut *tx)
            .await?;
        }
        DeadlineChange::Fired { device, tenant, kind, at, recheck_at } => {
            query(
                        "insert into device_deadlines (device_id, kind, tenant_id, due_at, fired_at) \
                         values ($1, $2, $3, $4, $5) on conflict (device_id, kind) do update set \
                         tenant_id = excluded.tenant_id, due_at = excluded.due_at, fired_at = excluded.fired_at",
                    )
                    .bind(device.as_str())
                    .bind(*kind)
                    .bind(tenant.0)
                    .bind(*recheck_at)
                    .bind(*at)
                    .execute(&mut *tx)
                    .await?;
        }
        DeadlineChange::Postpone { device, kind, due_at } => {
            query("update device_deadlines set due_at = $1 where device_id = $2 and kind = $3")
                .bind(*due_at)
                .bind(device.as_str())
                .bind(*kind)
                .execute(&mut *tx)
                .await?;
        }
        DeadlineChange::Drop { device, kind } => {
            query("delete from device_deadlines where device_id = $1 and kind = $2")
                .bind(device.as_str())
                .bind(*kind)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// Closes the device's open alerts of `kind`: the device resolved them at `at` by `reason`.
/// Nobody closed them, so there is no actor; the outcome is `other` with a note, the event
/// `resolved_by_device`.
async fn resolved_in(
    tx: &mut Tx,
    device: &DeviceId,
    kind: AlarmKind,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<SignalOutcome, StoreError> {
    let rows = query("select id from alarms where device_id = $1 and kind = $2 and state <> 'closed'")
        .bind(device.as_str())
        .bind(kind.as_str())
        .fetch_all(&mut *tx)
        .await?;
    let mut outcome = SignalOutcome::Nothing;
    for r in &rows {
        let id = get_uuid(r, 0)?;
        let note = format!(
            "resolved by device: {reason} at {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        query(
            "update alarms set state = 'closed', closed_at = $1, outcome = $2, note = $3 \
                     where id = $4 and state <> 'closed'",
        )
        .bind(at)
        .bind(trygg_core::Outcome::Other.as_str())
        .bind(&note)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let event = NewAlarmEvent {
            at,
            kind: "resolved_by_device".into(),
            actor: None,
            position: None,
            detail: note,
        };
        event_in(&mut *tx, id, &event, None).await?;
        outcome = SignalOutcome::Joined(id);
    }
    Ok(outcome)
}

/// Appends an event to an alarm's trail. With `tenant`, only to an alarm of that tenant (false
/// otherwise); without, the caller has the alarm in hand (in the transaction that writes it).
pub(crate) async fn event_in(
    on: impl Into<On<'_>>,
    alarm: Uuid,
    e: &NewAlarmEvent,
    tenant: Option<TenantId>,
) -> Result<bool, StoreError> {
    let done = query(
        "insert into alarm_events (alarm_id, at, kind, actor, lat, lon, accuracy_m, detail) \
         select $1, $2, $3, $4, $5, $6, $7, $8 \
         where $9 is null or exists (select 1 from alarms where id = $1 and tenant_id = $9)",
    )
    .bind(alarm)
    .bind(e.at)
    .bind(&e.kind)
    .bind(e.actor)
    .bind(e.position.map(|p| p.lat))
    .bind(e.position.map(|p| p.lon))
    .bind(e.position.and_then(|p| p.accuracy_m))
    .bind(&e.detail)
    .bind(tenant)
    .execute(on)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn alarm_in(
    on: impl Into<On<'_>>,
    tenant: TenantId,
    id: Uuid,
    viewer: Option<Uuid>,
) -> Result<Option<Alarm>, StoreError> {
    let row = query(format!("{ALARM_SELECT}where a.tenant_id = $1 and {} and a.id = $3", visible_to("$2")))
        .bind(tenant.0)
        .bind(viewer)
        .bind(id)
        .fetch_optional(on)
        .await?;
    row.as_ref().map(alarm_row).transpose()
}

fn position_at(r: &Row, i: usize) -> Option<Position> {
    let (lat, lon) = (r.get::<Option<f64>, _>(i)?, r.get::<Option<f64>, _>(i + 1)?);
    Some(Position { lat, lon, accuracy_m: r.get(i + 2) })
}

fn stamp_at(r: &Row, i: usize) -> Result<Option<Stamp>, StoreError> {
    let (Some(user), Some(at)) = (get_opt_uuid(r, i)?, get_opt_time(r, i + 2)?) else { return Ok(None) };
    Ok(Some(Stamp { user, name: r.get::<Option<String>, _>(i + 1).unwrap_or_default(), at }))
}

fn alarm_row(r: &Row) -> Result<Alarm, StoreError> {
    let zone: String = r.get(5);
    let position = match (position_at(r, 9), get_opt_time(r, 12)?) {
        (Some(p), Some(t)) => Some((p, t)),
        _ => None,
    };
    Ok(Alarm {
        id: get_uuid(r, 0)?,
        tenant: TenantId(get_uuid(r, 1)?),
        wearer: get_opt_uuid(r, 2)?.map(WearerId),
        device: r.get::<Option<String>, _>(3).map(parse_device).transpose()?,
        kind: parse_text("alarm kind", r.get(4))?,
        zone: (!zone.is_empty()).then_some(zone),
        state: parse_text("alarm state", r.get(6))?,
        raised_at: get_time(r, 7)?,
        trigger_time: get_time(r, 8)?,
        position,
        returned_at: get_opt_time(r, 13)?,
        acknowledged: stamp_at(r, 14)?,
        on_site: stamp_at(r, 17)?,
        closed: stamp_at(r, 20)?,
        outcome: r.get::<Option<String>, _>(23).map(|o| parse_text("outcome", o)).transpose()?,
        note: r.get(24),
    })
}

/// Reads a `device_id, tenant_id, wearer_id, {FIX_COLUMNS}` row.
fn received_fix(r: &Row) -> Result<ReceivedFix, StoreError> {
    let stored = stored_fix(r, 3)?;
    Ok(ReceivedFix {
        device: parse_device(r.get(0))?,
        tenant: TenantId(get_uuid(r, 1)?),
        wearer: get_opt_uuid(r, 2)?.map(WearerId),
        received_at: stored.received_at,
        fix: stored.fix,
    })
}
