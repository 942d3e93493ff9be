//! Group commit: many requests' fixes in one transaction.
//!
//! A transaction per fix costs a WAL sync per fix and caps ingest at a few hundred fixes a
//! second on an ordinary disk. Instead every request hands its batch to one writer task, which
//! collects batches until it has `max_rows` fixes or `max_delay` has passed since the first,
//! commits them together and only then answers each request. While a commit runs, new batches
//! queue up and form the next group, so under load groups grow by themselves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use trygg_store::{FixBatch, Store, StoreError};

use crate::IngestError;
use crate::metrics::IngestMetrics;

/// How fixes are grouped into commits.
#[derive(Debug, Clone, Copy)]
pub struct CommitConfig {
    /// Commit once this many fixes are waiting.
    pub max_rows: usize,
    /// Commit at the latest this long after the first waiting batch arrived.
    pub max_delay: Duration,
}

impl Default for CommitConfig {
    /// 2,000 fixes or 2 ms: the delay is small against a device's round trip over a mobile
    /// network, and large enough to gather every request that arrives while a commit is on disk.
    fn default() -> Self {
        Self { max_rows: 2000, max_delay: Duration::from_millis(2) }
    }
}

type Done = oneshot::Sender<Result<u64, Arc<StoreError>>>;

struct Job {
    batch: FixBatch,
    done: Done,
}

/// Where one request's answer goes, and how many fixes it sent.
struct Reply {
    fixes: usize,
    done: Done,
}

/// A handle to the writer task. Clone it freely; the task ends, after committing what it has,
/// when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct FixCommitter {
    jobs: mpsc::Sender<Job>,
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
        let (jobs, rx) = mpsc::channel(1024);
        let task = tokio::spawn(write_loop(store, config, metrics, rx));
        (Self { jobs }, task)
    }

    /// Commits a batch and returns how many of its fixes were new (the rest were resends).
    /// Returns only after the commit is durable.
    pub async fn commit(&self, batch: FixBatch) -> Result<u64, IngestError> {
        let (done, result) = oneshot::channel();
        self.jobs.send(Job { batch, done }).await.map_err(|_| IngestError::ShuttingDown)?;
        match result.await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(IngestError::Storage(e)),
            Err(_) => Err(IngestError::ShuttingDown),
        }
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    config: CommitConfig,
    metrics: IngestMetrics,
    mut rx: mpsc::Receiver<Job>,
) {
    while let Some(first) = rx.recv().await {
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
        commit_group(store.as_ref(), &metrics, group, rows).await;
    }
    tracing::debug!("Fix committer drained and stopped");
}

async fn commit_group(store: &dyn Store, metrics: &IngestMetrics, group: Vec<Job>, rows: usize) {
    let (batches, replies): (Vec<_>, Vec<_>) = group
        .into_iter()
        .map(|Job { batch, done }| {
            let reply = Reply { fixes: batch.fixes.len(), done };
            (batch, reply)
        })
        .unzip();
    let started = Instant::now();
    let result = store.insert_fixes(&batches).await;
    metrics.observe_commit(rows, started.elapsed());
    match result {
        Ok(inserted) => {
            for (reply, n) in replies.into_iter().zip(inserted) {
                answer(metrics, reply, &Ok(n));
            }
        }
        // One request's batch must not fail the others': find it by committing each alone.
        Err(e) if batches.len() > 1 => {
            tracing::warn!(error = %e, requests = batches.len(), "Group commit failed; committing its requests one by one");
            for (batch, reply) in batches.into_iter().zip(replies) {
                let result = store.insert_fixes(std::slice::from_ref(&batch)).await;
                metrics.observe_commit(batch.fixes.len(), started.elapsed());
                let result = result.map(|n| n[0]).map_err(Arc::new);
                answer(metrics, reply, &result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, fixes = rows, "Commit failed");
            answer(metrics, replies.into_iter().next().expect("a group has a job"), &Err(Arc::new(e)));
        }
    }
}

/// Counts and answers one request. A requester that went away (client disconnected) needs no
/// answer; its fixes are committed all the same.
fn answer(metrics: &IngestMetrics, reply: Reply, result: &Result<u64, Arc<StoreError>>) {
    if let Ok(new) = result {
        metrics.fixes_committed(*new, reply.fixes as u64 - new);
    }
    let _ = reply.done.send(result.clone());
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use prometheus_client::registry::Registry;
    use trygg_core::{DeviceId, Fix, FixSource};
    use trygg_store::testing::TestDb;
    use trygg_store::{NewDevice, NewFix, Protocol};

    use super::*;

    /// `n` fixes a millisecond apart, ending `offset_ms` before a fixed base time.
    fn batch(device: &DeviceId, n: usize, offset_ms: i64) -> FixBatch {
        let now = 1_790_000_000_000;
        let fixes = (0..n)
            .map(|i| NewFix {
                fix: Fix {
                    time: chrono::DateTime::from_timestamp_millis(now - offset_ms - i as i64).unwrap(),
                    lat: 57.0,
                    lon: 12.0,
                    accuracy_m: None,
                    speed_mps: None,
                    course_deg: None,
                    altitude_m: None,
                    battery_pct: None,
                    source: FixSource::Gps,
                },
                late: false,
            })
            .collect();
        FixBatch { device: device.clone(), received_at: Utc::now(), fixes }
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
        let db = TestDb::sqlite();
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
        let config = CommitConfig { max_rows: 10_000, max_delay };
        let (committer, task) = FixCommitter::start(store.clone(), config, metrics.clone());
        Setup { _db: db, store, device, metrics, committer, task }
    }

    #[tokio::test]
    async fn concurrent_requests_share_commits_and_each_gets_its_own_count() {
        let Setup { _db, store, device, metrics, committer, task } = setup(Duration::from_millis(50)).await;

        let requests = (0..20).map(|r| {
            let committer = committer.clone();
            let b = batch(&device, 10, r * 100);
            tokio::spawn(async move { committer.commit(b).await.unwrap() })
        });
        let counts: Vec<u64> = futures_join(requests).await;
        assert_eq!(counts, vec![10; 20]);
        assert!(metrics.commits() < 20, "20 requests took {} commits", metrics.commits());

        // A resend of the first request is all duplicates.
        assert_eq!(committer.commit(batch(&device, 10, 0)).await.unwrap_or(99), 0);
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
        let (good, bad) =
            tokio::join!(committer.commit(batch(&device, 3, 0)), committer.commit(batch(&ghost, 3, 0)));
        assert_eq!(good.unwrap(), 3);
        assert!(matches!(bad, Err(IngestError::Storage(_))));
        assert_eq!(store.recent_fixes(&device, 10).await.unwrap().len(), 3);
        assert_eq!(metrics.commits(), 3, "one failed group commit, then one commit per request");
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
