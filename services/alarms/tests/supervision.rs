//! Device supervision against a real store, on SQLite **and** PostgreSQL: offline deadlines as
//! rows, raised once, cleared by the device, across restarts. Time is passed in explicitly
//! (`now`), so an hour of silence takes no time.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use trygg_alarms::{Engine, ZoneIndexes};
use trygg_core::{
    AlarmKind, AlarmState, Committed, DeviceAlarmKind, DeviceId, Fix, Outcome, TenantId, WearerId,
};
use trygg_store::testing::{add_user, add_watch, commit_device_alarm, device_alarm, tenant_settings};
use trygg_store::{
    AlarmFilter, FixBatch, NewFix, Role, SignalOutcome, Store, SupervisionSettings, TenantSettings,
    WearerFields, on_both_backends,
};
use uuid::Uuid;

on_both_backends!(
    a_silent_device_raises_one_offline_alert_that_closes_when_it_reports_across_restarts,
    a_keep_alive_postpones_the_deadline_and_resolves_an_open_alert,
    a_device_never_heard_or_bound_to_nobody_raises_nothing,
    the_offline_deadline_is_not_rewritten_for_every_fix,
    one_low_battery_alert_per_discharge_across_a_restart,
    a_steep_discharge_in_daytime_warns_before_the_night,
    a_low_battery_at_night_waits_for_the_morning_across_a_restart,
    a_low_battery_at_night_that_will_not_last_is_raised_at_once,
    in_triage_order_critical_alarms_come_first_and_technical_ones_are_grouped_per_wearer,
    a_keep_alive_battery_level_is_judged_like_a_fix_battery,
    a_low_battery_alert_left_open_is_resolved_by_the_charge_and_the_next_discharge_alerts_again,
    a_device_without_a_test_alarm_in_the_window_raises_one_alert_across_a_restart,
    a_test_alarm_is_closed_as_test_pages_nobody_and_meets_the_window,
);

/// The default offline threshold (15 min).
const OFFLINE: TimeDelta = TimeDelta::minutes(15);

struct Setup {
    store: Arc<dyn Store>,
    zones: Arc<ZoneIndexes>,
    tenant: TenantId,
    wearer: WearerId,
    device: DeviceId,
    staff: Uuid,
    /// The test's "now": fixes are stored as received at about this time.
    t0: DateTime<Utc>,
}

/// A tenant with default settings, a wearer with a one-person team, wearing watch `w1`.
async fn setup(store: Arc<dyn Store>) -> Setup {
    let tenant = store.create_tenant("Skövde").await.unwrap();
    let staff = add_user(&*store, Some(tenant), Role::Staff, "staff@skovde.se", "Sven").await;
    let team = store.add_team(tenant, "Hemtjänst Norr").await.unwrap();
    assert!(store.set_team_members(tenant, team, &[staff]).await.unwrap());
    let fields = WearerFields { name: "Dagny".into(), team: Some(team), ..WearerFields::default() };
    let wearer = store.add_wearer(tenant, &fields).await.unwrap();
    let device = add_watch(&*store, tenant, Some(wearer), "w1").await;
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    Setup { store, zones: Arc::new(ZoneIndexes::default()), tenant, wearer, device, staff, t0 }
}

impl Setup {
    async fn engine(&self) -> Engine {
        Engine::load(self.store.clone(), self.zones.clone()).await.unwrap()
    }

    /// Stores a fix of `device` received at `at` as ingest would, and returns what ingest hands
    /// to the engine.
    async fn report(&self, device: &DeviceId, wearer: Option<WearerId>, at: DateTime<Utc>) -> Committed {
        self.report_battery(device, wearer, at, 80).await
    }

    async fn report_battery(
        &self,
        device: &DeviceId,
        wearer: Option<WearerId>,
        at: DateTime<Utc>,
        pct: u8,
    ) -> Committed {
        let fix = Fix { accuracy_m: Some(10.0), battery_pct: Some(pct), ..Fix::gps(at, 58.3903, 13.8462) };
        let batch = FixBatch {
            device: device.clone(),
            received_at: at,
            fixes: vec![NewFix { fix: fix.clone(), late: false }],
        };
        self.store.insert_fixes(&[batch]).await.unwrap();
        Committed::Fixes {
            tenant: self.tenant,
            wearer,
            device: device.clone(),
            fixes: vec![fix],
            received_at: at,
        }
    }

    async fn offline_alarms(&self) -> Vec<trygg_store::Alarm> {
        self.alarms_of(AlarmKind::DeviceOffline).await
    }

    async fn alarms_of(&self, kind: AlarmKind) -> Vec<trygg_store::Alarm> {
        let filter = AlarmFilter { limit: 100, ..AlarmFilter::default() };
        let all = self.store.alarms(self.tenant, &filter).await.unwrap();
        all.into_iter().filter(|a| a.kind == kind).collect()
    }

    /// Reports `pct` at each of `readings` (Stockholm local day and time), one batch each, as
    /// processed at the time of the report.
    async fn battery(&self, engine: &mut Engine, readings: &[((u32, u32, u32), u8)]) -> Vec<SignalOutcome> {
        let mut out = Vec::new();
        for &((day, hour, minute), pct) in readings {
            let at = local(day, hour, minute);
            let report = self.report_battery(&self.device, Some(self.wearer), at, pct).await;
            out.extend(engine.process(vec![report], at).await.unwrap());
        }
        out
    }

    /// Saves default settings with a daily test-alarm window from `from` to `until` o'clock.
    async fn test_window(&self, from: u8, until: u8) {
        let settings = TenantSettings {
            offline_after_secs: OFFLINE.num_seconds() as u32,
            supervision: SupervisionSettings {
                test_alarm_from_hour: from,
                test_alarm_until_hour: until,
                ..SupervisionSettings::default()
            },
            ..tenant_settings()
        };
        self.store.put_settings(self.tenant, &settings, self.t0).await.unwrap();
    }

    /// Stores a test alarm the watch sent at `at` as ingest would; what ingest hands over.
    async fn test_alarm(&self, at: DateTime<Utc>) -> Committed {
        let alarm = device_alarm(&self.device, DeviceAlarmKind::Test, at, at);
        commit_device_alarm(&*self.store, self.tenant, Some(self.wearer), &alarm).await
    }

    fn at(&self, minutes: i64) -> DateTime<Utc> {
        self.t0 + TimeDelta::minutes(minutes)
    }
}

fn raised(outcomes: &[SignalOutcome]) -> Vec<Uuid> {
    outcomes.iter().filter_map(|o| if let SignalOutcome::Raised(id) = o { Some(*id) } else { None }).collect()
}

async fn a_silent_device_raises_one_offline_alert_that_closes_when_it_reports_across_restarts(
    store: Arc<dyn Store>,
) {
    let s = setup(store).await;
    let mut engine = s.engine().await;
    let report = s.report(&s.device, Some(s.wearer), s.at(0)).await;
    engine.process(vec![report], s.at(0)).await.unwrap();
    assert!(engine.supervise(s.at(14)).await.unwrap().is_empty(), "not silent long enough");

    // A restart before the deadline: the row is in the database, so it still fires, once.
    let mut engine = s.engine().await;
    let out = engine.supervise(s.at(16)).await.unwrap();
    let [id] = raised(&out)[..] else { panic!("one offline alert expected, got {out:?}") };
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!(
        (alarm.kind, alarm.wearer, alarm.device.as_ref()),
        (AlarmKind::DeviceOffline, Some(s.wearer), Some(&s.device))
    );
    assert!(alarm.kind.is_technical() && !alarm.kind.is_critical());
    assert_eq!(alarm.trigger_time, s.at(0) + OFFLINE, "offline since its threshold passed");
    assert_eq!(alarm.position.map(|(_, t)| t), Some(s.at(0)), "shown with the last known position");
    assert!(s.store.alarm(s.tenant, id, Some(s.staff)).await.unwrap().is_some(), "addressed to the team");
    let timers = s
        .store
        .claim_timers("test-node", s.at(10_000), std::time::Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert!(timers.is_empty(), "a technical alert never escalates: {timers:?}");
    assert!(raised(&engine.supervise(s.at(16)).await.unwrap()).is_empty(), "fired once");

    // Restarts while it stays silent raise nothing more.
    for minute in [17, 30, 60] {
        let mut engine = s.engine().await;
        assert!(raised(&engine.supervise(s.at(minute)).await.unwrap()).is_empty(), "minute {minute}");
    }
    assert_eq!(s.offline_alarms().await.len(), 1);

    // It reports again (to an engine that restarted): the alert closes by itself.
    let mut engine = s.engine().await;
    let report = s.report(&s.device, Some(s.wearer), s.at(61)).await;
    let out = engine.process(vec![report], s.at(61)).await.unwrap();
    assert_eq!(out, [SignalOutcome::Joined(id)]);
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!((alarm.state, alarm.outcome), (AlarmState::Closed, Some(Outcome::Other)));
    assert!(alarm.note.starts_with("resolved by device"), "{:?}", alarm.note);
    assert!(alarm.closed.is_none(), "closed by nobody");
    let events: Vec<String> =
        s.store.alarm_events(s.tenant, id).await.unwrap().into_iter().map(|e| e.event.kind).collect();
    assert_eq!(events, ["raised", "resolved_by_device"]);

    // Silent again: a new alert, its own.
    let out = engine.supervise(s.at(61) + OFFLINE + TimeDelta::seconds(5)).await.unwrap();
    let [second] = raised(&out)[..] else { panic!("{out:?}") };
    assert_ne!(second, id);
    assert_eq!(s.offline_alarms().await.len(), 2);
}

async fn a_keep_alive_postpones_the_deadline_and_resolves_an_open_alert(store: Arc<dyn Store>) {
    let s = setup(store).await;
    let mut engine = s.engine().await;
    let report = s.report(&s.device, Some(s.wearer), s.at(0)).await;
    engine.process(vec![report], s.at(0)).await.unwrap();
    // A sleeping watch sends only keep-alives, which do not pass through the engine.
    s.store.device_heard(&s.device, s.at(10), Some(70)).await.unwrap();
    assert!(raised(&engine.supervise(s.at(16)).await.unwrap()).is_empty(), "heard 6 min ago");
    assert!(raised(&engine.supervise(s.at(24)).await.unwrap()).is_empty(), "heard 14 min ago");
    let out = engine.supervise(s.at(26)).await.unwrap();
    let [id] = raised(&out)[..] else { panic!("silent 16 min: {out:?}") };
    // A keep-alive after the alert closes it at the next look.
    assert!(engine.supervise(s.at(29)).await.unwrap().is_empty(), "still silent at 29");
    s.store.device_heard(&s.device, s.at(30), None).await.unwrap();
    let out = engine.supervise(s.at(31)).await.unwrap();
    assert_eq!(out, [SignalOutcome::Joined(id)]);
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!(alarm.state, AlarmState::Closed);
    // And the deadline runs from that keep-alive.
    assert!(raised(&engine.supervise(s.at(44)).await.unwrap()).is_empty());
    assert_eq!(raised(&engine.supervise(s.at(46)).await.unwrap()).len(), 1);
}

async fn a_device_never_heard_or_bound_to_nobody_raises_nothing(store: Arc<dyn Store>) {
    let s = setup(store).await;
    let spare = add_watch(&*s.store, s.tenant, None, "w2").await;
    let mut engine = s.engine().await;
    // A watch in a drawer, bound to nobody, reports: it is nobody's to miss.
    let report = s.report(&spare, None, s.at(0)).await;
    engine.process(vec![report], s.at(0)).await.unwrap();
    // The bound watch reports, then is unbound before its deadline.
    let report = s.report(&s.device, Some(s.wearer), s.at(0)).await;
    engine.process(vec![report], s.at(0)).await.unwrap();
    s.store.unbind_device(s.tenant, &s.device, s.at(5)).await.unwrap();
    assert!(engine.supervise(s.at(600)).await.unwrap().is_empty());
    assert!(
        s.store.due_deadlines(s.at(6000), 10).await.unwrap().is_empty(),
        "the unbound watch's row is gone"
    );
    assert!(s.offline_alarms().await.is_empty());
}

async fn the_offline_deadline_is_not_rewritten_for_every_fix(store: Arc<dyn Store>) {
    let s = setup(store).await;
    let mut engine = s.engine().await;
    let due = |s: &Setup| {
        let store = s.store.clone();
        let far = s.at(10_000);
        async move {
            store.due_deadlines(far, 10).await.unwrap().into_iter().map(|d| d.due_at).collect::<Vec<_>>()
        }
    };
    for minute in 0..4 {
        let report = s.report(&s.device, Some(s.wearer), s.at(minute)).await;
        engine.process(vec![report], s.at(minute)).await.unwrap();
    }
    assert_eq!(due(&s).await, [s.at(0) + OFFLINE], "moved by less than a quarter of the threshold");
    let report = s.report(&s.device, Some(s.wearer), s.at(4)).await;
    engine.process(vec![report], s.at(4)).await.unwrap();
    assert_eq!(due(&s).await, [s.at(4) + OFFLINE]);
}

/// Stockholm local time in November 2026 (UTC+1), in the past so fixes are ordinary.
fn local(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    use chrono::TimeZone;
    chrono_tz::Europe::Stockholm.with_ymd_and_hms(2026, 11, day, hour, minute, 0).unwrap().with_timezone(&Utc)
}

/// A slow discharge, 1 point an hour, every 10 minutes from `from` % at `hour`:00 on `day`.
fn slow(day: u32, hour: u32, from: u8, hours: u32) -> Vec<((u32, u32, u32), u8)> {
    (0..hours * 6).map(|i| ((day, hour + i / 6, (i % 6) * 10), from - (i / 6) as u8)).collect()
}

async fn one_low_battery_alert_per_discharge_across_a_restart(store: Arc<dyn Store>) {
    let s = setup(store).await;
    let mut engine = s.engine().await;
    // 28 % at 09:00 down to 15 % at 21:50 (default threshold 20 %): one alert, at 20 %.
    let out = s.battery(&mut engine, &slow(3, 9, 28, 13)).await;
    let [id] = raised(&out)[..] else { panic!("one alert per discharge expected: {out:?}") };
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!((alarm.kind, alarm.trigger_time), (AlarmKind::LowBattery, local(3, 17, 0)));
    assert!(alarm.kind.is_technical());
    // A restart in the same discharge: still one.
    let mut engine = s.engine().await;
    assert!(
        raised(&s.battery(&mut engine, &[((3, 22, 0), 14), ((3, 22, 10), 15), ((3, 22, 20), 14)]).await)
            .is_empty()
    );
    assert_eq!(s.alarms_of(AlarmKind::LowBattery).await.len(), 1);
    // Charged overnight, discharged again the next day: a new alert (the first one still open
    // would take it as a repeat, so staff acknowledge and close it).
    for step in [trygg_core::Step::Acknowledge, trygg_core::Step::Close(Outcome::Other)] {
        let req = trygg_store::StepRequest {
            step,
            actor: Some(s.staff),
            at: local(3, 23, 0),
            position: None,
            note: String::new(),
        };
        let done = s.store.step_alarm(s.tenant, id, &req).await.unwrap();
        assert!(matches!(done, Some(trygg_store::StepOutcome::Done(_))), "{done:?}");
    }
    assert!(
        raised(&s.battery(&mut engine, &[((4, 6, 0), 40), ((4, 7, 0), 95)]).await).is_empty(),
        "charging"
    );
    let out = s.battery(&mut engine, &slow(4, 10, 24, 6)).await;
    assert_eq!(raised(&out).len(), 1, "the next discharge alerts again: {out:?}");
}

async fn a_steep_discharge_in_daytime_warns_before_the_night(store: Arc<dyn Store>) {
    let s = setup(store).await;
    let mut engine = s.engine().await;
    // 5 points an hour from 60 % at 14:00: empty around 02:00.
    let readings: Vec<_> = (0..6).map(|h| ((3, 14 + h, 0), 60 - 5 * h as u8)).collect();
    let out = s.battery(&mut engine, &readings).await;
    let [id] = raised(&out)[..] else { panic!("{out:?}") };
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!(
        (alarm.kind, alarm.trigger_time),
        (AlarmKind::LowBattery, local(3, 15, 0)),
        "at 55 %, in daytime"
    );
}

async fn a_low_battery_at_night_waits_for_the_morning_across_a_restart(store: Arc<dyn Store>) {
    let s = setup(store).await;
    let mut engine = s.engine().await;
    // 1 point an hour: 20 % at 23:00 lasts well into the next day.
    let out = s.battery(&mut engine, &slow(3, 20, 23, 4)).await;
    assert!(raised(&out).is_empty(), "quiet hours: {out:?}");
    let mut engine = s.engine().await;
    // (The watch also falls silent after its last report: that is an offline alert, at once.)
    engine.supervise(local(4, 6, 59)).await.unwrap();
    assert!(s.alarms_of(AlarmKind::LowBattery).await.is_empty(), "waits for the morning");
    engine.supervise(local(4, 7, 0)).await.unwrap();
    let [alarm] = &s.alarms_of(AlarmKind::LowBattery).await[..] else { panic!("raised in the morning") };
    assert_eq!(alarm.trigger_time, local(4, 7, 0));
    engine.supervise(local(4, 7, 1)).await.unwrap();
    assert_eq!(s.alarms_of(AlarmKind::LowBattery).await.len(), 1, "once");
    let mut engine = s.engine().await;
    assert!(raised(&s.battery(&mut engine, &[((4, 7, 30), 15), ((4, 7, 40), 14)]).await).is_empty());
    assert_eq!(s.alarms_of(AlarmKind::LowBattery).await.len(), 1);
}

async fn a_low_battery_at_night_that_will_not_last_is_raised_at_once(store: Arc<dyn Store>) {
    let s = setup(store).await;
    let mut engine = s.engine().await;
    // 4 points an hour from 32 % at 20:00: 20 % at 23:00, empty at 04:00.
    let readings: Vec<_> = (0..4).map(|h| ((3, 20 + h, 0), 32 - 4 * h as u8)).collect();
    let out = s.battery(&mut engine, &readings).await;
    let [id] = raised(&out)[..] else { panic!("{out:?}") };
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert!(alarm.trigger_time < local(4, 4, 0), "before the watch dies: {}", alarm.trigger_time);
}

async fn in_triage_order_critical_alarms_come_first_and_technical_ones_are_grouped_per_wearer(
    store: Arc<dyn Store>,
) {
    let s = setup(store).await;
    // A second wearer with a watch of her own.
    let fields = WearerFields { name: "Greta".into(), ..WearerFields::default() };
    let greta = s.store.add_wearer(s.tenant, &fields).await.unwrap();
    let w2 = add_watch(&*s.store, s.tenant, Some(greta), "w2").await;
    let mut engine = s.engine().await;
    // Dagny's watch goes offline first, then Greta's, then Dagny presses SOS, then Greta's
    // battery runs low.
    let a = s.report(&s.device, Some(s.wearer), s.at(0)).await;
    let b = s.report(&w2, Some(greta), s.at(1)).await;
    engine.process(vec![a, b], s.at(1)).await.unwrap();
    engine.supervise(s.at(16)).await.unwrap();
    engine.supervise(s.at(17)).await.unwrap();
    let sos = device_alarm(&s.device, DeviceAlarmKind::Sos, s.at(18), s.at(18));
    let sos = commit_device_alarm(&*s.store, s.tenant, Some(s.wearer), &sos).await;
    engine.process(vec![sos], s.at(18)).await.unwrap();
    // 30 points an hour: it will die within the hour, quiet hours or not.
    let mut greta_low = Vec::new();
    for i in 0..8 {
        let at = s.at(20 + 10 * i);
        let report = s.report_battery(&w2, Some(greta), at, 40 - 5 * i as u8).await;
        greta_low.extend(engine.process(vec![report], at).await.unwrap());
    }
    assert_eq!(raised(&greta_low).len(), 1, "{greta_low:?}");

    let list = |triage| {
        let store = s.store.clone();
        let tenant = s.tenant;
        async move {
            let filter = AlarmFilter { limit: 100, triage, ..AlarmFilter::default() };
            store
                .alarms(tenant, &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|a| (a.kind, a.wearer))
                .collect::<Vec<_>>()
        }
    };
    let (dagny, greta) = (Some(s.wearer), Some(greta));
    let triage = list(true).await;
    assert_eq!(triage[0], (AlarmKind::Sos, dagny), "critical first: {triage:?}");
    let technical: Vec<_> = triage[1..].iter().map(|(_, w)| *w).collect();
    assert_eq!(technical.len(), 3);
    assert!(
        technical == [dagny, greta, greta] || technical == [greta, greta, dagny],
        "grouped per wearer: {triage:?}"
    );
    let newest = list(false).await;
    assert_eq!(newest.len(), 4);
    assert_ne!(newest[0].0, AlarmKind::Sos, "the default stays newest first: {newest:?}");
}

async fn a_keep_alive_battery_level_is_judged_like_a_fix_battery(store: Arc<dyn Store>) {
    let s = setup(store).await;
    let mut engine = s.engine().await;
    // A watch lying still sends no positions, only keep-alives (3G `LK`) with its battery:
    // 1 point an hour from 24 % at 09:00 reaches the 20 % threshold at 13:00.
    let mut out = Vec::new();
    for ((day, hour, minute), pct) in slow(3, 9, 24, 6) {
        let at = local(day, hour, minute);
        s.store.device_heard(&s.device, at, Some(pct)).await.unwrap();
        let keep_alive = Committed::KeepAlive {
            tenant: s.tenant,
            wearer: Some(s.wearer),
            device: s.device.clone(),
            at,
            battery_pct: pct,
        };
        out.extend(engine.process(vec![keep_alive], at).await.unwrap());
    }
    let [id] = raised(&out)[..] else { panic!("one alert from keep-alives alone: {out:?}") };
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!((alarm.kind, alarm.trigger_time), (AlarmKind::LowBattery, local(3, 13, 0)));
    // A fix of the same discharge does not alert again: one track for both.
    let report = s.report_battery(&s.device, Some(s.wearer), local(3, 15, 5), 18).await;
    assert!(raised(&engine.process(vec![report], local(3, 15, 5)).await.unwrap()).is_empty());
}

async fn a_low_battery_alert_left_open_is_resolved_by_the_charge_and_the_next_discharge_alerts_again(
    store: Arc<dyn Store>,
) {
    let s = setup(store).await;
    let mut engine = s.engine().await;
    let out = s.battery(&mut engine, &slow(3, 9, 24, 5)).await;
    let [first] = raised(&out)[..] else { panic!("{out:?}") };
    // Nobody acts on it; the watch is charged in the evening: the alert is over.
    let out = s.battery(&mut engine, &[((3, 18, 0), 60)]).await;
    assert_eq!(out, [SignalOutcome::Joined(first)]);
    let alarm = s.store.alarm(s.tenant, first, None).await.unwrap().unwrap();
    assert_eq!((alarm.state, alarm.outcome), (AlarmState::Closed, Some(Outcome::Other)));
    assert!(alarm.note.starts_with("resolved by device: battery at 60 %"), "{:?}", alarm.note);
    // The next day's discharge is a new alert that pages again, not a repeat of a stale one.
    let out = s.battery(&mut engine, &slow(4, 10, 24, 6)).await;
    let [second] = raised(&out)[..] else { panic!("the next discharge alerts: {out:?}") };
    assert_ne!(second, first);
}

async fn a_device_without_a_test_alarm_in_the_window_raises_one_alert_across_a_restart(
    store: Arc<dyn Store>,
) {
    let s = setup(store).await;
    s.test_window(9, 12).await;
    let mut engine = s.engine().await;
    // First heard at 10:00, inside today's window: the first whole window is tomorrow's.
    let report = s.report(&s.device, Some(s.wearer), local(3, 10, 0)).await;
    engine.process(vec![report], local(3, 10, 0)).await.unwrap();
    engine.supervise(local(3, 12, 30)).await.unwrap();
    engine.supervise(local(4, 11, 59)).await.unwrap();
    assert!(s.alarms_of(AlarmKind::TestAlarmMissing).await.is_empty(), "tomorrow's window is not over");
    // A restart: the row is in the database, and fires once.
    let mut engine = s.engine().await;
    engine.supervise(local(4, 12, 0)).await.unwrap();
    let [alarm] = &s.alarms_of(AlarmKind::TestAlarmMissing).await[..] else { panic!("one alert") };
    assert_eq!((alarm.trigger_time, alarm.wearer), (local(4, 12, 0), Some(s.wearer)));
    assert!(alarm.kind.is_technical());
    engine.supervise(local(4, 12, 1)).await.unwrap();
    let mut engine = s.engine().await;
    engine.supervise(local(4, 18, 0)).await.unwrap();
    assert_eq!(s.alarms_of(AlarmKind::TestAlarmMissing).await.len(), 1, "fired once");
    // The next day it is due again, and joins the open alert while nobody has taken it.
    engine.supervise(local(5, 12, 0)).await.unwrap();
    let [again] = &s.alarms_of(AlarmKind::TestAlarmMissing).await[..] else { panic!("still one alert") };
    assert_eq!(again.id, alarm.id);
    let events: Vec<String> =
        s.store.alarm_events(s.tenant, alarm.id).await.unwrap().into_iter().map(|e| e.event.kind).collect();
    assert_eq!(events, ["raised", "repeated"]);
}

async fn a_test_alarm_is_closed_as_test_pages_nobody_and_meets_the_window(store: Arc<dyn Store>) {
    let s = setup(store).await;
    s.test_window(9, 12).await;
    let mut engine = s.engine().await;
    let report = s.report(&s.device, Some(s.wearer), local(3, 8, 0)).await;
    engine.process(vec![report], local(3, 8, 0)).await.unwrap();
    // No test on the 3rd: one alert at noon.
    engine.supervise(local(3, 12, 0)).await.unwrap();
    let [missing] = &s.alarms_of(AlarmKind::TestAlarmMissing).await[..] else { panic!("missing on the 3rd") };
    // The test alarm on the 4th, in the window: recorded closed as `test`, nobody paged, and
    // the open alert is resolved by it.
    let test = s.test_alarm(local(4, 10, 0)).await;
    let out = engine.process(vec![test], local(4, 10, 0)).await.unwrap();
    let [test_id] = raised(&out)[..] else { panic!("{out:?}") };
    assert!(out.contains(&SignalOutcome::Joined(missing.id)), "{out:?}");
    let test = s.store.alarm(s.tenant, test_id, None).await.unwrap().unwrap();
    assert_eq!(
        (test.kind, test.state, test.outcome),
        (AlarmKind::Test, AlarmState::Closed, Some(Outcome::Test))
    );
    let pushes = s
        .store
        .claim_outbox("test-node", local(4, 10, 1), std::time::Duration::from_secs(30), 100)
        .await
        .unwrap();
    assert!(pushes.iter().all(|p| p.alarm != test_id), "a test alarm pages nobody");
    let missing = s.store.alarm(s.tenant, missing.id, None).await.unwrap().unwrap();
    assert_eq!(missing.state, AlarmState::Closed);
    assert!(missing.note.starts_with("resolved by device: sent a test alarm"), "{:?}", missing.note);
    // The 4th's window is met; the 5th's is not.
    let mut engine = s.engine().await;
    engine.supervise(local(4, 12, 30)).await.unwrap();
    assert_eq!(s.alarms_of(AlarmKind::TestAlarmMissing).await.len(), 1, "met on the 4th");
    engine.supervise(local(5, 12, 0)).await.unwrap();
    assert_eq!(s.alarms_of(AlarmKind::TestAlarmMissing).await.len(), 2, "missing on the 5th");
}
