//! M4: exit fix received → push request at the FCM endpoint, against a real `trygg serve`.
//!
//! Starts the fake FCM in-process (`trygg_push::fake::FakeFcm`), starts the release `trygg
//! serve` pointed at it, sets up a tenant over the HTTP API (caseworker, teams with one staff
//! member and one push token each, wearers with consent, a native watch and a 100 m
//! `stay_inside` zone), keeps background ingest load running (watches posting fixes inside their
//! zones), and makes wearers walk out. The latency of one exit is the time from sending the
//! confirming fix's HTTP request to the moment the fake FCM accepted the push for that alarm.
//! A second phase takes FCM down for 60 s while more wearers walk out and counts what is
//! delivered, duplicated and how long the backlog takes to drain once FCM is back.
//!
//! There is no external peer for M4: the DESIGN target itself is the bar.
//!
//! ```text
//! push-bench --trygg target/release/trygg --out loadtest/results/push.json --md loadtest/results/push.md
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast};
use trygg_loadtest::server::{Server, machine, process_cpu_seconds};
use trygg_push::fake::{FakeFcm, ReceivedMessage};

const ADMIN_EMAIL: &str = "admin@bench.test";
const PASSWORD: &str = "a long benchmark password";
const M_PER_DEG_LAT: f64 = 111_320.0;

struct Args {
    trygg: String,
    out: String,
    md: Option<String>,
    pg_admin: String,
    backends: Vec<String>,
    wearers: usize,
    outage_wearers: usize,
    background: usize,
    bg_rate: f64,
    bg_clients: usize,
    exit_rate: f64,
    teams: usize,
    outage_secs: u64,
    drain_limit_secs: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        trygg: "target/release/trygg".into(),
        out: "loadtest/results/push.json".into(),
        md: None,
        pg_admin: "postgres://postgres@127.0.0.1:5432/postgres".into(),
        backends: vec!["sqlite".into(), "postgres".into()],
        wearers: 200,
        outage_wearers: 24,
        background: 100,
        bg_rate: 400.0,
        bg_clients: 16,
        exit_rate: 10.0,
        teams: 4,
        outage_secs: 60,
        drain_limit_secs: 90,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--trygg" => a.trygg = value,
            "--out" => a.out = value,
            "--md" => a.md = Some(value),
            "--pg-admin" => a.pg_admin = value,
            "--backends" => a.backends = value.split(',').map(str::to_owned).collect(),
            "--wearers" => a.wearers = value.parse()?,
            "--outage-wearers" => a.outage_wearers = value.parse()?,
            "--background" => a.background = value.parse()?,
            "--bg-rate" => a.bg_rate = value.parse()?,
            "--bg-clients" => a.bg_clients = value.parse()?,
            "--exit-rate" => a.exit_rate = value.parse()?,
            "--teams" => a.teams = value.parse()?,
            "--outage-secs" => a.outage_secs = value.parse()?,
            "--drain-limit-secs" => a.drain_limit_secs = value.parse()?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let mut runs = Vec::new();
    for backend in &args.backends {
        eprintln!("== {backend}");
        runs.push(run_backend(&args, backend).await.with_context(|| format!("backend {backend}"))?);
    }
    let report = json!({
        "date": Utc::now().to_rfc3339(),
        "machine": machine_at_end(),
        "target": "M4: p99 ≤ 100 ms exit fix received → push request at FCM, under M3 load; 0 lost, 0 duplicated with FCM down 60 s",
        "peer": "none: no external peer exists for M4; the DESIGN target is the bar",
        "latency": "from sending the confirming (second outside) fix's HTTP request to the fake FCM accepting the push, both clocks in this process",
        "config": {
            "wearers_phase1": args.wearers,
            "wearers_outage": args.outage_wearers,
            "background_devices": args.background,
            "background_target_fixes_per_s": args.bg_rate,
            "background_connections": args.bg_clients,
            "exits_per_s": args.exit_rate,
            "teams_each_one_staff_one_token": args.teams,
            "outage_s": args.outage_secs,
        },
        "runs": runs,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("written to {}", args.out);
    if let Some(md) = &args.md {
        std::fs::write(md, markdown(&report))?;
        eprintln!("written to {md}");
    }
    Ok(())
}

/// Every push the fake accepted, with when this process saw it.
type Inbox = Arc<Mutex<Vec<(Instant, ReceivedMessage)>>>;

async fn run_backend(args: &Args, backend: &str) -> anyhow::Result<Value> {
    let fake = FakeFcm::start().await?;
    let inbox: Inbox = Arc::default();
    let lagged = Arc::new(AtomicU64::new(0));
    {
        let (inbox, lagged, mut rx) = (inbox.clone(), lagged.clone(), fake.subscribe());
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(m) => inbox.lock().expect("inbox").push((Instant::now(), m)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        lagged.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
    let db = Database::create(backend, &args.pg_admin).await?;
    let credentials = db.dir.path().join("fcm-service-account.json");
    std::fs::write(&credentials, fake.service_account_json())?;
    let log = db.dir.path().join("trygg.log");
    let endpoint = fake.endpoint();
    let mut server = Server::start(&args.trygg, &db.url, Some(&log), |c| {
        c.args(["--bootstrap-admin", &format!("{ADMIN_EMAIL}:{PASSWORD}")])
            .env("TRYGG_LOG", std::env::var("PUSH_BENCH_LOG").unwrap_or_else(|_| "warn".into()))
            .env("TRYGG_JWT_SECRET", "push-benchmark-signing-key-not-secret-at-all")
            .env("TRYGG_FCM_CREDENTIALS", &credentials)
            .env("TRYGG_FCM_ENDPOINT", &endpoint);
    })?;
    let result = measure(args, backend, &fake, &inbox, &server).await;
    let cpu_total = process_cpu_seconds(server.pid()).unwrap_or(f64::NAN);
    server.stop();
    if std::env::var_os("PUSH_BENCH_KEEP_LOG").is_some() {
        let kept = std::env::temp_dir().join(format!("push-bench-{backend}.log"));
        let _ = std::fs::copy(&log, &kept);
        eprintln!("   server log kept at {}", kept.display());
    }
    db.drop_it(&args.pg_admin).await;
    let mut run = result?;
    run["server_cpu_s_whole_run"] = json!(round(cpu_total, 2));
    run["broadcast_lagged"] = json!(lagged.load(Ordering::Relaxed));
    Ok(run)
}

/// The API client.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), format!("{}/api/v1/{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {text}");
        }
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let answer = self
            .call(Method::POST, "auth/login", None, Some(json!({ "email": email, "password": password })))
            .await?;
        Ok(answer["token"].as_str().context("login token")?.to_owned())
    }

    /// Posts fixes as a watch; the request's duration.
    async fn fixes(&self, device: &Watch, fixes: Value) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let resp = self
            .http
            .post(format!("{}/api/v1/ingest/positions", self.base))
            .bearer_auth(&device.token)
            .json(&json!({ "device": device.id, "fixes": fixes }))
            .send()
            .await?;
        let status = resp.status();
        let _ = resp.bytes().await;
        if !status.is_success() {
            bail!("ingest for {}: {status}", device.id);
        }
        Ok(t.elapsed())
    }
}

#[derive(Debug, Clone)]
struct Watch {
    id: String,
    token: String,
    /// Centre of the wearer's zone.
    home: (f64, f64),
}

/// A fix at `time`, `north_m` north of `home`, as the watch sends it.
fn fix(home: (f64, f64), north_m: f64, time: chrono::DateTime<Utc>) -> Value {
    json!({ "time": time.to_rfc3339(), "lat": home.0 + north_m / M_PER_DEG_LAT, "lon": home.1, "accuracy_m": 8.0, "battery_pct": 80 })
}

/// How the push's `data` writes a position: the key that maps a push back to its wearer.
fn position_key(lat: f64, lon: f64) -> String {
    format!("{lat:.6},{lon:.6}")
}

/// Walking out: 200 m and then 215 m north of home (the zone is 100 m, accuracy 8 m → 10 m
/// floor, margin 25 m: both are clear outside).
const FIRST_OUT_M: f64 = 200.0;
const CONFIRM_OUT_M: f64 = 215.0;

async fn set_up(api: &Api, args: &Args) -> anyhow::Result<(Vec<Watch>, Vec<String>)> {
    let admin = api.login(ADMIN_EMAIL, PASSWORD).await?;
    let tenant = api
        .call(Method::POST, "tenants", Some(&admin), Some(json!({ "name": "Benchmark kommun" })))
        .await?["id"]
        .clone();
    let user = |email: &str, role: &str| json!({ "email": email, "name": email.split('@').next().unwrap_or(email), "role": role, "password": PASSWORD, "tenant": tenant });
    api.call(Method::POST, "users", Some(&admin), Some(user("cw@bench.test", "caseworker"))).await?;
    let cw = api.login("cw@bench.test", PASSWORD).await?;
    let mut teams = Vec::new();
    let mut push_tokens = Vec::new();
    for k in 0..args.teams {
        let email = format!("staff{k}@bench.test");
        let staff =
            api.call(Method::POST, "users", Some(&admin), Some(user(&email, "staff"))).await?["id"].clone();
        let team = api
            .call(Method::POST, "teams", Some(&cw), Some(json!({ "name": format!("Team {k}") })))
            .await?["id"]
            .as_str()
            .context("team id")?
            .to_owned();
        api.call(
            Method::PUT,
            &format!("teams/{team}/members"),
            Some(&cw),
            Some(json!({ "members": [staff] })),
        )
        .await?;
        let staff_token = api.login(&email, PASSWORD).await?;
        let push_token = format!("bench-fcm-registration-token-staff-{k}");
        api.call(
            Method::POST,
            "push-tokens",
            Some(&staff_token),
            Some(json!({ "token": push_token, "platform": "android" })),
        )
        .await?;
        teams.push(team);
        push_tokens.push(push_token);
    }
    let total = args.wearers + args.outage_wearers + args.background;
    let yesterday = (Utc::now() - TimeDelta::days(1)).to_rfc3339();
    let home_time = Utc::now() - TimeDelta::minutes(10);
    let limit = Arc::new(Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let (api, cw, team, yesterday, limit) =
            (api.clone(), cw.clone(), teams[i % teams.len()].clone(), yesterday.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            // Homes 1.1 km apart, so no two share a position key.
            let home = (56.0 + i as f64 * 0.01, 13.84);
            let name = format!("Brukare {i}");
            let wearer = api.call(Method::POST, "wearers", Some(&cw), Some(json!({ "name": name }))).await?;
            let id = wearer["id"].as_str().context("wearer id")?.to_owned();
            let consent = json!({ "covers": ["positioning", "passive_alarms"], "given_by": "wearer", "document_ref": format!("Dnr bench/{i}"), "valid_from": yesterday });
            api.call(Method::POST, &format!("wearers/{id}/consents"), Some(&cw), Some(consent)).await?;
            let device_id = format!("pb-watch-{i:05}");
            let device = api
                .call(Method::POST, "devices", Some(&cw), Some(json!({ "id": device_id, "protocol": "native" })))
                .await?;
            api.call(Method::POST, &format!("devices/{device_id}/bind"), Some(&cw), Some(json!({ "wearer": id }))).await?;
            let zone = json!({
                "name": "Hemma", "kind": "stay_inside", "radius_m": 100,
                "geometry": { "type": "Point", "coordinates": [home.1, home.0] },
            });
            api.call(Method::POST, &format!("wearers/{id}/zones"), Some(&cw), Some(zone)).await?;
            api.call(Method::PUT, &format!("wearers/{id}"), Some(&cw), Some(json!({ "name": name, "team": team }))).await?;
            let watch = Watch { id: device_id, token: device["token"].as_str().context("device token")?.to_owned(), home };
            // Two fixes at home ten minutes ago: the zone state is "inside", confirmed.
            let at_home = json!([fix(home, 0.0, home_time), fix(home, 3.0, home_time + TimeDelta::seconds(10))]);
            api.fixes(&watch, at_home).await?;
            anyhow::Ok((i, watch))
        });
    }
    let mut watches = vec![None; total];
    while let Some(done) = tasks.join_next().await {
        let (i, watch) = done??;
        watches[i] = Some(watch);
    }
    Ok((watches.into_iter().map(|w| w.expect("every wearer set up")).collect(), push_tokens))
}

/// Background ingest: `clients` keep-alive connections, paced to `rate` fixes/s in total,
/// each fix inside its wearer's zone.
struct Background {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<u32>>>,
}

impl Background {
    fn start(base: &str, watches: Vec<Watch>, rate: f64, clients: usize) -> Self {
        let (stop, sent, errors) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let watches = Arc::new(watches);
        let per_client = Duration::from_secs_f64(clients as f64 / rate);
        let tasks = (0..clients)
            .map(|c| {
                let (api, watches, stop, sent, errors) = (
                    Api { http: client(), base: base.to_owned() },
                    watches.clone(),
                    stop.clone(),
                    sent.clone(),
                    errors.clone(),
                );
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut tick = tokio::time::interval(per_client);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let watch = &watches[(c + n * clients) % watches.len()];
                        // Wandering about at home, within 30 m of the centre.
                        let north = ((n * 7 + c) % 60) as f64 - 30.0;
                        match api.fixes(watch, json!([fix(watch.home, north, Utc::now())])).await {
                            Ok(d) => {
                                sent.fetch_add(1, Ordering::Relaxed);
                                latencies.push(d.as_micros() as u32);
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        n += 1;
                    }
                    latencies
                })
            })
            .collect();
        Self { stop, sent, errors, tasks }
    }

    async fn stop(self) -> Vec<u32> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("HTTP client")
}

/// One wearer walking out: the first outside fix, a pause, then the confirming one, timed.
struct Exit {
    key: String,
    sent_at: Instant,
    sent_wall: chrono::DateTime<Utc>,
    http: Duration,
}

async fn walk_out(api: Api, watch: Watch) -> anyhow::Result<Exit> {
    let now = Utc::now();
    api.fixes(&watch, json!([fix(watch.home, FIRST_OUT_M, now - TimeDelta::seconds(20))])).await?;
    // A watch reports every minute or so; half a second lets the first fix settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let confirm = fix(watch.home, CONFIRM_OUT_M, Utc::now());
    let key = position_key(confirm["lat"].as_f64().unwrap_or_default(), watch.home.1);
    let (sent_at, sent_wall) = (Instant::now(), Utc::now());
    let http = api.fixes(&watch, json!([confirm])).await?;
    Ok(Exit { key, sent_at, sent_wall, http })
}

/// Walks `watches` out at `rate` per second; the exits as they were sent.
async fn walk_out_all(base: &str, watches: &[Watch], rate: f64) -> anyhow::Result<Vec<Exit>> {
    let api = Api { http: client(), base: base.to_owned() };
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, watch) in watches.iter().enumerate() {
        let (api, watch) = (api.clone(), watch.clone());
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tasks.spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            walk_out(api, watch).await
        });
    }
    let mut exits = Vec::new();
    while let Some(done) = tasks.join_next().await {
        exits.push(done??);
    }
    Ok(exits)
}

/// Pushes that carry a position, by position key: (arrival, collapse key, token).
fn pushes_by_key(inbox: &Inbox) -> HashMap<String, Vec<(Instant, String, String)>> {
    let mut by_key: HashMap<String, Vec<(Instant, String, String)>> = HashMap::new();
    for (at, m) in inbox.lock().expect("inbox").iter() {
        let data = &m.message["data"];
        let (Some(lat), Some(lon)) = (data["lat"].as_str(), data["lon"].as_str()) else { continue };
        let (Ok(lat), Ok(lon)) = (lat.parse::<f64>(), lon.parse::<f64>()) else { continue };
        by_key.entry(position_key(lat, lon)).or_default().push((
            *at,
            m.collapse_key.clone().unwrap_or_default(),
            m.token.clone().unwrap_or_default(),
        ));
    }
    by_key
}

/// Waits until every exit has a push per expected token, or `limit` passes.
async fn wait_for_pushes(inbox: &Inbox, exits: &[Exit], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let by_key = pushes_by_key(inbox);
        if exits.iter().all(|e| by_key.contains_key(&e.key)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Delivered, lost and duplicated pushes of `exits`, and the latency of each first push.
struct Tally {
    delivered: usize,
    lost: usize,
    duplicates: usize,
    extra_alarms: usize,
    latencies_ms: Vec<f64>,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn tally(inbox: &Inbox, exits: &[Exit]) -> Tally {
    let by_key = pushes_by_key(inbox);
    let mut t = Tally {
        delivered: 0,
        lost: 0,
        duplicates: 0,
        extra_alarms: 0,
        latencies_ms: Vec::new(),
        first: None,
        last: None,
    };
    for e in exits {
        let pushes = by_key.get(&e.key).map(Vec::as_slice).unwrap_or_default();
        if pushes.is_empty() {
            t.lost += 1;
            continue;
        }
        // One staff token per wearer's team: exactly one push per (alarm, token) is expected.
        let mut per: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (_, key, token) in pushes {
            *per.entry((key.as_str(), token.as_str())).or_default() += 1;
        }
        t.delivered += 1;
        t.duplicates += per.values().map(|n| n - 1).sum::<usize>();
        let alarms: std::collections::BTreeSet<&str> = per.keys().map(|(k, _)| *k).collect();
        t.extra_alarms += alarms.len() - 1;
        let first = pushes.iter().map(|p| p.0).min().expect("non-empty");
        t.latencies_ms.push(first.saturating_duration_since(e.sent_at).as_secs_f64() * 1000.0);
        t.first = Some(t.first.map_or(first, |f| f.min(first)));
        t.last = Some(t.last.map_or(first, |l| l.max(first)));
    }
    t.latencies_ms.sort_by(f64::total_cmp);
    t
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

async fn measure(
    args: &Args,
    backend: &str,
    fake: &FakeFcm,
    inbox: &Inbox,
    server: &Server,
) -> anyhow::Result<Value> {
    let api = Api { http: client(), base: server.base.clone() };
    let started = Instant::now();
    let (watches, push_tokens) = set_up(&api, args).await?;
    let setup_s = started.elapsed().as_secs_f64();
    let exit1 = &watches[..args.wearers];
    let exit2 = &watches[args.wearers..args.wearers + args.outage_wearers];
    let bg = watches[args.wearers + args.outage_wearers..].to_vec();
    eprintln!(
        "   set up {} wearers, {} teams/tokens in {setup_s:.1} s; background {} devices at {} fixes/s",
        watches.len(),
        push_tokens.len(),
        bg.len(),
        args.bg_rate
    );
    let pid = server.pid();

    let background = Background::start(&server.base, bg, args.bg_rate, args.bg_clients);
    // Background alone for a while: its CPU cost, to separate it from the alarms'.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, sent0, t0) =
        (process_cpu_seconds(pid)?, background.sent.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (cpu1, sent1, t1) =
        (process_cpu_seconds(pid)?, background.sent.load(Ordering::Relaxed), Instant::now());
    let bg_only_rate = (sent1 - sent0) as f64 / (t1 - t0).as_secs_f64();
    let bg_cpu_per_s = (cpu1 - cpu0) / (t1 - t0).as_secs_f64();
    eprintln!("   background alone: {bg_only_rate:.0} fixes/s, server CPU {bg_cpu_per_s:.2} s/s");

    // Phase 1: wearers walk out under background load, FCM up.
    let exits = walk_out_all(&server.base, exit1, args.exit_rate).await?;
    let all_in = wait_for_pushes(inbox, &exits, Duration::from_secs(30)).await;
    let (cpu2, sent2, t2) =
        (process_cpu_seconds(pid)?, background.sent.load(Ordering::Relaxed), Instant::now());
    // Late duplicates would show up here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p1 = tally(inbox, &exits);
    if let Some(path) = std::env::var_os("PUSH_BENCH_TRACE") {
        // Per exit: wall-clock send time, HTTP ack and push latency, alarm id (for server logs).
        let by_key = pushes_by_key(inbox);
        let mut lines = String::new();
        for e in &exits {
            if let Some(p) = by_key.get(&e.key).and_then(|v| v.first()) {
                lines.push_str(&format!(
                    "{} {} http_ms={:.1} push_ms={:.1}\n",
                    e.sent_wall.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    p.1,
                    e.http.as_secs_f64() * 1000.0,
                    p.0.saturating_duration_since(e.sent_at).as_secs_f64() * 1000.0
                ));
            }
        }
        std::fs::write(path, lines)?;
    }
    let phase1_s = (t2 - t1).as_secs_f64();
    let bg_rate_phase1 = (sent2 - sent1) as f64 / phase1_s;
    let cpu_phase1 = cpu2 - cpu1;
    let alarms = p1.delivered.max(1) as f64;
    let mut http: Vec<f64> = exits.iter().map(|e| e.http.as_secs_f64() * 1000.0).collect();
    http.sort_by(f64::total_cmp);
    let l = &p1.latencies_ms;
    eprintln!(
        "   phase 1: {} exits, {} delivered, {} lost, {} duplicates; exit→push p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (confirming fix HTTP p50 {:.1} ms); background {:.0} fixes/s{}",
        exits.len(),
        p1.delivered,
        p1.lost,
        p1.duplicates,
        pct(l, 0.5),
        pct(l, 0.99),
        pct(l, 1.0),
        pct(&http, 0.5),
        bg_rate_phase1,
        if all_in { "" } else { " (timed out waiting)" }
    );
    let phase1 = json!({
        "exits": exits.len(),
        "pushes_expected": exits.len(),
        "delivered": p1.delivered,
        "lost": p1.lost,
        "duplicates": p1.duplicates,
        "extra_alarms": p1.extra_alarms,
        "exit_to_push_ms": {
            "p50": round(pct(l, 0.5), 1), "p90": round(pct(l, 0.9), 1), "p99": round(pct(l, 0.99), 1),
            "max": round(pct(l, 1.0), 1), "min": round(pct(l, 0.0), 1),
            "mean": round(l.iter().sum::<f64>() / l.len().max(1) as f64, 1),
        },
        "confirming_fix_http_ms": { "p50": round(pct(&http, 0.5), 1), "p99": round(pct(&http, 0.99), 1) },
        "seconds": round(phase1_s, 1),
        "background_fixes_per_s": round(bg_rate_phase1, 0),
        "server_cpu_s": round(cpu_phase1, 2),
        "server_cpu_s_per_1k_alarms_gross": round(cpu_phase1 / alarms * 1000.0, 1),
        "server_cpu_s_per_1k_alarms_net_of_background": round((cpu_phase1 - bg_cpu_per_s * phase1_s) / alarms * 1000.0, 1),
    });

    // Phase 2: FCM goes down; wearers walk out during the outage; FCM comes back.
    let outage = Duration::from_secs(args.outage_secs);
    let before = inbox.lock().expect("inbox").len();
    fake.go_down_for(outage);
    let down_at = Instant::now();
    let up_at = down_at + outage;
    // The exits spread over the first third of the outage.
    let rate2 = args.outage_wearers as f64 / (args.outage_secs as f64 / 3.0).max(1.0);
    let exits2 = walk_out_all(&server.base, exit2, rate2).await?;
    eprintln!(
        "   phase 2: FCM down for {} s, {} exits sent; waiting for it to come back",
        args.outage_secs,
        exits2.len()
    );
    tokio::time::sleep_until(up_at.into()).await;
    let during = inbox.lock().expect("inbox").len() - before;
    let all_in2 = wait_for_pushes(inbox, &exits2, Duration::from_secs(args.drain_limit_secs)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (sent3, t3) = (background.sent.load(Ordering::Relaxed), Instant::now());
    let p2 = tally(inbox, &exits2);
    let drain_s = p2.last.map(|l| l.saturating_duration_since(up_at).as_secs_f64());
    let first_after_s = p2.first.map(|f| f.saturating_duration_since(up_at).as_secs_f64());
    let bg_errors = background.errors.clone();
    let bg_lat = background.stop().await;
    eprintln!(
        "   phase 2: {} of {} delivered, {} lost, {} duplicates, {} pushes accepted while down; first push {:.1} s and last {:.1} s after FCM came back{}",
        p2.delivered,
        exits2.len(),
        p2.lost,
        p2.duplicates,
        during,
        first_after_s.unwrap_or(f64::NAN),
        drain_s.unwrap_or(f64::NAN),
        if all_in2 { "" } else { " (drain limit reached)" }
    );

    // Over the whole run: any (collapse key, token) accepted more than once.
    let messages = fake.messages();
    let mut per: HashMap<(String, String), usize> = HashMap::new();
    for m in &messages {
        *per.entry((m.collapse_key.clone().unwrap_or_default(), m.token.clone().unwrap_or_default()))
            .or_default() += 1;
    }
    let dup_total: usize = per.values().map(|n| n - 1).sum();
    let mut bg_lat: Vec<f64> = bg_lat.into_iter().map(|us| f64::from(us) / 1000.0).collect();
    bg_lat.sort_by(f64::total_cmp);
    let whole_bg_s = (t3 - t0).as_secs_f64();
    Ok(json!({
        "backend": backend,
        "setup_s": round(setup_s, 1),
        "background": {
            "devices": watches.len() - args.wearers - args.outage_wearers,
            "target_fixes_per_s": args.bg_rate,
            "alone_fixes_per_s": round(bg_only_rate, 0),
            "alone_server_cpu_s_per_s": round(bg_cpu_per_s, 3),
            "whole_run_fixes_per_s": round((sent3 - sent0) as f64 / whole_bg_s, 0),
            "errors": bg_errors.load(Ordering::Relaxed),
            "request_ms": { "p50": round(pct(&bg_lat, 0.5), 1), "p99": round(pct(&bg_lat, 0.99), 1), "max": round(pct(&bg_lat, 1.0), 1) },
        },
        "phase1_fcm_up": phase1,
        "phase2_fcm_down": {
            "outage_s": args.outage_secs,
            "exits_during_outage": exits2.len(),
            "pushes_expected": exits2.len(),
            "delivered": p2.delivered,
            "lost": p2.lost,
            "duplicates": p2.duplicates,
            "extra_alarms": p2.extra_alarms,
            "accepted_while_down": during,
            "first_push_after_fcm_back_s": first_after_s.map(|s| round(s, 1)),
            "drain_s_after_fcm_back": drain_s.map(|s| round(s, 1)),
            "drained_within_limit": all_in2,
        },
        "all_messages_accepted": messages.len(),
        "duplicates_per_collapse_key_and_token_whole_run": dup_total,
    }))
}

struct Database {
    url: String,
    pg_name: Option<String>,
    dir: tempfile::TempDir,
}

impl Database {
    async fn create(backend: &str, pg_admin: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        if backend == "sqlite" {
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            return Ok(Self { url, pg_name: None, dir });
        }
        let name = format!("trygg_push_bench_{}", std::process::id());
        psql(pg_admin, &format!("drop database if exists {name} with (force)")).await?;
        psql(pg_admin, &format!("create database {name}")).await?;
        let base = pg_admin.rsplit_once('/').map_or(pg_admin, |(b, _)| b);
        Ok(Self { url: format!("{base}/{name}"), pg_name: Some(name), dir })
    }

    async fn drop_it(self, pg_admin: &str) {
        if let Some(name) = self.pg_name {
            let _ = psql(pg_admin, &format!("drop database if exists {name} with (force)")).await;
        }
    }
}

async fn psql(admin: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn =
        sqlx::PgConnection::connect(admin).await.with_context(|| format!("PostgreSQL at {admin}"))?;
    sqlx::query(sql).execute(&mut conn).await?;
    Ok(())
}

/// The short Markdown summary.
fn markdown(report: &Value) -> String {
    let mut s = String::new();
    s.push_str("# M4 push benchmark (`loadtest/push/run.sh`)\n\n");
    s.push_str(&format!(
        "Run {} on {} ({} cores, load average at end {}). Generated by `push-bench`; `push.json` has every number.\n\n",
        report["date"].as_str().unwrap_or(""),
        report["machine"]["cpu"].as_str().unwrap_or("?"),
        report["machine"]["cores"],
        report["machine"]["loadavg_at_end"].as_str().unwrap_or("?"),
    ));
    s.push_str("Target (DESIGN M4): exit fix received → push request at FCM, p99 ≤ 100 ms under M3 load; 0 lost, 0 duplicated with FCM down 60 s. **No external peer exists for M4: the target is the bar.**\n\n");
    let c = &report["config"];
    s.push_str(&format!(
        "Setup: a real `trygg serve` (release) and the fake FCM in the benchmark process; {} teams, one staff member and one Android push token each; {} wearers walk out at {} exits/s with FCM up, {} more during a {} s FCM outage; {} background watches post one fix per request inside their zones (target {} fixes/s over {} keep-alive connections). Latency: sending the confirming (second outside) fix's request → the fake FCM accepting the push.\n\n",
        c["teams_each_one_staff_one_token"], c["wearers_phase1"], c["exits_per_s"], c["wearers_outage"], c["outage_s"],
        c["background_devices"], c["background_target_fixes_per_s"], c["background_connections"],
    ));
    s.push_str("| backend | exits | exit → push p50 / p99 / max | lost | dup | background ingest | server CPU per 1k alarms (gross / net of background) |\n|---|---|---|---|---|---|---|\n");
    for r in report["runs"].as_array().into_iter().flatten() {
        let p = &r["phase1_fcm_up"];
        let l = &p["exit_to_push_ms"];
        s.push_str(&format!(
            "| {} | {} | {} / {} / {} ms | {} | {} | {} fixes/s | {} s / {} s |\n",
            r["backend"].as_str().unwrap_or(""),
            p["exits"],
            l["p50"],
            l["p99"],
            l["max"],
            p["lost"],
            p["duplicates"],
            p["background_fixes_per_s"],
            p["server_cpu_s_per_1k_alarms_gross"],
            p["server_cpu_s_per_1k_alarms_net_of_background"],
        ));
    }
    s.push_str("\n| backend | FCM down | exits while down | delivered | lost | duplicates (whole run, per collapse key & token) | first / last push after FCM back |\n|---|---|---|---|---|---|---|\n");
    for r in report["runs"].as_array().into_iter().flatten() {
        let p = &r["phase2_fcm_down"];
        s.push_str(&format!(
            "| {} | {} s | {} | {} | {} | {} | {} s / {} s |\n",
            r["backend"].as_str().unwrap_or(""),
            p["outage_s"],
            p["exits_during_outage"],
            p["delivered"],
            p["lost"],
            r["duplicates_per_collapse_key_and_token_whole_run"],
            p["first_push_after_fcm_back_s"],
            p["drain_s_after_fcm_back"],
        ));
    }
    s
}

/// The machine, with its load average as the run ends (other work on the shared cores).
fn machine_at_end() -> Value {
    let mut m = machine();
    m["loadavg_at_end"] = json!(std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_owned()));
    m
}
