//! The push worker's queue and timers on both backends: claims, leases, outcomes, escalation,
//! receipts, push tokens and push settings.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use trygg_core::{AlarmKind, AlarmState, Step, TenantId, WearerId};
use trygg_store::{
    EngineCommit, EscalateOutcome, Escalation, NewAlarm, PushSettings, ReceiptOutcome, Role, Signal,
    SignalOutcome, StepRequest, Store, TimerKind,
};
use uuid::Uuid;

use trygg_store::on_both_backends;
use trygg_store::testing::add_user;

on_both_backends!(
    a_claim_takes_due_rows_once_and_a_lapsed_lease_gives_them_back,
    sent_and_failed_rows_are_never_claimed_again,
    concurrent_claims_take_disjoint_rows,
    raising_a_critical_alarm_writes_its_first_escalation_deadline,
    an_escalation_writes_the_next_step_once,
    a_receipt_confirms_the_pushes_of_its_step,
    an_acknowledged_alarm_stops_escalating,
    a_step_whose_every_push_failed_escalates_at_once,
    disabled_push_tokens_are_not_active,
    push_settings_default_off_and_round_trip,
    a_critical_alarm_is_claimed_before_older_technical_alerts,
    a_test_alarm_is_stored_closed_as_test_and_pushed_to_nobody,
    a_restarted_node_gets_its_own_claims_back_at_once,
);

const LEASE: Duration = Duration::from_secs(30);
/// The node claiming in these tests.
const NODE: &str = "node-a";

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).unwrap()
}

struct Setup {
    tenant: TenantId,
    wearer: WearerId,
    staff: Vec<Uuid>,
}

async fn setup(store: &Arc<dyn Store>, staff: usize) -> Setup {
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let wearer = store.create_wearer(tenant, "Astrid").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..staff {
        let email = format!("staff{i}@lerum.se");
        ids.push(add_user(&**store, Some(tenant), Role::Staff, &email, &format!("Staff {i}")).await);
    }
    Setup { tenant, wearer, staff: ids }
}

async fn raise(
    store: &Arc<dyn Store>,
    s: &Setup,
    kind: AlarmKind,
    recipients: &[Uuid],
    at: DateTime<Utc>,
) -> Uuid {
    let alarm = NewAlarm {
        tenant: s.tenant,
        wearer: Some(s.wearer),
        device: None,
        kind,
        zone: None,
        trigger_time: at,
        position: None,
        last_known_position: false,
        recipients: recipients.to_vec(),
        device_alarm: None,
    };
    let commit = EngineCommit { signals: vec![Signal::Raise(alarm)], ..EngineCommit::default() };
    match store.engine_commit(&commit, at).await.unwrap()[..] {
        [SignalOutcome::Raised(id)] => id,
        ref other => panic!("{other:?}"),
    }
}

async fn event_kinds(store: &Arc<dyn Store>, s: &Setup, alarm: Uuid) -> Vec<String> {
    store.alarm_events(s.tenant, alarm).await.unwrap().into_iter().map(|e| e.event.kind).collect()
}

async fn a_claim_takes_due_rows_once_and_a_lapsed_lease_gives_them_back(store: Arc<dyn Store>) {
    let s = setup(&store, 2).await;
    let alarm = raise(&store, &s, AlarmKind::Sos, &s.staff, t0()).await;
    let claimed = store.claim_outbox(NODE, t0(), LEASE, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        claimed.iter().all(|r| r.alarm == alarm && r.step == 0 && r.attempts == 0 && r.tenant == s.tenant)
    );
    let recipients: HashSet<Uuid> = claimed.iter().map(|r| r.recipient).collect();
    assert_eq!(recipients, s.staff.iter().copied().collect());
    assert!(store.claim_outbox(NODE, t0() + TimeDelta::seconds(29), LEASE, 10).await.unwrap().is_empty());

    assert!(store.outbox_sent(claimed[0].id).await.unwrap());
    let back = store.claim_outbox(NODE, t0() + TimeDelta::seconds(30), LEASE, 10).await.unwrap();
    assert_eq!(back.iter().map(|r| r.id).collect::<Vec<_>>(), vec![claimed[1].id]);
}

async fn sent_and_failed_rows_are_never_claimed_again(store: Arc<dyn Store>) {
    let s = setup(&store, 3).await;
    raise(&store, &s, AlarmKind::Fall, &s.staff, t0()).await;
    let rows = store.claim_outbox(NODE, t0(), LEASE, 10).await.unwrap();
    assert!(store.outbox_sent(rows[0].id).await.unwrap());
    assert!(!store.outbox_sent(rows[0].id).await.unwrap(), "sent once");
    assert!(store.outbox_failed(rows[1].id, "no push token").await.unwrap());
    assert!(!store.outbox_retry(rows[1].id, t0(), "late").await.unwrap(), "a failed row stays failed");
    assert!(store.outbox_retry(rows[2].id, t0() + TimeDelta::seconds(5), "HTTP 503").await.unwrap());

    assert!(store.claim_outbox(NODE, t0() + TimeDelta::seconds(4), LEASE, 10).await.unwrap().is_empty());
    let later = store.claim_outbox(NODE, t0() + TimeDelta::hours(1), LEASE, 10).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!((later[0].id, later[0].attempts), (rows[2].id, 1));

    store.outbox_token_sent(rows[2].id, "phone-a", t0()).await.unwrap();
    store.outbox_token_sent(rows[2].id, "phone-a", t0()).await.unwrap();
    assert_eq!(store.outbox_tokens_sent(rows[2].id).await.unwrap(), vec!["phone-a".to_owned()]);
}

async fn concurrent_claims_take_disjoint_rows(store: Arc<dyn Store>) {
    let s = setup(&store, 10).await;
    for i in 0..4 {
        let kind = [AlarmKind::Sos, AlarmKind::Fall, AlarmKind::WatchRemoved, AlarmKind::ZoneEnter][i];
        raise(&store, &s, kind, &s.staff, t0()).await;
    }
    let mut claims = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        claims.spawn(async move { store.claim_outbox(NODE, t0(), LEASE, 7).await.unwrap() });
    }
    let mut seen = HashSet::new();
    while let Some(rows) = claims.join_next().await {
        for row in rows.unwrap() {
            assert!(seen.insert(row.id), "row {} claimed twice", row.id);
        }
    }
    assert_eq!(seen.len(), 40);
}

async fn raising_a_critical_alarm_writes_its_first_escalation_deadline(store: Arc<dyn Store>) {
    let s = setup(&store, 1).await;
    let sos = raise(&store, &s, AlarmKind::Sos, &s.staff, t0()).await;
    raise(&store, &s, AlarmKind::LowBattery, &s.staff, t0()).await;
    assert!(store.claim_timers(NODE, t0() + TimeDelta::seconds(119), LEASE, 10).await.unwrap().is_empty());
    let timers = store.claim_timers(NODE, t0() + TimeDelta::seconds(120), LEASE, 10).await.unwrap();
    assert_eq!(timers.len(), 1, "technical alerts do not escalate: {timers:?}");
    assert_eq!((timers[0].alarm, timers[0].step, timers[0].kind), (sos, 0, TimerKind::Escalate));

    // Nobody to push at step 0: escalate at once.
    let other = Setup { wearer: store.create_wearer(s.tenant, "Bertil").await.unwrap(), staff: vec![], ..s };
    let alone = raise(&store, &other, AlarmKind::Fall, &[], t0()).await;
    let timers = store.claim_timers(NODE, t0(), LEASE, 10).await.unwrap();
    assert_eq!(timers.iter().map(|t| t.alarm).collect::<Vec<_>>(), vec![alone]);
}

async fn an_escalation_writes_the_next_step_once(store: Arc<dyn Store>) {
    let s = setup(&store, 3).await;
    let alarm = raise(&store, &s, AlarmKind::Sos, &s.staff[..1], t0()).await;
    let now = t0() + TimeDelta::seconds(30);
    assert!(store.add_timer(s.tenant, alarm, 0, TimerKind::Receipt, now).await.unwrap());
    assert!(!store.add_timer(s.tenant, alarm, 0, TimerKind::Receipt, now).await.unwrap(), "one per step");
    let receipt = store.claim_timers(NODE, now, LEASE, 10).await.unwrap().remove(0);
    assert_eq!(receipt.kind, TimerKind::Receipt);
    let next = Escalation::Responders {
        step: 1,
        recipients: s.staff[1..].to_vec(),
        escalate_after: Duration::from_secs(60),
    };
    assert_eq!(store.escalate(&receipt, &next, now).await.unwrap(), EscalateOutcome::Escalated);
    assert_eq!(store.escalate(&receipt, &next, now).await.unwrap(), EscalateOutcome::Stale);

    // The acknowledgement deadline of step 0 was settled with it.
    let later = now + TimeDelta::seconds(59);
    let step1: Vec<_> = store
        .claim_outbox(NODE, later, LEASE, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.step == 1)
        .collect();
    assert_eq!(
        step1.iter().map(|r| r.recipient).collect::<HashSet<_>>(),
        s.staff[1..].iter().copied().collect()
    );
    assert!(store.claim_timers(NODE, later, LEASE, 10).await.unwrap().is_empty());
    let deadline = store.claim_timers(NODE, now + TimeDelta::seconds(60), LEASE, 10).await.unwrap().remove(0);
    assert_eq!((deadline.step, deadline.kind), (1, TimerKind::Escalate));
    let centre = Escalation::AlarmCentre { step: 2 };
    assert_eq!(store.escalate(&deadline, &centre, later).await.unwrap(), EscalateOutcome::Escalated);
    let webhook = store.claim_timers(NODE, later, LEASE, 10).await.unwrap().remove(0);
    assert_eq!((webhook.step, webhook.kind), (2, TimerKind::AlarmCentre));
    assert!(store.timer_retry(webhook.id, later + TimeDelta::seconds(2), "HTTP 502").await.unwrap());
    let again = store.claim_timers(NODE, later + TimeDelta::seconds(2), LEASE, 10).await.unwrap().remove(0);
    assert_eq!((again.id, again.attempts), (webhook.id, 1));
    assert!(store.timer_done(again.id).await.unwrap());
    assert_eq!(event_kinds(&store, &s, alarm).await, ["raised", "escalated", "escalated"]);
}

async fn a_receipt_confirms_the_pushes_of_its_step(store: Arc<dyn Store>) {
    let s = setup(&store, 2).await;
    let alarm = raise(&store, &s, AlarmKind::Sos, &s.staff[..1], t0()).await;
    assert_eq!(
        store.record_receipt(s.tenant, alarm, s.staff[0], t0()).await.unwrap(),
        ReceiptOutcome::Recorded
    );
    assert_eq!(
        store.record_receipt(s.tenant, alarm, s.staff[0], t0()).await.unwrap(),
        ReceiptOutcome::Repeated
    );
    let elsewhere = store.create_tenant("Alingsås").await.unwrap();
    assert_eq!(
        store.record_receipt(elsewhere, alarm, s.staff[0], t0()).await.unwrap(),
        ReceiptOutcome::NotFound
    );
    store.add_timer(s.tenant, alarm, 0, TimerKind::Receipt, t0()).await.unwrap();
    let timer = store.claim_timers(NODE, t0(), LEASE, 10).await.unwrap().remove(0);
    let next = Escalation::Responders { step: 1, recipients: s.staff[1..].to_vec(), escalate_after: LEASE };
    assert_eq!(store.escalate(&timer, &next, t0()).await.unwrap(), EscalateOutcome::Confirmed);
    assert_eq!(event_kinds(&store, &s, alarm).await, ["raised", "received"]);
}

async fn an_acknowledged_alarm_stops_escalating(store: Arc<dyn Store>) {
    let s = setup(&store, 2).await;
    let alarm = raise(&store, &s, AlarmKind::Sos, &s.staff[..1], t0()).await;
    let ack = StepRequest {
        step: Step::Acknowledge,
        actor: Some(s.staff[0]),
        at: t0(),
        position: None,
        note: String::new(),
    };
    store.step_alarm(s.tenant, alarm, &ack).await.unwrap().unwrap();
    let timer = store.claim_timers(NODE, t0() + TimeDelta::minutes(5), LEASE, 10).await.unwrap().remove(0);
    let next = Escalation::Responders { step: 1, recipients: s.staff[1..].to_vec(), escalate_after: LEASE };
    assert_eq!(
        store.escalate(&timer, &next, t0()).await.unwrap(),
        EscalateOutcome::Stopped(AlarmState::Acknowledged)
    );
    assert!(
        store
            .claim_outbox(NODE, t0() + TimeDelta::hours(1), LEASE, 10)
            .await
            .unwrap()
            .iter()
            .all(|r| r.step == 0)
    );
    assert!(store.claim_timers(NODE, t0() + TimeDelta::hours(1), LEASE, 10).await.unwrap().is_empty());
}

async fn a_step_whose_every_push_failed_escalates_at_once(store: Arc<dyn Store>) {
    let s = setup(&store, 2).await;
    let alarm = raise(&store, &s, AlarmKind::Sos, &s.staff, t0()).await;
    let rows = store.claim_outbox(NODE, t0(), LEASE, 10).await.unwrap();
    store.outbox_failed(rows[0].id, "no push token").await.unwrap();
    assert!(!store.hasten_escalation(alarm, 0, t0()).await.unwrap(), "one push is still pending");
    store.outbox_failed(rows[1].id, "UNREGISTERED").await.unwrap();
    assert!(store.hasten_escalation(alarm, 0, t0()).await.unwrap());
    let timer = store.claim_timers(NODE, t0(), LEASE, 10).await.unwrap().remove(0);
    assert_eq!((timer.alarm, timer.kind), (alarm, TimerKind::Escalate));
}

async fn disabled_push_tokens_are_not_active(store: Arc<dyn Store>) {
    let s = setup(&store, 1).await;
    let user = s.staff[0];
    store.put_push_token(s.tenant, user, "old", "android", t0()).await.unwrap();
    store.put_push_token(s.tenant, user, "new", "ios", t0() + TimeDelta::seconds(1)).await.unwrap();
    let active = store.active_push_tokens(s.tenant, user).await.unwrap();
    assert_eq!(active.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(), ["new", "old"]);
    assert!(store.disable_push_token("old", t0()).await.unwrap());
    assert!(!store.disable_push_token("old", t0()).await.unwrap());
    let active = store.active_push_tokens(s.tenant, user).await.unwrap();
    assert_eq!(active.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(), ["new"]);
    // Registering the token again (the app was reinstalled) makes it active again.
    store.put_push_token(s.tenant, user, "old", "android", t0()).await.unwrap();
    assert_eq!(store.active_push_tokens(s.tenant, user).await.unwrap().len(), 2);
}

async fn push_settings_default_off_and_round_trip(store: Arc<dyn Store>) {
    let s = setup(&store, 0).await;
    assert_eq!(store.push_settings(s.tenant).await.unwrap(), PushSettings::default());
    let settings = PushSettings { wearer_name_in_push: true, alarm_centre_secret: Some("k".into()) };
    store.put_push_settings(s.tenant, &settings).await.unwrap();
    assert_eq!(store.push_settings(s.tenant).await.unwrap(), settings);
}

async fn a_critical_alarm_is_claimed_before_older_technical_alerts(store: Arc<dyn Store>) {
    let s = setup(&store, 1).await;
    // A backlog of technical alerts for the wearer, due first; then her SOS.
    for (i, kind) in
        [AlarmKind::LowBattery, AlarmKind::DeviceOffline, AlarmKind::TestAlarmMissing].into_iter().enumerate()
    {
        raise(&store, &s, kind, &s.staff, t0() + TimeDelta::seconds(i as i64)).await;
    }
    let sos = raise(&store, &s, AlarmKind::Sos, &s.staff, t0() + TimeDelta::seconds(10)).await;
    let first = store.claim_outbox(NODE, t0() + TimeDelta::seconds(20), LEASE, 1).await.unwrap();
    assert_eq!(first.iter().map(|r| r.alarm).collect::<Vec<_>>(), [sos], "critical first");
    let rest = store.claim_outbox(NODE, t0() + TimeDelta::seconds(20), LEASE, 10).await.unwrap();
    assert_eq!(rest.len(), 3, "then the technical ones");
}

async fn a_test_alarm_is_stored_closed_as_test_and_pushed_to_nobody(store: Arc<dyn Store>) {
    let s = setup(&store, 1).await;
    let id = raise(&store, &s, AlarmKind::Test, &s.staff, t0()).await;
    let alarm = store.alarm(s.tenant, id, None).await.unwrap().unwrap();
    assert_eq!(
        (alarm.kind, alarm.state, alarm.outcome),
        (AlarmKind::Test, AlarmState::Closed, Some(trygg_core::Outcome::Test))
    );
    assert_eq!(event_kinds(&store, &s, id).await, ["raised", "closed"]);
    assert!(
        store.claim_outbox(NODE, t0() + TimeDelta::hours(1), LEASE, 10).await.unwrap().is_empty(),
        "pages nobody"
    );
    assert!(
        store.claim_timers(NODE, t0() + TimeDelta::hours(1), LEASE, 10).await.unwrap().is_empty(),
        "never escalates"
    );
    // A second test the same day is its own record, not a repeat.
    assert_ne!(raise(&store, &s, AlarmKind::Test, &s.staff, t0() + TimeDelta::minutes(1)).await, id);
}

/// Node A dies holding a push and an escalation deadline, node B holds a push: when A starts
/// again it gets its own claims back at once; B's stay B's, and a retry keeps its back-off.
async fn a_restarted_node_gets_its_own_claims_back_at_once(store: Arc<dyn Store>) {
    let s = setup(&store, 3).await;
    let alarm = raise(&store, &s, AlarmKind::Sos, &s.staff, t0()).await;
    let at = t0() + TimeDelta::seconds(120); // the escalation deadline is due too
    let a = store.claim_outbox(NODE, at, LEASE, 1).await.unwrap();
    let b = store.claim_outbox("node-b", at, LEASE, 1).await.unwrap();
    let retry = store.claim_outbox(NODE, at, LEASE, 1).await.unwrap();
    assert!(store.outbox_retry(retry[0].id, at + TimeDelta::minutes(10), "HTTP 503").await.unwrap());
    let deadline = store.claim_timers(NODE, at, LEASE, 10).await.unwrap();
    assert_eq!(deadline.len(), 1, "the SOS's escalation deadline");

    let restart = at + TimeDelta::seconds(1);
    assert_eq!(store.release_claims(NODE, restart).await.unwrap(), 2, "A's push and deadline");
    let again = store.claim_outbox(NODE, restart, LEASE, 10).await.unwrap();
    assert_eq!(again.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a[0].id], "not B's, not the retry");
    assert_eq!(again[0].alarm, alarm);
    assert_ne!(b[0].id, a[0].id);
    let timers = store.claim_timers(NODE, restart, LEASE, 10).await.unwrap();
    assert_eq!(timers.iter().map(|t| t.id).collect::<Vec<_>>(), vec![deadline[0].id]);
    assert_eq!(store.release_claims("node-c", restart).await.unwrap(), 0, "node C held nothing");
}
