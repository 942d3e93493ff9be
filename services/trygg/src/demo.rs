//! `trygg demo`: a newcomer's first run.
//!
//! Starts the real server on a temporary SQLite file, seeds a tenant with three wearers and
//! their watches, and runs simulated watches against the real HTTP API: one walking through
//! Skövde who presses SOS (and, like real watches, sends it again), one sitting still with GPS
//! jitter, one coming back into coverage with an hour of buffered fixes and one corrupt fix.
//! Then the passive alarm, with pushes going to an in-process fake FCM that prints each one:
//! Dagny, set up by a caseworker through the API, walks out of her zone while FCM is down; the
//! alarm engine raises a zone-exit alarm, the push reaches Sven once FCM is back, nobody
//! acknowledges, the alarm escalates to the whole team after 30 s, and Maja confirms the push,
//! acknowledges, marks on site and closes it; the alarm's timeline is printed. Every step is
//! printed as it happens, then what ended up in the database.
//!
//! With `--console` the server stays up after that for the web console: the demo prints its URL
//! and the caseworker's and staff's logins, and Dagny keeps walking out of her zone and back, so
//! a new zone-exit alarm and her live position can be followed on the map, until Ctrl-C.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use trygg_core::{DeviceId, FixPolicy, TenantId};
use trygg_ingest::{CommitConfig, Limits};
use trygg_push::fake::FakeFcm;
use trygg_store::{AlarmFilter, ConnectOptions, NewDevice, Protocol, Store, token};

use crate::config::{ApiConfig, PushConfig, ServeConfig};
use crate::server::Server;

/// `trygg demo` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How long the simulated watches run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(3..=600))]
    pub seconds: u64,
    /// Keep the server up afterwards for the web console (prints its URL and logins) with Dagny
    /// walking out of her zone again and again, until Ctrl-C / SIGTERM.
    #[arg(long)]
    pub console: bool,
}

/// Skövde centrum, where the simulated wearers live.
const HOME: (f64, f64) = (58.3903, 13.8462);

struct Watch {
    id: &'static str,
    wearer: &'static str,
    token: String,
}

fn say(started: Instant, line: &str) {
    println!("[{:5.1}s] {line}", started.elapsed().as_secs_f64());
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    say(started, &format!("trygg demo: database {url}"));

    let store = trygg_store::connect(&url, &ConnectOptions::default()).await?;
    let (tenant, watches) = seed(store.as_ref(), started).await?;
    let fcm = FakeFcm::start().await.context("starting the fake FCM")?;
    say(started, &format!("fake FCM listening on {} (pushes to staff phones go there)", fcm.endpoint()));
    let mut pushes = fcm.subscribe();
    tokio::spawn(async move {
        while let Ok(m) = pushes.recv().await {
            let data = &m.message["data"];
            say(
                started,
                &format!(
                    "  FCM ← push to {}: {} alarm {} ({})",
                    m.token.as_deref().unwrap_or("-"),
                    data["kind"].as_str().unwrap_or("?"),
                    m.collapse_key.as_deref().unwrap_or("-"),
                    m.message["android"]["priority"].as_str().unwrap_or("")
                ),
            );
        }
    });
    let admin_password = token::generate();

    let config = ServeConfig {
        database_url: url.clone(),
        connect: ConnectOptions::default(),
        http_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_http_connections: 256,
        limits: Limits::default(),
        commit: CommitConfig::default(),
        policy: FixPolicy::default(),
        drain_timeout: Duration::from_secs(5),
        api: ApiConfig {
            // A throwaway key and admin password: the demo's database is deleted when it ends.
            jwt_secret: token::generate().into_bytes(),
            token_ttl: Duration::from_secs(3600),
            bootstrap_admin: Some(format!("{DEMO_ADMIN}:{admin_password}").parse()?),
            purge_interval: Duration::from_secs(3600),
            login_limits: Default::default(),
        },
        push: PushConfig {
            key: Some(fcm.service_account()),
            endpoint: fcm.endpoint(),
            worker: trygg_push::WorkerConfig::default(),
        },
        ingest_timeout: trygg_ingest::DEFAULT_TIMEOUT,
        stall_after: Duration::from_secs(60),
        test_fault: None,
        devices: crate::device_config::DeviceSettings::loopback(),
        base_map: crate::console::BaseMap::default(),
    };
    let server = Server::build(config).await?;
    let base = format!("http://{}", server.local_addr());
    let watch_addr = server.device_addrs().into_iter().find(|(name, _)| *name == "watch").map(|(_, a)| a);
    say(started, &format!("server listening on {base} (try {base}/metrics while it runs)"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let dagny = caseworker_flow(&client, &base, tenant, &admin_password, started).await?;
    let until = started + Duration::from_secs(args.seconds);
    let [walker, sitter, buffered] = watches;
    tokio::try_join!(
        walk_and_press_sos(&client, &base, &walker, started, until),
        sit_with_jitter(&client, &base, &sitter, started, until),
        upload_buffer(&client, &base, &buffered, started),
        stranger(&client, &base, started),
        watch_over_tcp(watch_addr, started),
    )?;
    passive_alarm(&client, &base, &fcm, &dagny, started).await?;
    if args.console {
        console(&client, &base, &dagny, started).await?;
    }

    let metrics = client.get(format!("{base}/metrics")).send().await?.text().await?;
    say(started, "metrics:");
    for line in metrics.lines().filter(|l| l.starts_with("trygg_ingest_") && !l.contains("_bucket")) {
        println!("          {line}");
    }
    let _ = stop.send(());
    serving.await??;

    say(started, "stored in the database:");
    for w in [&walker, &sitter, &buffered] {
        let id = DeviceId::parse(w.id)?;
        let fixes = store.recent_fixes(&id, 10_000).await?;
        let late = fixes.iter().filter(|f| f.late).count();
        let alarms = store.device_alarms(&id).await?;
        println!(
            "          {} ({}): {} fixes ({late} late), {} alarm(s)",
            w.id,
            w.wearer,
            fixes.len(),
            alarms.len()
        );
    }
    let all = AlarmFilter { limit: 100, ..AlarmFilter::default() };
    for a in store.alarms(tenant, &all).await? {
        let events = store.alarm_events(tenant, a.id).await?;
        println!("          alarm {} {} ({}), {} event(s)", a.id, a.kind, a.state, events.len());
    }
    store.close().await;
    say(started, "done. Next: `trygg serve` (see README.md) and point a device at /api/v1/ingest.");
    Ok(())
}

async fn seed(store: &dyn Store, started: Instant) -> anyhow::Result<(TenantId, [Watch; 3])> {
    let tenant = store.create_tenant("Demo kommun").await?;
    say(started, &format!("seeded tenant \"Demo kommun\" ({tenant})"));
    let mut watches = Vec::new();
    for (id, wearer) in [("demo-watch-1", "Astrid"), ("demo-watch-2", "Bertil"), ("demo-watch-3", "Cecilia")]
    {
        let wearer_id = store.create_wearer(tenant, wearer).await?;
        let secret = token::generate();
        store
            .register_device(&NewDevice {
                id: DeviceId::parse(id)?,
                tenant,
                wearer: Some(wearer_id),
                protocol: Protocol::Native,
                token_hash: Some(token::hash(&secret)),
            })
            .await?;
        say(started, &format!("seeded wearer {wearer} wearing {id} (native device, token issued)"));
        watches.push(Watch { id, wearer, token: secret });
    }
    // A watch of the common 3G family: its id is its only identity, registered without a token.
    let wearer_id = store.create_wearer(tenant, "Dagmar").await?;
    let id = DeviceId::parse(WATCH_3G)?;
    store
        .register_device(&NewDevice {
            id,
            tenant,
            wearer: Some(wearer_id),
            protocol: Protocol::Watch,
            token_hash: None,
        })
        .await?;
    say(started, &format!("seeded wearer Dagmar wearing {WATCH_3G} (3G watch over TCP)"));
    let watches = watches.try_into().map_err(|_| anyhow::anyhow!("three watches were seeded"))?;
    Ok((tenant, watches))
}

/// The installation admin the demo configures (with a random password).
const DEMO_ADMIN: &str = "admin@demo.trygg";

/// The demo's API client: every call must succeed and is printed.
struct Api<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    started: Instant,
}

impl Api<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.client.request(method.clone(), format!("{}/api/v1/{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{method} /api/v1/{path} answered {status}: {answer}");
        say(self.started, &format!("  {method} /api/v1/{path} … {}", status.as_u16()));
        Ok(answer)
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let body = json!({ "email": email, "password": password });
        let answer = self.call(reqwest::Method::POST, "auth/login", None, Some(body)).await?;
        answer["token"].as_str().map(str::to_owned).context("login answered no token")
    }
}

/// What the caseworker set up for Dagny: her watch's token, and the caseworker's and the staff
/// members' passwords.
struct Dagny {
    device_token: String,
    caseworker_password: String,
    staff_password: String,
}

/// The staff the demo's admin creates: email, display name, phone's push token.
const STAFF: [(&str, &str, &str); 2] = [
    ("sven@demo.trygg", "Sven (personal)", "sven-phone-fcm-token"),
    ("maja@demo.trygg", "Maja (personal)", "maja-phone-fcm-token"),
];

/// A caseworker's first wearer, through the API alone: accounts, wearer, consent, watch, a
/// zone, a team and the responder order.
async fn caseworker_flow(
    client: &reqwest::Client,
    base: &str,
    tenant: TenantId,
    admin_password: &str,
    started: Instant,
) -> anyhow::Result<Dagny> {
    use reqwest::Method;
    let api = Api { client, base, started };
    say(started, "admin logs in and creates a caseworker and two staff members for Demo kommun:");
    let admin = api.login(DEMO_ADMIN, admin_password).await?;
    let password = token::generate();
    let mut user = json!({ "email": "hanna@demo.trygg", "name": "Hanna (handläggare)", "role": "caseworker", "password": password, "tenant": tenant.0 });
    api.call(Method::POST, "users", Some(&admin), Some(user.clone())).await?;
    let staff_password = token::generate();
    let mut staff = Vec::new();
    for (email, name, _) in STAFF {
        (user["email"], user["name"], user["role"], user["password"]) =
            (json!(email), json!(name), json!("staff"), json!(staff_password));
        staff.push(api.call(Method::POST, "users", Some(&admin), Some(user.clone())).await?["id"].clone());
    }

    say(started, "caseworker Hanna logs in and sets up Dagny:");
    let cw = api.login("hanna@demo.trygg", &password).await?;
    let body = json!({ "name": "Dagny", "note": "Portkod 4711. Går gärna till parken.", "contact_name": "Erik (son)", "contact_phone": "+46 70 123 45 67" });
    let wearer = api.call(Method::POST, "wearers", Some(&cw), Some(body)).await?;
    let id = wearer["id"].as_str().context("wearer id")?.to_owned();
    say(
        started,
        &format!(
            "  wearer Dagny {id}: zones alarming? {} ({})",
            wearer["zones_alarming"], wearer["zones_not_alarming_reason"]
        ),
    );
    let signed = (Utc::now() - TimeDelta::days(2)).to_rfc3339();
    let body = json!({ "covers": ["positioning", "passive_alarms"], "given_by": "legal_representative", "document_ref": "Dnr SOC 2026/113", "valid_from": signed });
    api.call(Method::POST, &format!("wearers/{id}/consents"), Some(&cw), Some(body)).await?;
    let watch = api
        .call(Method::POST, "devices", Some(&cw), Some(json!({ "id": "dagny-watch", "protocol": "native" })))
        .await?;
    let device_token = watch["token"].as_str().context("a native device gets a token")?.to_owned();
    api.call(Method::POST, "devices/dagny-watch/bind", Some(&cw), Some(json!({ "wearer": id }))).await?;
    let zone = json!({
        "name": "Hemområdet", "kind": "stay_inside",
        "geometry": { "type": "Point", "coordinates": [HOME.1, HOME.0] }, "radius_m": 120,
    });
    let zone = api.call(Method::POST, &format!("wearers/{id}/zones"), Some(&cw), Some(zone)).await?;
    say(
        started,
        &format!("  zone \"Hemområdet\", 120 m around home: alarming? {}", zone["properties"]["alarming"]),
    );
    let team =
        api.call(Method::POST, "teams", Some(&cw), Some(json!({ "name": "Nattpatrullen" }))).await?["id"]
            .clone();
    let members = format!("teams/{}/members", team.as_str().unwrap_or_default());
    api.call(Method::PUT, &members, Some(&cw), Some(json!({ "members": staff }))).await?;
    let body = json!({ "name": "Dagny", "note": "Portkod 4711. Går gärna till parken.", "contact_name": "Erik (son)", "contact_phone": "+46 70 123 45 67", "team": team });
    api.call(Method::PUT, &format!("wearers/{id}"), Some(&cw), Some(body)).await?;
    // 30 s is the shortest delay a caseworker may set; in real use 2 minutes is common.
    let steps = json!({ "steps": [{ "user": staff[0], "escalate_after_secs": 30 }, { "team": team, "escalate_after_secs": 300 }] });
    api.call(Method::PUT, &format!("wearers/{id}/responders"), Some(&cw), Some(steps)).await?;
    say(
        started,
        "  responders: Sven first; if he has not acknowledged within 30 s, all of Nattpatrullen (Sven, Maja)",
    );
    Ok(Dagny { device_token, caseworker_password: password, staff_password })
}

/// Dagny walks out of her zone while FCM is down. The push reaches Sven once FCM is back; he
/// does not answer, so the alarm escalates to the whole team; Maja takes it, goes there and
/// closes it.
async fn passive_alarm(
    client: &reqwest::Client,
    base: &str,
    fcm: &FakeFcm,
    dagny: &Dagny,
    started: Instant,
) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api { client, base, started };
    say(started, "Sven and Maja log in on their phones and register them for push:");
    let mut tokens = Vec::new();
    for (email, _, phone) in STAFF {
        let token = api.login(email, &dagny.staff_password).await?;
        let body = json!({ "token": phone, "platform": "android" });
        api.call(Method::POST, "push-tokens", Some(&token), Some(body)).await?;
        tokens.push(token);
    }
    let (sven, maja) = (&tokens[0], &tokens[1]);
    say(started, "FCM goes down for 5 s (pushes are retried with backoff, nothing is dropped)");
    fcm.go_down_for(Duration::from_secs(5));
    say(started, "Dagny (dagny-watch) leaves home; her watch reports every 10 s (timestamps compressed):");
    for (i, north_m) in [0.0, 40.0, 180.0, 260.0, 340.0].into_iter().enumerate() {
        let secs_ago = 50 - 10 * i as i64;
        let f = fix(secs_ago, HOME.0 + north_m / 111_320.0, HOME.1, 8.0);
        let (status, _) = post_fixes(client, base, "dagny-watch", &dagny.device_token, vec![f]).await?;
        say(started, &format!("  dagny-watch → fix {north_m:>3} m north of home ±8 m … {status}"));
    }
    say(started, "Sven's alarm list:");
    let deadline = Instant::now() + Duration::from_secs(10);
    let alarm = loop {
        let list = api.call(Method::GET, "alarms", Some(sven), None).await?;
        if let Some(a) = list.as_array().and_then(|l| l.iter().find(|a| a["kind"] == "zone_exit")) {
            break a.clone();
        }
        anyhow::ensure!(Instant::now() < deadline, "no zone-exit alarm was raised");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = alarm["id"].as_str().context("alarm id")?.to_owned();
    let p = &alarm["position"];
    say(
        started,
        &format!(
            "  ALARM {} for {}: {}, at {:.5},{:.5} ±{} m, position {} s old",
            alarm["kind"].as_str().unwrap_or_default(),
            alarm["wearer"]["name"].as_str().unwrap_or_default(),
            alarm["state"].as_str().unwrap_or_default(),
            p["lat"].as_f64().unwrap_or_default(),
            p["lon"].as_f64().unwrap_or_default(),
            p["accuracy_m"],
            p["age_secs"]
        ),
    );
    let detail = api.call(Method::GET, &format!("alarms/{id}"), Some(maja), None).await?;
    let trail = detail["trail"].as_array().map_or(0, Vec::len);
    say(started, &format!("  trail: {trail} fixes; map: {}", detail["map_url"]));
    say(
        started,
        "Sven's phone is in his pocket: nobody acknowledges; after 30 s the alarm escalates to the team",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while fcm.count_for_token(STAFF[1].2) == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the alarm did not escalate to the team");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say(started, "Maja's phone confirms the push, she takes the alarm, goes out and finds Dagny:");
    let (received, here) = (
        format!("alarms/{id}/received"),
        json!({ "position": { "lat": p["lat"], "lon": p["lon"], "accuracy_m": 6.0 } }),
    );
    let status = client.post(format!("{base}/api/v1/{received}")).bearer_auth(maja).send().await?.status();
    say(started, &format!("  POST /api/v1/{received} … {}", status.as_u16()));
    api.call(Method::POST, &format!("alarms/{id}/acknowledge"), Some(maja), None).await?;
    api.call(Method::POST, &format!("alarms/{id}/on-site"), Some(maja), Some(here)).await?;
    let close = json!({ "outcome": "assisted", "note": "Dagny var på väg till parken, följde henne hem." });
    api.call(Method::POST, &format!("alarms/{id}/close"), Some(maja), Some(close)).await?;
    say(started, "  the closed alarm's timeline:");
    let events = api.call(Method::GET, &format!("alarms/{id}/events"), Some(maja), None).await?;
    for e in events.as_array().into_iter().flatten() {
        let who = e["actor"]["name"].as_str().unwrap_or("trygg");
        println!(
            "          {}  {:<12} {who}  {}",
            e["at"].as_str().unwrap_or(""),
            e["kind"].as_str().unwrap_or(""),
            e["detail"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Keeps the server up for the web console until SIGINT/SIGTERM, with Dagny walking out of her
/// zone and back (a fix every 5 s), so each walk raises a zone-exit alarm whose live position
/// moves on the staff page.
async fn console(
    client: &reqwest::Client,
    base: &str,
    dagny: &Dagny,
    started: Instant,
) -> anyhow::Result<()> {
    let stop = crate::server::shutdown_signal().context("listening for Ctrl-C")?;
    println!();
    println!("The web console: {base}/   (Chrome, Firefox or Edge; the demo runs until Ctrl-C)");
    println!("  handläggare: hanna@demo.trygg   password {}", dagny.caseworker_password);
    for (email, _, _) in STAFF {
        println!("  personal:    {email:<17} password {}", dagny.staff_password);
    }
    println!("Dagny walks 300 m out of her zone and back every 3 minutes: log in as personal to see the");
    println!("zone-exit alarm arrive and her position move; acknowledge, mark on site and close it there.");
    println!();
    let walk = async {
        // Home for a minute, 20 m a step out to 300 m and back: 3 minutes a round at 5 s a fix.
        let steps = (0..12)
            .map(|_| 0.0)
            .chain((0..=15).map(|i| f64::from(i) * 20.0))
            .chain((0..15).rev().map(|i| f64::from(i) * 20.0));
        for north_m in steps.cycle() {
            let f = fix(0, HOME.0 + north_m / 111_320.0, HOME.1, 8.0);
            let (status, answer) =
                post_fixes(client, base, "dagny-watch", &dagny.device_token, vec![f]).await?;
            if status != 200 {
                say(started, &format!("  dagny-watch → fix {north_m:>3} m north … {status} {answer}"));
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        () = stop => say(started, "stopping the demo"),
        walked = walk => walked?,
    }
    Ok(())
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let resp = client.post(url).bearer_auth(token).json(body).send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Posts `fixes` as `device` with `token` to the positions endpoint.
async fn post_fixes(
    client: &reqwest::Client,
    base: &str,
    device: &str,
    token: &str,
    fixes: Vec<Value>,
) -> anyhow::Result<(u16, Value)> {
    let body = json!({ "device": device, "fixes": fixes });
    post(client, &format!("{base}/api/v1/ingest/positions"), token, &body).await
}

fn fix(seconds_ago: i64, lat: f64, lon: f64, accuracy_m: f64) -> Value {
    let time = Utc::now() - TimeDelta::seconds(seconds_ago);
    json!({ "time": time.to_rfc3339(), "lat": lat, "lon": lon, "accuracy_m": accuracy_m, "source": "gps", "battery_pct": 76 })
}

/// Astrid walks north-east, one fix a second (a compressed report interval), and presses SOS
/// halfway; the watch sends the SOS twice, as watches do when an ack is slow.
async fn walk_and_press_sos(
    client: &reqwest::Client,
    base: &str,
    w: &Watch,
    started: Instant,
    until: Instant,
) -> anyhow::Result<()> {
    let sos_at = started + (until - started) / 2;
    let mut sos_sent = false;
    let mut step = 0.0;
    while Instant::now() < until {
        step += 1.0;
        let (lat, lon) = (HOME.0 + step * 0.00012, HOME.1 + step * 0.0002);
        let (status, ack) = post_fixes(client, base, w.id, &w.token, vec![fix(0, lat, lon, 8.0)]).await?;
        say(started, &format!("{} ({}) → fix {lat:.5},{lon:.5} ±8 m … {status} {ack}", w.id, w.wearer));
        if !sos_sent && Instant::now() >= sos_at {
            sos_sent = true;
            let body = json!({ "device": w.id, "kind": "sos", "time": Utc::now().to_rfc3339(), "fix": fix(0, lat, lon, 8.0) });
            for attempt in ["presses SOS", "resends SOS"] {
                let (status, ack) =
                    post(client, &format!("{base}/api/v1/ingest/alarms"), &w.token, &body).await?;
                say(started, &format!("{} ({}) {attempt} … {status} {ack}", w.id, w.wearer));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Bertil sits by the window: the same place, jittering by a few metres.
async fn sit_with_jitter(
    client: &reqwest::Client,
    base: &str,
    w: &Watch,
    started: Instant,
    until: Instant,
) -> anyhow::Result<()> {
    let mut n = 0u32;
    while Instant::now() < until {
        n += 1;
        let jitter = f64::from(n).sin() * 0.00006;
        let near_home = fix(0, HOME.0 - 0.002 + jitter, HOME.1 - jitter, 15.0);
        let (status, ack) = post_fixes(client, base, w.id, &w.token, vec![near_home]).await?;
        if n % 3 == 1 {
            say(started, &format!("{} ({}) → jittery fix near home … {status} {ack}", w.id, w.wearer));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    Ok(())
}

/// Cecilia's watch had no coverage for an hour: it uploads 60 buffered fixes at once, one of
/// them corrupt. The good ones are stored (flagged late), the bad one is listed as rejected.
async fn upload_buffer(
    client: &reqwest::Client,
    base: &str,
    w: &Watch,
    started: Instant,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut fixes: Vec<Value> =
        (0..60).map(|m| fix(3600 - m * 60, HOME.0 + 0.01, HOME.1 - 0.004, 12.0)).collect();
    fixes[30]["lat"] = json!(123.4);
    let (status, ack) = post_fixes(client, base, w.id, &w.token, fixes).await?;
    say(
        started,
        &format!("{} ({}) back in coverage, uploads 60 buffered fixes … {status} {ack}", w.id, w.wearer),
    );
    Ok(())
}

/// The 3G watch's id (a SeTracker-style 10-digit id).
const WATCH_3G: &str = "8800000015";

/// A 3G watch over TCP, as the real ones talk: a keep-alive with its battery, a position, then
/// an SOS without a GPS fix (indoors). Each frame and the server's reply are printed; the SOS
/// is answered only once it is committed, and is raised with the last known position.
async fn watch_over_tcp(addr: Option<std::net::SocketAddr>, started: Instant) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr.ok_or_else(|| anyhow::anyhow!("the demo's watch listener is off"))?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let stamp = Utc::now().format("%d%m%y,%H%M%S");
    let frames = [
        ("keep-alive, battery 64 %", "LK,1200,0,64".to_owned(), true),
        (
            "position (GPS)",
            format!(
                "UD,{stamp},A,{:.6},N,{:.7},E,0.00,0.0,0.0,9,100,64,1200,0,00000000,0,0,0,0,0",
                HOME.0, HOME.1
            ),
            false,
        ),
        (
            "SOS pressed indoors, no GPS fix",
            format!("AL,{stamp},V,0.000000,N,0.0000000,E,0.00,0.0,0.0,0,100,64,1200,0,00010000,0,0,0,0,0"),
            true,
        ),
    ];
    for (what, content, answered) in frames {
        let frame = trygg_protocols::watch::encode_command("3G", WATCH_3G, &content)?;
        conn.write_all(&frame).await?;
        let reply = if answered {
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await??;
            String::from_utf8_lossy(&buf[..n]).into_owned()
        } else {
            "(no reply: the protocol has none for positions)".to_owned()
        };
        say(
            started,
            &format!("{WATCH_3G} (Dagmar) over TCP: {what} {} → {reply}", String::from_utf8_lossy(&frame)),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// A device nobody registered is refused and counted.
async fn stranger(client: &reqwest::Client, base: &str, started: Instant) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, ack) =
        post_fixes(client, base, "stolen-watch", "guessed-token", vec![fix(0, HOME.0, HOME.1, 5.0)]).await?;
    say(started, &format!("stolen-watch (not registered) → fix … {status} {ack}"));
    Ok(())
}
