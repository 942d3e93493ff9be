//! The alarm engine: turns what ingest committed into alarms staff can act on.
//!
//! - [`engine`]: device alarms (SOS, fall, watch removed) become critical alarms at once; fixes
//!   go through the geofence evaluator, and confirmed exits (or keep-out entries) of wearers with
//!   consent become `zone_exit` / `zone_enter` alarms. Alarms, their first events, their outbox
//!   rows and the changed per-device zone states are written in one transaction per batch.
//!   Repeats join the open alarm; a return is recorded on it; a human closes it.
//! - [`zones`]: the per-tenant zone indexes the engine evaluates against, rebuilt by the API
//!   after every write that changes which zones alarm.
//!
//! The engine keeps nothing that is not in the database: after a restart (or a failed commit)
//! it reloads the zone states and re-evaluates what it had not evaluated, so it neither misses
//! nor repeats an alarm.

use trygg_store::StoreError;

pub mod engine;
pub mod report;
pub mod supervision;
pub mod zones;

pub use engine::{Engine, EngineProbe, EngineSink};
pub use zones::ZoneIndexes;

/// What can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database holds something trygg never wrote (a zone it cannot read).
    #[error("{0}")]
    Corrupt(String),
}
