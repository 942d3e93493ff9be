//! The purge job: fixes older than their tenant's retention are deleted, except those attached
//! to an alarm. `serve` calls [`purge_once`] from its maintenance task; tests call it directly.

use chrono::Utc;
use trygg_store::{Store, StoreError};

use crate::settings::DEFAULT_FIX_RETENTION_DAYS;

/// Purges once, now; returns how many fixes were deleted.
pub async fn purge_once(store: &dyn Store) -> Result<u64, StoreError> {
    let purged = store.purge_fixes(Utc::now(), DEFAULT_FIX_RETENTION_DAYS).await?;
    tracing::info!(purged, "Purged fixes past retention");
    Ok(purged)
}
