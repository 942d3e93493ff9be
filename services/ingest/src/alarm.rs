//! Storing a device alarm: the one path every protocol's SOS, fall and removal alarms take
//! (native HTTP, the watch and GT06 TCP listeners, OsmAnd).
//!
//! A device alarm is never refused for a bad attached position or clock: the alarm is stored
//! and the problem noted, because an SOS matters more than its metadata. An alarm without a
//! position is stored as it is; the alarm engine shows the wearer's last known position.

use std::future::Future;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use trygg_core::{DeviceAlarmKind, DeviceId, Fix, Freshness, TenantId, WearerId};
use trygg_store::{AlarmInsert, NewDeviceAlarm, NewFix};

use crate::{Committed, Ingest, IngestError};

/// A device alarm that has been stored and handed to the sink.
#[derive(Debug, Clone)]
pub(crate) struct StoredAlarm {
    /// The row, and whether it was a resend.
    pub(crate) insert: AlarmInsert,
    /// Why the attached position was not stored, if it was not.
    pub(crate) fix_error: Option<String>,
}

/// Who sent an alarm: the device and what it is registered to.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    pub(crate) tenant: TenantId,
    pub(crate) wearer: Option<WearerId>,
    pub(crate) device: DeviceId,
}

/// Stores a device alarm (and its position, if the fix policy accepts it) in one transaction,
/// then hands it to the sink. Returns only after the commit: the caller acknowledges after this.
/// Gives up at `deadline` (the device is told to resend, not left hanging), and refuses to let
/// the alarm be acknowledged when no live alarm engine will handle it.
pub(crate) async fn store_device_alarm(
    ingest: &Ingest,
    sender: Sender,
    kind: DeviceAlarmKind,
    time: DateTime<Utc>,
    fix: Option<Fix>,
    deadline: Instant,
) -> Result<StoredAlarm, IngestError> {
    ingest.metrics.alarm_received(kind.as_str());
    let now = Utc::now();
    let time = truncate_time(time);
    let clock_suspect = ingest.policy.check_time(time, now).is_err();
    let (fix, fix_error) = match fix.map(truncate_to_millis) {
        None => (None, None),
        Some(fix) => match ingest.policy.check(&fix, now) {
            Ok(freshness) => (Some(NewFix { fix, late: freshness == Freshness::Late }), None),
            Err(e) => {
                ingest.metrics.fix_rejected(e.code());
                (None, Some(e.to_string()))
            }
        },
    };
    let alarm =
        NewDeviceAlarm { device: sender.device.clone(), kind, time, received_at: now, clock_suspect, fix };
    let stored = within(deadline, async { Ok(ingest.store.insert_device_alarm(&alarm).await?) }).await?;
    ingest.sink.committed(Committed::Alarm {
        tenant: sender.tenant,
        wearer: sender.wearer,
        device: sender.device,
        alarm_id: stored.id,
        kind,
        duplicate: stored.duplicate,
        fix: alarm.fix.map(|f| f.fix),
    });
    // Asked after the hand-over, so an engine that ended before taking it is seen here.
    if !ingest.alarm_path.is_alive() {
        return Err(IngestError::AlarmPathDown);
    }
    Ok(StoredAlarm { insert: stored, fix_error })
}

/// Waits for `work` until `deadline`, then gives up: 503 rather than a request that hangs.
pub(crate) async fn within<T>(
    deadline: Instant,
    work: impl Future<Output = Result<T, IngestError>>,
) -> Result<T, IngestError> {
    tokio::time::timeout_at(deadline, work).await.map_err(|_| IngestError::TimedOut)?
}

/// Times are stored to the millisecond; truncating here keeps a resend's key identical.
pub(crate) fn truncate_time(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// The fix with its time truncated to the millisecond.
pub(crate) fn truncate_to_millis(fix: Fix) -> Fix {
    Fix { time: truncate_time(fix.time), ..fix }
}
