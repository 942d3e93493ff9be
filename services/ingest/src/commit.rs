//! Group commit: many requests' fixes in one transaction.
//!
//! A transaction per fix costs a WAL sync per fix and caps ingest at a few hundred fixes a
//! second on an ordinary disk. Instead every request hands its batch to one writer task, which
//! collects batches until it has `max_rows` fixes or `max_delay` has passed since the first,
//! commits them together and only then answers each request. While its commits run (one on
//! SQLite; on PostgreSQL `in_flight`, so one group fills while another waits for its sync), new
//! batches queue up and form the next group, so under load groups grow by themselves.
//!
//! When the database is unavailable nothing waits without bound: a request waits for room in
//! the queue and for its answer only until its deadline (then it is refused, 503, and the device
//! resends), the queue holds at most `max_queued_fixes` fixes (memory stays bounded however many
//! devices keep sending), and a group commit that fails for want of a database fails its whole
//! group, and every request queued behind it, at once. Only a constraint error (one request's
//! data refused, e.g. a device deleted meanwhile) is worth retrying request by request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use trygg_store::{FixBatch, Store, StoreError};

use crate::IngestError;
use crate::metrics::IngestMetrics;

/// How fixes are grouped into commits, and how long and how much may wait.
#[derive(Debug, Clone, Copy)]
pub struct CommitConfig {
    /// Commit once this many fixes are waiting.
    pub max_rows: usize,
    /// Commit at the latest this long after the first waiting batch arrived.
    pub max_delay: Duration,
    /// Most fixes queued or being committed; a request that finds no room before its deadline
    /// is refused (503). Must be at least the largest batch a request may carry.
    pub max_queued_fixes: usize,
    /// The longest one group commit may take, measured here: a bound even when the database
    /// stops answering without closing the connection (a hung server, a silent network).
    pub commit_timeout: Duration,
    /// Most group commits running at once, where the database lets writers overlap
    /// ([`Store::parallel_writes`]: one on SQLite). A device's connection waits for its commit
    /// before its next frame, so a device's fixes still commit in order.
    pub in_flight: usize,
}

impl Default for CommitConfig {
    /// 2,000 fixes or 2 ms: the delay is small against a device's round trip over a mobile
    /// network, and large enough to gather every request that arrives while a commit is on disk.
    /// 100,000 queued fixes are a few tens of megabytes. 10 s is twice the database's own
    /// timeouts, so those normally answer first. Two commits in flight where the database
    /// lets them overlap: one fills while the other waits for its sync.
    fn default() -> Self {
        Self {
            max_rows: 2000,
            max_delay: Duration::from_millis(2),
            max_queued_fixes: 100_000,
            commit_timeout: Duration::from_secs(10),
            in_flight: 2,
        }
    }
}

/// Why a commit did not happen; cloned to every request of a failed group.
#[derive(Debug, Clone)]
enum Failure {
    Store(Arc<StoreError>),
    TimedOut,
}

type Done = oneshot::Sender<Result<u64, Failure>>;

/// Room a request holds in the queue until its fixes are committed or refused.
#[derive(Debug)]
struct Room {
    _permits: OwnedSemaphorePermit,
    fixes: i64,
    queued: Gauge,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.queued.dec_by(self.fixes);
    }
}

struct Job {
    batch: FixBatch,
    done: Done,
    _room: Room,
}

/// Where one request's answer goes, and how many fixes it sent.
struct Reply {
    fixes: usize,
    done: Done,
    _room: Room,
}

/// A handle to the writer task. Clone it freely; the task ends, after committing what it has,
/// when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct FixCommitter {
    jobs: mpsc::UnboundedSender<Job>,
    room: Arc<Semaphore>,
    max_queued: usize,
    queued: Gauge,
    groups: Arc<AtomicU64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("fixes", &self.batch.fixes.len()).finish()
    }
}

impl FixCommitter {
    /// Starts the writer task.
    pub fn start(
        store: Arc<dyn Store>,
        config: CommitConfig,
        metrics: IngestMetrics,
    ) -> (Self, JoinHandle<()>) {
        // Unbounded as a channel, bounded by the fixes its jobs hold room for.
        let (jobs, rx) = mpsc::unbounded_channel();
        let max_queued = config.max_queued_fixes.max(1);
        let groups = Arc::new(AtomicU64::new(0));
        let handle = Self {
            jobs,
            room: Arc::new(Semaphore::new(max_queued)),
            max_queued,
            queued: metrics.commit_queue_fixes(),
            groups: groups.clone(),
        };
        let task = tokio::spawn(write_loop(store, config, metrics, groups, rx));
        (handle, task)
    }

    /// Commits a batch and returns how many of its fixes were new (the rest were resends).
    /// Returns only after the commit is durable, or with an error by `deadline`: no room in the
    /// queue ([`IngestError::Busy`]), no answer in time ([`IngestError::TimedOut`]), or the
    /// database failed ([`IngestError::Storage`]). On an error the fixes may or may not be
    /// stored; the device resends, and a resend is harmless.
    pub async fn commit(&self, batch: FixBatch, deadline: Instant) -> Result<u64, IngestError> {
        let fixes = batch.fixes.len().clamp(1, self.max_queued);
        let permits = u32::try_from(fixes).unwrap_or(u32::MAX);
        let permits = tokio::time::timeout_at(deadline, self.room.clone().acquire_many_owned(permits))
            .await
            .map_err(|_| IngestError::Busy)?
            .map_err(|_| IngestError::ShuttingDown)?;
        self.queued.inc_by(fixes as i64);
        let room = Room { _permits: permits, fixes: fixes as i64, queued: self.queued.clone() };
        let (done, result) = oneshot::channel();
        self.jobs.send(Job { batch, done, _room: room }).map_err(|_| IngestError::ShuttingDown)?;
        match tokio::time::timeout_at(deadline, result).await {
            Ok(Ok(Ok(n))) => Ok(n),
            Ok(Ok(Err(Failure::Store(e)))) => Err(IngestError::Storage(e)),
            Ok(Ok(Err(Failure::TimedOut))) | Err(_) => Err(IngestError::TimedOut),
            Ok(Err(_)) => Err(IngestError::ShuttingDown),
        }
    }

    /// Fixes queued or being committed.
    pub fn queued_fixes(&self) -> usize {
        self.probe().queued_fixes()
    }

    /// A view of the writer task for its supervisor, which (unlike a handle) does not keep
    /// the task running at shutdown.
    pub fn probe(&self) -> CommitProbe {
        CommitProbe { room: self.room.clone(), max_queued: self.max_queued, groups: self.groups.clone() }
    }
}

/// What a supervisor reads of the writer task: how much waits, and a count that moves while
/// it works.
#[derive(Debug, Clone)]
pub struct CommitProbe {
    room: Arc<Semaphore>,
    max_queued: usize,
    groups: Arc<AtomicU64>,
}

impl CommitProbe {
    /// Fixes queued or being committed.
    pub fn queued_fixes(&self) -> usize {
        self.max_queued - self.room.available_permits()
    }

    /// Group commits finished so far, successful or not.
    pub fn groups(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    config: CommitConfig,
    metrics: IngestMetrics,
    groups: Arc<AtomicU64>,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let writers = config.in_flight.clamp(1, store.parallel_writes());
    let mut commits = JoinSet::new();
    loop {
        // Every writer busy: what arrives meanwhile waits in the channel and forms the next,
        // larger group.
        while commits.len() >= writers
            && let Some(done) = commits.join_next().await
        {
            after_commit(&metrics, &mut rx, done);
        }
        while let Some(done) = commits.try_join_next() {
            after_commit(&metrics, &mut rx, done);
        }
        let Some(first) = rx.recv().await else { break };
        let deadline = Instant::now() + config.max_delay;
        let mut rows = first.batch.fixes.len();
        let mut group = vec![first];
        while rows < config.max_rows {
            // `timeout_at` polls the channel before looking at the clock, so batches already
            // waiting are taken even once the deadline has passed.
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => {
                    rows += job.batch.fixes.len();
                    group.push(job);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let (store, metrics, groups) = (store.clone(), metrics.clone(), groups.clone());
        commits.spawn(async move {
            let result = commit_group(store.as_ref(), &config, &metrics, group, rows).await;
            groups.fetch_add(1, Ordering::Relaxed);
            result
        });
    }
    while let Some(done) = commits.join_next().await {
        after_commit(&metrics, &mut rx, done);
    }
    tracing::debug!("Fix committer drained and stopped");
}

/// What a finished group commit means for the writer. A commit that panicked ends the writer
/// with the same panic, so its supervisor sees the alarm path broken. A commit that failed for
/// want of a database: what waits behind it would only wait to fail the same way, so it is
/// refused now and devices hear "resend later" at once.
fn after_commit(
    metrics: &IngestMetrics,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    done: Result<Result<(), Failure>, tokio::task::JoinError>,
) {
    let failure = match done {
        Ok(Ok(())) => return,
        Ok(Err(failure)) => failure,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => return, // cancelled: only at shutdown, when the runtime drops its tasks
    };
    let mut refused = 0;
    while let Ok(job) = rx.try_recv() {
        let reply = Reply { fixes: job.batch.fixes.len(), done: job.done, _room: job._room };
        answer(metrics, reply, &Err(failure.clone()));
        refused += 1;
    }
    if refused > 0 {
        tracing::warn!(requests = refused, "Refused the requests queued behind a failed commit");
    }
}

/// Commits one group and answers its requests. Returns the failure when the database was
/// unavailable (as opposed to refusing one request's data).
async fn commit_group(
    store: &dyn Store,
    config: &CommitConfig,
    metrics: &IngestMetrics,
    group: Vec<Job>,
    rows: usize,
) -> Result<(), Failure> {
    let (batches, replies): (Vec<_>, Vec<_>) = group
        .into_iter()
        .map(|Job { batch, done, _room }| {
            let reply = Reply { fixes: batch.fixes.len(), done, _room };
            (batch, reply)
        })
        .unzip();
    let started = Instant::now();
    let result = insert(store, config, &batches).await;
    metrics.observe_commit(rows, started.elapsed());
    match result {
        Ok(inserted) => {
            for (reply, n) in replies.into_iter().zip(inserted) {
                answer(metrics, reply, &Ok(n));
            }
            Ok(())
        }
        // One request's batch must not fail the others': find it by committing each alone.
        Err(Failure::Store(e)) if e.is_constraint() && batches.len() > 1 => {
            tracing::warn!(error = %e, requests = batches.len(), "Group commit refused; committing its requests one by one");
            for (batch, reply) in batches.into_iter().zip(replies) {
                let started = Instant::now();
                let result = insert(store, config, std::slice::from_ref(&batch)).await;
                metrics.observe_commit(batch.fixes.len(), started.elapsed());
                answer(metrics, reply, &result.map(|n| n[0]));
            }
            Ok(())
        }
        Err(failure) => {
            let constraint = matches!(&failure, Failure::Store(e) if e.is_constraint());
            match &failure {
                Failure::Store(e) => {
                    tracing::error!(error = %e, fixes = rows, requests = replies.len(), "Commit failed")
                }
                Failure::TimedOut => {
                    tracing::error!(timeout = ?config.commit_timeout, fixes = rows, requests = replies.len(), "Commit timed out")
                }
            }
            for reply in replies {
                answer(metrics, reply, &Err(failure.clone()));
            }
            if constraint { Ok(()) } else { Err(failure) }
        }
    }
}

async fn insert(store: &dyn Store, config: &CommitConfig, batches: &[FixBatch]) -> Result<Vec<u64>, Failure> {
    match tokio::time::timeout(config.commit_timeout, store.insert_fixes(batches)).await {
        Ok(result) => result.map_err(|e| Failure::Store(Arc::new(e))),
        Err(_) => Err(Failure::TimedOut),
    }
}

/// Counts and answers one request, and gives its room in the queue back. A requester that went
/// away (client disconnected, deadline passed) needs no answer; its fixes are committed all
/// the same.
fn answer(metrics: &IngestMetrics, reply: Reply, result: &Result<u64, Failure>) {
    if let Ok(new) = result {
        metrics.fixes_committed(*new, reply.fixes as u64 - new);
    }
    let _ = reply.done.send(result.clone());
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use prometheus_client::registry::Registry;
    use sqlx::Connection;
    use trygg_core::{DeviceId, Fix};
    use trygg_store::testing::TestDb;
    use trygg_store::{NewDevice, NewFix, Protocol};

    use super::*;

    /// `n` fixes a millisecond apart, ending `offset_ms` before a fixed base time.
    fn batch(device: &DeviceId, n: usize, offset_ms: i64) -> FixBatch {
        let now = 1_790_000_000_000;
        let fixes = (0..n)
            .map(|i| {
                let time = chrono::DateTime::from_timestamp_millis(now - offset_ms - i as i64).unwrap();
                NewFix { fix: Fix::gps(time, 57.0, 12.0), late: false }
            })
            .collect();
        FixBatch { device: device.clone(), received_at: Utc::now(), fixes }
    }

    /// A deadline no healthy commit comes near.
    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    /// A committer on a fresh SQLite database with device `d` registered.
    struct Setup {
        _db: TestDb,
        store: Arc<dyn Store>,
        device: DeviceId,
        metrics: IngestMetrics,
        committer: FixCommitter,
        task: JoinHandle<()>,
    }

    async fn setup(max_delay: Duration) -> Setup {
        setup_on(TestDb::sqlite(), max_delay).await
    }

    async fn setup_on(db: TestDb, max_delay: Duration) -> Setup {
        let store = db.store().await;
        let tenant = store.create_tenant("t").await.unwrap();
        let device = DeviceId::parse("d").unwrap();
        let new = NewDevice {
            id: device.clone(),
            tenant,
            wearer: None,
            protocol: Protocol::Native,
            token_hash: None,
        };
        store.register_device(&new).await.unwrap();
        let metrics = IngestMetrics::register(&mut Registry::default());
        let config = CommitConfig { max_rows: 10_000, max_delay, ..CommitConfig::default() };
        let (committer, task) = FixCommitter::start(store.clone(), config, metrics.clone());
        Setup { _db: db, store, device, metrics, committer, task }
    }

    #[tokio::test]
    async fn concurrent_requests_share_commits_and_each_gets_its_own_count() {
        let Setup { _db, store, device, metrics, committer, task } = setup(Duration::from_millis(50)).await;

        let requests = (0..20).map(|r| {
            let committer = committer.clone();
            let b = batch(&device, 10, r * 100);
            tokio::spawn(async move { committer.commit(b, soon()).await.unwrap() })
        });
        let counts: Vec<u64> = futures_join(requests).await;
        assert_eq!(counts, vec![10; 20]);
        assert!(metrics.commits() < 20, "20 requests took {} commits", metrics.commits());

        // A resend of the first request is all duplicates.
        assert_eq!(committer.commit(batch(&device, 10, 0), soon()).await.unwrap_or(99), 0);
        drop(committer);
        task.await.unwrap();
        assert_eq!(store.recent_fixes(&device, 1000).await.unwrap().len(), 200);
    }

    #[tokio::test]
    async fn a_failing_batch_fails_only_its_own_request_not_the_rest_of_its_group() {
        // A long window puts both requests into one group.
        let Setup { _db, store, device, metrics, committer, .. } = setup(Duration::from_millis(200)).await;
        // The ghost device is not registered: its rows break the foreign key.
        let ghost = DeviceId::parse("ghost").unwrap();
        let (good, bad) = tokio::join!(
            committer.commit(batch(&device, 3, 0), soon()),
            committer.commit(batch(&ghost, 3, 0), soon())
        );
        assert_eq!(good.unwrap(), 3);
        assert!(matches!(bad, Err(IngestError::Storage(_))));
        assert_eq!(store.recent_fixes(&device, 10).await.unwrap().len(), 3);
        assert_eq!(metrics.commits(), 3, "one failed group commit, then one commit per request");
    }

    #[tokio::test]
    async fn a_group_failing_for_want_of_a_database_fails_at_once_not_request_by_request() {
        let Setup { _db, store, device, metrics, committer, .. } = setup(Duration::from_millis(200)).await;
        store.close().await;
        let (a, b, c) = tokio::join!(
            committer.commit(batch(&device, 3, 0), soon()),
            committer.commit(batch(&device, 3, 10), soon()),
            committer.commit(batch(&device, 3, 20), soon()),
        );
        for result in [a, b, c] {
            assert!(matches!(result, Err(IngestError::Storage(_))), "{result:?}");
        }
        assert_eq!(metrics.commits(), 1, "one failed group commit and no retries one by one");
        assert_eq!(committer.queued_fixes(), 0, "the refused requests' room is given back");
    }

    #[tokio::test]
    async fn a_request_that_finds_no_room_in_the_queue_by_its_deadline_is_refused_busy() {
        let db = TestDb::sqlite();
        let store = db.store().await;
        let device = DeviceId::parse("d").unwrap();
        let metrics = IngestMetrics::register(&mut Registry::default());
        let config = CommitConfig { max_queued_fixes: 5, ..CommitConfig::default() };
        let (committer, _task) = FixCommitter::start(store.clone(), config, metrics.clone());
        // The database is locked: the first request's five fixes stay queued.
        let mut locker = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
        sqlx::Executor::execute(&mut locker, "begin exclusive").await.unwrap();
        let first = {
            let committer = committer.clone();
            let b = batch(&device, 5, 0);
            tokio::spawn(async move { committer.commit(b, soon()).await })
        };
        while committer.queued_fixes() < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        let second =
            committer.commit(batch(&device, 1, 100), Instant::now() + Duration::from_millis(200)).await;
        assert!(matches!(second, Err(IngestError::Busy)), "{second:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        sqlx::Executor::execute(&mut locker, "rollback").await.unwrap();
        drop(first.await.unwrap());
    }

    #[tokio::test]
    async fn on_postgresql_a_group_waiting_on_a_lock_does_not_hold_up_the_next_group() {
        let Setup { _db: db, store, device, committer, .. } =
            setup_on(TestDb::postgres().await, Duration::from_millis(2)).await;
        let tenant = store.device_profile(&device).await.unwrap().unwrap().tenant;
        let other = trygg_store::testing::add_watch(store.as_ref(), tenant, None, "e").await;

        // Another transaction holds the key of the first request's fix, so that request's group
        // commit waits until the transaction ends.
        let stuck = batch(&device, 1, 0);
        let mut locker = sqlx::PgConnection::connect(db.url()).await.unwrap();
        sqlx::Executor::execute(&mut locker, "begin").await.unwrap();
        sqlx::query(
            "insert into fixes (device_id, time, received_at, lat, lon, source, late) \
             values ($1, $2, now(), 57, 12, 'gps', false)",
        )
        .bind(device.as_str())
        .bind(stuck.fixes[0].fix.time)
        .execute(&mut locker)
        .await
        .unwrap();
        let stuck = {
            let committer = committer.clone();
            tokio::spawn(async move { committer.commit(stuck, soon()).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!stuck.is_finished(), "the first group commit waits for the lock");

        let next = committer.commit(batch(&other, 3, 0), Instant::now() + Duration::from_secs(3)).await;
        assert_eq!(next.unwrap(), 3, "the next group commits beside the waiting one");

        sqlx::Executor::execute(&mut locker, "rollback").await.unwrap();
        assert_eq!(stuck.await.unwrap().unwrap(), 1, "the waiting commit goes through once the lock is gone");
    }

    async fn futures_join<T: Send + 'static>(
        tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for t in tasks.collect::<Vec<_>>() {
            out.push(t.await.unwrap());
        }
        out
    }
}
