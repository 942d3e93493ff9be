//! The whole alarm chain through the real binary, on SQLite and PostgreSQL, with pushes going to
//! a fake FCM: a caseworker sets up a wearer with consent and a zone, the watch walks out of it,
//! both phones of the team get the push, staff see the alarm with its position, follow the live
//! stream, acknowledge, mark on site and close it, and the events and the report show it. An
//! unacknowledged alarm escalates to the next responder step through an FCM outage, and an SOS
//! survives a SIGKILL without being raised twice.

mod common;

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use common::{ADMIN, Client, Trygg};
use reqwest::Method;
use serde_json::{Value, json};
use trygg_push::fake::FakeFcm;
use trygg_store::testing::TestDb;

/// Skövde centrum: the wearer's home, centre of her zone.
const HOME: (f64, f64) = (58.3903, 13.8462);

/// What a caseworker set up: tokens of the people and the watch.
struct World {
    cw: String,
    sven: String,
    maja: String,
    olle: String,
    lisa: String,
    device_token: String,
    wearer: String,
    sven_id: Value,
    team: Value,
}

/// The phones of Sven and Maja, the two members of Dagny's team.
const PHONES: [&str; 2] = ["sven-phone-token", "maja-phone-token"];

/// Starts `trygg serve` on `db` pushing to `fcm`, its service account written into `dir`.
fn start(db: &TestDb, fcm: &FakeFcm, dir: &tempfile::TempDir) -> Client {
    let key = dir.path().join("fcm.json");
    std::fs::write(&key, fcm.service_account_json()).unwrap();
    let (key, endpoint) = (key.display().to_string(), fcm.endpoint());
    let args = ["--bootstrap-admin", ADMIN, "--fcm-credentials", &key, "--fcm-endpoint", &endpoint];
    Client { http: reqwest::Client::new(), server: Trygg::start(db.url(), &args) }
}

async fn set_up(c: &Client) -> World {
    let admin = c.login("admin@kommun.test", "correct horse battery").await;
    let tenant = c.ok(Method::POST, "tenants", &admin, Some(json!({ "name": "Skövde" }))).await["id"].clone();
    let other = c.ok(Method::POST, "tenants", &admin, Some(json!({ "name": "Lerum" }))).await["id"].clone();
    let user = |email: &str, role: &str, tenant: &Value| json!({ "email": email, "name": email.split('@').next().unwrap(), "role": role, "password": "a long password", "tenant": tenant });
    c.ok(Method::POST, "users", &admin, Some(user("hanna@skovde.test", "caseworker", &tenant))).await;
    let sven =
        c.ok(Method::POST, "users", &admin, Some(user("sven@skovde.test", "staff", &tenant))).await["id"]
            .clone();
    let maja =
        c.ok(Method::POST, "users", &admin, Some(user("maja@skovde.test", "staff", &tenant))).await["id"]
            .clone();
    c.ok(Method::POST, "users", &admin, Some(user("olle@skovde.test", "staff", &tenant))).await;
    c.ok(Method::POST, "users", &admin, Some(user("lisa@lerum.test", "staff", &other))).await;
    let cw = c.login("hanna@skovde.test", "a long password").await;

    let wearer =
        c.ok(Method::POST, "wearers", &cw, Some(json!({ "name": "Dagny", "note": "Portkod 4711" }))).await;
    let id = wearer["id"].as_str().unwrap().to_owned();
    // Signed yesterday: the walk below is timestamped before the caseworker recorded it.
    let yesterday = (Utc::now() - TimeDelta::days(1)).to_rfc3339();
    let consent = json!({ "covers": ["positioning", "passive_alarms"], "given_by": "wearer", "document_ref": "Dnr 2026/1", "valid_from": yesterday });
    c.ok(Method::POST, &format!("wearers/{id}/consents"), &cw, Some(consent)).await;
    let device =
        c.ok(Method::POST, "devices", &cw, Some(json!({ "id": "dagny-watch", "protocol": "native" }))).await;
    c.ok(Method::POST, "devices/dagny-watch/bind", &cw, Some(json!({ "wearer": id }))).await;
    let zone = json!({
        "name": "Hemma", "kind": "stay_inside", "radius_m": 100,
        "geometry": { "type": "Point", "coordinates": [HOME.1, HOME.0] },
    });
    c.ok(Method::POST, &format!("wearers/{id}/zones"), &cw, Some(zone)).await;
    let team =
        c.ok(Method::POST, "teams", &cw, Some(json!({ "name": "Hemtjänst Norr" }))).await["id"].clone();
    let members = format!("teams/{}/members", team.as_str().unwrap());
    c.ok(Method::PUT, &members, &cw, Some(json!({ "members": [sven, maja] }))).await;
    c.ok(
        Method::PUT,
        &format!("wearers/{id}"),
        &cw,
        Some(json!({ "name": "Dagny", "note": "Portkod 4711", "team": team })),
    )
    .await;
    let (sven_token, maja_token) = (
        c.login("sven@skovde.test", "a long password").await,
        c.login("maja@skovde.test", "a long password").await,
    );
    for (token, phone) in [(&sven_token, PHONES[0]), (&maja_token, PHONES[1])] {
        c.ok(Method::POST, "push-tokens", token, Some(json!({ "token": phone, "platform": "android" })))
            .await;
    }
    World {
        cw,
        sven: sven_token,
        maja: maja_token,
        olle: c.login("olle@skovde.test", "a long password").await,
        lisa: c.login("lisa@lerum.test", "a long password").await,
        device_token: device["token"].as_str().unwrap().to_owned(),
        wearer: id,
        sven_id: sven,
        team,
    }
}

/// A fix `secs_ago` seconds ago, `north_m` metres north of home, ±8 m.
fn fix(secs_ago: i64, north_m: f64) -> Value {
    let time = Utc::now() - TimeDelta::seconds(secs_ago);
    json!({ "time": time.to_rfc3339(), "lat": HOME.0 + north_m / 111_320.0, "lon": HOME.1, "accuracy_m": 8.0 })
}

async fn post_device(c: &Client, token: &str, path: &str, body: Value) -> Value {
    let resp = c
        .http
        .post(c.server.url(&format!("/api/v1/ingest/{path}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "ingest {path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// Polls `GET alarms` as `token` until an alarm of `kind` is listed.
async fn wait_for_alarm(c: &Client, token: &str, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = c.ok(Method::GET, "alarms", token, None).await;
        if let Some(a) = list.as_array().unwrap().iter().find(|a| a["kind"] == kind) {
            return a.clone();
        }
        assert!(Instant::now() < deadline, "no {kind} alarm appeared: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads Server-Sent Events off a streaming response.
struct Events {
    resp: reqwest::Response,
    buffer: String,
}

impl Events {
    /// The next event's name and data; `None` when the stream ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut data) = (String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_owned();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap_or(Value::String(data))));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.resp.chunk())
                .await
                .expect("an event in time");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()?));
        }
    }
}

/// The kinds of an alarm's events, leaving out those of push delivery.
async fn lifecycle(c: &Client, token: &str, id: &str) -> Vec<String> {
    let events = c.ok(Method::GET, &format!("alarms/{id}/events"), token, None).await;
    let kinds = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned());
    kinds.filter(|k| !k.starts_with("push_")).collect()
}

/// Waits until the fake FCM has accepted `n` pushes for `alarm` to `phone`.
async fn wait_for_pushes(fcm: &FakeFcm, alarm: &str, phone: &str, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    let count = || {
        fcm.messages()
            .iter()
            .filter(|m| m.collapse_key.as_deref() == Some(alarm) && m.token.as_deref() == Some(phone))
            .count()
    };
    while count() < n {
        assert!(Instant::now() < deadline, "{phone} got {} of {n} pushes for {alarm}", count());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn staff_follow_a_zone_exit_from_raised_to_closed(db: TestDb) {
    let (fcm, dir) = (FakeFcm::start().await.unwrap(), tempfile::tempdir().unwrap());
    let c = start(&db, &fcm, &dir);
    let w = set_up(&c).await;

    // Dagny walks out of her zone: home, then 300 m and 400 m north.
    let walk = vec![fix(180, 0.0), fix(120, 300.0), fix(60, 400.0)];
    post_device(&c, &w.device_token, "positions", json!({ "device": "dagny-watch", "fixes": walk })).await;
    let alarm = wait_for_alarm(&c, &w.sven, "zone_exit").await;
    let id = alarm["id"].as_str().unwrap().to_owned();
    assert!(alarm["state"] == "raised" || alarm["state"] == "notified", "{alarm}");
    assert_eq!(alarm["wearer"]["name"], "Dagny");
    let position = &alarm["position"];
    assert!((position["lat"].as_f64().unwrap() - (HOME.0 + 400.0 / 111_320.0)).abs() < 1e-9, "{alarm}");
    assert_eq!(position["accuracy_m"], 8.0);
    assert!(position["age_secs"].as_f64().unwrap() >= 59.0, "the age of the fix, not of the alarm: {alarm}");

    // Both phones of the team get one high-priority push, keyed by the alarm, without her name.
    for phone in PHONES {
        wait_for_pushes(&fcm, &id, phone, 1, Duration::from_secs(10)).await;
    }
    let push = fcm.messages().into_iter().find(|m| m.collapse_key.as_deref() == Some(id.as_str())).unwrap();
    assert_eq!(push.message["android"]["priority"], "HIGH", "{}", push.message);
    assert!(!push.message.to_string().contains("Dagny"), "no personal data in the push: {}", push.message);
    let (status, _) = c.call(Method::POST, &format!("alarms/{id}/received"), Some(&w.maja), None).await;
    assert_eq!(status, 204, "the phone confirms the push arrived");

    // Olle is not on Dagny's team, Lisa is in another municipality: neither sees it.
    assert_eq!(c.ok(Method::GET, "alarms", &w.olle, None).await, json!([]));
    for token in [&w.olle, &w.lisa] {
        assert_eq!(c.call(Method::GET, &format!("alarms/{id}"), Some(token), None).await.0, 404);
        assert_eq!(c.call(Method::POST, &format!("alarms/{id}/acknowledge"), Some(token), None).await.0, 404);
    }

    // Sven opens it: the trail since before the alarm, and a map link.
    let detail = c.ok(Method::GET, &format!("alarms/{id}"), &w.sven, None).await;
    assert!(detail["last_position"]["age_secs"].as_i64().unwrap() >= 59, "{detail}");
    assert_eq!(detail["trail"].as_array().unwrap().len(), 3, "{detail}");
    assert!(detail["map_url"].as_str().unwrap().contains("openstreetmap.org"));

    // He follows the live position while he goes out.
    let resp = c
        .http
        .get(c.server.url(&format!("/api/v1/alarms/{id}/live")))
        .bearer_auth(&w.sven)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut live = Events { resp, buffer: String::new() };
    let (name, first) = live.next().await.unwrap();
    assert_eq!(name, "position");
    assert_eq!(first["lat"], position["lat"], "the stream starts at the last known position");

    let ack = c.ok(Method::POST, &format!("alarms/{id}/acknowledge"), &w.sven, None).await;
    assert_eq!(ack["state"], "acknowledged");
    let (status, again) =
        c.call(Method::POST, &format!("alarms/{id}/acknowledge"), Some(&w.sven), None).await;
    assert_eq!(status, 409, "{again}");

    post_device(
        &c,
        &w.device_token,
        "positions",
        json!({ "device": "dagny-watch", "fixes": [fix(0, 450.0)] }),
    )
    .await;
    let (name, moved) = live.next().await.unwrap();
    assert_eq!(name, "position");
    assert!((moved["lat"].as_f64().unwrap() - (HOME.0 + 450.0 / 111_320.0)).abs() < 1e-9, "{moved}");

    let here = json!({ "position": { "lat": HOME.0 + 0.004, "lon": HOME.1, "accuracy_m": 5.0 } });
    c.ok(Method::POST, &format!("alarms/{id}/on-site"), &w.sven, Some(here)).await;
    let close = json!({ "outcome": "assisted", "note": "Dagny hade gått vilse vid parken, följd hem." });
    let closed = c.ok(Method::POST, &format!("alarms/{id}/close"), &w.sven, Some(close.clone())).await;
    assert_eq!((closed["state"].clone(), closed["outcome"].clone()), (json!("closed"), json!("assisted")));
    assert_eq!(c.call(Method::POST, &format!("alarms/{id}/close"), Some(&w.sven), Some(close)).await.0, 409);
    let (name, _) = live.next().await.unwrap();
    assert_eq!(name, "closed");
    assert!(live.next().await.is_none(), "the stream ends with the alarm");

    let kinds = lifecycle(&c, &w.sven, &id).await;
    assert_eq!(kinds, ["raised", "notified", "received", "acknowledged", "on_site", "closed"]);
    for phone in PHONES {
        assert_eq!(
            fcm.count_for_token(phone),
            1,
            "one push per phone, no escalation after the acknowledgement"
        );
    }

    let report = c.ok(Method::GET, "reports/alarms", &w.cw, None).await;
    assert_eq!(report["total"], 1, "{report}");
    assert_eq!(report["by_kind"]["zone_exit"], 1, "{report}");
    assert_eq!(report["by_outcome"]["assisted"], 1, "{report}");
    assert_eq!(report["time_to_acknowledge_secs"]["n"], 1, "{report}");
    assert_eq!(report["time_to_on_site_secs"]["n"], 1, "{report}");
    assert_eq!(c.server.terminate().code(), Some(0));
}

async fn an_open_sos_survives_a_kill_and_its_repeat_joins_it(db: TestDb) {
    let (fcm, dir) = (FakeFcm::start().await.unwrap(), tempfile::tempdir().unwrap());
    let c = start(&db, &fcm, &dir);
    let w = set_up(&c).await;
    let sos = |secs_ago: i64| json!({ "device": "dagny-watch", "kind": "sos", "time": (Utc::now() - TimeDelta::seconds(secs_ago)).to_rfc3339(), "fix": fix(secs_ago, 0.0) });
    let first = sos(30);
    // Killed right after the watch got its acknowledgement: the engine may not have run yet.
    post_device(&c, &w.device_token, "alarms", first.clone()).await;
    c.server.kill9();

    let c = start(&db, &fcm, &dir);
    let alarm = wait_for_alarm(&c, &w.sven, "sos").await;
    let id = alarm["id"].as_str().unwrap();
    for phone in PHONES {
        wait_for_pushes(&fcm, id, phone, 1, Duration::from_secs(10)).await;
    }
    // The watch resends the acknowledged SOS (same device time), then repeats it 30 s later.
    post_device(&c, &w.device_token, "alarms", first).await;
    post_device(&c, &w.device_token, "alarms", sos(0)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lifecycle(&c, &w.sven, id).await.contains(&"repeated".to_owned()) {
        assert!(Instant::now() < deadline, "the repeat never joined the alarm");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // time for a wrong second raise to show
    let kinds = lifecycle(&c, &w.sven, id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "raised").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "repeated").count(), 1, "the resend adds nothing: {kinds:?}");
    let open = c.ok(Method::GET, "alarms", &w.sven, None).await;
    assert_eq!(open.as_array().unwrap().len(), 1, "one open alarm after the restart: {open}");
    assert_eq!(c.server.terminate().code(), Some(0));
}

/// FCM hangs, so the push worker holds the SOS's pushes in flight, and trygg is killed. After
/// the restart both phones get the push at once, not when the dead process's claim runs out.
async fn a_push_in_flight_when_trygg_dies_goes_out_at_once_after_the_restart(db: TestDb) {
    let (fcm, dir) = (FakeFcm::start().await.unwrap(), tempfile::tempdir().unwrap());
    let c = start(&db, &fcm, &dir);
    let w = set_up(&c).await;
    fcm.hang_for(Duration::from_secs(300));
    let sos = json!({ "device": "dagny-watch", "kind": "sos", "time": Utc::now().to_rfc3339(), "fix": fix(0, 0.0) });
    post_device(&c, &w.device_token, "alarms", sos).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while fcm.hung_sends() < PHONES.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} pushes reached the hanging FCM",
            fcm.hung_sends(),
            PHONES.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.server.kill9();
    fcm.come_back();

    let c = start(&db, &fcm, &dir);
    let id = wait_for_alarm(&c, &w.sven, "sos").await["id"].as_str().unwrap().to_owned();
    for phone in PHONES {
        wait_for_pushes(&fcm, &id, phone, 1, Duration::from_secs(10)).await;
    }
    assert_eq!(c.server.terminate().code(), Some(0));
}

/// Yesterday's SOS was acknowledged and marked on site but never closed. Today Dagny presses
/// again: a new alarm, pushed to both phones, not a `repeated` line on the forgotten one.
async fn a_forgotten_sos_left_on_site_does_not_swallow_the_next_one(db: TestDb) {
    let (fcm, dir) = (FakeFcm::start().await.unwrap(), tempfile::tempdir().unwrap());
    let c = start(&db, &fcm, &dir);
    let w = set_up(&c).await;
    let sos = |secs_ago: i64| json!({ "device": "dagny-watch", "kind": "sos", "time": (Utc::now() - TimeDelta::seconds(secs_ago)).to_rfc3339(), "fix": fix(secs_ago, 0.0) });
    post_device(&c, &w.device_token, "alarms", sos(60)).await;
    let old = wait_for_alarm(&c, &w.sven, "sos").await["id"].as_str().unwrap().to_owned();
    wait_for_pushes(&fcm, &old, PHONES[1], 1, Duration::from_secs(10)).await;
    c.ok(Method::POST, &format!("alarms/{old}/acknowledge"), &w.maja, None).await;
    c.ok(Method::POST, &format!("alarms/{old}/on-site"), &w.maja, None).await;

    post_device(&c, &w.device_token, "alarms", sos(0)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let new = loop {
        let list = c.ok(Method::GET, "alarms", &w.sven, None).await;
        let other = list.as_array().unwrap().iter().find(|a| a["kind"] == "sos" && a["id"] != old.as_str());
        if let Some(a) = other {
            break a["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the new SOS raised no alarm of its own: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for phone in PHONES {
        wait_for_pushes(&fcm, &new, phone, 1, Duration::from_secs(10)).await;
    }
    let kinds = lifecycle(&c, &w.sven, &old).await;
    assert_eq!(kinds.last().map(String::as_str), Some("superseded"), "{kinds:?}");
    assert!(!kinds.contains(&"repeated".to_owned()), "{kinds:?}");
    assert_eq!(c.server.terminate().code(), Some(0));
}

/// Sven is the first responder, the whole team the next step after 30 s (the shortest delay a
/// caseworker may set). FCM is down when the alarm is raised; nobody acknowledges.
async fn an_unacknowledged_alarm_escalates_through_an_fcm_outage(db: TestDb) {
    let (fcm, dir) = (FakeFcm::start().await.unwrap(), tempfile::tempdir().unwrap());
    let c = start(&db, &fcm, &dir);
    let w = set_up(&c).await;
    let order = json!({ "steps": [{ "user": w.sven_id, "escalate_after_secs": 30 }, { "team": w.team, "escalate_after_secs": 30 }] });
    c.ok(Method::PUT, &format!("wearers/{}/responders", w.wearer), &w.cw, Some(order)).await;

    fcm.go_down_for(Duration::from_secs(5));
    let walk = vec![fix(180, 0.0), fix(120, 300.0), fix(60, 400.0)];
    post_device(&c, &w.device_token, "positions", json!({ "device": "dagny-watch", "fixes": walk })).await;
    let alarm = wait_for_alarm(&c, &w.sven, "zone_exit").await;
    let id = alarm["id"].as_str().unwrap();
    // Step 0 reaches Sven once FCM is back; Maja is not on it.
    wait_for_pushes(&fcm, id, PHONES[0], 1, Duration::from_secs(20)).await;
    assert_eq!(fcm.count_for_token(PHONES[1]), 0, "step 0 is Sven alone");
    // Nobody acknowledges: after 30 s step 1, the team, is pushed: Sven again and Maja.
    wait_for_pushes(&fcm, id, PHONES[1], 1, Duration::from_secs(45)).await;
    wait_for_pushes(&fcm, id, PHONES[0], 2, Duration::from_secs(5)).await;
    c.ok(Method::POST, &format!("alarms/{id}/acknowledge"), &w.maja, None).await;
    let kinds = lifecycle(&c, &w.sven, id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "escalated").count(), 1, "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("acknowledged"), "{kinds:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fcm.count_for_token(PHONES[0]), 2, "once per step, never a duplicate");
    assert_eq!(fcm.count_for_token(PHONES[1]), 1);
    assert_eq!(c.server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_staff_follow_a_zone_exit_from_raised_to_closed() {
    staff_follow_a_zone_exit_from_raised_to_closed(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_staff_follow_a_zone_exit_from_raised_to_closed() {
    staff_follow_a_zone_exit_from_raised_to_closed(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_unacknowledged_alarm_escalates_through_an_fcm_outage() {
    an_unacknowledged_alarm_escalates_through_an_fcm_outage(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_unacknowledged_alarm_escalates_through_an_fcm_outage() {
    an_unacknowledged_alarm_escalates_through_an_fcm_outage(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_open_sos_survives_a_kill_and_its_repeat_joins_it() {
    an_open_sos_survives_a_kill_and_its_repeat_joins_it(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_open_sos_survives_a_kill_and_its_repeat_joins_it() {
    an_open_sos_survives_a_kill_and_its_repeat_joins_it(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_forgotten_sos_left_on_site_does_not_swallow_the_next_one() {
    a_forgotten_sos_left_on_site_does_not_swallow_the_next_one(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_forgotten_sos_left_on_site_does_not_swallow_the_next_one() {
    a_forgotten_sos_left_on_site_does_not_swallow_the_next_one(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_push_in_flight_when_trygg_dies_goes_out_at_once_after_the_restart() {
    a_push_in_flight_when_trygg_dies_goes_out_at_once_after_the_restart(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_push_in_flight_when_trygg_dies_goes_out_at_once_after_the_restart() {
    a_push_in_flight_when_trygg_dies_goes_out_at_once_after_the_restart(TestDb::postgres().await).await;
}
