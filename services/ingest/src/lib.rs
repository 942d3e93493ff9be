//! Device ingest: the HTTP endpoints devices post positions and alarms to, the watch and GT06
//! TCP listeners and the OsmAnd HTTP listener ([`DeviceListeners`]), and the group committer
//! behind them all.
//!
//! The one rule this crate exists to keep: **a device is acknowledged only after its data is
//! committed**. A handler validates, hands the fixes to the [`FixCommitter`] and answers when
//! the commit that contains them has returned; a device that gets no answer resends, and the
//! store's uniqueness on (device, time) makes the resend harmless.
//!
//! Committed data leaves this crate through one narrow seam, [`CommittedSink`], so the alarm
//! engine can sit behind it in-process today and behind a message bus later.

use std::fmt::Debug;
use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use trygg_core::FixPolicy;
use trygg_store::Store;

mod alarm;
mod commit;
mod device;
mod error;
mod gt06;
mod listeners;
mod metrics;
mod native;
mod osmand;
mod sink;
mod tcp;
mod watch;

/// The protobuf messages of `proto/trygg/v1`, generated at build time.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/trygg.v1.rs"));
}

pub use commit::{CommitConfig, FixCommitter};
pub use device::{CommandError, DeviceCommand, DeviceConfig, DeviceIngest, DeviceLinks, DeviceMetrics};
pub use error::IngestError;
pub use metrics::IngestMetrics;
pub use listeners::{DeviceBinds, DeviceListeners};
pub use sink::{Committed, CommittedSink, LogSink};

/// Size limits on what a device may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most fixes in one positions request.
    pub max_batch_fixes: usize,
}

impl Default for Limits {
    /// 1 MiB and 1,000 fixes: a day of one-minute fixes fits in two requests.
    fn default() -> Self {
        Self { max_body_bytes: 1 << 20, max_batch_fixes: 1000 }
    }
}

/// Everything the ingest handlers need: cheap to clone.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// Where data is stored.
    pub store: Arc<dyn Store>,
    /// The group committer fixes go through.
    pub committer: FixCommitter,
    /// Where committed data is handed on.
    pub sink: Arc<dyn CommittedSink>,
    /// Counters and histograms.
    pub metrics: IngestMetrics,
    /// Size limits.
    pub limits: Limits,
    /// What fix is accepted.
    pub policy: FixPolicy,
}

/// The ingest routes, under `/api/v1/ingest`.
pub fn router(ingest: Ingest) -> Router {
    Router::new()
        .route("/api/v1/ingest/positions", post(native::positions))
        .route("/api/v1/ingest/alarms", post(native::alarms))
        .with_state(ingest)
}
