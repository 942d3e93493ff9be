//! The delivery worker against the fake FCM, on SQLite and PostgreSQL: pushes, every error
//! class, an FCM outage, escalation, the signed alarm-centre webhook, and a restart.
//!
//! Time in the database is virtual: each test calls [`Worker::pass`] at the instants it wants,
//! so deadlines of minutes run in milliseconds, while HTTP to the fake is real. The tests of a
//! hanging FCM run [`Worker::run`] in real time instead, because what they check is that one
//! loop does not wait for another's sends.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use trygg_core::{AlarmKind, AlarmState, Step, TenantId, WearerId};
use trygg_push::fake::{FakeFcm, Fault};
use trygg_push::webhook::AllowHosts;
use trygg_push::worker::{SIGNATURE_HEADER, verify};
use trygg_push::{FcmClient, PushMetrics, Worker, WorkerConfig};
use trygg_store::{
    EngineCommit, NewAlarm, Position, PushSettings, Responder, ResponderPlan, ResponderTarget, Role, Signal,
    SignalOutcome, StepRequest, Store,
};
use uuid::Uuid;

use trygg_store::on_both_backends;
use trygg_store::testing::add_user;

on_both_backends!(
    an_outbox_row_becomes_one_push_per_active_token_and_the_alarm_is_notified,
    the_wearer_name_is_pushed_only_when_the_tenant_allows_it,
    transient_errors_are_retried_no_earlier_than_retry_after_and_delivered_once,
    dead_tokens_are_disabled_and_the_step_escalates_at_once,
    setup_errors_keep_the_token_count_in_metrics_and_escalate,
    a_recipient_without_a_token_escalates_instead,
    fcm_down_for_a_minute_loses_and_duplicates_nothing,
    escalation_follows_the_responder_order_then_signs_the_alarm_centre_webhook,
    an_acknowledged_alarm_stops_escalating_and_pushing,
    a_second_worker_resends_an_unsent_claim_after_the_lease_but_never_a_sent_one,
    technical_alerts_for_one_recipient_go_out_bundled_at_normal_priority,
    an_escalation_fires_on_time_while_fcm_hangs,
    a_hanging_send_does_not_hold_up_another_recipients_push,
    every_waiting_critical_push_is_accepted_within_5_s_of_fcm_answering_again,
    every_waiting_critical_push_is_accepted_within_5_s_of_fcm_no_longer_hanging,
);

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).unwrap()
}

fn at(secs: f64) -> DateTime<Utc> {
    t0() + TimeDelta::milliseconds((secs * 1000.0) as i64)
}

struct World {
    store: Arc<dyn Store>,
    fake: FakeFcm,
    worker: Worker,
    tenant: TenantId,
    wearer: WearerId,
    staff: Vec<Uuid>,
}

/// A tenant, a wearer and `staff` staff accounts, staff `i` with the phone `phone-i`.
async fn world(store: Arc<dyn Store>, staff: usize) -> World {
    let fake = FakeFcm::start().await.unwrap();
    let tenant = store.create_tenant("Lerum").await.unwrap();
    let wearer = store.create_wearer(tenant, "Astrid Andersson").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..staff {
        let id = add_user(
            &*store,
            Some(tenant),
            Role::Staff,
            &format!("staff{i}@lerum.se"),
            &format!("Staff {i}"),
        )
        .await;
        store.put_push_token(tenant, id, &format!("phone-{i}"), "android", t0()).await.unwrap();
        ids.push(id);
    }
    let worker = worker(&store, &fake, PushMetrics::default());
    World { worker, store, fake, tenant, wearer, staff: ids }
}

fn worker(store: &Arc<dyn Store>, fake: &FakeFcm, metrics: PushMetrics) -> Worker {
    let fcm = FcmClient::from_key(fake.service_account(), &fake.endpoint()).unwrap();
    let config =
        WorkerConfig { webhook_allow_hosts: AllowHosts::parse("127.0.0.1"), ..WorkerConfig::default() };
    Worker::new(store.clone(), Some(fcm), config, metrics)
}

fn json_age_secs(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(body).ok()?["position"]["age_secs"].as_i64()
}

/// A worker on the world's store and fake with `config`, its access token already fetched so
/// that a short send timeout never has to cover the token exchange.
async fn worker_with(w: &World, config: WorkerConfig) -> Worker {
    let fcm = FcmClient::from_key(w.fake.service_account(), &w.fake.endpoint()).unwrap();
    fcm.tokens().access_token().await.unwrap();
    Worker::new(w.store.clone(), Some(fcm), config, PushMetrics::default())
}

/// Runs `worker` in real time until the returned sender is dropped.
fn run(worker: &Worker) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worker.clone().run(async {
        let _ = stopped.await;
    }));
    stop
}

/// How long (real time) until `done` holds, checked every 20 ms; `None` if not within `limit`.
async fn within<F: Future<Output = bool>>(limit: Duration, mut done: impl FnMut() -> F) -> Option<Duration> {
    let start = std::time::Instant::now();
    loop {
        if done().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl World {
    async fn raise(
        &self,
        kind: AlarmKind,
        zone: Option<&str>,
        recipients: &[Uuid],
        now: DateTime<Utc>,
    ) -> Uuid {
        let position = Position { lat: 57.708_87, lon: 11.974_56, accuracy_m: Some(12.0) };
        let alarm = NewAlarm {
            tenant: self.tenant,
            wearer: Some(self.wearer),
            device: None,
            kind,
            zone: zone.map(str::to_owned),
            trigger_time: now,
            position: Some((position, now - TimeDelta::seconds(40))),
            last_known_position: false,
            recipients: recipients.to_vec(),
            device_alarm: None,
        };
        let commit = EngineCommit { signals: vec![Signal::Raise(alarm)], ..EngineCommit::default() };
        match self.store.engine_commit(&commit, now).await.unwrap()[..] {
            [SignalOutcome::Raised(id)] => id,
            ref other => panic!("{other:?}"),
        }
    }

    async fn pass(&self, now: DateTime<Utc>) {
        self.worker.pass(now).await.unwrap();
    }

    async fn events(&self, alarm: Uuid) -> Vec<String> {
        let events = self.store.alarm_events(self.tenant, alarm).await.unwrap();
        events.into_iter().map(|e| e.event.kind).collect()
    }

    async fn state(&self, alarm: Uuid) -> AlarmState {
        self.store.alarm(self.tenant, alarm, None).await.unwrap().unwrap().state
    }

    async fn responders(&self, steps: &[Uuid], alarm_centre_url: Option<String>) {
        self.responders_after(steps, 60, alarm_centre_url).await;
    }

    /// Responder steps `steps`, each with `secs` to acknowledge.
    async fn responders_after(&self, steps: &[Uuid], secs: u32, alarm_centre_url: Option<String>) {
        let steps = steps
            .iter()
            .map(|u| Responder { target: ResponderTarget::User(*u), escalate_after_secs: secs })
            .collect();
        let plan = ResponderPlan { steps, alarm_centre_url };
        assert!(self.store.set_responders(self.tenant, self.wearer, &plan).await.unwrap());
    }

    async fn active(&self, user: Uuid) -> Vec<String> {
        let tokens = self.store.active_push_tokens(self.tenant, user).await.unwrap();
        tokens.into_iter().map(|t| t.token).collect()
    }
}

fn count(events: &[String], kind: &str) -> usize {
    events.iter().filter(|e| *e == kind).count()
}

async fn an_outbox_row_becomes_one_push_per_active_token_and_the_alarm_is_notified(store: Arc<dyn Store>) {
    let w = world(store, 1).await;
    w.store.put_push_token(w.tenant, w.staff[0], "tablet-0", "ios", t0()).await.unwrap();
    let alarm = w.raise(AlarmKind::Sos, None, &w.staff, t0()).await;
    w.pass(t0()).await;

    let messages = w.fake.messages();
    assert_eq!(messages.len(), 2);
    let tokens: HashSet<_> = messages.iter().map(|m| m.token.clone().unwrap()).collect();
    assert_eq!(tokens, HashSet::from(["phone-0".to_owned(), "tablet-0".to_owned()]));
    let data = &messages[0].message["data"];
    assert_eq!(data["alarm_id"], alarm.to_string());
    assert_eq!(data["kind"], "sos");
    assert_eq!((data["lat"].as_str(), data["lon"].as_str()), (Some("57.708870"), Some("11.974560")));
    assert_eq!((data["accuracy_m"].as_str(), data["position_age_secs"].as_str()), (Some("12"), Some("40")));
    assert!(data.get("wearer_name").is_none(), "no name by default: {data}");
    assert_eq!(messages[0].message["android"]["priority"], "HIGH");
    assert_eq!(messages[0].collapse_key.as_deref(), Some(alarm.to_string().as_str()));

    assert_eq!(w.state(alarm).await, AlarmState::Notified);
    let events = w.events(alarm).await;
    assert_eq!((count(&events, "push_sent"), count(&events, "notified")), (2, 1), "{events:?}");
    // Sent rows are never claimed again.
    w.pass(at(31.0)).await;
    assert_eq!(w.fake.messages().len(), 2);
}

async fn the_wearer_name_is_pushed_only_when_the_tenant_allows_it(store: Arc<dyn Store>) {
    let w = world(store, 1).await;
    let settings = PushSettings { wearer_name_in_push: true, alarm_centre_secret: None };
    w.store.put_push_settings(w.tenant, &settings).await.unwrap();
    w.raise(AlarmKind::Fall, None, &w.staff, t0()).await;
    w.pass(t0()).await;
    let message = &w.fake.messages()[0].message;
    assert_eq!(message["data"]["wearer_name"], "Astrid Andersson");
    assert!(message["notification"]["body"].as_str().unwrap().starts_with("Astrid Andersson."));
}

async fn transient_errors_are_retried_no_earlier_than_retry_after_and_delivered_once(store: Arc<dyn Store>) {
    let w = world(store, 1).await;
    let faults = [
        (AlarmKind::Sos, Fault::Unavailable { retry_after: Some("7".into()) }),
        (AlarmKind::Fall, Fault::Throttled { retry_after: Some("7".into()) }),
        (AlarmKind::WatchRemoved, Fault::Internal),
    ];
    for (i, (kind, fault)) in faults.into_iter().enumerate() {
        let start = 100.0 * i as f64;
        let alarm = w.raise(kind, None, &w.staff, at(start)).await;
        w.fake.fail_next_for_token("phone-0", 1, fault.clone());
        w.pass(at(start)).await;
        assert_eq!(w.fake.count_for_collapse_key(&alarm.to_string()), 0, "{fault:?}");
        assert_eq!(w.state(alarm).await, AlarmState::Raised);
        if matches!(fault, Fault::Internal) {
            // No Retry-After: the first back-off is at most a second.
            w.pass(at(start + 1.0)).await;
        } else {
            w.pass(at(start + 6.9)).await;
            assert_eq!(w.fake.count_for_collapse_key(&alarm.to_string()), 0, "{fault:?} retried early");
            w.pass(at(start + 7.0)).await;
        }
        assert_eq!(w.fake.count_for_collapse_key(&alarm.to_string()), 1, "{fault:?}");
        w.pass(at(start + 20.0)).await;
        assert_eq!(w.fake.count_for_collapse_key(&alarm.to_string()), 1, "{fault:?} sent twice");
        let events = w.events(alarm).await;
        assert_eq!((count(&events, "push_retry"), count(&events, "push_sent")), (1, 1), "{events:?}");
        assert_eq!(w.state(alarm).await, AlarmState::Notified);
    }
}

async fn dead_tokens_are_disabled_and_the_step_escalates_at_once(store: Arc<dyn Store>) {
    let w = world(store, 3).await;
    w.responders(&w.staff[..2], None).await;
    let alarm = w.raise(AlarmKind::Sos, None, &w.staff[..1], t0()).await;
    w.fake.fail_next_for_token("phone-0", 1, Fault::Unregistered);
    w.pass(t0()).await;
    assert!(w.active(w.staff[0]).await.is_empty(), "UNREGISTERED disables the token");
    // The escalation deadline (2 min away) was brought forward: step 1 is alerted now.
    w.pass(at(0.1)).await;
    w.pass(at(0.2)).await;
    assert_eq!(w.fake.count_for_token("phone-1"), 1);
    let events = w.events(alarm).await;
    assert_eq!((count(&events, "push_failed"), count(&events, "escalated")), (1, 1), "{events:?}");

    // An invalid token at step 1 of another alarm: the same.
    let other = w.raise(AlarmKind::Fall, None, &w.staff[1..2], at(1.0)).await;
    w.fake.fail_next_for_token("phone-1", 1, Fault::InvalidToken);
    w.pass(at(1.0)).await;
    assert!(w.active(w.staff[1]).await.is_empty(), "an invalid token is disabled");
    assert_eq!(count(&w.events(other).await, "push_failed"), 1);
}

async fn setup_errors_keep_the_token_count_in_metrics_and_escalate(store: Arc<dyn Store>) {
    let w = world(store, 2).await;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = PushMetrics::register(&mut registry);
    let worker = worker(&w.store, &w.fake, metrics.clone());
    w.responders(&w.staff, None).await;
    for (i, fault) in
        [Fault::ThirdPartyAuth, Fault::SenderIdMismatch, Fault::InvalidArgument].into_iter().enumerate()
    {
        let kind = [AlarmKind::Sos, AlarmKind::Fall, AlarmKind::WatchRemoved][i];
        let start = 10.0 * i as f64;
        let alarm = w.raise(kind, None, &w.staff[..1], at(start)).await;
        w.fake.fail_next_for_token("phone-0", 1, fault.clone());
        worker.pass(at(start)).await.unwrap();
        assert_eq!(w.active(w.staff[0]).await, ["phone-0"], "{fault:?} keeps the device token");
        worker.pass(at(start + 0.1)).await.unwrap();
        worker.pass(at(start + 0.2)).await.unwrap();
        assert_eq!(w.fake.count_for_collapse_key(&alarm.to_string()), 1, "{fault:?}: step 1 pushed");
        assert_eq!(count(&w.events(alarm).await, "escalated"), 1, "{fault:?}");
    }
    assert_eq!(metrics.auth_errors(), 2, "THIRD_PARTY_AUTH_ERROR and SENDER_ID_MISMATCH");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("trygg_push_auth_errors_total 2"), "{text}");
}

async fn a_recipient_without_a_token_escalates_instead(store: Arc<dyn Store>) {
    let w = world(store, 2).await;
    w.responders(&w.staff, None).await;
    w.store.delete_push_token(w.tenant, w.staff[0], "phone-0").await.unwrap();
    let alarm = w.raise(AlarmKind::ZoneExit, Some("z1"), &w.staff[..1], t0()).await;
    for tick in 0..3 {
        w.pass(at(0.1 * f64::from(tick))).await;
    }
    assert_eq!(w.fake.count_for_token("phone-1"), 1);
    let events = w.events(alarm).await;
    assert_eq!(events[..3], ["raised", "push_failed", "escalated"], "{events:?}");
}

async fn fcm_down_for_a_minute_loses_and_duplicates_nothing(store: Arc<dyn Store>) {
    let w = world(store, 2).await;
    w.fake.go_down_for(Duration::from_secs(3600));
    let mut alarms = Vec::new();
    let mut tick = 0;
    // 60 s down, an alarm every 3 s, a pass every 250 ms (virtual time).
    while tick < 240 {
        let now = at(0.25 * f64::from(tick));
        if tick % 12 == 0 {
            let zone = format!("z{tick}");
            alarms.push(w.raise(AlarmKind::ZoneExit, Some(&zone), &w.staff, now).await);
        }
        w.pass(now).await;
        tick += 1;
    }
    assert!(w.fake.messages().is_empty());
    w.fake.come_back();
    // Rows back off up to a minute each, but the first push FCM accepts again brings the rest
    // forward: everything is out within 30 s, not a back-off ceiling later.
    while tick < 240 + 4 * 30 {
        w.pass(at(0.25 * f64::from(tick))).await;
        tick += 1;
    }
    assert_eq!(alarms.len(), 20);
    for alarm in &alarms {
        assert_eq!(w.fake.count_for_collapse_key(&alarm.to_string()), 2, "alarm {alarm}: once per recipient");
        assert_eq!(w.state(*alarm).await, AlarmState::Notified);
    }
    assert_eq!((w.fake.count_for_token("phone-0"), w.fake.count_for_token("phone-1")), (20, 20));
}

/// The requests an alarm centre received: headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// An alarm centre that answers 503 to its first request and 200 after, keeping what it got.
async fn alarm_centre() -> (String, Received) {
    let got: Received = Arc::default();
    let kept = got.clone();
    let app = Router::new().route(
        "/alarm",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let mut kept = kept.lock().unwrap();
                kept.push((headers, body.to_vec()));
                if kept.len() == 1 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alarm", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

async fn escalation_follows_the_responder_order_then_signs_the_alarm_centre_webhook(store: Arc<dyn Store>) {
    let w = world(store, 2).await;
    let (url, got) = alarm_centre().await;
    w.responders(&w.staff, Some(url)).await;
    let secret = "centre-secret";
    let settings = PushSettings { wearer_name_in_push: false, alarm_centre_secret: Some(secret.into()) };
    w.store.put_push_settings(w.tenant, &settings).await.unwrap();
    let alarm = w.raise(AlarmKind::Sos, None, &w.staff[..1], t0()).await;

    w.pass(t0()).await;
    assert_eq!(w.fake.count_for_token("phone-0"), 1);
    w.store.record_receipt(w.tenant, alarm, w.staff[0], at(5.0)).await.unwrap();
    w.pass(at(31.0)).await; // the receipt deadline: confirmed, nothing happens
    w.pass(at(59.9)).await;
    assert_eq!(w.fake.count_for_token("phone-1"), 0, "not before the step's delay");
    w.pass(at(60.0)).await; // not acknowledged within 60 s: step 1
    w.pass(at(60.1)).await;
    assert_eq!(w.fake.count_for_token("phone-1"), 1);
    w.pass(at(90.0)).await;
    assert!(got.lock().unwrap().is_empty(), "step 1's receipt deadline is 30 s after its push");
    w.pass(at(90.2)).await; // no receipt from step 1 within 30 s: the alarm centre, last
    w.pass(at(90.3)).await; // its first POST got 503
    w.pass(at(92.0)).await; // retried after the back-off (at most 1 s)
    w.pass(at(200.0)).await; // nothing more: no step left

    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one 503, then delivered");
    let (headers, body) = &got[1];
    let signature = headers[SIGNATURE_HEADER].to_str().unwrap();
    // Signed at the worker's clock: 92 s after t0.
    let sent = at(92.0).timestamp();
    assert!(signature.starts_with(&format!("t={sent},v1=")), "{signature}");
    assert!(verify(secret.as_bytes(), body, signature, sent + 10, 300));
    assert!(!verify(secret.as_bytes(), body, signature, sent + 301, 300), "a replay after the tolerance");
    assert!(!verify(b"another secret", body, signature, sent, 300));
    assert!(!verify(secret.as_bytes(), &[body.as_slice(), b" "].concat(), signature, sent, 300));
    let other_time = signature.replacen(&format!("t={sent}"), &format!("t={}", sent + 1), 1);
    assert!(!verify(secret.as_bytes(), body, &other_time, sent, 300), "the time is signed");
    assert_eq!(json_age_secs(body), Some(92 + 40), "durations in seconds are named _secs");
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (json["alarm_id"].as_str(), json["kind"].as_str()),
        (Some(alarm.to_string().as_str()), Some("sos"))
    );
    assert_eq!(json["escalation_step"], 2);
    assert_eq!(json["position"]["accuracy_m"], 12.0);
    assert_eq!(
        w.events(alarm).await,
        [
            "raised",
            "push_sent",
            "notified",
            "received",
            "escalated",
            "push_sent",
            "escalated",
            "alarm_centre_retry",
            "alarm_centre_notified"
        ]
    );
    assert_eq!(w.fake.messages().len(), 2, "each recipient pushed once");
}

async fn an_acknowledged_alarm_stops_escalating_and_pushing(store: Arc<dyn Store>) {
    let w = world(store, 2).await;
    w.responders(&w.staff, None).await;
    let alarm = w.raise(AlarmKind::Fall, None, &w.staff[..1], t0()).await;
    w.pass(t0()).await;
    let ack = StepRequest {
        step: Step::Acknowledge,
        actor: Some(w.staff[0]),
        at: at(10.0),
        position: None,
        note: String::new(),
    };
    w.store.step_alarm(w.tenant, alarm, &ack).await.unwrap().unwrap();
    for secs in [31.0, 60.0, 120.0, 600.0] {
        w.pass(at(secs)).await;
    }
    assert_eq!(w.fake.count_for_token("phone-1"), 0);
    assert_eq!(w.events(alarm).await, ["raised", "push_sent", "notified", "acknowledged"]);
}

async fn a_second_worker_resends_an_unsent_claim_after_the_lease_but_never_a_sent_one(store: Arc<dyn Store>) {
    let w = world(store, 1).await;
    let alarm = w.raise(AlarmKind::Sos, None, &w.staff, t0()).await;
    // A worker claims the row and dies before sending.
    let claimed = w.store.claim_outbox("test-node", t0(), WorkerConfig::default().lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let restarted = worker(&w.store, &w.fake, PushMetrics::default());
    restarted.pass(at(29.9)).await.unwrap();
    assert_eq!(w.fake.messages().len(), 0, "the claim is still leased");
    restarted.pass(at(30.0)).await.unwrap();
    assert_eq!(w.fake.count_for_collapse_key(&alarm.to_string()), 1);
    // Yet another worker, long after: the sent row is not sent again.
    let third = worker(&w.store, &w.fake, PushMetrics::default());
    third.pass(at(100.0)).await.unwrap();
    restarted.pass(at(200.0)).await.unwrap();
    assert_eq!(w.fake.count_for_collapse_key(&alarm.to_string()), 1);
}

async fn technical_alerts_for_one_recipient_go_out_bundled_at_normal_priority(store: Arc<dyn Store>) {
    let w = world(store, 1).await;
    let low = w.raise(AlarmKind::LowBattery, None, &w.staff, t0()).await;
    let offline = w.raise(AlarmKind::DeviceOffline, None, &w.staff, t0()).await;
    let sos = w.raise(AlarmKind::Sos, None, &w.staff, t0()).await;
    w.pass(t0()).await;

    let messages = w.fake.messages();
    assert_eq!(messages.len(), 2, "the SOS alone, both technical alerts in one message");
    let bundle =
        messages.iter().find(|m| m.message["data"]["type"] == "technical").expect("a technical bundle");
    assert_eq!(bundle.message["android"]["priority"], "NORMAL");
    assert_eq!(bundle.message["data"]["count"], "2");
    let ids = bundle.message["data"]["alarm_ids"].as_str().unwrap();
    assert!(ids.contains(&low.to_string()) && ids.contains(&offline.to_string()), "{ids}");
    let critical =
        messages.iter().find(|m| m.collapse_key.as_deref() == Some(sos.to_string().as_str())).unwrap();
    assert_eq!(critical.message["android"]["priority"], "HIGH");
    for alarm in [low, offline, sos] {
        assert_eq!(w.state(alarm).await, AlarmState::Notified);
        assert_eq!(count(&w.events(alarm).await, "push_sent"), 1);
    }
    w.pass(at(31.0)).await;
    assert_eq!(w.fake.messages().len(), 2, "technical alerts never escalate nor repeat");
}

async fn an_escalation_fires_on_time_while_fcm_hangs(store: Arc<dyn Store>) {
    let w = world(store, 2).await;
    w.responders_after(&w.staff, 1, None).await;
    let config = WorkerConfig {
        poll_interval: Duration::from_millis(50),
        send_timeout: Duration::from_secs(2),
        ..WorkerConfig::default()
    };
    let worker = worker_with(&w, config).await;
    w.fake.hang_for(Duration::from_secs(3600));
    let _stop = run(&worker);
    let alarm = w.raise(AlarmKind::Sos, None, &w.staff[..1], Utc::now()).await;
    worker.waker().notify_one();
    let w = &w;

    // Step 0 has a second to acknowledge; its push hangs, the escalation must not wait for it.
    let escalated =
        within(Duration::from_secs(15), || async move { count(&w.events(alarm).await, "escalated") >= 1 })
            .await;
    assert!(escalated.is_some_and(|t| t < Duration::from_millis(1500)), "escalated after {escalated:?}");
    assert!(w.fake.messages().is_empty(), "FCM hangs");

    w.fake.come_back();
    let delivered = within(Duration::from_secs(15), || async move {
        w.fake.count_for_token("phone-0") >= 1 && w.fake.count_for_token("phone-1") >= 1
    })
    .await;
    assert!(delivered.is_some(), "both steps pushed once FCM answers: {:?}", w.events(alarm).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((w.fake.count_for_token("phone-0"), w.fake.count_for_token("phone-1")), (1, 1));
}

async fn a_hanging_send_does_not_hold_up_another_recipients_push(store: Arc<dyn Store>) {
    let w = world(store, 2).await;
    let config = WorkerConfig {
        poll_interval: Duration::from_millis(50),
        send_timeout: Duration::from_secs(2),
        ..WorkerConfig::default()
    };
    let worker = worker_with(&w, config).await;
    w.fake.fail_next_for_token("phone-0", 1, Fault::Hang);
    let _stop = run(&worker);
    let first = w.raise(AlarmKind::Sos, None, &w.staff[..1], Utc::now()).await;
    worker.waker().notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await; // phone-0's push is hanging now
    let second = w.raise(AlarmKind::Fall, None, &w.staff[1..], Utc::now()).await;
    worker.waker().notify_one();
    let w = &w;

    let took =
        within(Duration::from_secs(10), || async move { w.fake.count_for_token("phone-1") == 1 }).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "phone-1 pushed after {took:?}");
    assert_eq!(w.fake.count_for_token("phone-0"), 0, "still hanging");
    // After the send timeout the hanging push is tried again and goes out.
    let took =
        within(Duration::from_secs(10), || async move { w.fake.count_for_token("phone-0") == 1 }).await;
    assert!(took.is_some(), "{:?}", w.events(first).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((w.fake.count_for_token("phone-0"), w.fake.count_for_token("phone-1")), (1, 1));
    assert_eq!((w.state(first).await, w.state(second).await), (AlarmState::Notified, AlarmState::Notified));
}

async fn every_waiting_critical_push_is_accepted_within_5_s_of_fcm_answering_again(store: Arc<dyn Store>) {
    accepted_within_5_s_of_fcms_return(store, Outage::Unavailable).await;
}

async fn every_waiting_critical_push_is_accepted_within_5_s_of_fcm_no_longer_hanging(store: Arc<dyn Store>) {
    accepted_within_5_s_of_fcms_return(store, Outage::Hang).await;
}

/// How FCM is out for a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Every send answered 503 with `Retry-After: 5`.
    Unavailable,
    /// Every send left without an answer (the worker's send timeout ends each).
    Hang,
}

async fn accepted_within_5_s_of_fcms_return(store: Arc<dyn Store>, outage: Outage) {
    let w = world(store, 2).await;
    let config = WorkerConfig { send_timeout: Duration::from_millis(100), ..WorkerConfig::default() };
    let worker = worker_with(&w, config).await;
    match outage {
        Outage::Unavailable => {
            w.fake.fail_next(usize::MAX, Fault::Unavailable { retry_after: Some("5".into()) })
        }
        Outage::Hang => w.fake.hang_for(Duration::from_secs(3600)),
    }
    let kinds = [AlarmKind::Sos, AlarmKind::Fall, AlarmKind::ZoneExit, AlarmKind::WatchRemoved];
    let mut alarms = Vec::new();
    let mut tick = 0;
    // 60 s out, a critical alarm every 3.25 s at first, a pass every 250 ms (virtual time).
    while tick < 240 {
        let now = at(0.25 * f64::from(tick));
        if tick % 13 == 0 && alarms.len() < kinds.len() {
            let kind = kinds[alarms.len()];
            let zone = (kind == AlarmKind::ZoneExit).then_some("z1");
            alarms.push(w.raise(kind, zone, &w.staff, now).await);
        }
        worker.pass(now).await.unwrap();
        tick += 1;
    }
    assert!(w.fake.messages().is_empty());
    match outage {
        Outage::Unavailable => w.fake.clear_faults(),
        Outage::Hang => w.fake.come_back(),
    }
    let back = 60.0;
    let mut all_in = None;
    while tick < 240 + 4 * 30 {
        let secs = 0.25 * f64::from(tick);
        worker.pass(at(secs)).await.unwrap();
        if all_in.is_none() && w.fake.messages().len() >= 2 * alarms.len() {
            all_in = Some(secs - back);
        }
        tick += 1;
    }
    let all_in = all_in.expect("every push accepted");
    println!("{outage:?}: every push accepted {all_in} s after FCM came back");
    assert!(all_in <= 5.0, "{outage:?}: the last push was accepted {all_in} s after FCM came back");
    for alarm in &alarms {
        assert_eq!(w.fake.count_for_collapse_key(&alarm.to_string()), 2, "alarm {alarm}: once per recipient");
        assert_eq!(w.state(*alarm).await, AlarmState::Notified);
    }
    assert_eq!((w.fake.count_for_token("phone-0"), w.fake.count_for_token("phone-1")), (4, 4));

    // While pushes waited FCM was tried at least every 5 s (a pass is 250 ms), and no push
    // sooner than the Retry-After it was given.
    let mut tries: Vec<f64> = Vec::new();
    let mut per_push: HashMap<(Uuid, String), Vec<f64>> = HashMap::new();
    for alarm in &alarms {
        for e in w.store.alarm_events(w.tenant, *alarm).await.unwrap() {
            if e.event.kind == "push_retry" {
                let secs = (e.event.at - t0()).num_milliseconds() as f64 / 1000.0;
                let recipient = e.event.detail.split(" (").next().unwrap().to_owned();
                tries.push(secs);
                per_push.entry((*alarm, recipient)).or_default().push(secs);
            }
        }
    }
    tries.sort_by(f64::total_cmp);
    let gaps: Vec<f64> =
        tries.windows(2).map(|p| p[1] - p[0]).chain([back - tries[tries.len() - 1]]).collect();
    assert!(gaps.iter().all(|gap| *gap <= 5.25), "{outage:?}: FCM tried at {tries:?}");
    if outage == Outage::Unavailable {
        for ((alarm, recipient), mut tries) in per_push {
            tries.sort_by(f64::total_cmp);
            let early = tries.windows(2).any(|p| p[1] - p[0] < 5.0);
            assert!(!early, "{alarm} to {recipient}: tried before Retry-After: {tries:?}");
        }
    }
}
