//! The worst day, from outside: the database goes away under load and comes back. Devices
//! stream fixes and press SOS from several clients; while the database is away trygg answers
//! 503 with `Retry-After` within seconds (no hang, no crash); once it is back trygg recovers by
//! itself within seconds; every acknowledged fix and alarm is in the database and no alarm is
//! raised twice. PostgreSQL: a throwaway cluster this test starts with `initdb`/`pg_ctl` on a
//! free port is stopped (`pg_ctl stop -m fast`) for ~5 s; SQLite: another connection holds
//! `begin exclusive` for 10 s. Each scenario is bounded well under a minute.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Trygg, fix_at, register_worn_device};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, SqliteConnection};
use trygg_core::{DeviceId, TenantId};
use trygg_store::testing::TestDb;
use trygg_store::{AlarmFilter, ConnectOptions, Store};

const DEVICE: &str = "worst-day-watch";
const CLIENTS: i64 = 4;
const FIXES_PER_REQUEST: i64 = 5;
/// No answer may take longer than this, outage or not: a few seconds, not a hang.
const LONGEST_ANSWER: Duration = Duration::from_secs(8);

/// One request and its answer (`status` 0: no answer at all).
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    took: Duration,
    status: u16,
    retry_after: bool,
}

#[derive(Default)]
struct Load {
    stop: AtomicBool,
    acked_fixes: Mutex<HashSet<i64>>,
    acked_sos: Mutex<HashSet<i64>>,
    sent: Mutex<Vec<Sent>>,
}

impl Load {
    fn record(&self, at: Instant, resp: Result<reqwest::Response, reqwest::Error>) -> u16 {
        let took = at.elapsed();
        let (status, retry_after) = match &resp {
            Ok(r) => (r.status().as_u16(), r.headers().contains_key("retry-after")),
            Err(_) => (0, false),
        };
        self.sent.lock().unwrap().push(Sent { at, took, status, retry_after });
        status
    }
}

/// Starts `CLIENTS` fix streams and one SOS presser against `server`.
fn start_load(server: &Trygg, token: &str, load: &Arc<Load>) -> Vec<tokio::task::JoinHandle<()>> {
    let base_ms = chrono::Utc::now().timestamp_millis() - 120_000;
    let sos_base = chrono::Utc::now() - chrono::TimeDelta::seconds(60);
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (url, token, load) = (server.url("/api/v1/ingest/positions"), token.to_owned(), load.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut request = 0;
            while !load.stop.load(Ordering::SeqCst) {
                let seqs: Vec<i64> =
                    (0..FIXES_PER_REQUEST).map(|i| (request * CLIENTS + client) * FIXES_PER_REQUEST + i).collect();
                let body = json!({ "device": DEVICE, "fixes": seqs.iter().map(|s| fix_at(base_ms, *s)).collect::<Vec<_>>() });
                let at = Instant::now();
                let resp = http.post(&url).bearer_auth(&token).json(&body).send().await;
                if load.record(at, resp) == 200 {
                    load.acked_fixes.lock().unwrap().extend(seqs);
                }
                request += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    let (url, token, load) = (server.url("/api/v1/ingest/alarms"), token.to_owned(), load.clone());
    tasks.push(tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let mut n = 0;
        while !load.stop.load(Ordering::SeqCst) {
            let time = sos_base + chrono::TimeDelta::milliseconds(n);
            let body = json!({ "device": DEVICE, "kind": "sos", "time": time });
            let at = Instant::now();
            let resp = http.post(&url).bearer_auth(&token).json(&body).send().await;
            if matches!(load.record(at, resp), 200 | 201) {
                load.acked_sos.lock().unwrap().insert(time.timestamp_millis());
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }));
    tasks
}

/// What the devices saw around an outage from `down` to `up`.
struct Figures {
    /// From the outage's start to the first 503.
    first_503: Duration,
    /// The longest any request sent during the outage waited for its answer.
    slowest_during: Duration,
    /// From the database's return to the first 2xx completed after it.
    recovery: Duration,
    refused: usize,
}

fn figures(load: &Load, down: Instant, up: Instant) -> Figures {
    let sent = load.sent.lock().unwrap().clone();
    for s in &sent {
        assert!(s.status != 0, "every request is answered: {s:?}");
        assert!(s.took <= LONGEST_ANSWER, "a request waited {:?} for its answer", s.took);
        assert!([200, 201, 503].contains(&s.status), "unexpected answer {s:?}");
        if s.status == 503 {
            assert!(s.retry_after, "a 503 carries Retry-After");
        }
    }
    let first_503 = sent
        .iter()
        .filter(|s| s.status == 503 && s.at + s.took >= down)
        .map(|s| s.at + s.took - down)
        .min()
        .expect("requests were refused while the database was away");
    let slowest_during =
        sent.iter().filter(|s| s.at >= down && s.at < up).map(|s| s.took).max().unwrap_or_default();
    let recovery = sent
        .iter()
        .filter(|s| (200..300).contains(&s.status) && s.at + s.took >= up)
        .map(|s| s.at + s.took - up)
        .min()
        .expect("requests succeed again after the database is back");
    let refused = sent.iter().filter(|s| s.status == 503).count();
    Figures { first_503, slowest_during, recovery, refused }
}

/// Everything acknowledged is stored; every stored SOS is raised or joined exactly once.
async fn nothing_acknowledged_lost_nothing_raised_twice(store: &Arc<dyn Store>, tenant: &str, load: &Load) {
    let device = DeviceId::parse(DEVICE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !store.pending_device_alarms().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "device alarms left unhandled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored: HashSet<i64> = store
        .recent_fixes(&device, 10_000_000)
        .await
        .unwrap()
        .iter()
        .map(|f| f.fix.time.timestamp_millis())
        .collect();
    let acked = load.acked_fixes.lock().unwrap().clone();
    // Fix times are base + seq. Seq 0 (client 0's first fix, sent before the outage) is
    // acknowledged and the earliest, so the earliest stored time is the base.
    assert!(acked.contains(&0));
    let base_ms = *stored.iter().min().expect("fixes were stored");
    let lost: Vec<_> = acked.iter().filter(|s| !stored.contains(&(base_ms + **s))).take(5).collect();
    assert!(lost.is_empty(), "acknowledged fixes lost, e.g. seq {lost:?}");
    let stored_sos: HashSet<i64> =
        store.device_alarms(&device).await.unwrap().iter().map(|a| a.time.timestamp_millis()).collect();
    let acked_sos = load.acked_sos.lock().unwrap().clone();
    assert!(acked_sos.is_subset(&stored_sos), "every acknowledged SOS is stored");
    let tenant = TenantId::parse(tenant).unwrap();
    let (mut raised, mut handled) = (0, 0);
    for alarm in store.alarms(tenant, &AlarmFilter { limit: 1000, ..AlarmFilter::default() }).await.unwrap() {
        for e in store.alarm_events(tenant, alarm.id).await.unwrap() {
            match e.event.kind.as_str() {
                "raised" => (raised, handled) = (raised + 1, handled + 1),
                "repeated" => handled += 1,
                _ => {}
            }
        }
    }
    assert_eq!(raised, 1, "one SOS alarm; later presses join it");
    assert_eq!(handled, stored_sos.len(), "each stored SOS raised or joined exactly once");
    eprintln!(
        "{} fixes and {} SOS acknowledged, all stored; {} SOS stored, each handled once",
        acked.len(),
        acked_sos.len(),
        stored_sos.len()
    );
}

async fn finish(server: Trygg, load: &Arc<Load>, clients: Vec<tokio::task::JoinHandle<()>>) {
    load.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert!(server.terminate().success(), "trygg stops cleanly after the outage");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a throwaway cluster.

/// A PostgreSQL cluster in a temporary directory, stopped (immediately) when dropped. As root,
/// `initdb` refuses to run: the cluster then belongs to, and runs as, the `postgres` user.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = Command::new("id").arg("-u").output().unwrap().stdout.starts_with(b"0\n");
        if as_postgres {
            let ok =
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(ok.success(), "chown the cluster's directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Self { bin, dir, port, as_postgres };
        let data = cluster.data();
        cluster.run("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
        cluster.pg_ctl_start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let tool = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&tool);
            c
        } else {
            Command::new(&tool)
        };
        let out = cmd.args(args).current_dir(self.dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            tool.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl_start(&self) {
        let (data, log) = (self.data(), self.dir.path().join("pg.log").display().to_string());
        let sockets = self.dir.path().display().to_string();
        let options = format!("-p {} -k {sockets} -c listen_addresses=127.0.0.1", self.port);
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &options, "-w", "start"]);
    }

    fn pg_ctl_stop(&self, mode: &str) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"]);
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let tool = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&tool);
            c
        } else {
            Command::new(&tool)
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "stop"]).current_dir(self.path()).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_load_answers_503_then_recovers_by_itself_losing_nothing() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let (tenant, token) = register_worn_device(&url, "Skövde", DEVICE);
    let server = Trygg::start(&url, &[]);
    let load = Arc::new(Load::default());
    let clients = start_load(&server, &token, &load);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let down = Instant::now();
    cluster.pg_ctl_stop("fast");
    let stopped_in = down.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["failing"][0], "database", "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.pg_ctl_start();
    let up = Instant::now();
    // Let the devices find out.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut server = server;
    assert!(server.exited().is_none(), "trygg rides out a database outage without exiting");
    finish(server, &load, clients).await;

    let f = figures(&load, down, up);
    eprintln!(
        "PostgreSQL stopped (took {stopped_in:?}) for {:?}: first 503 after {:?}, slowest answer during the outage {:?}, \
         {} requests refused; first 2xx {:?} after the cluster was back",
        up - down,
        f.first_503,
        f.slowest_during,
        f.refused,
        f.recovery
    );
    assert!(f.recovery < Duration::from_secs(8), "recovered only after {:?}", f.recovery);
    let store = trygg_store::connect(&url, &ConnectOptions::default()).await.unwrap();
    nothing_acknowledged_lost_nothing_raised_twice(&store, &tenant, &load).await;
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// SQLite: another connection holds the write lock.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_for_ten_seconds_answers_503_then_recovers_losing_nothing() {
    let db = TestDb::sqlite();
    let (tenant, token) = register_worn_device(db.url(), "Skövde", DEVICE);
    let mut server = Trygg::start(db.url(), &[]);
    let load = Arc::new(Load::default());
    let clients = start_load(&server, &token, &load);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut locker = SqliteConnection::connect(db.url()).await.unwrap();
    locker.execute("begin exclusive").await.unwrap();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    locker.execute("rollback").await.unwrap();
    let up = Instant::now();
    locker.close().await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(server.exited().is_none(), "trygg rides out a locked database without exiting");
    finish(server, &load, clients).await;

    let f = figures(&load, down, up);
    eprintln!(
        "SQLite locked for {:?}: first 503 after {:?}, slowest answer during the lock {:?}, {} requests refused; \
         first 2xx {:?} after the lock was released",
        up - down,
        f.first_503,
        f.slowest_during,
        f.refused,
        f.recovery
    );
    assert!(f.recovery < Duration::from_secs(6), "recovered only after {:?}", f.recovery);
    let store = db.store().await;
    nothing_acknowledged_lost_nothing_raised_twice(&store, &tenant, &load).await;
    store.close().await;
}
