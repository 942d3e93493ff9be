//! M3 and its stress scenarios: thousands of simulated 3G watches over real TCP against a real
//! `trygg serve`, with the alarm engine, the push worker and a fake FCM running and 100k zones
//! loaded.
//!
//! One scenario per run, on one backend:
//! - `m3`: a warm-up, then the steady rate (10,000 fixes/s) for the measured duration;
//! - `burst`: steady, 30 s at twice the rate, then steady again (is the burst absorbed, and how
//!   soon is latency back?);
//! - `ceiling`: rising steps; the highest step with p99 ≤ 50 ms and every fix answered;
//! - `storm`: steady, then every connection drops for 60 s (the watches buffer, about 30 fixes
//!   each at the default rate), all reconnect within 10 s and upload; time to drain, and the
//!   database checked for lost fixes and duplicate alarms;
//! - `overload`: steady, then `--overload-rate` for 60 s, then steady: memory, refusals, loss,
//!   and how soon latency is back;
//! - `http-flood`: 500 concurrent 0.5 MB device posts with a bad token; the server's RSS;
//! - `fixtures`: writes the homes and zones as CSV for the Traccar-style baseline.
//!
//! The fleet (`trygg_loadtest::fleet`) explains how a position is acknowledged and why the
//! load is open-loop. The setup goes through the store directly (the API would take an hour
//! for 20k wearers); zones are a 150 m `stay_inside` circle at each wearer's home plus
//! `keep_out` circles a few kilometres away that nobody enters, to make up the zone count.
//!
//! ```text
//! watch-load --scenario m3 --backend sqlite --trygg target/release/trygg --out-dir loadtest/results
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;
use trygg_core::{DeviceId, TenantId, WearerId};
use trygg_loadtest::fleet::{
    Fleet, Kind, Outage, Phase, Profile, Sample, WatchOutcome, WatchSpec, position_key,
};
use trygg_loadtest::server::{Database, Server, machine, process_cpu_seconds, process_rss_bytes, psql};
use trygg_loadtest::{Rng, offset, town_point};
use trygg_push::fake::FakeFcm;
use trygg_store::{ConnectOptions, NewConsent, NewDevice, NewUser, Protocol, Role, WearerFields, ZoneFields};

/// p99 at or under this is "sustained" (M3).
const P99_TARGET_MS: f64 = 50.0;

#[derive(Debug, Clone)]
struct Args {
    scenario: String,
    backend: String,
    trygg: String,
    out_dir: String,
    pg_admin: String,
    watches: usize,
    rate: f64,
    secs: f64,
    warmup_secs: f64,
    zones: usize,
    exits_per_sec: f64,
    overload_rate: f64,
    steps: Vec<f64>,
    step_secs: f64,
    sources: u8,
    keepalive_secs: f64,
    connect_secs: f64,
    flood_requests: usize,
    flood_valid_token: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        scenario: "m3".into(),
        backend: "sqlite".into(),
        trygg: "target/release/trygg".into(),
        out_dir: "loadtest/results".into(),
        pg_admin: "postgres://postgres@127.0.0.1:5432/postgres".into(),
        // The container's hard limit is 20,000 open files per process, for the server as for
        // this simulator: 20,000 connections leave no descriptor for the database and listeners.
        watches: 19_900,
        rate: 10_000.0,
        secs: 300.0,
        warmup_secs: 30.0,
        zones: 100_000,
        exits_per_sec: 2.0,
        overload_rate: 0.0,
        steps: vec![8_000.0, 10_000.0, 12_000.0, 14_000.0, 17_000.0, 20_000.0],
        step_secs: 30.0,
        sources: 8,
        keepalive_secs: 300.0,
        connect_secs: 20.0,
        flood_requests: 500,
        flood_valid_token: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--scenario" => a.scenario = value,
            "--backend" => a.backend = value,
            "--trygg" => a.trygg = value,
            "--out-dir" => a.out_dir = value,
            "--pg-admin" => a.pg_admin = value,
            "--watches" => a.watches = value.parse()?,
            "--rate" => a.rate = value.parse()?,
            "--secs" => a.secs = value.parse()?,
            "--warmup-secs" => a.warmup_secs = value.parse()?,
            "--zones" => a.zones = value.parse()?,
            "--exits-per-sec" => a.exits_per_sec = value.parse()?,
            "--overload-rate" => a.overload_rate = value.parse()?,
            "--steps" => a.steps = value.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--step-secs" => a.step_secs = value.parse()?,
            "--sources" => a.sources = value.parse()?,
            "--keepalive-secs" => a.keepalive_secs = value.parse()?,
            "--connect-secs" => a.connect_secs = value.parse()?,
            "--flood-requests" => a.flood_requests = value.parse()?,
            "--flood-token" => a.flood_valid_token = value == "valid",
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

/// The offered load of a scenario, the outage if any, and which phases are measured.
fn plan(a: &Args) -> anyhow::Result<(Profile, Option<Outage>)> {
    let phase = |name: &str, secs: f64, rate: f64| Phase { name: name.to_owned(), secs, rate };
    let warmup = phase("warmup", a.warmup_secs, a.rate);
    let (phases, outage) = match a.scenario.as_str() {
        "m3" => (vec![warmup, phase("steady", a.secs, a.rate)], None),
        "burst" => (
            vec![
                warmup,
                phase("steady", 30.0, a.rate),
                phase("burst", 30.0, 2.0 * a.rate),
                phase("after", 60.0, a.rate),
            ],
            None,
        ),
        "ceiling" => {
            let mut phases = vec![phase("warmup", a.warmup_secs, a.steps[0])];
            phases.extend(a.steps.iter().map(|&r| phase(&format!("step-{r}"), a.step_secs, r)));
            (phases, None)
        }
        "storm" => {
            let outage = Outage { at_secs: a.warmup_secs + 30.0, secs: 60.0, reconnect_within_secs: 10.0 };
            (
                vec![
                    warmup,
                    phase("before", 30.0, a.rate),
                    phase("outage", 60.0, a.rate),
                    phase("after", 90.0, a.rate),
                ],
                Some(outage),
            )
        }
        "overload" => {
            anyhow::ensure!(a.overload_rate > 0.0, "overload needs --overload-rate (twice the ceiling)");
            (
                vec![
                    warmup,
                    phase("steady", 30.0, a.rate),
                    phase("overload", 60.0, a.overload_rate),
                    phase("after", 60.0, a.rate),
                ],
                None,
            )
        }
        other => bail!("unknown scenario {other}"),
    };
    Ok((Profile { phases }, outage))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    std::fs::create_dir_all(&args.out_dir)?;
    let name = match (args.scenario.as_str(), args.flood_valid_token) {
        ("http-flood", true) => format!("watch-http-flood-valid-token-{}", args.backend),
        _ => format!("watch-{}-{}", args.scenario, args.backend),
    };
    if args.scenario == "fixtures" {
        let written = write_fixtures(&args)?;
        eprintln!("fixtures written to {}: {written}", args.out_dir);
        return Ok(());
    }
    let report = if args.scenario == "http-flood" { http_flood(&args).await? } else { run(&args).await? };
    let json_path = format!("{}/{name}.json", args.out_dir);
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let md_path = format!("{}/{name}.md", args.out_dir);
    std::fs::write(&md_path, markdown(&report))?;
    eprintln!("written to {json_path} and {md_path}");
    Ok(())
}

/// What the setup made: the watches, and each one's wearer.
struct Seeded {
    specs: Vec<WatchSpec>,
    wearers: Vec<WearerId>,
    zones: usize,
}

async fn seed(db: &Database, args: &Args, leavers: &BTreeMap<usize, f64>) -> anyhow::Result<Seeded> {
    // The setup is not what is measured: commit without waiting for the disk.
    if let Some(name) = db.pg_name() {
        psql(&args.pg_admin, &format!("alter database {name} set synchronous_commit = off")).await?;
    }
    let options = ConnectOptions {
        max_connections: 8,
        sqlite_synchronous: trygg_store::Synchronous::Normal,
        ..ConnectOptions::default()
    };
    let store = trygg_store::connect(&db.url, &options).await?;
    let tenant = store.create_tenant("Lastkommun").await?;
    let user = |email: &str, role: Role| NewUser {
        tenant: Some(tenant),
        email: email.to_owned(),
        name: email.to_owned(),
        role,
        password_hash: "not a usable password hash".to_owned(),
    };
    let caseworker = store.add_user(&user("cw@load.test", Role::Caseworker)).await?;
    let staff = store.add_user(&user("staff@load.test", Role::Staff)).await?;
    let team = store.add_team(tenant, "Larmgruppen").await?;
    store.set_team_members(tenant, team, &[staff]).await?;
    store.put_push_token(tenant, staff, "load-fcm-token-staff", "android", Utc::now()).await?;

    let per_wearer = (args.zones / args.watches.max(1)).max(1);
    let homes = homes(args.watches);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 8;
    for k in 0..workers {
        let (store, homes) = (store.clone(), homes.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            for i in (k..homes.len()).step_by(workers) {
                let wearer = seed_wearer(&*store, tenant, team, caseworker, i, homes[i], per_wearer).await?;
                out.push((i, wearer));
            }
            anyhow::Ok(out)
        });
    }
    let mut wearers = vec![None; args.watches];
    while let Some(done) = tasks.join_next().await {
        for (i, w) in done?? {
            wearers[i] = Some(w);
        }
    }
    store.close().await;
    if let Some(name) = db.pg_name() {
        psql(&args.pg_admin, &format!("alter database {name} reset synchronous_commit")).await?;
    }
    eprintln!(
        "   seeded {} wearers, watches and {} zones in {:.0} s",
        args.watches,
        args.watches * per_wearer,
        started.elapsed().as_secs_f64()
    );
    let specs = homes
        .iter()
        .enumerate()
        .map(|(i, &home)| WatchSpec { id: device_id(i), home, leaves_at_secs: leavers.get(&i).copied() })
        .collect();
    Ok(Seeded {
        specs,
        wearers: wearers.into_iter().map(|w| w.expect("every wearer seeded")).collect(),
        zones: args.watches * per_wearer,
    })
}

fn device_id(i: usize) -> String {
    format!("{}", 7_000_000_000u64 + i as u64)
}

/// One wearer with consent, a bound watch, the home zone and `zones - 1` keep-out zones.
#[allow(clippy::too_many_arguments)]
async fn seed_wearer(
    store: &dyn trygg_store::Store,
    tenant: TenantId,
    team: uuid::Uuid,
    caseworker: uuid::Uuid,
    i: usize,
    home: geo::Coord,
    zones: usize,
) -> anyhow::Result<WearerId> {
    let now = Utc::now();
    let fields = WearerFields { name: format!("Brukare {i}"), team: Some(team), ..WearerFields::default() };
    let wearer = store.add_wearer(tenant, &fields).await?;
    let consent = NewConsent {
        wearer,
        positioning: true,
        passive_alarms: true,
        given_by: trygg_store::ConsentGiver::Wearer,
        document_ref: format!("Dnr last/{i}"),
        valid_from: now - chrono::TimeDelta::days(1),
        valid_until: None,
        recorded_by: caseworker,
    };
    store.add_consent(tenant, &consent).await?;
    let device = DeviceId::parse(&device_id(i))?;
    let new =
        NewDevice { id: device.clone(), tenant, wearer: None, protocol: Protocol::Watch, token_hash: None };
    store.register_device(&new).await?;
    store.bind_device(tenant, &device, wearer, now).await?;
    for (z, zone) in wearer_zones(i, home, zones).into_iter().enumerate() {
        let fields = ZoneFields {
            name: if z == 0 { "Hemma".to_owned() } else { format!("Undvik {z}") },
            kind: zone.kind.to_owned(),
            geometry: json!({ "type": "Point", "coordinates": [zone.centre.x, zone.centre.y] }).to_string(),
            radius_m: Some(zone.radius_m),
            schedule: None,
        };
        store.add_zone(tenant, wearer, &fields, now).await?;
    }
    Ok(wearer)
}

/// A circular zone of a wearer.
struct CircleZone {
    kind: &'static str,
    centre: geo::Coord,
    radius_m: f64,
}

/// Wearer `i`'s zones, the same on every run (and for the baseline's fixtures): a 150 m
/// `stay_inside` circle at home, then `keep_out` circles 2–8 km away that nobody walks into.
fn wearer_zones(i: usize, home: geo::Coord, zones: usize) -> Vec<CircleZone> {
    let mut rng = Rng::new(1_000_000 + i as u64);
    let mut out = vec![CircleZone { kind: "stay_inside", centre: home, radius_m: 150.0 }];
    for _ in 1..zones {
        let angle = rng.unit() * std::f64::consts::TAU;
        let distance = rng.range(2_000.0, 8_000.0);
        let centre = offset(home, distance * angle.cos(), distance * angle.sin());
        out.push(CircleZone { kind: "keep_out", centre, radius_m: rng.range(100.0, 300.0) });
    }
    out
}

/// The wearers' homes, the same on every run.
fn homes(n: usize) -> Vec<geo::Coord> {
    let mut rng = Rng::new(18);
    (0..n).map(|_| town_point(&mut rng, 800.0)).collect()
}

/// Writes the homes and zones as CSV for the Traccar-style baseline (`loadtest/baseline`):
/// `homes.csv` (id, device, lon, lat) and `zones.csv` (device, kind, lon, lat, radius_m).
fn write_fixtures(args: &Args) -> anyhow::Result<Value> {
    use std::fmt::Write as _;
    let per_wearer = (args.zones / args.watches.max(1)).max(1);
    let (mut homes_csv, mut zones_csv) = (String::new(), String::new());
    for (i, home) in homes(args.watches).into_iter().enumerate() {
        let device = device_id(i);
        writeln!(homes_csv, "{i},{device},{:.7},{:.7}", home.x, home.y)?;
        for z in wearer_zones(i, home, per_wearer) {
            writeln!(zones_csv, "{device},{},{:.7},{:.7},{:.1}", z.kind, z.centre.x, z.centre.y, z.radius_m)?;
        }
    }
    std::fs::write(format!("{}/homes.csv", args.out_dir), homes_csv)?;
    std::fs::write(format!("{}/zones.csv", args.out_dir), zones_csv)?;
    Ok(json!({ "watches": args.watches, "zones": args.watches * per_wearer }))
}

/// Every push the fake accepted, with when this process saw it.
type Inbox = Arc<Mutex<Vec<(Instant, trygg_push::fake::ReceivedMessage)>>>;

fn collect_pushes(fake: &FakeFcm) -> Inbox {
    let inbox: Inbox = Arc::default();
    let (into, mut rx) = (inbox.clone(), fake.subscribe());
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(m) => into.lock().expect("inbox").push((Instant::now(), m)),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    inbox
}

/// Per second of the run: the server's CPU and memory.
#[derive(Debug, Clone, Copy)]
struct Tick {
    at_s: f64,
    cpu_s: f64,
    rss: u64,
}

async fn run(args: &Args) -> anyhow::Result<Value> {
    let (profile, outage) = plan(args)?;
    eprintln!(
        "== {} on {}: {} watches, phases {:?}",
        args.scenario, args.backend, args.watches, profile.phases
    );
    // Leavers walk out at an even pace over the phases after the warm-up, not in the last
    // minute (walking out of the zone takes about 15 fixes).
    let measured_from = profile.start_of(1);
    let window = (profile.secs() - measured_from - 60.0).max(0.0);
    let exits = ((args.exits_per_sec * window) as usize).min(args.watches / 2);
    let leavers: BTreeMap<usize, f64> = (0..exits)
        .map(|k| (k * args.watches / exits.max(1), measured_from + window * k as f64 / exits.max(1) as f64))
        .collect();

    let db = Database::create(&args.backend, &args.pg_admin, "watch_load").await?;
    let seeded = seed(&db, args, &leavers).await?;
    let fake = FakeFcm::start().await?;
    let inbox = collect_pushes(&fake);
    let credentials = db.dir.path().join("fcm-service-account.json");
    std::fs::write(&credentials, fake.service_account_json())?;
    let log = db.dir.path().join("trygg.log");
    let max_connections = (args.watches + 50).to_string();
    let mut server = Server::start(&args.trygg, &db.url, Some(&log), |c| {
        c.args(["--watch-bind", "127.0.0.1:0", "--gt06-bind", "", "--osmand-bind", ""])
            .args(["--max-device-connections", &max_connections])
            .env("TRYGG_LOG", std::env::var("WATCH_LOAD_LOG").unwrap_or_else(|_| "warn".into()))
            .env("TRYGG_JWT_SECRET", "watch-load-benchmark-signing-key-not-secret")
            .env("TRYGG_FCM_CREDENTIALS", &credentials)
            .env("TRYGG_FCM_ENDPOINT", fake.endpoint());
    })?;
    let watch_addr = server.device_listener("watch")?;
    let pid = server.pid();
    let rss_before = process_rss_bytes(pid)?;

    let sources: Vec<IpAddr> =
        (0..args.sources).map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + k))).collect();
    let connect_from = Instant::now();
    let settle = Duration::from_secs(10);
    let start = connect_from + Duration::from_secs_f64(args.connect_secs) + settle;
    let start_wall = Utc::now() + chrono::TimeDelta::from_std(start - connect_from)?;
    let fleet = Arc::new(Fleet {
        server: watch_addr,
        sources,
        start,
        start_wall,
        watches: args.watches,
        profile: profile.clone(),
        outage,
        keepalive_secs: args.keepalive_secs,
        grace: Duration::from_secs(30),
        samples: Mutex::new(Vec::with_capacity((profile.secs() * args.rate * 1.2) as usize)),
        counters: Default::default(),
        exit_fixes: Mutex::default(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, spec) in seeded.specs.iter().cloned().enumerate() {
        let fleet = fleet.clone();
        let at = connect_from + Duration::from_secs_f64(args.connect_secs * i as f64 / args.watches as f64);
        tasks.spawn(async move { (i, fleet.run_watch(i, spec, at, 7 + i as u64).await) });
    }

    // Idle connections: every watch connected and its keep-alive answered, no positions yet.
    tokio::time::sleep_until(start - Duration::from_secs(2)).await;
    let open = fleet.counters.open.load(Ordering::Relaxed);
    let rss_idle = process_rss_bytes(pid)?;
    let per_idle = rss_idle.saturating_sub(rss_before) as f64 / open.max(1) as f64;
    eprintln!(
        "   {open} connections open; server RSS {:.0} → {:.0} MiB: {:.0} bytes per idle connection",
        mib(rss_before),
        mib(rss_idle),
        per_idle
    );

    // Progress and per-second server figures until every watch is done.
    let mut ticks = Vec::new();
    let mut last_print = Instant::now();
    let (mut last_acked, mut last_at) = (0u64, Instant::now());
    let mut outcomes = vec![WatchOutcome::default(); args.watches];
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(r) => { let (i, o) = r?; outcomes[i] = o; continue; }
                None => break,
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = Instant::now();
        let at_s = secs_between(start, now);
        ticks.push(Tick {
            at_s,
            cpu_s: process_cpu_seconds(pid).unwrap_or(f64::NAN),
            rss: process_rss_bytes(pid).unwrap_or(0),
        });
        if now - last_print >= Duration::from_secs(5) {
            let c = &fleet.counters;
            let acked = c.acked.load(Ordering::Relaxed);
            let rate = (acked - last_acked) as f64 / (now - last_at).as_secs_f64();
            let recent = recent_p99(&fleet, at_s - 5.0);
            let phase = if at_s < 0.0 {
                "connecting".to_owned()
            } else {
                profile.phases[profile.phase_at(at_s)].name.clone()
            };
            eprintln!(
                "   t={at_s:>5.0}s {phase:<10} offered {:>6.0}/s acked {rate:>6.0}/s p99(5s) {recent:>7.1} ms in flight {:>6} open {:>5} broken {} rss {:.0} MiB",
                profile.phases[profile.phase_at(at_s.max(0.0))].rate,
                c.sent.load(Ordering::Relaxed).saturating_sub(acked),
                c.open.load(Ordering::Relaxed),
                c.broken.load(Ordering::Relaxed),
                mib(ticks.last().map_or(0, |t| t.rss)),
            );
            (last_acked, last_at, last_print) = (acked, now, now);
        }
    }
    // Pushes of the last exits.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // A server that ended on its own (the supervisor's crash-only exit) is part of the result.
    let exited = server.exited().map(|s| s.to_string());
    let metrics = match reqwest::get(format!("{}/metrics", server.base)).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    server.stop();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let log_tail: Vec<&str> = log_text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
    if let Some(status) = &exited {
        eprintln!("   the server ended on its own ({status}); its last log lines:\n{}", log_tail.join("\n"));
    }
    let verification = verify(&db, &seeded, &outcomes, &leavers).await?;
    db.drop_it(&args.pg_admin).await;

    let samples = std::mem::take(&mut *fleet.samples.lock().expect("samples"));
    let phases: Vec<Value> =
        (0..profile.phases.len()).map(|i| phase_stats(&profile, i, &samples, &ticks)).collect();
    let timeline = timeline(&samples, &ticks, profile.secs());
    let exit_push = exit_to_push(&fleet, &inbox);
    let c = &fleet.counters;
    let mut report = json!({
        "scenario": args.scenario,
        "backend": args.backend,
        "date": Utc::now().to_rfc3339(),
        "machine": machine(),
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_owned()),
        "watches": args.watches,
        "zones": seeded.zones,
        "profile": profile,
        "outage": outage,
        "keepalive_secs": args.keepalive_secs,
        "ack": "each position is followed by a TKQ frame whose echo is written after the position is committed; latency from the scheduled send time (open loop)",
        "connections_open_at_start": fleet.counters.open.load(Ordering::Relaxed).max(open),
        "server_rss_mib": { "before_connections": round(mib(rss_before), 1), "idle_connections": round(mib(rss_idle), 1), "max": round(mib(ticks.iter().map(|t| t.rss).max().unwrap_or(0)), 1) },
        "rss_bytes_per_idle_connection": per_idle.round(),
        "counters": {
            "generated": c.generated.load(Ordering::Relaxed),
            "sent": c.sent.load(Ordering::Relaxed),
            "acked": c.acked.load(Ordering::Relaxed),
            "resent": c.resent.load(Ordering::Relaxed),
            "connects": c.connects.load(Ordering::Relaxed),
            "connect_errors": c.connect_errors.load(Ordering::Relaxed),
            "broken_connections": c.broken.load(Ordering::Relaxed),
            "mismatched_replies": c.mismatched.load(Ordering::Relaxed),
            "server_commands": c.server_commands.load(Ordering::Relaxed),
        },
        "server_exited_during_run": exited,
        "server_log_tail": log_tail,
        "server_metrics": server_metrics(&metrics),
        "phases": phases,
        "exit_to_push": exit_push,
        "verification": verification,
        "timeline": timeline,
    });
    report["summary"] = summary(&report, outage, &profile);
    Ok(report)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn secs_between(start: Instant, now: Instant) -> f64 {
    if now >= start { (now - start).as_secs_f64() } else { -(start - now).as_secs_f64() }
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn latencies_ms<'a>(samples: impl Iterator<Item = &'a Sample>) -> Vec<f64> {
    let mut v: Vec<f64> = samples.map(|s| s.latency_us as f64 / 1000.0).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn recent_p99(fleet: &Fleet, from_s: f64) -> f64 {
    let from_ms = (from_s * 1000.0) as i64;
    let samples = fleet.samples.lock().expect("samples");
    let tail = samples.iter().rev().take_while(|s| s.acked_ms() >= from_ms - 60_000);
    let v = latencies_ms(tail.filter(|s| s.kind == Kind::Live && s.acked_ms() >= from_ms));
    pct(&v, 0.99)
}

/// Throughput, latency and server cost of one phase (positions scheduled in it).
fn phase_stats(profile: &Profile, i: usize, samples: &[Sample], ticks: &[Tick]) -> Value {
    let (from, to) = (profile.start_of(i), profile.start_of(i) + profile.phases[i].secs);
    let (from_ms, to_ms) = ((from * 1000.0) as i64, (to * 1000.0) as i64);
    let in_phase = |s: &&Sample| s.scheduled_ms >= from_ms && s.scheduled_ms < to_ms;
    let live = latencies_ms(samples.iter().filter(in_phase).filter(|s| s.kind == Kind::Live));
    let buffered = latencies_ms(samples.iter().filter(in_phase).filter(|s| s.kind == Kind::Buffered));
    let acked_in_window = samples
        .iter()
        .filter(|s| s.kind != Kind::KeepAlive && (from_ms..to_ms).contains(&s.acked_ms()))
        .count();
    let cpu_at = |t: f64| ticks.iter().find(|k| k.at_s >= t).or(ticks.last()).map(|k| (k.at_s, k.cpu_s));
    let cpu = match (cpu_at(from), cpu_at(to)) {
        (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => Some((c1 - c0, t1 - t0)),
        _ => None,
    };
    let acked_per_s = acked_in_window as f64 / (to - from);
    let ms = |v: &[f64]| json!({ "p50": round(pct(v, 0.5), 2), "p99": round(pct(v, 0.99), 2), "p99_9": round(pct(v, 0.999), 2), "max": round(pct(v, 1.0), 2) });
    json!({
        "name": profile.phases[i].name,
        "from_s": from, "secs": profile.phases[i].secs,
        "offered_per_s": profile.phases[i].rate,
        "acked_per_s": round(acked_per_s, 0),
        "live_positions": live.len(),
        "ack_ms": ms(&live),
        "buffered_positions": buffered.len(),
        "buffered_ack_ms": ms(&buffered),
        "server_cpu_s_per_s": cpu.map(|(c, t)| round(c / t, 3)),
        "server_cpu_s_per_1k_fixes": cpu.map(|(c, _)| round(c / acked_in_window.max(1) as f64 * 1000.0, 4)),
        "server_rss_max_mib": round(mib(ticks.iter().filter(|k| k.at_s >= from && k.at_s < to).map(|k| k.rss).max().unwrap_or(0)), 1),
    })
}

/// Per second (by the time the answer came): answers, their p99, the server's CPU and RSS.
fn timeline(samples: &[Sample], ticks: &[Tick], secs: f64) -> Vec<Value> {
    let mut by_second: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.kind != Kind::KeepAlive) {
        by_second.entry(s.acked_ms().div_euclid(1000)).or_default().push(s.latency_us as f64 / 1000.0);
    }
    let end = secs.ceil() as i64 + 40;
    (0..end)
        .map(|sec| {
            let mut v = by_second.remove(&sec).unwrap_or_default();
            v.sort_by(f64::total_cmp);
            let tick = |t: i64| ticks.iter().find(|k| k.at_s >= t as f64);
            let cpu = match (tick(sec), tick(sec + 1)) {
                (Some(a), Some(b)) if b.at_s > a.at_s => round((b.cpu_s - a.cpu_s) / (b.at_s - a.at_s), 2),
                _ => f64::NAN,
            };
            json!({ "s": sec, "acked": v.len(), "p99_ms": round(pct(&v, 0.99), 1), "cpu": cpu, "rss_mib": round(mib(tick(sec).map_or(0, |t| t.rss)), 0) })
        })
        .collect()
}

/// Scheduled send of the fix a push names → the fake FCM accepting it, first push per alarm.
fn exit_to_push(fleet: &Fleet, inbox: &Inbox) -> Value {
    let exits = fleet.exit_fixes.lock().expect("exit fixes");
    let mut first: HashMap<String, f64> = HashMap::new();
    let mut unmatched = 0;
    for (at, m) in inbox.lock().expect("inbox").iter() {
        let data = &m.message["data"];
        let (Some(lat), Some(lon)) = (data["lat"].as_str(), data["lon"].as_str()) else { continue };
        let (Ok(lat), Ok(lon)) = (lat.parse::<f64>(), lon.parse::<f64>()) else { continue };
        let Some(sent) = exits.get(&position_key(lat, lon)) else {
            unmatched += 1;
            continue;
        };
        let ms = at.saturating_duration_since(*sent).as_secs_f64() * 1000.0;
        let key = m.collapse_key.clone().unwrap_or_default();
        let e = first.entry(key).or_insert(ms);
        *e = e.min(ms);
    }
    let mut v: Vec<f64> = first.into_values().collect();
    v.sort_by(f64::total_cmp);
    json!({
        "alarms_pushed": v.len(),
        "pushes_not_matched_to_an_exit_fix": unmatched,
        "ms": { "p50": round(pct(&v, 0.5), 1), "p99": round(pct(&v, 0.99), 1), "max": round(pct(&v, 1.0), 1) },
    })
}

/// The database against what the watches did: every fix answered is stored, nothing twice,
/// and exactly one zone-exit alarm per wearer who walked out (none for the others).
async fn verify(
    db: &Database,
    seeded: &Seeded,
    outcomes: &[WatchOutcome],
    leavers: &BTreeMap<usize, f64>,
) -> anyhow::Result<Value> {
    let (fix_counts, alarm_counts) = count_rows(&db.url).await?;
    let (mut stored, mut acked_missing, mut generated, mut acked, mut unsent, mut sent_missing) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for (i, o) in outcomes.iter().enumerate() {
        let n = fix_counts.get(&device_id(i)).copied().unwrap_or(0);
        stored += n;
        generated += o.generated;
        acked += o.acked;
        unsent += o.unsent;
        acked_missing += o.acked.saturating_sub(n);
        sent_missing += (o.generated - o.unsent).saturating_sub(n);
    }
    let wearer_index: HashMap<String, usize> =
        seeded.wearers.iter().enumerate().map(|(i, w)| (w.0.to_string(), i)).collect();
    let (mut exit_alarms, mut duplicate_exit_alarms, mut leavers_without_alarm, mut unexpected) =
        (0, 0, 0, 0);
    let mut other_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut exits_by_watch: HashMap<usize, u64> = HashMap::new();
    for ((wearer, kind), n) in &alarm_counts {
        if kind == "zone_exit" {
            exit_alarms += n;
            match wearer_index.get(wearer) {
                Some(&i) if leavers.contains_key(&i) => {
                    exits_by_watch.insert(i, *n);
                }
                _ => unexpected += n,
            }
        } else {
            *other_kinds.entry(kind.clone()).or_default() += n;
        }
    }
    for i in leavers.keys() {
        match exits_by_watch.get(i) {
            None => leavers_without_alarm += 1,
            Some(&n) if n > 1 => duplicate_exit_alarms += n - 1,
            _ => {}
        }
    }
    Ok(json!({
        "fixes_generated": generated,
        "fixes_acked": acked,
        "fixes_stored": stored,
        "fixes_still_buffered_at_end": unsent,
        "acked_but_not_stored": acked_missing,
        "sent_but_not_stored": sent_missing,
        "leavers": leavers.len(),
        "zone_exit_alarms": exit_alarms,
        "duplicate_zone_exit_alarms": duplicate_exit_alarms,
        "leavers_without_an_alarm": leavers_without_alarm,
        "zone_exit_alarms_for_wearers_who_stayed": unexpected,
        "other_alarms_by_kind": other_kinds,
        "method": "per device: stored rows (primary key device, time) against the distinct fixes the watch took, sent and had answered; alarms per wearer and kind",
    }))
}

type FixCounts = HashMap<String, u64>;
type AlarmCounts = BTreeMap<(String, String), u64>;

async fn count_rows(url: &str) -> anyhow::Result<(FixCounts, AlarmCounts)> {
    const FIXES: &str = "select device_id, count(*) from fixes group by device_id";
    const ALARMS: &str =
        "select cast(wearer_id as text), kind, count(*) from alarms group by wearer_id, kind";
    type Fixes = Vec<(String, i64)>;
    type Alarms = Vec<(String, String, i64)>;
    let (fixes, alarms): (Fixes, Alarms) = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        (sqlx::query_as(FIXES).fetch_all(&pool).await?, sqlx::query_as(ALARMS).fetch_all(&pool).await?)
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        (sqlx::query_as(FIXES).fetch_all(&pool).await?, sqlx::query_as(ALARMS).fetch_all(&pool).await?)
    };
    Ok((
        fixes.into_iter().map(|(d, n)| (d, n as u64)).collect(),
        alarms.into_iter().map(|(w, k, n)| ((w, k), n as u64)).collect(),
    ))
}

/// The server's own ingest counters from `/metrics`.
fn server_metrics(text: &str) -> Value {
    let mut out = serde_json::Map::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let wanted = [
            "trygg_ingest_fixes",
            "trygg_ingest_requests_rejected",
            "trygg_device_frames",
            "trygg_device_refused",
            "trygg_ingest_commit",
        ];
        if wanted.iter().any(|w| name.starts_with(w))
            && !name.contains("_bucket")
            && let Ok(v) = value.parse::<f64>()
        {
            out.insert(name.to_owned(), json!(v));
        }
    }
    Value::Object(out)
}

/// The headline numbers of the scenario.
fn summary(report: &Value, outage: Option<Outage>, profile: &Profile) -> Value {
    let phases = report["phases"].as_array().cloned().unwrap_or_default();
    let by_name = |n: &str| phases.iter().find(|p| p["name"] == n).cloned().unwrap_or(Value::Null);
    let timeline = report["timeline"].as_array().cloned().unwrap_or_default();
    // First second from `from_s` on after which every second for 5 s has p99 ≤ 50 ms.
    let back_to_normal = |from_s: f64| -> Option<f64> {
        let ok = |t: &Value| t["p99_ms"].as_f64().is_some_and(|p| p <= P99_TARGET_MS);
        let secs: Vec<&Value> =
            timeline.iter().filter(|t| t["s"].as_f64().unwrap_or(0.0) >= from_s).collect();
        (0..secs.len().saturating_sub(5))
            .find(|&i| secs[i..i + 5].iter().all(|t| ok(t)))
            .map(|i| secs[i]["s"].as_f64().unwrap_or(0.0) - from_s)
    };
    match report["scenario"].as_str().unwrap_or("") {
        "m3" => by_name("steady"),
        "burst" => {
            let burst_end = profile.start_of(3);
            json!({ "burst": by_name("burst"), "after": by_name("after"), "secs_after_burst_until_p99_ok": back_to_normal(burst_end) })
        }
        "overload" => {
            let end = profile.start_of(3);
            json!({ "overload": by_name("overload"), "after": by_name("after"), "secs_after_overload_until_p99_ok": back_to_normal(end) })
        }
        "ceiling" => {
            let ok: Vec<&Value> = phases
                .iter()
                .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("step-")))
                .filter(|p| {
                    p["ack_ms"]["p99"].as_f64().is_some_and(|v| v <= P99_TARGET_MS)
                        && p["acked_per_s"].as_f64().unwrap_or(0.0)
                            >= 0.98 * p["offered_per_s"].as_f64().unwrap_or(f64::MAX)
                })
                .collect();
            json!({ "ceiling_per_s": ok.iter().filter_map(|p| p["offered_per_s"].as_f64()).fold(0.0, f64::max), "steps": phases })
        }
        "storm" => {
            let o = outage.expect("a storm has an outage");
            let back = o.at_secs + o.secs;
            let buffered_last_ack = report["phases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    p["buffered_ack_ms"]["max"].as_f64().map(|m| (p["from_s"].as_f64().unwrap_or(0.0), m))
                })
                .map(|(from, m)| from + m / 1000.0)
                .fold(f64::NAN, f64::max);
            json!({
                "outage_s": o.secs, "reconnect_within_s": o.reconnect_within_secs,
                "buffered_per_watch_about": round(o.secs * profile.phases[0].rate / report["watches"].as_f64().unwrap_or(1.0), 1),
                "drained_s_after_network_back_upper_bound": round(buffered_last_ack - back, 1),
                "secs_after_network_back_until_p99_ok": back_to_normal(back + o.reconnect_within_secs).map(|s| s + o.reconnect_within_secs),
                "after": by_name("after"),
            })
        }
        _ => Value::Null,
    }
}

/// 500 concurrent device posts of 0.5 MB with a bad token: the server's RSS before, at its
/// largest during, and after; and what the posts were answered.
async fn http_flood(args: &Args) -> anyhow::Result<Value> {
    let db = Database::create(&args.backend, &args.pg_admin, "http_flood").await?;
    // A valid token gets past authentication, so the server reads each body (and refuses it).
    let token = if args.flood_valid_token {
        let store = trygg_store::connect(&db.url, &ConnectOptions::default()).await?;
        let tenant = store.create_tenant("Flood").await?;
        let secret = trygg_store::token::generate();
        let device = NewDevice {
            id: DeviceId::parse("flood-1")?,
            tenant,
            wearer: None,
            protocol: Protocol::Native,
            token_hash: Some(trygg_store::token::hash(&secret)),
        };
        store.register_device(&device).await?;
        store.close().await;
        secret
    } else {
        "not-a-device-token".to_owned()
    };
    let log = db.dir.path().join("trygg.log");
    let mut server = Server::start(&args.trygg, &db.url, Some(&log), |c| {
        c.args(["--watch-bind", "", "--gt06-bind", "", "--osmand-bind", ""])
            .env("TRYGG_LOG", "warn")
            .env("TRYGG_JWT_SECRET", "watch-load-benchmark-signing-key-not-secret");
    })?;
    let pid = server.pid();
    let rss_before = process_rss_bytes(pid)?;
    let url = format!("{}/api/v1/ingest/positions", server.base);
    let body = bytes::Bytes::from(vec![b' '; 512 * 1024]);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(r) = process_rss_bytes(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.flood_requests {
        let (url, body, token) = (url.clone(), body.clone(), token.clone());
        tasks.spawn(async move {
            // One connection per request, as many devices would.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(60))
                .build()?;
            let r = http
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            anyhow::Ok(r.map(|r| r.status().as_u16()).unwrap_or(0))
        });
    }
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        *statuses.entry(done??).or_default() += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = process_rss_bytes(pid)?;
    sampling.abort();
    // Another client meanwhile? The health answer right after the flood.
    let health =
        reqwest::get(format!("{}/healthz", server.base)).await.map(|r| r.status().as_u16()).unwrap_or(0);
    server.stop();
    db.drop_it(&args.pg_admin).await;
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "   {} posts in {secs:.1} s, answers {statuses:?}; RSS {:.0} → peak {:.0} → {:.0} MiB",
        args.flood_requests,
        mib(rss_before),
        mib(peak),
        mib(rss_after)
    );
    Ok(json!({
        "scenario": "http-flood",
        "backend": args.backend,
        "date": Utc::now().to_rfc3339(),
        "machine": machine(),
        "requests": args.flood_requests,
        "body_bytes": body.len(),
        "token": if args.flood_valid_token { "valid (the body is read, then refused)" } else { "invalid" },
        "secs": round(secs, 1),
        "answers_by_status": statuses,
        "server_rss_mib": { "before": round(mib(rss_before), 1), "peak": round(mib(peak), 1), "after": round(mib(rss_after), 1) },
        "healthz_after": health,
    }))
}

/// The Markdown summary next to the JSON.
fn markdown(r: &Value) -> String {
    let mut s = format!(
        "# watch-load `{}` on {} ({})\n\nMachine: {} ({} cores), load average at the end {}. Every number is in the JSON next to this file.\n\n",
        r["scenario"].as_str().unwrap_or(""),
        r["backend"].as_str().unwrap_or(""),
        r["date"].as_str().unwrap_or(""),
        r["machine"]["cpu"].as_str().unwrap_or("?"),
        r["machine"]["cores"],
        r["loadavg_at_end"].as_str().unwrap_or("?"),
    );
    if r["scenario"] == "http-flood" {
        s.push_str(&format!(
            "{} concurrent posts of {} bytes, token {}: answers {}; server RSS {} MiB before, {} MiB at the peak, {} MiB after; /healthz after: {}.\n",
            r["requests"], r["body_bytes"], r["token"], r["answers_by_status"], r["server_rss_mib"]["before"], r["server_rss_mib"]["peak"], r["server_rss_mib"]["after"], r["healthz_after"]
        ));
        return s;
    }
    s.push_str(&format!(
        "{} watches over TCP (3G protocol), {} zones, keep-alive every {} s. Server RSS {} MiB before the connections, {} MiB with them idle: **{} bytes per idle connection**; at most {} MiB.\n\n",
        r["watches"], r["zones"], r["keepalive_secs"], r["server_rss_mib"]["before_connections"], r["server_rss_mib"]["idle_connections"], r["rss_bytes_per_idle_connection"], r["server_rss_mib"]["max"]
    ));
    s.push_str("| phase | secs | offered/s | acked/s | ack p50 / p99 / p99.9 / max (ms) | buffered fixes: p99 / max (ms) | server CPU s/s | CPU s per 1k fixes | RSS max MiB |\n|---|---|---|---|---|---|---|---|---|\n");
    for p in r["phases"].as_array().into_iter().flatten() {
        let a = &p["ack_ms"];
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} / {} / {} / {} | {} / {} ({} fixes) | {} | {} | {} |\n",
            p["name"].as_str().unwrap_or(""),
            p["secs"],
            p["offered_per_s"],
            p["acked_per_s"],
            a["p50"],
            a["p99"],
            a["p99_9"],
            a["max"],
            p["buffered_ack_ms"]["p99"],
            p["buffered_ack_ms"]["max"],
            p["buffered_positions"],
            p["server_cpu_s_per_s"],
            p["server_cpu_s_per_1k_fixes"],
            p["server_rss_max_mib"],
        ));
    }
    let e = &r["exit_to_push"];
    s.push_str(&format!(
        "\nExit → push at the fake FCM (scheduled send of the fix the push names → push accepted): {} alarms pushed, p50 {} ms, p99 {} ms, max {} ms.\n\n",
        e["alarms_pushed"], e["ms"]["p50"], e["ms"]["p99"], e["ms"]["max"]
    ));
    let v = &r["verification"];
    s.push_str(&format!(
        "Database check: {} fixes taken, {} sent and answered, {} stored; **{} answered but not stored**, {} sent but not stored, {} still buffered at the end. {} wearers walked out: {} zone-exit alarms, {} duplicates, {} without an alarm, {} for wearers who stayed. Other alarms: {}.\n\n",
        v["fixes_generated"], v["fixes_acked"], v["fixes_stored"], v["acked_but_not_stored"], v["sent_but_not_stored"], v["fixes_still_buffered_at_end"],
        v["leavers"], v["zone_exit_alarms"], v["duplicate_zone_exit_alarms"], v["leavers_without_an_alarm"], v["zone_exit_alarms_for_wearers_who_stayed"], v["other_alarms_by_kind"]
    ));
    s.push_str(&format!("Counters: {}\n\nSummary: {}\n", r["counters"], r["summary"]));
    s
}
