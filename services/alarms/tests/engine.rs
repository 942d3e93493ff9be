//! The alarm engine against a real store, on SQLite **and** PostgreSQL: device alarms, zone
//! exits with and without consent, repeats and returns, late fixes, and restarts.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use trygg_alarms::{Engine, ZoneIndexes};
use trygg_core::{
    AlarmKind, AlarmState, CommandError, Committed, CommittedSink, DeviceAlarmKind, DeviceCommand,
    DeviceCommands, DeviceId, Fix, Outcome, ReportIntervals, Step, TenantId, WearerId,
};
use trygg_store::testing::{TestDb, add_user, add_watch, commit_device_alarm, device_alarm, tenant_settings};
use trygg_store::{
    AlarmFilter, ConsentGiver, FixBatch, NewConsent, NewDevice, NewDeviceAlarm, NewFix, Protocol, Role,
    SignalOutcome, StepOutcome, StepRequest, Store, TenantSettings, WearerFields, ZoneFields,
    on_both_backends,
};
use uuid::Uuid;

on_both_backends!(
    an_sos_raises_a_critical_alarm_with_outbox_rows_for_the_team,
    a_repeated_sos_joins_the_open_alarm_and_a_resend_adds_nothing,
    an_sos_from_a_watch_bound_to_nobody_alerts_the_fallback_team,
    a_wearer_without_responders_or_team_is_covered_by_the_fallback_team,
    a_forgotten_sos_left_on_site_does_not_swallow_the_next_one,
    a_repeat_joins_an_acknowledged_alarm_only_within_the_window_and_is_pushed_to_its_holder,
    an_sos_without_a_position_carries_the_last_known_one,
    a_device_alarm_never_handed_to_the_engine_is_raised_by_its_sweep,
    recovery_reads_a_backlog_in_pages_and_misses_no_exit_in_it,
    a_long_recovery_shows_its_supervisor_progress_page_by_page,
    an_overflowed_queue_is_caught_up_from_the_fixes_received_since,
    a_walk_committed_a_minute_after_it_was_received_is_caught_up_when_the_queue_drops_it,
    leaving_a_zone_raises_one_exit_alarm_and_a_return_is_recorded_on_it,
    no_consent_no_zone_alarm,
    late_and_out_of_order_fixes_are_evaluated_in_time_order_once,
    a_restart_recovers_unevaluated_fixes_and_pending_device_alarms_without_repeating,
    the_trail_of_an_alarm_outlives_the_retention_period,
    a_state_is_stored_when_it_decides_and_a_restart_replays_the_fixes_since,
    a_suspected_exit_asks_a_native_device_for_fast_reports_until_it_is_confirmed,
    fast_reporting_ends_after_ten_minutes_of_a_lingering_suspicion,
);

/// Skövde: the zone's centre.
const HOME: (f64, f64) = (58.3903, 13.8462);

struct Setup {
    store: Arc<dyn Store>,
    zones: Arc<ZoneIndexes>,
    tenant: TenantId,
    wearer: WearerId,
    device: DeviceId,
    staff: [Uuid; 2],
    t0: DateTime<Utc>,
}

/// A tenant with a two-person team responding for a wearer who wears `w1` and has a 100 m
/// stay-inside zone around home, with consent for passive alarms when `consent`.
async fn setup(store: Arc<dyn Store>, consent: bool) -> Setup {
    let tenant = store.create_tenant("Skövde").await.unwrap();
    let mut staff = [Uuid::nil(); 2];
    for (i, s) in staff.iter_mut().enumerate() {
        *s = add_user(
            &*store,
            Some(tenant),
            Role::Staff,
            &format!("staff{i}@skovde.se"),
            &format!("Staff {i}"),
        )
        .await;
    }
    let cw = add_user(&*store, Some(tenant), Role::Caseworker, "cw@skovde.se", "Hanna").await;
    let team = store.add_team(tenant, "Hemtjänst Norr").await.unwrap();
    assert!(store.set_team_members(tenant, team, &staff).await.unwrap());
    let fields = WearerFields { name: "Dagny".into(), team: Some(team), ..WearerFields::default() };
    let wearer = store.add_wearer(tenant, &fields).await.unwrap();
    let device = add_watch(&*store, tenant, Some(wearer), "w1").await;
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap() - TimeDelta::hours(1);
    if consent {
        let c = NewConsent {
            wearer,
            positioning: true,
            passive_alarms: true,
            given_by: ConsentGiver::LegalRepresentative,
            document_ref: "Dnr 1".into(),
            valid_from: t0 - TimeDelta::days(1),
            valid_until: None,
            recorded_by: cw,
        };
        store.add_consent(tenant, &c).await.unwrap();
    }
    let zone = ZoneFields {
        name: "Hemma".into(),
        kind: "stay_inside".into(),
        geometry: format!(r#"{{"type":"Point","coordinates":[{},{}]}}"#, HOME.1, HOME.0),
        radius_m: Some(100.0),
        schedule: None,
    };
    store.add_zone(tenant, wearer, &zone, t0).await.unwrap();
    let zones = Arc::new(ZoneIndexes::default());
    zones.rebuild(store.as_ref(), tenant).await.unwrap();
    Setup { store, zones, tenant, wearer, device, staff, t0 }
}

impl Setup {
    async fn engine(&self) -> Engine {
        Engine::load(self.store.clone(), self.zones.clone()).await.unwrap()
    }

    /// A fix `minute` minutes after t0, `north_m` metres north of home, ±10 m.
    fn fix(&self, minute: i64, north_m: f64) -> Fix {
        let (time, lat) = (self.t0 + TimeDelta::minutes(minute), HOME.0 + north_m / 111_320.0);
        Fix { accuracy_m: Some(10.0), battery_pct: Some(80), ..Fix::gps(time, lat, HOME.1) }
    }

    /// Stores the fixes as ingest would and returns what ingest hands to the engine.
    async fn commit_fixes(&self, fixes: &[Fix]) -> Committed {
        self.commit_fixes_received(fixes, Utc::now()).await
    }

    /// A running engine whose queue holds one commit, past its start-up recovery and with her
    /// home fix evaluated; the home fix's commit, for resends.
    async fn engine_home_with_a_queue_of_one(
        &self,
    ) -> (trygg_alarms::EngineSink, tokio::task::JoinHandle<()>, Committed) {
        let (sink, task) = self.engine().await.spawn(1);
        let probe = sink.probe();
        let home = self.commit_fixes(&[self.fix(0, 0.0)]).await;
        sink.committed(home.clone());
        while probe.passes() < 2 || probe.queued() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        (sink, task, home)
    }

    /// [`Self::commit_fixes`] of a request received at `received_at`.
    async fn commit_fixes_received(&self, fixes: &[Fix], received_at: DateTime<Utc>) -> Committed {
        let batch = FixBatch {
            device: self.device.clone(),
            received_at,
            fixes: fixes.iter().map(|f| NewFix { fix: f.clone(), late: false }).collect(),
        };
        self.store.insert_fixes(&[batch]).await.unwrap();
        Committed::Fixes {
            tenant: self.tenant,
            wearer: Some(self.wearer),
            device: self.device.clone(),
            fixes: fixes.to_vec(),
            received_at,
        }
    }

    /// Stores a device alarm as ingest would and returns what ingest hands to the engine.
    async fn commit_sos(&self, minute: i64) -> Committed {
        let fix = self.fix(minute, 0.0);
        let alarm = NewDeviceAlarm {
            fix: Some(NewFix { fix: fix.clone(), late: false }),
            ..device_alarm(&self.device, DeviceAlarmKind::Sos, fix.time, Utc::now())
        };
        commit_device_alarm(&*self.store, self.tenant, Some(self.wearer), &alarm).await
    }

    async fn all_alarms(&self) -> Vec<trygg_store::Alarm> {
        let filter = AlarmFilter { limit: 100, ..AlarmFilter::default() };
        self.store.alarms(self.tenant, &filter).await.unwrap()
    }

    async fn event_kinds(&self, alarm: Uuid) -> Vec<String> {
        self.store.alarm_events(self.tenant, alarm).await.unwrap().into_iter().map(|e| e.event.kind).collect()
    }
}

fn raised(outcomes: &[SignalOutcome]) -> Vec<Uuid> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            SignalOutcome::Raised(id) => Some(*id),
            _ => None,
        })
        .collect()
}

async fn an_sos_raises_a_critical_alarm_with_outbox_rows_for_the_team(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let mut engine = s.engine().await;
    let sos = s.commit_sos(5).await;
    let out = engine.process(vec![sos], Utc::now()).await.unwrap();
    let [id] = raised(&out)[..] else { panic!("one alarm expected, got {out:?}") };
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!((alarm.kind, alarm.state, alarm.wearer), (AlarmKind::Sos, AlarmState::Raised, Some(s.wearer)));
    assert!(alarm.kind.is_critical());
    let (position, at) = alarm.position.expect("the SOS position");
    assert_eq!((position.lat, at), (HOME.0, s.t0 + TimeDelta::minutes(5)));
    assert_eq!(s.event_kinds(id).await, ["raised"]);
    // Both team members may see it: the outbox addressed them (and the team is the wearer's).
    for staff in s.staff {
        assert!(s.store.alarm(s.tenant, id, Some(staff)).await.unwrap().is_some());
    }
    assert!(s.store.pending_device_alarms().await.unwrap().is_empty(), "the device alarm is handled");
}

async fn a_repeated_sos_joins_the_open_alarm_and_a_resend_adds_nothing(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let mut engine = s.engine().await;
    let first = engine.process(vec![s.commit_sos(5).await], Utc::now()).await.unwrap();
    let [id] = raised(&first)[..] else { panic!("{first:?}") };
    // The watch repeats its SOS 30 s later (a new device time), then resends that one (same time).
    let mut again = s.commit_sos(5).await;
    if let Committed::Alarm { duplicate, .. } = &again {
        assert!(duplicate, "same device time: a resend");
    }
    assert!(engine.process(vec![again.clone()], Utc::now()).await.unwrap().is_empty());
    let later = s.fix(5, 0.0).time + TimeDelta::seconds(30);
    let repeat = device_alarm(&s.device, DeviceAlarmKind::Sos, later, Utc::now());
    let stored = s.store.insert_device_alarm(&repeat).await.unwrap();
    if let Committed::Alarm { alarm_id, duplicate, fix, .. } = &mut again {
        (*alarm_id, *duplicate, *fix) = (stored.id, false, None);
    }
    let out = engine.process(vec![again], Utc::now()).await.unwrap();
    assert_eq!(out, [SignalOutcome::Joined(id)]);
    assert_eq!(s.all_alarms().await.len(), 1);
    assert_eq!(s.event_kinds(id).await, ["raised", "repeated"]);
}

/// A team of its own, set as the tenant's fallback; its one member.
async fn fallback_team(s: &Setup) -> Uuid {
    let on_call = add_user(&*s.store, Some(s.tenant), Role::Staff, "jour@skovde.se", "Jour").await;
    let team = s.store.add_team(s.tenant, "Larmjour").await.unwrap();
    assert!(s.store.set_team_members(s.tenant, team, &[on_call]).await.unwrap());
    let settings = TenantSettings { fallback_team: Some(team), ..tenant_settings() };
    s.store.put_settings(s.tenant, &settings, Utc::now()).await.unwrap();
    on_call
}

/// Who the pending outbox rows due by `now` are addressed to, each claimed and marked sent.
async fn pushed_to(s: &Setup, now: DateTime<Utc>) -> Vec<(Uuid, Uuid)> {
    let rows = s.store.claim_outbox("test-node", now, std::time::Duration::from_secs(30), 100).await.unwrap();
    for row in &rows {
        s.store.outbox_sent(row.id).await.unwrap();
    }
    rows.iter().map(|r| (r.alarm, r.recipient)).collect()
}

async fn step(s: &Setup, alarm: Uuid, step: Step, actor: Uuid, at: DateTime<Utc>) {
    let req = StepRequest { step, actor: Some(actor), at, position: None, note: String::new() };
    let done = s.store.step_alarm(s.tenant, alarm, &req).await.unwrap();
    assert!(matches!(done, Some(StepOutcome::Done(_))), "{done:?}");
}

async fn an_sos_from_a_watch_bound_to_nobody_alerts_the_fallback_team(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let on_call = fallback_team(&s).await;
    s.store.unbind_device(s.tenant, &s.device, Utc::now()).await.unwrap();
    let mut engine = s.engine().await;
    let mut sos = s.commit_sos(5).await;
    if let Committed::Alarm { wearer, .. } = &mut sos {
        *wearer = None;
    }
    let out = engine.process(vec![sos], Utc::now()).await.unwrap();
    let [id] = raised(&out)[..] else { panic!("a person pressed the button: an alarm, got {out:?}") };
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!((alarm.kind, alarm.wearer, alarm.device), (AlarmKind::Sos, None, Some(s.device.clone())));
    assert_eq!(alarm.position.map(|(p, _)| p.lat), Some(HOME.0), "listed with its position");
    assert_eq!(pushed_to(&s, Utc::now()).await, [(id, on_call)], "pushed to the fallback team");
    assert!(s.store.alarm(s.tenant, id, Some(on_call)).await.unwrap().is_some(), "the on-call sees it");
    assert!(s.store.pending_device_alarms().await.unwrap().is_empty(), "handled, so not retried forever");
    // The watch presses again: the same open alarm, keyed by the device.
    let again = device_alarm(&s.device, DeviceAlarmKind::Sos, s.fix(6, 0.0).time, Utc::now());
    let committed = commit_device_alarm(&*s.store, s.tenant, None, &again).await;
    assert_eq!(engine.process(vec![committed], Utc::now()).await.unwrap(), [SignalOutcome::Joined(id)]);
}

async fn a_wearer_without_responders_or_team_is_covered_by_the_fallback_team(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let on_call = fallback_team(&s).await;
    let mut fields = s.store.wearer(s.tenant, s.wearer).await.unwrap().unwrap().fields;
    fields.team = None;
    assert!(s.store.update_wearer(s.tenant, s.wearer, &fields).await.unwrap());
    let mut engine = s.engine().await;
    let out = engine.process(vec![s.commit_sos(5).await], Utc::now()).await.unwrap();
    let [id] = raised(&out)[..] else { panic!("{out:?}") };
    assert_eq!(pushed_to(&s, Utc::now()).await, [(id, on_call)]);
}

async fn a_forgotten_sos_left_on_site_does_not_swallow_the_next_one(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let mut engine = s.engine().await;
    let yesterday = Utc::now() - TimeDelta::days(1);
    let out = engine.process(vec![s.commit_sos(5).await], yesterday).await.unwrap();
    let [old] = raised(&out)[..] else { panic!("{out:?}") };
    pushed_to(&s, yesterday).await;
    step(&s, old, Step::Acknowledge, s.staff[0], yesterday).await;
    step(&s, old, Step::OnSite, s.staff[0], yesterday).await;
    // Never closed. Today she presses again, within the same minute of fix time as before
    // would not matter: a person on site yesterday is not with her now.
    let out = engine.process(vec![s.commit_sos(50).await], Utc::now()).await.unwrap();
    let [new] = raised(&out)[..] else { panic!("a new alarm, not a repeat: {out:?}") };
    assert_ne!(new, old);
    let mut pushed = pushed_to(&s, Utc::now()).await;
    pushed.sort();
    let mut team: Vec<(Uuid, Uuid)> = s.staff.iter().map(|u| (new, *u)).collect();
    team.sort();
    assert_eq!(pushed, team, "its own pushes to the whole team");
    assert_eq!(s.event_kinds(old).await.last().map(String::as_str), Some("superseded"));
    let superseded = s.store.alarm_events(s.tenant, old).await.unwrap().pop().unwrap();
    assert!(superseded.event.detail.contains(&new.to_string()), "{:?}", superseded.event.detail);
    assert_eq!(s.event_kinds(new).await, ["raised"]);
}

async fn a_repeat_joins_an_acknowledged_alarm_only_within_the_window_and_is_pushed_to_its_holder(
    store: Arc<dyn Store>,
) {
    let s = setup(store, true).await;
    let mut engine = s.engine().await;
    let t = Utc::now() - TimeDelta::hours(1);
    let out = engine.process(vec![s.commit_sos(5).await], t).await.unwrap();
    let [id] = raised(&out)[..] else { panic!("{out:?}") };
    assert_eq!(pushed_to(&s, t).await.len(), 2);
    step(&s, id, Step::Acknowledge, s.staff[1], t + TimeDelta::seconds(30)).await;
    // Ten minutes later she presses again ("trycker igen"): joined, and pushed to Staff 1 only.
    let at = t + TimeDelta::minutes(10);
    let out = engine.process(vec![s.commit_sos(15).await], at).await.unwrap();
    assert_eq!(out, [SignalOutcome::Joined(id)]);
    assert_eq!(pushed_to(&s, at).await, [(id, s.staff[1])]);
    // Sixteen minutes after that repeat (the default window is 15): a new alarm.
    let at = at + TimeDelta::minutes(16);
    let out = engine.process(vec![s.commit_sos(31).await], at).await.unwrap();
    let [new] = raised(&out)[..] else { panic!("{out:?}") };
    assert_ne!(new, id);
    assert_eq!(pushed_to(&s, at).await.len(), 2, "the new alarm goes to the team again");
    assert_eq!(s.event_kinds(id).await, ["raised", "acknowledged", "repeated", "superseded"]);
}

async fn an_sos_without_a_position_carries_the_last_known_one(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let mut engine = s.engine().await;
    let last = s.fix(3, 20.0);
    engine.process(vec![s.commit_fixes(std::slice::from_ref(&last)).await], Utc::now()).await.unwrap();
    let alarm = device_alarm(&s.device, DeviceAlarmKind::Sos, s.fix(9, 0.0).time, Utc::now());
    let committed = commit_device_alarm(&*s.store, s.tenant, Some(s.wearer), &alarm).await;
    let out = engine.process(vec![committed], Utc::now()).await.unwrap();
    let [id] = raised(&out)[..] else { panic!("{out:?}") };
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    let (position, at) = alarm.position.expect("the last known position");
    assert_eq!((position.lat, at), (last.lat, last.time), "with that fix's own time, so its age shows");
    let raised_event = s.store.alarm_events(s.tenant, id).await.unwrap().remove(0);
    assert!(raised_event.event.detail.contains("last known position"), "{:?}", raised_event.event.detail);
}

async fn leaving_a_zone_raises_one_exit_alarm_and_a_return_is_recorded_on_it(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let mut engine = s.engine().await;
    let walk = [s.fix(0, 0.0), s.fix(1, 20.0), s.fix(2, 250.0), s.fix(3, 400.0), s.fix(4, 500.0)];
    let mut outcomes = Vec::new();
    for f in &walk {
        outcomes.extend(
            engine.process(vec![s.commit_fixes(std::slice::from_ref(f)).await], Utc::now()).await.unwrap(),
        );
    }
    let [id] = raised(&outcomes)[..] else { panic!("one exit alarm expected: {outcomes:?}") };
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!(alarm.kind, AlarmKind::ZoneExit);
    assert!(alarm.zone.is_some());
    assert_eq!(alarm.trigger_time, walk[3].time, "confirmed by the second fix outside");
    // Back home: the return is recorded on the open alarm, which stays open for a human to close.
    let back = [s.fix(5, 10.0), s.fix(6, 0.0)];
    let out = engine.process(vec![s.commit_fixes(&back).await], Utc::now()).await.unwrap();
    assert_eq!(out, [SignalOutcome::Joined(id)]);
    let alarm = s.store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!(
        (alarm.state, alarm.returned_at),
        (AlarmState::Raised, Some(walk[0].time + TimeDelta::minutes(6)))
    );
    assert_eq!(s.event_kinds(id).await, ["raised", "returned"]);
}

async fn no_consent_no_zone_alarm(store: Arc<dyn Store>) {
    let s = setup(store, false).await;
    let mut engine = s.engine().await;
    let walk = [s.fix(0, 0.0), s.fix(1, 300.0), s.fix(2, 400.0), s.fix(3, 500.0)];
    let out = engine.process(vec![s.commit_fixes(&walk).await], Utc::now()).await.unwrap();
    assert!(out.is_empty(), "{out:?}");
    assert!(s.all_alarms().await.is_empty());
}

async fn late_and_out_of_order_fixes_are_evaluated_in_time_order_once(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let mut engine = s.engine().await;
    // One request with the walk out in reverse order: sorted, it is a confirmed exit.
    let walk = [s.fix(3, 500.0), s.fix(2, 400.0), s.fix(1, 300.0), s.fix(0, 0.0)];
    let out = engine.process(vec![s.commit_fixes(&walk).await], Utc::now()).await.unwrap();
    assert_eq!(raised(&out).len(), 1, "{out:?}");
    // A buffered upload from before the newest fix evaluated changes nothing: no return.
    let mut buffered = [s.fix(1, 0.0), s.fix(2, 0.0)];
    for f in &mut buffered {
        f.time += TimeDelta::seconds(30);
    }
    let out = engine.process(vec![s.commit_fixes(&buffered).await], Utc::now()).await.unwrap();
    assert!(out.is_empty(), "late fixes must not return or re-raise: {out:?}");
    let alarm = &s.all_alarms().await[0];
    assert_eq!(alarm.returned_at, None);
}

async fn a_restart_recovers_unevaluated_fixes_and_pending_device_alarms_without_repeating(
    store: Arc<dyn Store>,
) {
    let s = setup(store, true).await;
    // Ingest committed (and acknowledged) these, but the process died before the engine ran.
    let walk = [s.fix(0, 0.0), s.fix(1, 300.0), s.fix(2, 400.0)];
    s.commit_fixes(&walk).await;
    s.commit_sos(3).await;
    let mut engine = s.engine().await;
    let out = engine.recover(Utc::now()).await.unwrap();
    assert_eq!(raised(&out).len(), 2, "the SOS and the exit: {out:?}");
    let kinds: Vec<AlarmKind> = s.all_alarms().await.iter().map(|a| a.kind).collect();
    assert!(kinds.contains(&AlarmKind::Sos) && kinds.contains(&AlarmKind::ZoneExit), "{kinds:?}");
    // Staff close the exit alarm. Another restart finds nothing left to do, and the zone state
    // came back from the database: more fixes outside do not raise the exit again (with a lost
    // state, two fixes outside would confirm a new exit and raise a new alarm).
    let exit = s.all_alarms().await.into_iter().find(|a| a.kind == AlarmKind::ZoneExit).unwrap();
    for step in [Step::Acknowledge, Step::Close(Outcome::Assisted)] {
        let req = StepRequest {
            step,
            actor: Some(s.staff[0]),
            at: Utc::now(),
            position: None,
            note: String::new(),
        };
        assert!(matches!(
            s.store.step_alarm(s.tenant, exit.id, &req).await.unwrap(),
            Some(StepOutcome::Done(_))
        ));
    }
    let mut engine = s.engine().await;
    assert!(engine.recover(Utc::now()).await.unwrap().is_empty());
    let outside = [s.fix(4, 450.0), s.fix(5, 500.0), s.fix(6, 550.0)];
    let out = engine.process(vec![s.commit_fixes(&outside).await], Utc::now()).await.unwrap();
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(s.all_alarms().await.len(), 2);
}

async fn the_trail_of_an_alarm_outlives_the_retention_period(store: Arc<dyn Store>) {
    let mut s = setup(store, true).await;
    s.t0 -= TimeDelta::days(40);
    // Fixes from 30 minutes before an SOS 40 days ago, past the default retention of 30 days.
    let fixes: Vec<Fix> = [-30, -20, -5, 0, 4].iter().map(|m| s.fix(*m, 0.0)).collect();
    s.commit_fixes(&fixes).await;
    let mut engine = s.engine().await;
    assert_eq!(raised(&engine.process(vec![s.commit_sos(5).await], Utc::now()).await.unwrap()).len(), 1);
    assert_eq!(s.store.purge_fixes(Utc::now(), 30).await.unwrap(), 2, "the fixes before the trail go");
    let kept: Vec<DateTime<Utc>> =
        s.store.recent_fixes(&s.device, 100).await.unwrap().iter().rev().map(|f| f.fix.time).collect();
    let minutes: Vec<i64> = kept.iter().map(|t| (*t - s.t0).num_minutes()).collect();
    assert_eq!(minutes, [-5, 0, 4, 5], "the trail from 10 minutes before the alarm stays with it");
}

async fn a_state_is_stored_when_it_decides_and_a_restart_replays_the_fixes_since(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let mut engine = s.engine().await;
    // Home (the first confirmed side: stored), still home, then the first fix outside (a count
    // toward an exit: not stored).
    for f in [s.fix(0, 0.0), s.fix(1, 20.0), s.fix(2, 250.0)] {
        assert!(engine.process(vec![s.commit_fixes(&[f]).await], Utc::now()).await.unwrap().is_empty());
    }
    let stored = s.store.zone_states().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].last_fix_at, s.t0, "only the state that decided something was written");
    // A crash loses the count; the restart replays the two fixes since and the next fix outside
    // confirms the exit, exactly as without the crash.
    let mut engine = s.engine().await;
    assert!(engine.recover(Utc::now()).await.unwrap().is_empty());
    let out = engine.process(vec![s.commit_fixes(&[s.fix(3, 400.0)]).await], Utc::now()).await.unwrap();
    assert_eq!(raised(&out).len(), 1, "{out:?}");
    assert_eq!(s.store.zone_states().await.unwrap()[0].last_fix_at, s.t0 + TimeDelta::minutes(3));
    // Quiet minutes are stored at least every five minutes of fix time.
    for m in 4..=9 {
        engine.process(vec![s.commit_fixes(&[s.fix(m, 500.0)]).await], Utc::now()).await.unwrap();
    }
    assert_eq!(s.store.zone_states().await.unwrap()[0].last_fix_at, s.t0 + TimeDelta::minutes(8));
}

async fn a_device_alarm_never_handed_to_the_engine_is_raised_by_its_sweep(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let (sink, task) = s.engine().await.spawn(16);
    // Past its start-up recovery: a batch handed over has been taken (the loop turned twice).
    let probe = sink.probe();
    sink.committed(s.commit_fixes(&[s.fix(1, 0.0)]).await);
    while probe.passes() < 2 || probe.queued() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Committed, but the request was dropped (the watch hung up) before ingest handed it over.
    s.commit_sos(5).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while s.all_alarms().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the SOS in the database was never raised");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(s.all_alarms().await[0].kind, AlarmKind::Sos);
    task.abort();
}

async fn recovery_reads_a_backlog_in_pages_and_misses_no_exit_in_it(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    commit_backlog_and_exit(&s).await;
    let mut engine = s.engine().await;
    let outcomes = engine.recover(Utc::now()).await.unwrap();
    assert_eq!(raised(&outcomes).len(), 1, "the exit after the backlog: {outcomes:?}");
    assert_eq!(s.all_alarms().await[0].kind, AlarmKind::ZoneExit);
}

/// 12,000 fixes a second apart at home, then she walks out: a backlog of three recovery pages.
async fn commit_backlog_and_exit(s: &Setup) {
    let home: Vec<Fix> =
        (0..12_000).map(|i| Fix { time: s.t0 + TimeDelta::seconds(i), ..s.fix(0, 0.0) }).collect();
    for chunk in home.chunks(2000) {
        s.commit_fixes(chunk).await;
    }
    let out = [s.fix(201, 300.0), s.fix(202, 400.0), s.fix(203, 450.0)];
    s.commit_fixes(&out).await;
}

/// Under load a recovery can run for minutes while ingest adds to it; the supervisor must see
/// it move page by page, or it takes a working engine for a stuck one and ends the process
/// (seen under M3 load: "engine stuck for 60 s", the process exited mid-recovery).
async fn a_long_recovery_shows_its_supervisor_progress_page_by_page(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    commit_backlog_and_exit(&s).await;
    let (sink, task) = s.engine().await.spawn(16);
    let probe = sink.probe();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while s.all_alarms().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the recovery never reached the exit");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // One turn of the loop, then a pass for the device alarms and one per page of fixes.
    assert!(probe.passes() >= 4, "a three-page recovery counted {} passes", probe.passes());
    task.abort();
}

/// She walks out while the engine's queue overflows: the commits of her walk never reach the
/// engine. The catch-up that follows reads them back by the time received, without a restart,
/// and raises the exit once.
async fn an_overflowed_queue_is_caught_up_from_the_fixes_received_since(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let (sink, task, home) = s.engine_home_with_a_queue_of_one().await;
    s.commit_fixes(&[s.fix(1, 300.0), s.fix(2, 400.0), s.fix(3, 450.0)]).await;
    // Resends of the home fix overflow the queue before the walk is handed over.
    for _ in 0..50 {
        sink.committed(home.clone());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while s.all_alarms().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "her walk out raised no exit alarm");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // time for a wrong second one
    let alarms = s.all_alarms().await;
    assert_eq!(alarms.iter().map(|a| a.kind).collect::<Vec<_>>(), [AlarmKind::ZoneExit]);
    task.abort();
}

/// Her walk reached the server a minute before its commit landed (the database was slow) and
/// the queue had no room for it. The catch-up reads by the time received, so it must start from
/// when the walk was received, not from when the queue overflowed.
async fn a_walk_committed_a_minute_after_it_was_received_is_caught_up_when_the_queue_drops_it(
    store: Arc<dyn Store>,
) {
    let s = setup(store, true).await;
    let (sink, task, home) = s.engine_home_with_a_queue_of_one().await;
    let walk = [s.fix(1, 300.0), s.fix(2, 400.0), s.fix(3, 450.0)];
    let walk = s.commit_fixes_received(&walk, Utc::now() - TimeDelta::minutes(1)).await;
    // A resend of the home fix fills the queue (room for one); her walk finds no room.
    sink.committed(home);
    sink.committed(walk);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while s.all_alarms().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "her walk out raised no exit alarm");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(s.all_alarms().await.iter().map(|a| a.kind).collect::<Vec<_>>(), [AlarmKind::ZoneExit]);
    task.abort();
}

/// Another connection holding the database's write lock (SQLite) or the alarms table (PostgreSQL):
/// the engine can read but not raise.
enum Lock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Lock {
    async fn take(db: &TestDb) -> Self {
        use sqlx::{Connection, Executor};
        match db {
            TestDb::Sqlite { .. } => {
                let mut conn = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
                conn.execute("begin exclusive").await.unwrap();
                Self::Sqlite(conn)
            }
            TestDb::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
                conn.execute("begin; lock table alarms in exclusive mode").await.unwrap();
                Self::Postgres(conn)
            }
        }
    }

    async fn release(self) {
        use sqlx::Executor;
        match self {
            Self::Sqlite(mut conn) => drop(conn.execute("rollback").await.unwrap()),
            Self::Postgres(mut conn) => drop(conn.execute("rollback").await.unwrap()),
        }
    }
}

/// The engine starts lagged and its catch-up fails (the database takes no writes) while a
/// newer batch waits in its queue. That batch must wait for the catch-up: evaluated first, its
/// fixes back at home would make the catch-up drop her walk out as out of order.
async fn a_batch_queued_while_recovery_fails_waits_for_it_and_no_exit_is_missed(db: TestDb) {
    let options = trygg_store::ConnectOptions {
        busy_timeout: std::time::Duration::from_millis(200),
        statement_timeout: std::time::Duration::from_millis(300),
        ..trygg_store::ConnectOptions::default()
    };
    let s = setup(trygg_store::connect(db.url(), &options).await.unwrap(), true).await;
    // The engine saw her at home.
    let mut engine = s.engine().await;
    engine.process(vec![s.commit_fixes(&[s.fix(0, 0.0)]).await], Utc::now()).await.unwrap();
    drop(engine);
    // Then, with no engine running, she walked out and came back (committed, never handed over).
    s.commit_fixes(&[s.fix(1, 300.0), s.fix(2, 400.0)]).await;
    let back = s.commit_fixes(&[s.fix(3, 10.0), s.fix(4, 0.0)]).await;
    let lock = Lock::take(&db).await;
    let (sink, task) = s.engine().await.spawn(16);
    sink.committed(back);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    lock.release().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.all_alarms().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "her walk out raised no exit alarm");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let alarms = s.all_alarms().await;
    assert_eq!(alarms.iter().map(|a| a.kind).collect::<Vec<_>>(), [AlarmKind::ZoneExit]);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_batch_queued_while_recovery_fails_waits_for_it_and_no_exit_is_missed() {
    a_batch_queued_while_recovery_fails_waits_for_it_and_no_exit_is_missed(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_batch_queued_while_recovery_fails_waits_for_it_and_no_exit_is_missed() {
    a_batch_queued_while_recovery_fails_waits_for_it_and_no_exit_is_missed(TestDb::postgres().await).await;
}

/// Device connections where no watch is connected (these tests command native devices).
#[derive(Debug)]
struct NoConnections;

impl DeviceCommands for NoConnections {
    fn send(&self, _: &DeviceId, _: DeviceCommand) -> Result<(), CommandError> {
        Err(CommandError::NotConnected)
    }
}

impl Setup {
    /// A native device `n1` worn by the same wearer, and an engine that commands intervals.
    async fn native_reporting(&self) -> (DeviceId, ReportIntervals, Engine) {
        let native = DeviceId::parse("n1").unwrap();
        let new = NewDevice {
            id: native.clone(),
            tenant: self.tenant,
            wearer: Some(self.wearer),
            protocol: Protocol::Native,
            token_hash: Some("n1-token-hash".into()),
        };
        self.store.register_device(&new).await.unwrap();
        self.zones.rebuild(self.store.as_ref(), self.tenant).await.unwrap();
        let answers = ReportIntervals::default();
        let engine = self.engine().await.command_devices(NoConnections, answers.clone());
        (native, answers, engine)
    }

    /// Feeds `n1` one fix `north_m` metres north of home at `minute`; the interval its next
    /// ingest answer carries.
    async fn native_fix(
        &self,
        engine: &mut Engine,
        native: &DeviceId,
        answers: &ReportIntervals,
        minute: i64,
        north_m: f64,
    ) -> Option<u32> {
        let fix = self.fix(minute, north_m);
        let batch = FixBatch {
            device: native.clone(),
            received_at: fix.time,
            fixes: vec![NewFix { fix: fix.clone(), late: false }],
        };
        self.store.insert_fixes(&[batch]).await.unwrap();
        let data = Committed::Fixes {
            tenant: self.tenant,
            wearer: Some(self.wearer),
            device: native.clone(),
            fixes: vec![fix.clone()],
            received_at: fix.time,
        };
        engine.process(vec![data], Utc::now()).await.unwrap();
        answers.get(native)
    }

    async fn commands(&self, device: &DeviceId) -> Vec<String> {
        self.store
            .device_commands(self.tenant, device)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.command)
            .collect()
    }
}

async fn a_suspected_exit_asks_a_native_device_for_fast_reports_until_it_is_confirmed(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let (n1, answers, mut engine) = s.native_reporting().await;
    assert_eq!(s.native_fix(&mut engine, &n1, &answers, 0, 0.0).await, None, "home: nothing to tell");
    // 150 m north of a 100 m zone: outside, not yet confirmed. Report every 30 s.
    assert_eq!(s.native_fix(&mut engine, &n1, &answers, 5, 150.0).await, Some(30));
    // Confirmed by the next report: the exit alarm is raised and the interval goes back.
    assert_eq!(s.native_fix(&mut engine, &n1, &answers, 6, 200.0).await, Some(300));
    assert_eq!(s.all_alarms().await.iter().filter(|a| a.kind == AlarmKind::ZoneExit).count(), 1);
    // A wild fix out and straight back in: suspected, then cleared.
    s.native_fix(&mut engine, &n1, &answers, 7, 0.0).await;
    s.native_fix(&mut engine, &n1, &answers, 8, 0.0).await;
    assert_eq!(s.native_fix(&mut engine, &n1, &answers, 9, 150.0).await, Some(30));
    assert_eq!(s.native_fix(&mut engine, &n1, &answers, 10, 0.0).await, Some(300));
    // Every command is an event on the device; the watch, never suspected, got none.
    let expected = ["upload_interval 30", "upload_interval 300", "upload_interval 30", "upload_interval 300"];
    assert_eq!(s.commands(&n1).await, expected);
    assert!(s.commands(&s.device).await.is_empty());
}

async fn fast_reporting_ends_after_ten_minutes_of_a_lingering_suspicion(store: Arc<dyn Store>) {
    let s = setup(store, true).await;
    let (n1, answers, mut engine) = s.native_reporting().await;
    s.native_fix(&mut engine, &n1, &answers, 0, 0.0).await;
    // 115 m: outside the 100 m zone but never clear of accuracy + margin, so never confirmed.
    assert_eq!(s.native_fix(&mut engine, &n1, &answers, 1, 115.0).await, Some(30));
    assert_eq!(s.native_fix(&mut engine, &n1, &answers, 6, 116.0).await, Some(30));
    assert_eq!(s.native_fix(&mut engine, &n1, &answers, 11, 115.0).await, Some(300), "capped after 10 min");
    s.native_fix(&mut engine, &n1, &answers, 16, 114.0).await;
    assert_eq!(s.commands(&n1).await, ["upload_interval 30", "upload_interval 300"], "told once each");
    // Home again; the next suspicion asks for fast reports again.
    s.native_fix(&mut engine, &n1, &answers, 17, 0.0).await;
    s.native_fix(&mut engine, &n1, &answers, 18, 0.0).await;
    assert_eq!(s.native_fix(&mut engine, &n1, &answers, 19, 115.0).await, Some(30), "a new suspicion");
}
