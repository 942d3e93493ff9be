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
use std::time::Duration;

use axum::Router;
use trygg_core::FixPolicy;
use trygg_store::Store;

mod alarm;
mod commit;
mod connection_limit;
mod device;
mod error;
mod gt06;
mod heard;
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

pub use commit::{CommitConfig, CommitProbe, FixCommitter};
pub use connection_limit::{LISTEN_BACKLOG, LimitedListener, LimitedStream, listen};
pub use device::{DeviceConfig, DeviceIngest, DeviceLinks, DeviceMetrics};
pub use error::IngestError;
pub use heard::HeardWriter;
pub use listeners::{DeviceBinds, DeviceListeners};
pub use metrics::IngestMetrics;
pub use sink::LogSink;
pub use trygg_core::{CommandError, Committed, CommittedSink, DeviceCommand, ReportIntervals};

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

/// Tells whether a device alarm acknowledged now will be handled: whether the task behind the
/// [`CommittedSink`] that turns device alarms into alarms is alive. Ingest asks it after storing
/// an alarm and handing it over, and answers 503 instead of 201 when it says no: the alarm is
/// stored, the restarted process recovers it, and the device's resend then gets its ack.
#[derive(Clone)]
pub struct AlarmPath(Arc<dyn Fn() -> bool + Send + Sync>);

impl AlarmPath {
    /// An alarm path whose liveness `alive` reports.
    pub fn new(alive: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(alive))
    }

    /// An alarm path that is always up: for a sink that needs no task (tests, [`LogSink`]).
    pub fn always() -> Self {
        Self::new(|| true)
    }

    /// Whether it is alive now.
    pub fn is_alive(&self) -> bool {
        (self.0)()
    }
}

impl Debug for AlarmPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AlarmPath").field(&self.is_alive()).finish()
    }
}

/// The longest a device request waits for the database by default (authentication, room in
/// the commit queue, the commit): then it is answered 503 with `Retry-After`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The longest a request waits for the database, from when its body has been read.
    pub timeout: Duration,
    /// Whether device alarms can be acknowledged.
    pub alarm_path: AlarmPath,
    /// The report interval each native device's answer carries (battery-aware reporting).
    pub report_intervals: ReportIntervals,
}

/// The ingest routes, under `/api/v1/ingest`.
pub fn router(ingest: Ingest) -> Router {
    routes().split_for_parts().0.with_state(ingest)
}

/// The OpenAPI paths of the ingest routes, with the `device` security scheme (the device token);
/// the API serves them in its document (`/api/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    let mut doc = routes().split_for_parts().1;
    // A protobuf body is bytes (the messages of proto/trygg/v1/ingest.proto), not a JSON array.
    for item in doc.paths.paths.values_mut() {
        let body = item.post.as_mut().and_then(|op| op.request_body.as_mut());
        if let Some(protobuf) = body.and_then(|b| b.content.get_mut("application/x-protobuf")) {
            let bytes = ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/x-protobuf")
                .description(Some("the message of proto/trygg/v1/ingest.proto, encoded"));
            protobuf.schema = Some(bytes.into());
        }
    }
    doc.components.get_or_insert_with(Default::default).add_security_scheme(
        "device",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The token a native device was given when it was registered."))
                .build(),
        ),
    );
    doc
}

/// The native device endpoints, routed and documented from one list: a handler is served
/// exactly when it is documented.
fn routes() -> utoipa_axum::router::OpenApiRouter<Ingest> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(native::positions))
        .routes(routes!(native::alarms))
}
