//! What the ingest tests set up alike: devices registered straight in the store, and an
//! [`Ingest`] over that store that commits through a real [`FixCommitter`] and logs what it
//! commits. Written once so a new `Ingest` field is given its test value in one place.

#![allow(dead_code, unreachable_pub)] // each test file uses its own share of these helpers

use std::sync::Arc;

use prometheus_client::registry::Registry;
use trygg_core::{DeviceId, FixPolicy, TenantId};
use trygg_ingest::{
    AlarmPath, CommitConfig, DeviceConfig, DeviceIngest, DeviceLinks, DeviceMetrics, FixCommitter,
    HeardWriter, Ingest, IngestMetrics, Limits, LogSink,
};
use trygg_store::{NewDevice, Protocol, Store};

/// Registers device `id` of `protocol` in `tenant`, bound to nobody.
pub async fn register(
    store: &dyn Store,
    tenant: TenantId,
    id: &str,
    protocol: Protocol,
    token_hash: Option<String>,
) {
    let new = NewDevice { id: DeviceId::parse(id).unwrap(), tenant, wearer: None, protocol, token_hash };
    store.register_device(&new).await.unwrap();
}

/// Ingest over `store` with the default fix policy and timeout, committing with the default
/// commit configuration.
pub fn ingest(
    store: Arc<dyn Store>,
    metrics: IngestMetrics,
    limits: Limits,
    alarm_path: AlarmPath,
) -> Ingest {
    let (committer, _) = FixCommitter::start(store.clone(), CommitConfig::default(), metrics.clone());
    Ingest {
        store,
        committer,
        sink: Arc::new(LogSink),
        metrics,
        limits,
        policy: FixPolicy::default(),
        timeout: trygg_ingest::DEFAULT_TIMEOUT,
        alarm_path,
        report_intervals: Default::default(),
    }
}

/// What the device listeners serve with: [`ingest`] over `store` with default limits, a link
/// registry of their own and unregistered metrics.
pub fn device_ingest(store: Arc<dyn Store>, config: DeviceConfig) -> DeviceIngest {
    let metrics = IngestMetrics::register(&mut Registry::default());
    DeviceIngest {
        ingest: ingest(store.clone(), metrics, Limits::default(), AlarmPath::always()),
        links: DeviceLinks::default(),
        metrics: DeviceMetrics::unregistered(),
        config,
        heard: HeardWriter::start(store),
    }
}
