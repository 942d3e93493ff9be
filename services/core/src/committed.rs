//! The seam between ingest and the alarm engine: what was just committed, and who receives it.
//!
//! Ingest calls [`CommittedSink::committed`] after each commit. Today the engine runs in the
//! same process; with several nodes the same call becomes a publish to the device's partition
//! on NATS JetStream. Either way nothing is lost if the receiver falls behind: everything handed
//! over is already in the database, which is where the engine recovers from after a restart.
//!
//! It lives here, in the pure core, so that the engine depends on the seam and not on ingest
//! (and its HTTP stack), and ingest not on the engine.

use std::fmt::Debug;

use chrono::{DateTime, Utc};

use crate::{DeviceAlarmKind, DeviceId, Fix, TenantId, WearerId};

/// Data that has just been committed.
#[derive(Debug, Clone)]
pub enum Committed {
    /// Fixes of one request (including resends of stored fixes: consumers must be idempotent).
    Fixes {
        /// The device's tenant.
        tenant: TenantId,
        /// The wearer the device is bound to.
        wearer: Option<WearerId>,
        /// The device.
        device: DeviceId,
        /// The accepted fixes, in the order sent.
        fixes: Vec<Fix>,
        /// When the request was received: the time stored with its fixes, which a catch-up
        /// reads them back by.
        received_at: DateTime<Utc>,
    },
    /// A device alarm.
    Alarm {
        /// The device's tenant.
        tenant: TenantId,
        /// The wearer the device is bound to.
        wearer: Option<WearerId>,
        /// The device.
        device: DeviceId,
        /// The stored alarm's id.
        alarm_id: i64,
        /// What kind.
        kind: DeviceAlarmKind,
        /// A resend of an alarm already handed over.
        duplicate: bool,
        /// The position sent with it, if valid.
        fix: Option<Fix>,
    },
    /// A keep-alive or status message with a battery level (3G `LK`, GT06 heartbeat, OsmAnd
    /// `batt`): stored only as the device's last battery, evaluated by the battery rules like a
    /// fix's level.
    KeepAlive {
        /// The device's tenant.
        tenant: TenantId,
        /// The wearer the device is bound to.
        wearer: Option<WearerId>,
        /// The device.
        device: DeviceId,
        /// When it was received (keep-alives carry no device time).
        at: DateTime<Utc>,
        /// The battery level it reported, in percent.
        battery_pct: u8,
    },
}

/// Receives committed data. Must not block: hand the data to a queue or task.
pub trait CommittedSink: Debug + Send + Sync + 'static {
    /// Called once per committed request.
    fn committed(&self, data: Committed);
}
