//! The whole alarm chain through the real binary, on SQLite and PostgreSQL: a caseworker sets up
//! a wearer with consent and a zone, the watch walks out of it, the team's staff see the alarm
//! with its position, follow the live stream, acknowledge, mark on site and close it, and the
//! events and the report show it. Then an SOS survives a SIGKILL without being raised twice.

mod common;

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use common::{ADMIN, Client, Trygg};
use reqwest::Method;
use serde_json::{Value, json};
use trygg_store::testing::TestDb;

/// Skövde centrum: the wearer's home, centre of her zone.
const HOME: (f64, f64) = (58.3903, 13.8462);

/// What a caseworker set up: tokens of the people and the watch.
struct World {
    cw: String,
    sven: String,
    olle: String,
    lisa: String,
    device_token: String,
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
    c.ok(Method::PUT, &members, &cw, Some(json!({ "members": [sven] }))).await;
    c.ok(
        Method::PUT,
        &format!("wearers/{id}"),
        &cw,
        Some(json!({ "name": "Dagny", "note": "Portkod 4711", "team": team })),
    )
    .await;
    World {
        cw,
        sven: c.login("sven@skovde.test", "a long password").await,
        olle: c.login("olle@skovde.test", "a long password").await,
        lisa: c.login("lisa@lerum.test", "a long password").await,
        device_token: device["token"].as_str().unwrap().to_owned(),
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

async fn staff_follow_a_zone_exit_from_raised_to_closed(db: TestDb) {
    let c = Client {
        http: reqwest::Client::new(),
        server: Trygg::start(db.url(), &["--bootstrap-admin", ADMIN]),
    };
    let w = set_up(&c).await;

    // Dagny walks out of her zone: home, then 300 m and 400 m north.
    let walk = vec![fix(180, 0.0), fix(120, 300.0), fix(60, 400.0)];
    post_device(&c, &w.device_token, "positions", json!({ "device": "dagny-watch", "fixes": walk })).await;
    let alarm = wait_for_alarm(&c, &w.sven, "zone_exit").await;
    let id = alarm["id"].as_str().unwrap().to_owned();
    assert_eq!(alarm["state"], "raised");
    assert_eq!(alarm["wearer"]["name"], "Dagny");
    let position = &alarm["position"];
    assert!((position["lat"].as_f64().unwrap() - (HOME.0 + 400.0 / 111_320.0)).abs() < 1e-9, "{alarm}");
    assert_eq!(position["accuracy_m"], 8.0);
    assert!(position["age_s"].as_f64().unwrap() >= 59.0, "the age of the fix, not of the alarm: {alarm}");

    // Olle is not on Dagny's team, Lisa is in another municipality: neither sees it.
    assert_eq!(c.ok(Method::GET, "alarms", &w.olle, None).await, json!([]));
    for token in [&w.olle, &w.lisa] {
        assert_eq!(c.call(Method::GET, &format!("alarms/{id}"), Some(token), None).await.0, 404);
        assert_eq!(c.call(Method::POST, &format!("alarms/{id}/acknowledge"), Some(token), None).await.0, 404);
    }

    // Sven opens it: the trail since before the alarm, and a map link.
    let detail = c.ok(Method::GET, &format!("alarms/{id}"), &w.sven, None).await;
    assert!(detail["last_position"]["age_s"].as_i64().unwrap() >= 59, "{detail}");
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

    let events = c.ok(Method::GET, &format!("alarms/{id}/events"), &w.sven, None).await;
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["raised", "acknowledged", "on_site", "closed"], "{events}");

    let report = c.ok(Method::GET, "reports/alarms", &w.cw, None).await;
    assert_eq!(report["total"], 1, "{report}");
    assert_eq!(report["by_kind"]["zone_exit"], 1, "{report}");
    assert_eq!(report["by_outcome"]["assisted"], 1, "{report}");
    assert_eq!(report["time_to_acknowledge_s"]["n"], 1, "{report}");
    assert_eq!(report["time_to_on_site_s"]["n"], 1, "{report}");
    assert_eq!(c.server.terminate().code(), Some(0));
}

async fn an_open_sos_survives_a_kill_and_its_repeat_joins_it(db: TestDb) {
    let c = Client {
        http: reqwest::Client::new(),
        server: Trygg::start(db.url(), &["--bootstrap-admin", ADMIN]),
    };
    let w = set_up(&c).await;
    let sos = |secs_ago: i64| json!({ "device": "dagny-watch", "kind": "sos", "time": (Utc::now() - TimeDelta::seconds(secs_ago)).to_rfc3339(), "fix": fix(secs_ago, 0.0) });
    let first = sos(30);
    post_device(&c, &w.device_token, "alarms", first.clone()).await;
    let alarm = wait_for_alarm(&c, &w.sven, "sos").await;
    c.server.kill9();

    let c = Client { http: reqwest::Client::new(), server: Trygg::start(db.url(), &[]) };
    let sven = c.login("sven@skovde.test", "a long password").await;
    // The watch resends the acknowledged SOS (same device time), then repeats it 30 s later.
    post_device(&c, &w.device_token, "alarms", first).await;
    post_device(&c, &w.device_token, "alarms", sos(0)).await;
    let id = alarm["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let kinds = loop {
        let events = c.ok(Method::GET, &format!("alarms/{id}/events"), &sven, None).await;
        let kinds: Vec<String> =
            events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
        if kinds.len() > 1 || Instant::now() > deadline {
            break kinds;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(kinds, ["raised", "repeated"], "the resend adds nothing, the repeat joins the open alarm");
    let open = c.ok(Method::GET, "alarms", &sven, None).await;
    assert_eq!(open.as_array().unwrap().len(), 1, "one open alarm after the restart: {open}");
    assert_eq!(c.server.terminate().code(), Some(0));
}

#[tokio::test]
async fn sqlite_staff_follow_a_zone_exit_from_raised_to_closed() {
    staff_follow_a_zone_exit_from_raised_to_closed(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_staff_follow_a_zone_exit_from_raised_to_closed() {
    staff_follow_a_zone_exit_from_raised_to_closed(TestDb::postgres().await).await;
}

#[tokio::test]
async fn sqlite_an_open_sos_survives_a_kill_and_its_repeat_joins_it() {
    an_open_sos_survives_a_kill_and_its_repeat_joins_it(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_an_open_sos_survives_a_kill_and_its_repeat_joins_it() {
    an_open_sos_survives_a_kill_and_its_repeat_joins_it(TestDb::postgres().await).await;
}
