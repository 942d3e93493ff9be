//! Ingest's Prometheus metrics. Labels are bounded sets (reasons, kinds), never device ids.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// Counters and histograms for ingest, registered once and shared by cloning.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    fixes_received: Counter,
    fixes_committed: Counter,
    fixes_duplicate: Counter,
    fixes_rejected: Family<Reason, Counter>,
    requests_rejected: Family<Reason, Counter>,
    alarms_received: Family<Kind, Counter>,
    commits: Counter,
    commit_batch_fixes: Histogram,
    commit_seconds: Histogram,
    commit_queue_fixes: Gauge,
}

impl IngestMetrics {
    /// Creates the metrics and registers them (names get Prometheus' `_total` suffix on counters).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            fixes_received: Counter::default(),
            fixes_committed: Counter::default(),
            fixes_duplicate: Counter::default(),
            fixes_rejected: Family::default(),
            requests_rejected: Family::default(),
            alarms_received: Family::default(),
            commits: Counter::default(),
            // 1, 2, 4, … 4096 fixes per commit.
            commit_batch_fixes: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            // 0.1 ms … ~3.3 s per commit.
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            commit_queue_fixes: Gauge::default(),
        };
        let r = registry;
        r.register(
            "trygg_ingest_fixes_received",
            "Fixes received in well-formed requests",
            m.fixes_received.clone(),
        );
        r.register("trygg_ingest_fixes_committed", "Fixes newly stored", m.fixes_committed.clone());
        r.register(
            "trygg_ingest_fixes_duplicate",
            "Fixes received again (resends), stored once",
            m.fixes_duplicate.clone(),
        );
        r.register(
            "trygg_ingest_fixes_rejected",
            "Fixes refused by validation, by reason",
            m.fixes_rejected.clone(),
        );
        r.register(
            "trygg_ingest_requests_rejected",
            "Requests refused, by reason",
            m.requests_rejected.clone(),
        );
        r.register(
            "trygg_ingest_alarms_received",
            "Device alarms received, by kind",
            m.alarms_received.clone(),
        );
        r.register("trygg_ingest_commits", "Group commits of fixes", m.commits.clone());
        r.register("trygg_ingest_commit_batch_fixes", "Fixes per group commit", m.commit_batch_fixes.clone());
        r.register("trygg_ingest_commit_seconds", "Duration of a group commit", m.commit_seconds.clone());
        r.register(
            "trygg_ingest_commit_queue_fixes",
            "Fixes waiting for a group commit or in one (the committer's backlog)",
            m.commit_queue_fixes.clone(),
        );
        m
    }

    pub(crate) fn fixes_received(&self, n: usize) {
        self.fixes_received.inc_by(n as u64);
    }

    pub(crate) fn fix_rejected(&self, reason: &'static str) {
        self.fixes_rejected.get_or_create(&Reason { reason }).inc();
    }

    pub(crate) fn request_rejected(&self, reason: &'static str) {
        self.requests_rejected.get_or_create(&Reason { reason }).inc();
    }

    pub(crate) fn alarm_received(&self, kind: &'static str) {
        self.alarms_received.get_or_create(&Kind { kind }).inc();
    }

    pub(crate) fn observe_commit(&self, rows: usize, took: Duration) {
        self.commits.inc();
        self.commit_batch_fixes.observe(rows as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn fixes_committed(&self, new: u64, duplicate: u64) {
        self.fixes_committed.inc_by(new);
        self.fixes_duplicate.inc_by(duplicate);
    }

    pub(crate) fn commit_queue_fixes(&self) -> Gauge {
        self.commit_queue_fixes.clone()
    }

    /// Group commits so far.
    pub fn commits(&self) -> u64 {
        self.commits.get()
    }
}
