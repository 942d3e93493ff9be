//! One process with every part: store, group committer, ingest routes, the alarm engine, the push
//! worker, the caseworker/staff API, health and metrics, and the maintenance task (fix
//! retention, zone index refresh).
//!
//! [`Server::build`] connects the database (applying migrations) and binds the listener before
//! returning, so a caller that asked for port 0 can read the real port back and a bad address
//! fails before anything runs. [`Server::run`] serves until the shutdown future resolves, then
//! stops accepting, lets in-flight requests finish (bounded by the drain timeout), waits for the
//! committer to commit what it holds and for the engine to process what it was handed, and
//! closes the database.
//!
//! Every long-running task is watched by the [`Supervisor`](crate::supervise): `/readyz` shows
//! each one's health, and a task of the alarm path that ends or stalls makes [`Server::run`]
//! return an error at once (crash-only: the process exits non-zero and is restarted).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use trygg_alarms::{Engine, EngineProbe};
use trygg_api::{ApiState, Tokens, ZoneIndexes};
use trygg_ingest::{
    AlarmPath, CommitProbe, DeviceIngest, DeviceLinks, DeviceListeners, DeviceMetrics, FixCommitter,
    HeardWriter, Ingest, IngestMetrics, LimitedListener, ReportIntervals,
};
use trygg_push::{FcmClient, PushMetrics, Worker};
use trygg_store::Store;

use crate::config::{ServeConfig, TestFault, redact};
use crate::supervise::{Supervisor, Watched};

/// A server that has bound its port and connected its database, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    app: Router,
    store: Arc<dyn Store>,
    committer: JoinHandle<()>,
    committer_probe: CommitProbe,
    engine: JoinHandle<()>,
    engine_probe: EngineProbe,
    /// Set once the engine task has ended; ingest refuses device alarms from then on.
    engine_down: Arc<std::sync::atomic::AtomicBool>,
    supervisor: Arc<Supervisor>,
    failures: tokio::sync::mpsc::UnboundedReceiver<String>,
    push: Worker,
    /// The watch, GT06 and OsmAnd listeners, bound.
    devices: DeviceListeners,
    /// Flipped to true when shutdown starts, so live streams end instead of holding the drain.
    stopping: tokio::sync::watch::Sender<bool>,
    api: ApiState,
    config: ServeConfig,
}

#[derive(Debug, Clone)]
struct Ops {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    /// Whether FCM credentials are configured (shown in `/readyz`).
    push_on: bool,
    /// The supervised tasks' health (shown in `/readyz`).
    supervisor: Arc<Supervisor>,
}

/// Commits queued for the alarm engine before ingest stops handing them over (the engine then
/// catches up from the database, which costs far more than the queue: it reads the fixes back).
/// 100,000 one-fix commits are ten seconds of M3's 10,000 fixes/s, some 25 MB at most: room to
/// ride out a pause of the engine's database writes without falling back on the catch-up.
const ENGINE_QUEUE: usize = 100_000;

impl Server {
    /// Connects, migrates, binds, and starts the alarm engine (which first recovers whatever it
    /// had not handled before a restart).
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        let store = trygg_store::connect(&config.database_url, &config.connect)
            .await
            .with_context(|| format!("opening database {}", redact(&config.database_url)))?;
        let listener = trygg_ingest::listen(config.http_bind)
            .with_context(|| format!("binding HTTP on {}", config.http_bind))?;

        let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
        let links = DeviceLinks::default();
        let report_intervals = ReportIntervals::default();
        let api = ApiState {
            devices: links.clone(),
            accounts: Default::default(),
            logins: Arc::new(trygg_api::login_guard::LoginGuard::new(config.api.login_limits)),
            store: store.clone(),
            tokens: Arc::new(Tokens::new(&config.api.jwt_secret, config.api.token_ttl)?),
            zones: Arc::new(ZoneIndexes::default()),
            live_poll: trygg_api::DEFAULT_LIVE_POLL,
            stopping: stopping_rx,
        };
        if let Some(admin) = &config.api.bootstrap_admin {
            admin.ensure(&store).await.context("creating the bootstrap admin")?;
        }
        api.zones.rebuild_all(store.as_ref()).await.context("loading the zone indexes")?;
        let mut registry = Registry::default();
        let metrics = IngestMetrics::register(&mut registry);
        let push_on = config.push.key.is_some();
        let fcm = match &config.push.key {
            Some(key) => Some(FcmClient::from_key(key.clone(), &config.push.endpoint)?),
            None => {
                tracing::warn!(
                    "Push is off: TRYGG_FCM_CREDENTIALS is not set; alarms escalate to the alarm centre"
                );
                None
            }
        };
        let push =
            Worker::new(store.clone(), fcm, config.push.worker.clone(), PushMetrics::register(&mut registry));
        let (sink, engine) = Engine::load(store.clone(), api.zones.clone())
            .await
            .context("loading the alarm engine's zone states")?
            .wake_on_raise(push.waker())
            .command_devices(links.clone(), report_intervals.clone())
            .spawn(ENGINE_QUEUE);

        let (committer_handle, committer) =
            FixCommitter::start(store.clone(), config.commit, metrics.clone());
        let (supervisor, failures) = Supervisor::new(config.stall_after, &mut registry);
        let committer_probe = committer_handle.probe();
        let engine_probe = sink.probe();
        // An alarm is acknowledged only while the engine takes work: its queue is open and the
        // supervisor has not seen its task end.
        let engine_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let alarm_path = {
            let (probe, down) = (engine_probe.clone(), engine_down.clone());
            AlarmPath::new(move || !probe.is_closed() && !down.load(std::sync::atomic::Ordering::SeqCst))
        };
        let ingest = Ingest {
            store: store.clone(),
            committer: committer_handle,
            sink: Arc::new(sink),
            metrics,
            limits: config.limits,
            policy: config.policy,
            timeout: config.ingest_timeout,
            alarm_path,
            report_intervals,
        };
        let device_ingest = DeviceIngest {
            ingest: ingest.clone(),
            links,
            metrics: DeviceMetrics::register(&mut registry),
            config: config.devices.config,
            heard: HeardWriter::start(store.clone()),
        };
        let devices = DeviceListeners::bind(config.devices.binds, device_ingest).await?;
        let ops = Ops {
            store: store.clone(),
            registry: Arc::new(registry),
            push_on,
            supervisor: supervisor.clone(),
        };
        let app = Router::new()
            .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .with_state(ops)
            .merge(trygg_ingest::router(ingest))
            .merge(trygg_api::router(api.clone()))
            .merge(crate::console::router(&config.base_map));
        Ok(Self {
            listener,
            app,
            store,
            committer,
            committer_probe,
            engine,
            engine_probe,
            engine_down,
            supervisor,
            failures,
            push,
            devices,
            stopping,
            api,
            config,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The addresses the device listeners bound, by protocol (`watch`, `gt06`, `osmand`).
    pub fn device_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        self.devices.local_addrs()
    }

    /// Serves until `shutdown` resolves, then drains and closes. Returns an error, without
    /// draining, when a task of the alarm path ends or stalls (crash-only: the caller exits
    /// non-zero, the service manager restarts trygg, recovery replays from the database).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self {
            listener,
            app,
            store,
            committer,
            committer_probe,
            engine,
            engine_probe,
            engine_down,
            supervisor,
            mut failures,
            push,
            devices,
            stopping,
            api,
            config,
        } = self;
        let devices = tokio::spawn(devices.run(stopping.subscribe()));
        let (stop_push, push_stopped) = tokio::sync::oneshot::channel::<()>();
        let pusher = tokio::spawn(push.run(async {
            let _ = push_stopped.await;
        }));
        let engine_abort = engine.abort_handle();
        let committer = supervisor.watch(
            "committer",
            true,
            committer,
            Some(Box::new(move || (committer_probe.queued_fixes(), committer_probe.groups()))),
        );
        let engine = supervisor.watch(
            "engine",
            true,
            tokio::spawn(async move {
                let ended = engine.await;
                // Before the supervisor hears of it: no alarm is acknowledged from here on.
                engine_down.store(true, std::sync::atomic::Ordering::SeqCst);
                if let Err(e) = ended
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            }),
            Some(Box::new(move || (engine_probe.queued(), engine_probe.passes()))),
        );
        let pusher = supervisor.watch("push", true, pusher, None);
        let maintenance = tokio::spawn(maintain(api, config.api.purge_interval));
        let stop_maintenance = maintenance.abort_handle();
        supervisor.watch("maintenance", false, maintenance, None);
        let sampler = tokio::spawn(supervisor.clone().sample());
        if let Some(TestFault::EngineExitAfter(after)) = config.test_fault {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                tracing::warn!("TEST FAULT (TRYGG_TEST_FAULT): ending the alarm engine task");
                engine_abort.abort();
            });
        }
        tracing::info!(
            http = %listener.local_addr()?,
            database = %redact(&config.database_url),
            "Serving"
        );
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown_supervisor = supervisor.clone();
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let listener = LimitedListener::new(listener, config.max_http_connections)
            // Only so that `ConnectInfo<SocketAddr>` (the login limits' source address) applies.
            .tap_io(|_| {});
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("Shutdown requested: refusing new connections, draining");
            shutdown_supervisor.stop();
            stopping.send_replace(true);
            let _ = stopping_tx.send(());
        });
        let drain_timeout = config.drain_timeout;
        tokio::select! {
            served = serve => served.context("HTTP server failed")?,
            () = async move {
                if stopping_rx.await.is_ok() {
                    tokio::time::sleep(drain_timeout).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => tracing::warn!(?drain_timeout, "Drain timed out; requests still open were not acknowledged"),
            Some(failure) = failures.recv() => {
                // What ends from here on ends because the process does.
                supervisor.stop();
                tracing::error!(
                    failure,
                    "Exiting with a non-zero status: the service manager restarts trygg and recovery \
                     replays what was not handled from the database"
                );
                anyhow::bail!("{failure}: the alarm path is broken; exiting so that trygg is restarted");
            }
        }
        // Device connections finish the frame they are on (commit, reply), then close.
        if tokio::time::timeout(drain_timeout, devices).await.is_err() {
            tracing::warn!("Device connections did not close in time; unacknowledged frames will be resent");
        }
        supervisor.stop();
        sampler.abort();
        // The routes held the committer's handles; with them gone it commits what it holds and ends.
        if !ended_within(drain_timeout, &committer).await {
            tracing::warn!("Committer did not finish in time; uncommitted fixes were never acknowledged");
        }
        // With ingest gone the engine's queue closes; what it does not finish, it recovers at start.
        if !ended_within(drain_timeout, &engine).await {
            tracing::warn!(
                "Alarm engine did not finish in time; it resumes from the database at the next start"
            );
        }
        // Unsent pushes stay in the outbox; their claims lapse and the next start sends them.
        let _ = stop_push.send(());
        if !ended_within(drain_timeout, &pusher).await {
            tracing::warn!("Push worker did not stop in time; unsent pushes go out at the next start");
        }
        stop_maintenance.abort();
        store.close().await;
        tracing::info!("Stopped");
        Ok(())
    }
}

async fn ended_within(limit: std::time::Duration, task: &Watched) -> bool {
    tokio::time::timeout(limit, task.ended()).await.is_ok()
}

/// Every `every`: purge fixes past retention, and rebuild the zone indexes so consents that
/// lapsed by their end date stop alarming. Runs until aborted.
async fn maintain(api: ApiState, every: std::time::Duration) {
    // The indexes were just built; the first purge can wait one interval.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = trygg_api::retention::purge_once(api.store.as_ref()).await {
            tracing::warn!(error = %e, "Purging fixes failed; retrying at the next run");
        }
        if let Err(e) = api.zones.rebuild_all(api.store.as_ref()).await {
            tracing::warn!(error = %e, "Refreshing the zone indexes failed; retrying at the next run");
        }
    }
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed by this call, not
/// when the future is first polled: call it before announcing the server, so a signal sent the
/// moment the address is printed stops it gracefully instead of killing it.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut terminate, mut interrupt) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), ops.store.ping()).await;
    // Push being off does not make trygg unready (alarms still reach staff lists and the alarm
    // centre), but it is said here so an operator sees it.
    let push = if ops.push_on { "on" } else { "off: TRYGG_FCM_CREDENTIALS not set" };
    let database = match ping {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Readiness check: database failed");
            "error"
        }
        Err(_) => "timeout",
    };
    let (mut failing, tasks) = ops.supervisor.report();
    if database != "ok" {
        failing.insert(0, "database");
    }
    let (status, ready) = if failing.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        status,
        Json(
            json!({ "status": ready, "failing": failing, "database": database, "push": push, "tasks": tasks }),
        ),
    )
}

async fn metrics_text(State(ops): State<Ops>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &ops.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(e) => {
            tracing::error!(error = %e, "Encoding metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], String::new())
        }
    }
}
