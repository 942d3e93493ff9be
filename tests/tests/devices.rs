//! Real device protocols through the real binary, on SQLite and PostgreSQL: a 3G watch and a
//! GT06 tracker over TCP and a phone over OsmAnd HTTP, with published frames (Traccar's decoder
//! test suites, as cited in `services/protocols`), the exact replies each protocol requires,
//! positions and alarms seen through the API, an SOS without a fix reaching a staff phone at the
//! fake FCM, commands sent to the open watch connection, and the registration rules (an unknown
//! id is refused and later shown as heard before registration).
//!
//! Frames whose position must show up in a wearer's trail have their date replaced by now (a
//! published frame from 2019 predates the binding); everything else about them is as published.

mod common;

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use common::{ADMIN, Client, Trygg};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trygg_protocols::gt06;
use trygg_push::fake::FakeFcm;
use trygg_store::testing::TestDb;

const WATCH: &str = "8800000015";
const GT06_IMEI: &str = "864717003283581";
const PHONE: &str = "123456";
const STAFF_PHONE: &str = "sven-phone-token";

/// Traccar `Gt06ProtocolDecoderTest`: login of IMEI 864717003283581, serial 0009.
const GT06_LOGIN: &str = "78780D01086471700328358100093F040D0A";
/// Traccar `Gt06ProtocolDecoderTest`: a GPS + LBS location (0x12), serial 0003.
const GT06_GPS_LBS: &str = "78781f120f0a140e150bc505e51e780293a9e800540000f601006e0055da00035f240d0a";

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// The published GT06 location with its GPS time set to `t` (UTC); serial and the rest kept.
fn gt06_location_at(t: chrono::DateTime<Utc>) -> Vec<u8> {
    use chrono::{Datelike, Timelike};
    let d = gt06::decode_frame(&bytes(GT06_GPS_LBS), 1024).unwrap().unwrap();
    let mut p = d.frame;
    let stamp = [
        t.year() - 2000,
        t.month() as i32,
        t.day() as i32,
        t.hour() as i32,
        t.minute() as i32,
        t.second() as i32,
    ];
    for (i, v) in stamp.into_iter().enumerate() {
        p.payload[i] = v as u8;
    }
    p.encode().unwrap()
}

/// A watch frame with a correct length field.
fn watch_frame(maker: &str, id: &str, content: &str) -> String {
    format!("[{maker}*{id}*{:04X}*{content}]", content.len())
}

/// Reads until `n` bytes arrived or the peer closed; what arrived.
async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut out[got..])).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(k)) => got += k,
            Ok(Err(_)) => break,
        }
    }
    out.truncate(got);
    out
}

async fn send_expect(s: &mut TcpStream, frame: &[u8], reply: &[u8]) {
    s.write_all(frame).await.unwrap();
    let got = read_n(s, reply.len()).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(reply),
        "reply to {}",
        String::from_utf8_lossy(frame)
    );
}

/// Whether the peer closes the connection (reads EOF) within a few seconds, sending nothing.
async fn closed_without_reply(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start(db: &TestDb, fcm: &FakeFcm, dir: &tempfile::TempDir) -> Client {
    let key = dir.path().join("fcm.json");
    std::fs::write(&key, fcm.service_account_json()).unwrap();
    let (key, endpoint) = (key.display().to_string(), fcm.endpoint());
    let args = ["--bootstrap-admin", ADMIN, "--fcm-credentials", &key, "--fcm-endpoint", &endpoint];
    Client { http: reqwest::Client::new(), server: Trygg::start(db.url(), &args) }
}

fn addr(server: &Trygg, protocol: &str) -> String {
    server
        .devices
        .get(protocol)
        .unwrap_or_else(|| panic!("no {protocol} listener: {:?}", server.devices))
        .clone()
}

async fn watches_trackers_and_phones_report_over_their_own_protocols(db: TestDb) {
    let (fcm, dir) = (FakeFcm::start().await.unwrap(), tempfile::tempdir().unwrap());
    let c = start(&db, &fcm, &dir);
    let (watch_addr, gt06_addr, osmand_addr) =
        (addr(&c.server, "watch"), addr(&c.server, "gt06"), addr(&c.server, "osmand"));

    // An id nobody registered is refused: no reply, connection closed; it is remembered.
    let mut unknown = TcpStream::connect(&watch_addr).await.unwrap();
    unknown.write_all(watch_frame("SG", WATCH, "LK").as_bytes()).await.unwrap();
    assert!(closed_without_reply(&mut unknown).await, "an unregistered watch is refused");

    let admin = c.login("admin@kommun.test", "correct horse battery").await;
    let tenant = c.ok(Method::POST, "tenants", &admin, Some(json!({ "name": "Skövde" }))).await["id"].clone();
    let user = |email: &str, role: &str| json!({ "email": email, "name": email, "role": role, "password": "a long password", "tenant": tenant });
    c.ok(Method::POST, "users", &admin, Some(user("tina@skovde.test", "tenant_admin"))).await;
    c.ok(Method::POST, "users", &admin, Some(user("hanna@skovde.test", "caseworker"))).await;
    let sven =
        c.ok(Method::POST, "users", &admin, Some(user("sven@skovde.test", "staff"))).await["id"].clone();
    let tina = c.login("tina@skovde.test", "a long password").await;
    let cw = c.login("hanna@skovde.test", "a long password").await;
    let sven_token = c.login("sven@skovde.test", "a long password").await;
    c.ok(
        Method::POST,
        "push-tokens",
        &sven_token,
        Some(json!({ "token": STAFF_PHONE, "platform": "android" })),
    )
    .await;

    // The tenant admin imports the delivered devices; the watch runs on Swedish summer time.
    let csv = format!(
        "device_id,protocol,utc_offset_minutes\n{WATCH},watch,120\n{GT06_IMEI},gt06\n{PHONE},osmand\nnot an id,watch\n"
    );
    let resp = c
        .http
        .post(c.server.url("/api/v1/devices/import"))
        .bearer_auth(&tina)
        .header("content-type", "text/csv")
        .body(csv.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let imported: Value = resp.json().await.unwrap();
    assert_eq!(imported["registered"], json!([WATCH, GT06_IMEI, PHONE]), "{imported}");
    assert_eq!(imported["errors"][0]["line"], 5, "{imported}");
    let resp = c
        .http
        .post(c.server.url("/api/v1/devices/import"))
        .bearer_auth(&cw)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "caseworkers do not register watches");

    let watch = c.ok(Method::GET, &format!("devices/{WATCH}"), &cw, None).await;
    assert!(watch["heard_before_registration_at"].is_string(), "{watch}");
    assert_eq!(watch["utc_offset_minutes"], 120);

    // The caseworker sets up the wearer and binds the three devices.
    let wearer = c.ok(Method::POST, "wearers", &cw, Some(json!({ "name": "Dagny" }))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let yesterday = (Utc::now() - TimeDelta::days(1)).to_rfc3339();
    let consent = json!({ "covers": ["positioning", "passive_alarms"], "given_by": "wearer", "document_ref": "Dnr 2026/1", "valid_from": yesterday });
    c.ok(Method::POST, &format!("wearers/{wearer}/consents"), &cw, Some(consent)).await;
    let team = c.ok(Method::POST, "teams", &cw, Some(json!({ "name": "Hemtjänst" }))).await["id"].clone();
    c.ok(
        Method::PUT,
        &format!("teams/{}/members", team.as_str().unwrap()),
        &cw,
        Some(json!({ "members": [sven] })),
    )
    .await;
    c.ok(Method::PUT, &format!("wearers/{wearer}"), &cw, Some(json!({ "name": "Dagny", "team": team })))
        .await;
    for id in [WATCH, GT06_IMEI, PHONE] {
        c.ok(Method::POST, &format!("devices/{id}/bind"), &cw, Some(json!({ "wearer": wearer }))).await;
    }

    // The watch: keep-alives and a position on local time (UTC+2), then an SOS with no fix.
    let mut w = TcpStream::connect(&watch_addr).await.unwrap();
    send_expect(&mut w, watch_frame("SG", WATCH, "LK").as_bytes(), b"[SG*8800000015*0002*LK]").await;
    send_expect(&mut w, b"[SG*8800000015*0009*LK,0,100]", b"[SG*8800000015*0002*LK]").await;
    send_expect(&mut w, watch_frame("3G", WATCH, "LK,0,10,87").as_bytes(), b"[3G*8800000015*0002*LK]").await;
    // A second ahead: frame times have whole seconds, and the trail starts at the binding.
    let taken = Utc::now() + TimeDelta::seconds(1);
    let local = (taken + TimeDelta::hours(2)).format("%d%m%y,%H%M%S");
    // Shape of Traccar's UD_LTE test frame (cells and Wi-Fi), at Skövde, now.
    let ud = watch_frame(
        "3G",
        WATCH,
        &format!(
            "UD_LTE,{local},A,58.390300,N,13.846200,E,3.6,265.158,65.621,18,100,83,0,0,00000000,1,1,240,01,10223,8012811,100,1,ES4104,22:74:1d:39:64:ff,-46,1.7"
        ),
    );
    w.write_all(ud.as_bytes()).await.unwrap();
    let reason = "reason=device%20test";
    let trail = wait_for("the watch position in the trail", async || {
        let t = c.ok(Method::GET, &format!("wearers/{wearer}/positions?{reason}"), &cw, None).await;
        t.as_array().unwrap().iter().any(|p| p["device"] == WATCH).then_some(t)
    })
    .await;
    let p = trail.as_array().unwrap().iter().find(|p| p["device"] == WATCH).unwrap();
    let time = chrono::DateTime::parse_from_rfc3339(p["time"].as_str().unwrap()).unwrap();
    assert_eq!(
        time.timestamp(),
        taken.timestamp(),
        "the device's local clock is read at its UTC offset: {p}"
    );
    assert_eq!((p["source"].clone(), p["battery_pct"].clone()), (json!("gps"), json!(83)));

    // Traccar's AL frame: SOS bit, 'V', 0/0 (Traccar's filters drop it), dated now.
    let al = format!(
        "AL,{},V,00.000000,N, 0.0000000,E,0.00,0.0,0.0,0,100,81,0,0,00010000,7,0,460,0,9336,3981,141,9336,3912,141,9336,3982,140,9765,4233,134,9765,4071,134,9765,4321,134,9336,4353,132,0,0.0",
        (Utc::now() + TimeDelta::hours(2)).format("%d%m%y,%H%M%S")
    );
    send_expect(&mut w, watch_frame("3G", WATCH, &al).as_bytes(), b"[3G*8800000015*0002*AL]").await;
    let sos = wait_for("the SOS alarm", async || {
        let list = c.ok(Method::GET, "alarms", &cw, None).await;
        list.as_array().unwrap().iter().find(|a| a["kind"] == "sos").cloned()
    })
    .await;
    let id = sos["id"].as_str().unwrap().to_owned();
    wait_for("the SOS push at the staff phone", async || {
        fcm.messages()
            .iter()
            .any(|m| {
                m.token.as_deref() == Some(STAFF_PHONE) && m.collapse_key.as_deref() == Some(id.as_str())
            })
            .then_some(())
    })
    .await;

    // Commands reach the open connection; a device not connected gets 409.
    let sent = c
        .ok(Method::POST, &format!("devices/{WATCH}/commands"), &cw, Some(json!({ "command": "locate" })))
        .await;
    assert_eq!(sent["sent"], true);
    assert_eq!(read_n(&mut w, 23).await, b"[SG*8800000015*0002*CR]");
    c.ok(
        Method::POST,
        &format!("devices/{WATCH}/commands"),
        &cw,
        Some(json!({ "command": "upload_interval", "secs": 60 })),
    )
    .await;
    assert_eq!(read_n(&mut w, 30).await, b"[SG*8800000015*0009*UPLOAD,60]");
    let (status, _) = c
        .call(
            Method::POST,
            &format!("devices/{PHONE}/commands"),
            Some(&cw),
            Some(json!({ "command": "locate" })),
        )
        .await;
    assert_eq!(status, 409, "the phone is not connected");
    let watch = c.ok(Method::GET, &format!("devices/{WATCH}"), &cw, None).await;
    assert_eq!(
        (watch["connected"].clone(), watch["last_battery_pct"].clone()),
        (json!(true), json!(87)),
        "{watch}"
    );

    // A frame naming another device closes the connection.
    w.write_all(watch_frame("3G", "8800000016", "LK").as_bytes()).await.unwrap();
    assert!(closed_without_reply(&mut w).await, "a connection that changes device id is closed");

    // GT06: frames before login are dropped; the published login gets the published reply.
    let mut g = TcpStream::connect(&gt06_addr).await.unwrap();
    g.write_all(&gt06_location_at(Utc::now())).await.unwrap();
    send_expect(&mut g, &bytes(GT06_LOGIN), &bytes("78780501000955940d0a")).await;
    let location = gt06_location_at(Utc::now() + TimeDelta::seconds(1));
    let serial = &location[location.len() - 6..location.len() - 4];
    let mut reply = vec![0x78, 0x78, 0x05, 0x12, serial[0], serial[1]];
    reply.extend_from_slice(&gt06::crc16_x25(&reply[2..]).to_be_bytes());
    reply.extend_from_slice(&[0x0D, 0x0A]);
    send_expect(&mut g, &location, &reply).await;

    // OsmAnd: 200 on a good report, 400 on malformed or unknown.
    let http = reqwest::Client::new();
    let now = Utc::now().timestamp() + 1;
    let good = http
        .get(format!(
            "http://{osmand_addr}/?id={PHONE}&timestamp={now}&lat=58.3904&lon=13.8463&speed=0&batt=64"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!((good.status().as_u16(), good.text().await.unwrap()), (200, String::new()));
    let bad = http.get(format!("http://{osmand_addr}/?id={PHONE}&lat=abc&lon=13")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let unknown = http.get(format!("http://{osmand_addr}/?id=999999&lat=58&lon=13")).send().await.unwrap();
    assert_eq!(unknown.status(), 400);

    let trail = wait_for("GT06 and OsmAnd positions in the trail", async || {
        let t = c.ok(Method::GET, &format!("wearers/{wearer}/positions?{reason}"), &cw, None).await;
        let has = |d: &str| t.as_array().unwrap().iter().any(|p| p["device"] == d);
        (has(GT06_IMEI) && has(PHONE)).then_some(t)
    })
    .await;
    assert!(trail.as_array().unwrap().len() >= 3, "{trail}");
    assert_eq!(c.server.terminate().code(), Some(0));
}

#[tokio::test]
async fn sqlite_watches_trackers_and_phones_report_over_their_own_protocols() {
    watches_trackers_and_phones_report_over_their_own_protocols(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_watches_trackers_and_phones_report_over_their_own_protocols() {
    watches_trackers_and_phones_report_over_their_own_protocols(TestDb::postgres().await).await;
}

/// Skövde: the centre of the zone in the reporting test.
const HOME: (f64, f64) = (58.3903, 13.8462);

/// A 3G `UD` position `north_m` metres north of `HOME`, dated `at` (the watch runs on UTC).
fn ud_at(at: chrono::DateTime<Utc>, north_m: f64) -> Vec<u8> {
    let lat = HOME.0 + north_m / 111_320.0;
    let content = format!(
        "UD,{},A,{lat:.6},N,{:.6},E,0,0,0,9,100,80,0,0,00000000,0,0",
        at.format("%d%m%y,%H%M%S"),
        HOME.1
    );
    watch_frame("3G", WATCH, &content).into_bytes()
}

async fn a_suspected_exit_asks_the_watch_and_the_native_device_to_report_faster_until_confirmed(db: TestDb) {
    let (fcm, dir) = (FakeFcm::start().await.unwrap(), tempfile::tempdir().unwrap());
    let c = start(&db, &fcm, &dir);
    let admin = c.login("admin@kommun.test", "correct horse battery").await;
    let tenant = c.ok(Method::POST, "tenants", &admin, Some(json!({ "name": "Skövde" }))).await["id"].clone();
    let user = |email: &str, role: &str| json!({ "email": email, "name": email, "role": role, "password": "a long password", "tenant": tenant });
    c.ok(Method::POST, "users", &admin, Some(user("tina@skovde.test", "tenant_admin"))).await;
    c.ok(Method::POST, "users", &admin, Some(user("hanna@skovde.test", "caseworker"))).await;
    let tina = c.login("tina@skovde.test", "a long password").await;
    let cw = c.login("hanna@skovde.test", "a long password").await;
    let wearer = c.ok(Method::POST, "wearers", &cw, Some(json!({ "name": "Dagny" }))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let yesterday = (Utc::now() - TimeDelta::days(1)).to_rfc3339();
    let consent = json!({ "covers": ["positioning", "passive_alarms"], "given_by": "wearer", "document_ref": "Dnr 2026/1", "valid_from": yesterday });
    c.ok(Method::POST, &format!("wearers/{wearer}/consents"), &cw, Some(consent)).await;
    c.ok(Method::POST, "devices", &tina, Some(json!({ "id": WATCH, "protocol": "watch" }))).await;
    let native = c
        .ok(Method::POST, "devices", &tina, Some(json!({ "id": "dagny-phone", "protocol": "native" })))
        .await;
    let native_token = native["token"].as_str().unwrap().to_owned();
    for id in [WATCH, "dagny-phone"] {
        c.ok(Method::POST, &format!("devices/{id}/bind"), &cw, Some(json!({ "wearer": wearer }))).await;
    }
    let zone = json!({
        "name": "Hemma", "kind": "stay_inside", "radius_m": 100,
        "geometry": { "type": "Point", "coordinates": [HOME.1, HOME.0] },
    });
    c.ok(Method::POST, &format!("wearers/{wearer}/zones"), &cw, Some(zone)).await;

    // The watch at home, then 150 m out: not yet confirmed, so it is told to report every 30 s
    // on its open connection; the next report confirms the exit and it goes back to 300 s.
    // (A UD frame has no accuracy: 30 m is assumed, so 150 m is 50 m out, not clear of 55 m.)
    let t = Utc::now() - TimeDelta::seconds(60);
    let mut w = TcpStream::connect(addr(&c.server, "watch")).await.unwrap();
    send_expect(&mut w, watch_frame("3G", WATCH, "LK").as_bytes(), b"[3G*8800000015*0002*LK]").await;
    w.write_all(&ud_at(t, 0.0)).await.unwrap();
    w.write_all(&ud_at(t + TimeDelta::seconds(20), 150.0)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&read_n(&mut w, 30).await), "[SG*8800000015*0009*UPLOAD,30]");
    w.write_all(&ud_at(t + TimeDelta::seconds(50), 200.0)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&read_n(&mut w, 31).await), "[SG*8800000015*000a*UPLOAD,300]");
    wait_for("the exit alarm", async || {
        let list = c.ok(Method::GET, "alarms", &cw, None).await;
        list.as_array().unwrap().iter().any(|a| a["kind"] == "zone_exit").then_some(())
    })
    .await;

    // The native device gets the interval in its ingest answers: 115 m out lingers unconfirmed
    // (never clear of accuracy + margin), home again clears it.
    let http = reqwest::Client::new();
    let mut secs = 60;
    let mut post = async |north_m: f64| -> Value {
        secs += 5;
        let fix = json!({ "time": (t + TimeDelta::seconds(secs)).to_rfc3339(), "lat": HOME.0 + north_m / 111_320.0, "lon": HOME.1, "accuracy_m": 10.0 });
        let resp = http
            .post(c.server.url("/api/v1/ingest/positions"))
            .bearer_auth(&native_token)
            .json(&json!({ "device": "dagny-phone", "fixes": [fix] }))
            .send()
            .await
            .unwrap();
        resp.json().await.unwrap()
    };
    let answer = post(0.0).await;
    assert!(answer.get("report_interval_secs").is_none(), "nothing decided yet: {answer}");
    wait_for("the fast interval in the answer", async || {
        let answer = post(115.0).await;
        (answer["report_interval_secs"] == 30).then_some(())
    })
    .await;
    wait_for("the normal interval in the answer", async || {
        let answer = post(0.0).await;
        (answer["report_interval_secs"] == 300).then_some(())
    })
    .await;

    // Every command is an event on the device.
    let store = db.store().await;
    let tenant = trygg_core::TenantId(tenant.as_str().unwrap().parse().unwrap());
    for id in [WATCH, "dagny-phone"] {
        let device = trygg_core::DeviceId::parse(id).unwrap();
        let logged: Vec<String> =
            store.device_commands(tenant, &device).await.unwrap().into_iter().map(|c| c.command).collect();
        assert_eq!(logged, ["upload_interval 30", "upload_interval 300"], "{id}");
    }
    assert_eq!(c.server.terminate().code(), Some(0));
}

#[tokio::test]
async fn sqlite_a_suspected_exit_asks_the_watch_and_the_native_device_to_report_faster_until_confirmed() {
    a_suspected_exit_asks_the_watch_and_the_native_device_to_report_faster_until_confirmed(TestDb::sqlite())
        .await;
}

#[tokio::test]
async fn postgres_a_suspected_exit_asks_the_watch_and_the_native_device_to_report_faster_until_confirmed() {
    a_suspected_exit_asks_the_watch_and_the_native_device_to_report_faster_until_confirmed(
        TestDb::postgres().await,
    )
    .await;
}
