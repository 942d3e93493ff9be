//! Ingest throughput, end to end over HTTP, against a real `trygg serve` process.
//!
//! Simulates many watches each posting one fix per request (what a watch does every 1–10
//! minutes, compressed), through a pool of concurrent connections, and measures fixes/s, the
//! request latency (receive → commit → ack, as the device sees it) and the server's CPU time.
//! The same run measures a Traccar-style peer: the same server with group commit disabled
//! (`--commit-max-rows 1 --commit-max-delay-ms 0`), i.e. one transaction per fix. Both
//! backends, same machine, same minute: the ratio is the number to read.
//!
//! ```text
//! ingest-bench --trygg target/release/trygg --seconds 20 --out loadtest/results/ingest.json
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use trygg_core::DeviceId;
use trygg_loadtest::server::{Server, machine, process_cpu_seconds};
use trygg_store::{ConnectOptions, NewDevice, Protocol, token};

struct Args {
    trygg: String,
    seconds: u64,
    clients: usize,
    devices: usize,
    out: String,
    pg_admin: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        trygg: "target/release/trygg".into(),
        seconds: 20,
        clients: 64,
        devices: 2000,
        out: "loadtest/results/ingest.json".into(),
        pg_admin: "postgres://postgres@127.0.0.1:5432/test".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--trygg" => a.trygg = value,
            "--seconds" => a.seconds = value.parse()?,
            "--clients" => a.clients = value.parse()?,
            "--devices" => a.devices = value.parse()?,
            "--out" => a.out = value,
            "--pg-admin" => a.pg_admin = value,
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

/// One measured configuration.
#[derive(Debug, serde::Serialize)]
struct Run {
    backend: &'static str,
    mode: &'static str,
    fixes: u64,
    errors: u64,
    seconds: f64,
    fixes_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    server_cpu_s_per_1k: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let mut runs = Vec::new();
    for backend in ["sqlite", "postgres"] {
        for (mode, extra) in [
            ("group commit (trygg)", &[][..]),
            (
                "one transaction per fix (Traccar-style)",
                &["--commit-max-rows", "1", "--commit-max-delay-ms", "0"][..],
            ),
        ] {
            let db = Database::create(backend, &args.pg_admin).await?;
            let tokens = seed(&db.url, args.devices).await?;
            eprintln!(
                "== {backend}, {mode}: {} devices, {} connections, {} s",
                args.devices, args.clients, args.seconds
            );
            let mut server = Server::start(&args.trygg, &db.url, None, |c| {
                c.args(extra)
                    .env("TRYGG_LOG", "error")
                    // Required by `serve` for the staff/caseworker API, which this benchmark does not use.
                    .env("TRYGG_JWT_SECRET", "ingest-benchmark-signing-key-not-secret");
            })?;
            let run = drive(&server.base, &tokens, &args, backend, mode, server.pid()).await?;
            eprintln!(
                "   {:.0} fixes/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, server CPU {:.3} s per 1k fixes",
                run.fixes_per_sec, run.p50_ms, run.p99_ms, run.errors, run.server_cpu_s_per_1k
            );
            server.stop();
            db.drop_it(&args.pg_admin).await;
            runs.push(run);
        }
    }
    let ratio = |backend: &str| {
        let of = |m: &str| {
            runs.iter().find(|r| r.backend == backend && r.mode.starts_with(m)).map(|r| r.fixes_per_sec)
        };
        of("group").zip(of("one")).map(|(g, o)| g / o).unwrap_or(f64::NAN)
    };
    let ratios: BTreeMap<&str, f64> = [("sqlite", ratio("sqlite")), ("postgres", ratio("postgres"))].into();
    let report = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": machine(),
        "seconds_per_run": args.seconds,
        "clients": args.clients,
        "devices": args.devices,
        "fixes_per_request": 1,
        "runs": runs,
        "group_commit_speedup": ratios,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("speed-up of group commit over one transaction per fix: {ratios:?}; written to {}", args.out);
    Ok(())
}

/// Fires requests from `clients` connections for the configured time.
async fn drive(
    base: &str,
    tokens: &[(String, String)],
    args: &Args,
    backend: &'static str,
    mode: &'static str,
    pid: u32,
) -> anyhow::Result<Run> {
    let url = format!("{base}/api/v1/ingest/positions");
    let tokens = Arc::new(tokens.to_vec());
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = process_cpu_seconds(pid)?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|c| {
            let (url, tokens, stop) = (url.clone(), tokens.clone(), stop.clone());
            let clients = args.clients;
            tokio::spawn(async move {
                let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                let now_ms = chrono::Utc::now().timestamp_millis();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Device c, c+clients, c+2·clients, …: each connection speaks for many watches.
                    let (device, token) = &tokens[(c + n * clients) % tokens.len()];
                    // A unique time per request keeps every fix new (no duplicate shortcut).
                    let time = chrono::DateTime::from_timestamp_millis(now_ms - 60_000 + (n * clients + c) as i64).expect("time");
                    let body = json!({ "device": device, "fixes": [{ "time": time, "lat": 58.39, "lon": 13.84, "accuracy_m": 8.0, "battery_pct": 80 }] });
                    let t = Instant::now();
                    match http.post(&url).bearer_auth(token).json(&body).send().await {
                        Ok(r) if r.status().is_success() => latencies.push(t.elapsed().as_micros() as u32),
                        _ => errors += 1,
                    }
                    n += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds(pid)? - cpu_before;
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map_or(f64::NAN, |us| f64::from(*us) / 1000.0)
    };
    let fixes = latencies.len() as u64;
    Ok(Run {
        backend,
        mode,
        fixes,
        errors,
        seconds,
        fixes_per_sec: fixes as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        server_cpu_s_per_1k: cpu / fixes.max(1) as f64 * 1000.0,
    })
}

/// Registers `n` native devices in one tenant; returns (device id, token) pairs.
async fn seed(url: &str, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let store = trygg_store::connect(url, &ConnectOptions::default()).await?;
    let tenant = store.create_tenant("Benchmark kommun").await?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bench-{i:05}");
        let secret = token::generate();
        let new = NewDevice {
            id: DeviceId::parse(&id)?,
            tenant,
            wearer: None,
            protocol: Protocol::Native,
            token_hash: Some(token::hash(&secret)),
        };
        store.register_device(&new).await?;
        out.push((id, secret));
    }
    store.close().await;
    Ok(out)
}

struct Database {
    url: String,
    pg_name: Option<String>,
    _dir: tempfile::TempDir,
}

impl Database {
    async fn create(backend: &str, pg_admin: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        if backend == "sqlite" {
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            return Ok(Self { url, pg_name: None, _dir: dir });
        }
        let name = format!("trygg_bench_{}", std::process::id());
        psql(pg_admin, &format!("drop database if exists {name} with (force)")).await?;
        psql(pg_admin, &format!("create database {name}")).await?;
        let base = pg_admin.rsplit_once('/').map_or(pg_admin, |(b, _)| b);
        Ok(Self { url: format!("{base}/{name}"), pg_name: Some(name), _dir: dir })
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
