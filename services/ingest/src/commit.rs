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

struct Job {
    batch: FixBatch,
    done: oneshot::Sender<Result<u64, Arc<StoreError>>>,
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
    let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|j| (j.batch, j.done)).unzip();
    let started = Instant::now();
    let result = store.insert_fixes(&batches).await;
    metrics.observe_commit(rows, started.elapsed());
    match result {
        Ok(inserted) => {
            let new: u64 = inserted.iter().sum();
            metrics.fixes_committed(new, rows as u64 - new);
            for (reply, n) in replies.into_iter().zip(inserted) {
                // A requester that went away (client disconnected) needs no answer.
                let _ = reply.send(Ok(n));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, fixes = rows, requests = replies.len(), "Group commit failed");
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
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

    #[tokio::test]
    async fn concurrent_requests_share_commits_and_each_gets_its_own_count() {
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
        let config = CommitConfig { max_rows: 10_000, max_delay: Duration::from_millis(50) };
        let (committer, task) = FixCommitter::start(store.clone(), config, metrics.clone());

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
    async fn a_failed_commit_answers_every_waiting_request_with_an_error() {
        let db = TestDb::sqlite();
        let store = db.store().await;
        let metrics = IngestMetrics::register(&mut Registry::default());
        let (committer, _task) = FixCommitter::start(store, CommitConfig::default(), metrics);
        // The device is not registered: the foreign key fails the whole transaction.
        let unknown = DeviceId::parse("ghost").unwrap();
        assert!(matches!(committer.commit(batch(&unknown, 3, 0)).await, Err(IngestError::Storage(_))));
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
