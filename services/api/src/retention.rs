//! The purge job: fixes older than their tenant's retention are deleted, except those attached
//! to an alarm. `serve` runs [`run_periodically`]; tests call [`purge_once`].

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use trygg_store::{Store, StoreError};

use crate::settings::DEFAULT_FIX_RETENTION_DAYS;

/// Purges once, now; returns how many fixes were deleted.
pub async fn purge_once(store: &dyn Store) -> Result<u64, StoreError> {
    let purged = store.purge_fixes(Utc::now(), DEFAULT_FIX_RETENTION_DAYS).await?;
    tracing::info!(purged, "Purged fixes past retention");
    Ok(purged)
}

/// Purges every `every` (the first time at once) until the task is dropped or aborted.
/// A failed run is logged and retried at the next tick.
pub async fn run_periodically(store: Arc<dyn Store>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = purge_once(store.as_ref()).await {
            tracing::warn!(error = %e, "Purging fixes failed; retrying at the next run");
        }
    }
}
