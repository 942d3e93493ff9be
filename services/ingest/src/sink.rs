//! Ingest's side of the seam to the alarm engine ([`Committed`], [`CommittedSink`] in
//! `trygg-core`): the sink used where no engine runs.

use trygg_core::{Committed, CommittedSink};

/// Logs what was committed: the sink where no alarm engine runs (ingest on its own, in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

impl CommittedSink for LogSink {
    fn committed(&self, data: Committed) {
        match data {
            Committed::Fixes { device, fixes, .. } => {
                tracing::debug!(%device, fixes = fixes.len(), "Fixes committed");
            }
            Committed::Alarm { device, alarm_id, kind, duplicate, .. } => {
                tracing::info!(%device, alarm_id, %kind, duplicate, "Device alarm committed");
            }
            Committed::KeepAlive { device, battery_pct, .. } => {
                tracing::debug!(%device, battery_pct, "Keep-alive battery recorded");
            }
        }
    }
}
