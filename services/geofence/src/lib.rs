//! The geofence evaluator of trygg: which zones a position is in, and when a wearer has
//! really left (or entered) one.
//!
//! Passive zone alarms exist for people who cannot press a button, so an exit must not be
//! missed; and staff stop trusting an alarm that fires on GPS jitter, so it must not fire on
//! noise either. This crate holds both halves, pure and synchronous so it can be tested and
//! benchmarked on its own:
//!
//! - [`Zone`] and [`Shape`]: validated geometry (polygon with holes, multipolygon, circle) and
//!   the boundary rule (**a point on the boundary is inside**);
//! - [`ZoneIndex`]: an immutable R-tree over all zones, rebuilt and swapped ([`SharedIndex`])
//!   on edits;
//! - [`Schedule`]: weekly activity windows in the tenant's time zone;
//! - [`Policy`] and [`DeviceState`]: the jitter-robust exit policy and its serialisable state;
//! - [`replay`]: the offline runner behind `trygg replay`.
//!
//! Coordinates are WGS84 with `x = lon, y = lat` everywhere; distances are metres.
#![deny(missing_docs)]

mod index;
mod policy;
pub mod replay;
mod schedule;
mod zone;

pub use index::{IndexError, SharedIndex, ZoneIndex};
pub use policy::{DeviceState, Event, EventKind, Policy};
pub use schedule::{Schedule, Window};
pub use zone::{Shape, Zone, ZoneError, ZoneId, ZoneKind};
