//! The database goes away under ingest, and comes back: every device request is answered
//! within a few seconds (503 with `Retry-After`, nothing stored), none hangs, and once the
//! database is back requests succeed again without a restart. On SQLite the outage is another
//! connection holding the write lock; on PostgreSQL another session locking the tables ingest
//! writes to, or a proxy in front of the server either refuses
//! and cuts connections (a stopped server) or keeps them open and silent (a hung server, a
//! network dropping packets).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;
use trygg_core::DeviceId;
use trygg_ingest::{AlarmPath, IngestMetrics, Limits, router};
use trygg_store::testing::TestDb;
use trygg_store::{ConnectOptions, Protocol, Store, token};

const TOKEN: &str = "device-secret";
/// Concurrent requests sent while the database is away.
const REQUESTS: usize = 8;
/// The database timeout the store is configured with for these tests.
const DB_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a request may take to be refused while the database is away: a few seconds, not
/// one database timeout per request queued before it.
const ANSWER_WITHIN: Duration = Duration::from_secs(4);

struct App {
    store: Arc<dyn Store>,
    router: Router,
}

async fn app(url: &str) -> App {
    app_with(url, AlarmPath::always()).await
}

async fn app_with(url: &str, alarm_path: AlarmPath) -> App {
    let options = ConnectOptions {
        busy_timeout: DB_TIMEOUT,
        statement_timeout: DB_TIMEOUT,
        ..ConnectOptions::default()
    };
    let store = trygg_store::connect(url, &options).await.unwrap();
    let tenant = store.create_tenant("Lerums kommun").await.unwrap();
    common::register(&*store, tenant, "d1", Protocol::Native, Some(token::hash(TOKEN))).await;
    let metrics = IngestMetrics::register(&mut Registry::default());
    let ingest = common::ingest(store.clone(), metrics, Limits::default(), alarm_path);
    App { store, router: router(ingest) }
}

/// What a device got back, and after how long.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    took: Duration,
}

impl App {
    async fn post(&self, path: &str, body: Value) -> Answer {
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let started = Instant::now();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let retry_after = resp.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let status = resp.status();
        let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
        Answer { status, retry_after, took: started.elapsed() }
    }

    /// A positions request of two fixes, `seq` identifying them.
    async fn positions(&self, base_ms: i64, seq: i64) -> Answer {
        let fix = |ms: i64| {
            let time = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            json!({ "time": time.to_rfc3339(), "lat": 57.78, "lon": 12.3, "accuracy_m": 9.0 })
        };
        let body = json!({ "device": "d1", "fixes": [fix(base_ms + seq * 2), fix(base_ms + seq * 2 + 1)] });
        self.post("/api/v1/ingest/positions", body).await
    }

    async fn sos(&self, seq: i64) -> Answer {
        let time = Utc::now() - chrono::TimeDelta::seconds(seq);
        self.post("/api/v1/ingest/alarms", json!({ "device": "d1", "kind": "sos", "time": time })).await
    }

    async fn stored(&self) -> usize {
        self.store.recent_fixes(&DeviceId::parse("d1").unwrap(), 100_000).await.unwrap().len()
    }
}

/// Sends `REQUESTS` positions requests and one SOS at once; every one must be refused with 503
/// and `Retry-After` within [`ANSWER_WITHIN`].
async fn all_refused_promptly(app: &Arc<App>, base_ms: i64, first_seq: i64) -> Duration {
    let mut requests = Vec::new();
    for i in 0..REQUESTS {
        let app = app.clone();
        requests.push(tokio::spawn(async move { app.positions(base_ms, first_seq + i as i64).await }));
    }
    let sos = {
        let app = app.clone();
        tokio::spawn(async move { app.sos(1).await })
    };
    requests.push(sos);
    let mut slowest = Duration::ZERO;
    for r in requests {
        let answer =
            tokio::time::timeout(Duration::from_secs(60), r).await.expect("no request hangs").unwrap();
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert!(answer.retry_after.is_some(), "a 503 says when to retry: {answer:?}");
        assert!(answer.took <= ANSWER_WITHIN, "refused only after {:?}", answer.took);
        slowest = slowest.max(answer.took);
    }
    slowest
}

/// After the database is back: the first success comes within a few seconds, and then every
/// request succeeds. Returns how long the first success took.
async fn recovers(app: &App, base_ms: i64, seq: i64) -> Duration {
    let back = Instant::now();
    loop {
        let answer = app.positions(base_ms, seq).await;
        if answer.status == StatusCode::OK {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(10), "not recovered 10 s after the database came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = back.elapsed();
    for i in 1..=REQUESTS as i64 {
        assert_eq!(app.positions(base_ms, seq + i).await.status, StatusCode::OK);
    }
    assert_eq!(app.sos(100).await.status, StatusCode::CREATED);
    recovered
}

#[tokio::test]
async fn a_device_alarm_is_stored_but_not_acknowledged_while_alarm_handling_is_down() {
    let db = TestDb::sqlite();
    let app = app_with(db.url(), AlarmPath::new(|| false)).await;
    let answer = app.sos(1).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert!(answer.retry_after.is_some());
    let stored = app.store.device_alarms(&DeviceId::parse("d1").unwrap()).await.unwrap();
    assert_eq!(stored.len(), 1, "stored for the restarted engine to raise");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_by_another_connection_answers_503_promptly_and_recovers() {
    let db = TestDb::sqlite();
    let app = Arc::new(app(db.url()).await);
    let base_ms = Utc::now().timestamp_millis() - 60_000;
    assert_eq!(app.positions(base_ms, 0).await.status, StatusCode::OK);

    let mut locker = SqliteConnection::connect(db.url()).await.unwrap();
    locker.execute("begin exclusive").await.unwrap();
    let slowest = all_refused_promptly(&app, base_ms, 1).await;
    locker.execute("rollback").await.unwrap();
    let recovered = recovers(&app, base_ms, 100).await;
    eprintln!(
        "SQLite locked: slowest 503 after {slowest:?}; first success {recovered:?} after the lock was released"
    );
    assert_eq!(app.stored().await, 2 * (1 + 1 + REQUESTS), "what was acknowledged is stored, nothing else");
}

async fn postgres_outage_answers_503_promptly_and_recovers(outage: Mode) {
    let db = TestDb::postgres().await;
    let target: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = Proxy::start(target).await;
    let url = db.url().replace("127.0.0.1:5432", &proxy.addr.to_string());
    let app = Arc::new(app(&url).await);
    let base_ms = Utc::now().timestamp_millis() - 60_000;
    assert_eq!(app.positions(base_ms, 0).await.status, StatusCode::OK);

    proxy.set(outage);
    let slowest = all_refused_promptly(&app, base_ms, 1).await;
    proxy.set(Mode::Up);
    let recovered = recovers(&app, base_ms, 100).await;
    eprintln!(
        "PostgreSQL {outage:?}: slowest 503 after {slowest:?}; first success {recovered:?} after it came back"
    );
    assert_eq!(app.stored().await, 2 * (1 + 1 + REQUESTS), "what was acknowledged is stored, nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tables_locked_by_another_session_answers_503_promptly_and_recovers() {
    let db = TestDb::postgres().await;
    let app = Arc::new(app(db.url()).await);
    let base_ms = Utc::now().timestamp_millis() - 60_000;
    assert_eq!(app.positions(base_ms, 0).await.status, StatusCode::OK);

    // Reads go on (devices authenticate); every write of ingest waits for the lock.
    let mut locker = PgConnection::connect(db.url()).await.unwrap();
    locker.execute("begin; lock table fixes, device_alarms in exclusive mode").await.unwrap();
    let slowest = all_refused_promptly(&app, base_ms, 1).await;
    locker.execute("rollback").await.unwrap();
    let recovered = recovers(&app, base_ms, 100).await;
    eprintln!(
        "PostgreSQL locked: slowest 503 after {slowest:?}; first success {recovered:?} after the lock was released"
    );
    assert_eq!(app.stored().await, 2 * (1 + 1 + REQUESTS), "what was acknowledged is stored, nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusing_connections_answers_503_promptly_and_recovers() {
    postgres_outage_answers_503_promptly_and_recovers(Mode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_that_stops_answering_gets_503_promptly_and_recovers() {
    postgres_outage_answers_503_promptly_and_recovers(Mode::Stall).await;
}

/// What the proxy in front of PostgreSQL does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards.
    Up,
    /// Stops listening (new connections are refused) and cuts every connection: a stopped server.
    Refuse,
    /// Accepts connections and keeps them open but forwards nothing, either way: a hung server or
    /// a network that drops packets. Only the client's own timeouts end a wait.
    Stall,
}

/// A TCP proxy in front of PostgreSQL that can be taken down in either [`Mode`].
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Up);
        tokio::spawn(serve_proxy(Some(listener), addr, target, rx));
        Self { addr, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn serve_proxy(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
) {
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => {
                if mode.wait_for(|m| *m != Mode::Refuse).await.is_err() {
                    return;
                }
                TcpListener::bind(addr).await.expect("rebind the proxy's port")
            }
        };
        let watcher = mode.clone();
        loop {
            tokio::select! {
                accepted = l.accept() => {
                    let Ok((mut inbound, _)) = accepted else { continue };
                    let mut mode = watcher.clone();
                    tokio::spawn(async move {
                        if *mode.borrow() == Mode::Up {
                            let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                                _ = mode.wait_for(|m| *m != Mode::Up) => {}
                            }
                            // Stalled: hold both ends open, silent, until the mode changes again.
                            let _ = mode.wait_for(|m| *m != Mode::Stall).await;
                            drop(outbound);
                        } else {
                            let _ = mode.wait_for(|m| *m != Mode::Stall).await;
                        }
                        drop(inbound);
                    });
                }
                refuse = mode.wait_for(|m| *m == Mode::Refuse) => match refuse {
                    Ok(_) => break,
                    Err(_) => return,
                },
            }
        }
        drop(l);
    }
}
