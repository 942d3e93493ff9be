//! Domain types shared by every part of trygg.
//!
//! This crate is pure: no I/O, no async, no database. Everything that crosses a boundary
//! (a device frame, an HTTP body, a database row) is parsed into these types first, so the
//! rules about what a valid id or a valid position is live in exactly one place.
#![deny(missing_docs)]

mod alarm;
mod command;
mod committed;
mod fix;
mod ids;
mod lifecycle;

pub use alarm::{DeviceAlarmKind, UnknownAlarmKind};
pub use command::{CommandError, DeviceCommand, DeviceCommands, ReportIntervals};
pub use committed::{Committed, CommittedSink};
pub use fix::{Fix, FixError, FixPolicy, FixSource, Freshness, Position, UnknownFixSource};
pub use ids::{DeviceId, DeviceIdError, TenantId, WearerId};
pub use lifecycle::{AlarmKind, AlarmState, Outcome, Step, UnknownName};
