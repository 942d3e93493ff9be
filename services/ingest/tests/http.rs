//! The native ingest endpoints in-process on a fresh SQLite database: every bad input gets its
//! 4xx with a JSON error, is counted, and loses none of the good data.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{TimeDelta, Utc};
use prometheus_client::registry::Registry;
use prost::Message;
use serde_json::{Value, json};
use tower::ServiceExt;
use trygg_core::DeviceId;
use trygg_ingest::{AlarmPath, IngestMetrics, Limits, pb, router};
use trygg_store::testing::TestDb;
use trygg_store::{Protocol, Store, token};

const TOKEN: &str = "device-secret";

struct App {
    _db: TestDb,
    store: Arc<dyn Store>,
    router: Router,
    registry: Registry,
}

async fn app() -> App {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let tenant = store.create_tenant("Lerums kommun").await.unwrap();
    for (id, protocol, hash) in
        [("d1", Protocol::Native, Some(token::hash(TOKEN))), ("w1", Protocol::Watch, None)]
    {
        common::register(&*store, tenant, id, protocol, hash).await;
    }
    let mut registry = Registry::default();
    let metrics = IngestMetrics::register(&mut registry);
    let limits = Limits { max_body_bytes: 64 * 1024, max_batch_fixes: 100 };
    let ingest = common::ingest(store.clone(), metrics, limits, AlarmPath::always());
    App { _db: db, store, router: router(ingest), registry }
}

impl App {
    async fn post(
        &self,
        path: &str,
        content_type: &str,
        token: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Vec<u8>) {
        let mut req = Request::post(path).header(header::CONTENT_TYPE, content_type);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = self.router.clone().oneshot(req.body(body.into()).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, bytes.to_vec())
    }

    async fn json(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let (status, bytes) = self.post(path, "application/json", token, body.to_string()).await;
        (status, serde_json::from_slice(&bytes).expect("every answer is JSON"))
    }

    async fn stored(&self, device: &str) -> usize {
        self.store.recent_fixes(&DeviceId::parse(device).unwrap(), 10_000).await.unwrap().len()
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }
}

fn fix(seconds_ago: i64) -> Value {
    let time = Utc::now() - TimeDelta::seconds(seconds_ago);
    json!({"time": time.to_rfc3339(), "lat": 57.78, "lon": 12.3, "accuracy_m": 9.0, "battery_pct": 70})
}

const POSITIONS: &str = "/api/v1/ingest/positions";
const ALARMS: &str = "/api/v1/ingest/alarms";

#[tokio::test]
async fn a_json_batch_is_stored_and_a_resend_is_counted_as_duplicates() {
    let app = app().await;
    let body = json!({"device": "d1", "fixes": [fix(5), fix(4), fix(3)]});
    let (status, ack) = app.json(POSITIONS, Some(TOKEN), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack, json!({"accepted": 3, "duplicates": 0, "late": 0, "rejected": []}));
    let (_, ack) = app.json(POSITIONS, Some(TOKEN), body).await;
    assert_eq!(ack["duplicates"], 3);
    assert_eq!(app.stored("d1").await, 3);
    assert!(app.metrics().contains("trygg_ingest_fixes_committed_total 3"));
    assert!(app.metrics().contains("trygg_ingest_fixes_duplicate_total 3"));
}

#[tokio::test]
async fn a_protobuf_batch_is_stored_and_answered_in_protobuf() {
    let app = app().await;
    let now = Utc::now().timestamp_millis();
    let batch = pb::PositionBatch {
        device: "d1".into(),
        fixes: vec![
            pb::Fix {
                time_unix_ms: now,
                lat: 57.7,
                lon: 11.9,
                accuracy_m: Some(5.0),
                source: pb::FixSource::Gps as i32,
                ..Default::default()
            },
            pb::Fix { time_unix_ms: now - 1000, lat: f64::NAN, lon: 11.9, ..Default::default() },
            pb::Fix { time_unix_ms: now - 3_600_000, lat: 57.7, lon: 11.9, ..Default::default() },
        ],
    };
    let (status, body) =
        app.post(POSITIONS, "application/x-protobuf", Some(TOKEN), batch.encode_to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let ack = pb::PositionAck::decode(body.as_slice()).unwrap();
    assert_eq!((ack.accepted, ack.duplicates, ack.late), (2, 0, 1));
    assert_eq!(ack.rejected.len(), 1);
    assert_eq!((ack.rejected[0].index, ack.rejected[0].code.as_str()), (1, "not_finite"));
    let stored = app.store.recent_fixes(&DeviceId::parse("d1").unwrap(), 10).await.unwrap();
    assert_eq!(stored[0].fix.accuracy_m, Some(5.0));
    assert_eq!(stored[0].fix.source, trygg_core::FixSource::Gps);
    assert!(stored[1].late, "the hour-old fix is flagged late");
}

#[tokio::test]
async fn a_batch_keeps_its_valid_fixes_and_lists_the_rejected_ones() {
    let app = app().await;
    let mut bad = fix(1);
    bad["lat"] = json!(91.0);
    let (status, ack) =
        app.json(POSITIONS, Some(TOKEN), json!({"device": "d1", "fixes": [fix(2), bad]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ack["accepted"], 1);
    assert_eq!(ack["rejected"][0]["index"], 1);
    assert_eq!(ack["rejected"][0]["code"], "lat_out_of_range");
    assert!(app.metrics().contains(r#"trygg_ingest_fixes_rejected_total{reason="lat_out_of_range"} 1"#));
}

#[tokio::test]
async fn a_batch_with_no_valid_fix_is_422_naming_each_reason() {
    let app = app().await;
    let mut far_lon = fix(1);
    far_lon["lon"] = json!(200.0);
    let future = fix(-3600);
    let ancient = fix(30 * 24 * 3600);
    let (status, err) =
        app.json(POSITIONS, Some(TOKEN), json!({"device": "d1", "fixes": [far_lon, future, ancient]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let codes: Vec<_> =
        err["details"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["lon_out_of_range", "in_future", "too_old"]);
    assert_eq!(app.stored("d1").await, 0);
}

#[tokio::test]
async fn malformed_json_and_protobuf_are_400() {
    let app = app().await;
    let (status, body) =
        app.post(POSITIONS, "application/json", Some(TOKEN), "{\"device\": \"d1\", \"fixes\": [").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert!(err["error"].as_str().unwrap().starts_with("malformed request"), "{err}");
    let (status, _) =
        app.post(POSITIONS, "application/x-protobuf", Some(TOKEN), vec![0xff, 0xff, 0xff]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.json(POSITIONS, Some(TOKEN), json!({"device": "d1", "fixes": [{"lat": 1}]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a fix without time is malformed");
    assert!(app.metrics().contains(r#"trygg_ingest_requests_rejected_total{reason="malformed"} 3"#));
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let app = app().await;
    let (status, body) = app.post(POSITIONS, "text/plain", Some(TOKEN), "hello").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(String::from_utf8(body).unwrap().contains("application/x-protobuf"));
}

#[tokio::test]
async fn a_batch_over_the_limit_and_a_body_over_the_cap_are_413() {
    let app = app().await;
    let fixes: Vec<_> = (0..101).map(fix).collect();
    let (status, err) = app.json(POSITIONS, Some(TOKEN), json!({"device": "d1", "fixes": fixes})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(err["details"], json!({"fixes": 101, "max": 100}));
    let huge = format!("{{\"device\":\"d1\",\"fixes\":[],\"pad\":\"{}\"}}", "x".repeat(70_000));
    let (status, body) = app.post(POSITIONS, "application/json", Some(TOKEN), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8(body).unwrap().contains("65536 bytes"));
    let (status, _) = app.json(POSITIONS, Some(TOKEN), json!({"device": "d1", "fixes": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "an empty batch is refused");
}

#[tokio::test]
async fn unknown_devices_wrong_tokens_and_tokenless_devices_are_401() {
    let app = app().await;
    let body = |d: &str| json!({"device": d, "fixes": [fix(1)]});
    // An unknown device and a wrong token answer alike: the answer tells nobody which ids exist.
    let (status, unknown) = app.json(POSITIONS, Some(TOKEN), body("nobody")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, wrong) = app.json(POSITIONS, Some("guess"), body("d1")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown, wrong);
    let (status, _) = app.json(POSITIONS, None, body("d1")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.json(POSITIONS, Some(TOKEN), body("w1")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a TCP watch has no token to use here");
    assert_eq!(app.stored("d1").await + app.stored("w1").await, 0);
    assert!(app.metrics().contains(r#"trygg_ingest_requests_rejected_total{reason="unauthenticated"} 4"#));
}

#[tokio::test]
async fn a_request_without_a_valid_token_is_refused_before_its_body_is_read() {
    let app = app().await;
    let huge = format!("{{\"device\":\"d1\",\"fixes\":[],\"pad\":\"{}\"}}", "x".repeat(70_000));
    let (status, _) = app.post(POSITIONS, "application/json", Some("guess"), huge.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "401 before reading, not 413 after");
    let (status, _) = app.post(POSITIONS, "application/json", Some(TOKEN), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "a device with its token gets the size limit");
}

#[tokio::test]
async fn an_sos_is_created_once_and_its_resend_joins_it() {
    let app = app().await;
    let time = Utc::now().to_rfc3339();
    let body = json!({"device": "d1", "kind": "sos", "time": time, "fix": fix(0)});
    let (status, first) = app.json(ALARMS, Some(TOKEN), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["duplicate"], false);
    let (status, again) = app.json(ALARMS, Some(TOKEN), body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (again["alarm_id"].clone(), again["duplicate"].clone()),
        (first["alarm_id"].clone(), json!(true))
    );
    assert_eq!(app.store.device_alarms(&DeviceId::parse("d1").unwrap()).await.unwrap().len(), 1);
    assert_eq!(app.stored("d1").await, 1, "the alarm's fix is stored once");
    assert!(app.metrics().contains(r#"trygg_ingest_alarms_received_total{kind="sos"} 2"#));
}

#[tokio::test]
async fn an_alarm_with_a_bad_fix_or_clock_is_kept_and_the_problem_reported() {
    let app = app().await;
    let mut bad = fix(0);
    bad["lon"] = json!(-999.0);
    let skewed = (Utc::now() + TimeDelta::hours(3)).to_rfc3339();
    let (status, ack) = app
        .json(ALARMS, Some(TOKEN), json!({"device": "d1", "kind": "fall", "time": skewed, "fix": bad}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(ack["fix_error"], "lon -999 is outside [-180, 180]");
    let stored = app.store.device_alarms(&DeviceId::parse("d1").unwrap()).await.unwrap();
    assert!(stored[0].clock_suspect);
    assert_eq!(stored[0].fix_time, None);
}

#[tokio::test]
async fn a_protobuf_alarm_is_answered_in_protobuf_and_needs_a_kind() {
    let app = app().await;
    let now = Utc::now().timestamp_millis();
    let alarm = pb::DeviceAlarm {
        device: "d1".into(),
        kind: pb::AlarmKind::WatchRemoved as i32,
        time_unix_ms: now,
        fix: None,
    };
    let (status, body) = app.post(ALARMS, "application/x-protobuf", Some(TOKEN), alarm.encode_to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(!pb::AlarmAck::decode(body.as_slice()).unwrap().duplicate);
    let unspecified = pb::DeviceAlarm { kind: 0, ..alarm };
    let (status, _) =
        app.post(ALARMS, "application/x-protobuf", Some(TOKEN), unspecified.encode_to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) =
        app.json(ALARMS, Some(TOKEN), json!({"device": "d1", "kind": "panic", "time": Utc::now()})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
