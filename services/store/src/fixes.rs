//! Fixes and the alarms devices raise themselves: what ingest commits, what the engine and the
//! API read back, and the retention purge.
//!
//! Ingest's group commit writes many requests' fixes in **one** transaction
//! ([`Fixes::insert_fixes`]), so "acknowledge after commit" costs one sync per batch, not per
//! fix. A fix is unique per (device, time) and a device alarm per (device, kind, time), so a
//! resend is recognised by the database, never by memory.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::instrument;
use trygg_core::{DeviceAlarmKind, DeviceId, Fix};

use crate::dialect::{Db, Row, Tx, get_opt_time, get_time, query};
use crate::{SqlStore, StoreError, parse_kind, parse_source};

/// A validated fix ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFix {
    /// The fix.
    pub fix: Fix,
    /// Whether it arrived late (a buffered upload).
    pub late: bool,
}

/// The fixes of one request: they commit together, in one group commit with other requests.
#[derive(Debug, Clone)]
pub struct FixBatch {
    /// The device that sent them.
    pub device: DeviceId,
    /// When the server received them.
    pub received_at: DateTime<Utc>,
    /// The fixes.
    pub fixes: Vec<NewFix>,
}

/// A fix as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFix {
    /// The fix.
    pub fix: Fix,
    /// When the server received it.
    pub received_at: DateTime<Utc>,
    /// Whether it arrived late.
    pub late: bool,
}

/// An alarm raised by a device, to store.
#[derive(Debug, Clone)]
pub struct NewDeviceAlarm {
    /// The device.
    pub device: DeviceId,
    /// What kind of alarm.
    pub kind: DeviceAlarmKind,
    /// The device's time for the alarm: with device and kind, the key that recognises resends.
    pub time: DateTime<Utc>,
    /// When the server received it.
    pub received_at: DateTime<Utc>,
    /// The device clock was outside the accepted window.
    pub clock_suspect: bool,
    /// The position sent with the alarm, stored as a fix too.
    pub fix: Option<NewFix>,
}

/// A device alarm as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeviceAlarm {
    /// Its row id.
    pub id: i64,
    /// What kind of alarm.
    pub kind: DeviceAlarmKind,
    /// The device's time for it.
    pub time: DateTime<Utc>,
    /// When the server received it.
    pub received_at: DateTime<Utc>,
    /// The device clock was outside the accepted window.
    pub clock_suspect: bool,
    /// The time of the fix sent with it, if any.
    pub fix_time: Option<DateTime<Utc>>,
}

/// The outcome of storing a device alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmInsert {
    /// The row id of the alarm (the existing row for a resend).
    pub id: i64,
    /// It was a resend of an alarm already stored.
    pub duplicate: bool,
}

/// Fixes and device alarms.
#[async_trait]
pub trait Fixes: Send + Sync {
    /// Stores the batches in **one** transaction and returns, per batch, how many fixes
    /// were new (the rest were already stored: resends).
    async fn insert_fixes(&self, batches: &[FixBatch]) -> Result<Vec<u64>, StoreError>;

    /// The newest fixes of a device, newest first.
    async fn recent_fixes(&self, device: &DeviceId, limit: u32) -> Result<Vec<StoredFix>, StoreError>;

    /// Stores a device alarm and its fix in one transaction; a resend returns the stored row.
    async fn insert_device_alarm(&self, alarm: &NewDeviceAlarm) -> Result<AlarmInsert, StoreError>;

    /// The alarms a device raised, oldest first.
    async fn device_alarms(&self, device: &DeviceId) -> Result<Vec<StoredDeviceAlarm>, StoreError>;

    /// A device's newest `limit` fixes with a fix time from `from` up to `until` (both
    /// inclusive; no end if `None`), oldest first.
    async fn fixes_between(
        &self,
        device: &DeviceId,
        from: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<StoredFix>, StoreError>;
    /// A device's fixes received after `after`, in the order received, at most `limit`.
    async fn fixes_received_after(
        &self,
        device: &DeviceId,
        after: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredFix>, StoreError>;

    /// Deletes fixes older than their tenant's retention (`default_retention_days` for a tenant
    /// without settings) at `now`, except fixes attached to a device alarm and fixes in a
    /// critical alarm's trail ([`crate::alarms::TRAIL_BEFORE`] its trigger until it closes, at
    /// most [`crate::alarms::TRAIL_AFTER_MAX`] after it, so a forgotten open alarm does not keep
    /// its device's fixes forever; technical alerts keep no trail). Returns how many.
    ///
    /// Deletes device by device in batches of [`PURGE_BATCH`] fixes, each its own short
    /// transaction, so ingest's commits wait at most one batch (SQLite has one writer).
    async fn purge_fixes(&self, now: DateTime<Utc>, default_retention_days: u32) -> Result<u64, StoreError>;
}

/// The columns [`stored_fix`] reads, of `fixes f`, in its order.
pub(crate) const FIX_COLUMNS: &str = "f.time, f.received_at, f.lat, f.lon, f.accuracy_m, f.speed_mps, \
     f.course_deg, f.altitude_m, f.battery_pct, f.source, f.late";

#[async_trait]
impl Fixes for SqlStore {
    #[instrument(level = "debug", skip_all, fields(batches = batches.len()))]
    async fn insert_fixes(&self, batches: &[FixBatch]) -> Result<Vec<u64>, StoreError> {
        // Every request's fixes go into the same few multi-row statements: a group of a
        // thousand one-fix requests (watches send one position a frame) is two statements,
        // not a thousand round trips while the write lock is held.
        let rows: Vec<FixRow<'_>> =
            batches.iter().flat_map(|b| b.fixes.iter().map(move |f| (&b.device, b.received_at, f))).collect();
        let mut tx = self.db.begin_write().await?;
        let mut new = HashSet::new();
        for chunk in rows.chunks(tx.rows_per_statement(FIX_INSERT_COLUMNS)) {
            new.extend(insert_fix_rows(&mut tx, chunk).await?);
        }
        tx.commit().await?;
        // A resend sent twice within one group is new only for the first request that carries it.
        Ok(batches
            .iter()
            .map(|b| {
                let mut key = (b.device.as_str().to_owned(), 0);
                let mut n = 0;
                for f in &b.fixes {
                    key.1 = f.fix.time.timestamp_millis();
                    n += u64::from(new.remove(&key));
                }
                n
            })
            .collect())
    }

    #[instrument(level = "debug", skip_all, fields(limit))]
    async fn recent_fixes(&self, device: &DeviceId, limit: u32) -> Result<Vec<StoredFix>, StoreError> {
        let rows = query(format!(
            "select {FIX_COLUMNS} from fixes f where f.device_id = $1 order by f.time desc limit $2"
        ))
        .bind(device.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(|r| stored_fix(r, 0)).collect()
    }

    #[instrument(level = "debug", skip_all, fields(kind = alarm.kind.as_str()))]
    async fn insert_device_alarm(&self, alarm: &NewDeviceAlarm) -> Result<AlarmInsert, StoreError> {
        let mut tx = self.db.begin_write().await?;
        if let Some(fix) = &alarm.fix {
            insert_fix_rows(&mut tx, &[(&alarm.device, alarm.received_at, fix)]).await?;
        }
        let new_id = query(
            "insert into device_alarms (device_id, kind, time, received_at, clock_suspect, fix_time) \
             values ($1, $2, $3, $4, $5, $6) on conflict do nothing returning id",
        )
        .bind(alarm.device.as_str())
        .bind(alarm.kind.as_str())
        .bind(alarm.time)
        .bind(alarm.received_at)
        .bind(alarm.clock_suspect)
        .bind(alarm.fix.as_ref().map(|f| f.fix.time))
        .fetch_optional(&mut tx)
        .await?;
        let result = match new_id {
            Some(r) => AlarmInsert { id: r.get(0), duplicate: false },
            None => {
                let r =
                    query("select id from device_alarms where device_id = $1 and kind = $2 and time = $3")
                        .bind(alarm.device.as_str())
                        .bind(alarm.kind.as_str())
                        .bind(alarm.time)
                        .fetch_one(&mut tx)
                        .await?;
                AlarmInsert { id: r.get(0), duplicate: true }
            }
        };
        tx.commit().await?;
        Ok(result)
    }

    #[instrument(level = "debug", skip_all)]
    async fn fixes_between(
        &self,
        device: &DeviceId,
        from: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<StoredFix>, StoreError> {
        let rows = query(format!(
            "select {FIX_COLUMNS} from fixes f where f.device_id = $1 and f.time >= $2 \
                     and ($3 is null or f.time <= $3) order by f.time desc limit $4"
        ))
        .bind(device.as_str())
        .bind(from)
        .bind(until)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        // Newest first to keep the newest; the caller wants them in time order.
        rows.iter().rev().map(|r| stored_fix(r, 0)).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn fixes_received_after(
        &self,
        device: &DeviceId,
        after: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredFix>, StoreError> {
        let rows = query(format!(
            "select {FIX_COLUMNS} from fixes f where f.device_id = $1 and f.received_at > $2 \
                     order by f.received_at, f.time limit $3"
        ))
        .bind(device.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(|r| stored_fix(r, 0)).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn device_alarms(&self, device: &DeviceId) -> Result<Vec<StoredDeviceAlarm>, StoreError> {
        let rows = query(
            "select id, kind, time, received_at, clock_suspect, fix_time from device_alarms \
             where device_id = $1 order by received_at, id",
        )
        .bind(device.as_str())
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredDeviceAlarm {
                    id: r.get(0),
                    kind: parse_kind(r.get(1))?,
                    time: get_time(r, 2)?,
                    received_at: get_time(r, 3)?,
                    clock_suspect: r.get(4),
                    fix_time: get_opt_time(r, 5)?,
                })
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn purge_fixes(&self, now: DateTime<Utc>, default_retention_days: u32) -> Result<u64, StoreError> {
        let sql = format!(
            "delete from fixes where device_id = $1 and time in (select f.time from fixes f \
             where f.device_id = $1 and f.time < $2 \
             and not exists (select 1 from device_alarms a where a.device_id = f.device_id and a.fix_time = f.time) \
             and not exists (select 1 from alarms al where al.device_id = f.device_id and al.kind in ({critical}) \
             and f.time >= al.trigger_time - $3 and f.time <= al.trigger_time + $4 \
             and (al.closed_at is null or f.time <= al.closed_at)) \
             order by f.time limit $5)",
            critical = crate::alarms::critical_kinds_sql()
        );
        let mut purged = 0;
        for (device, cutoff) in purge_cutoffs(&self.db, now, default_retention_days).await? {
            loop {
                let started = std::time::Instant::now();
                let n = query(sql.as_str())
                    .bind(device.as_str())
                    .bind(cutoff)
                    .bind(crate::alarms::TRAIL_BEFORE)
                    .bind(crate::alarms::TRAIL_AFTER_MAX)
                    .bind(PURGE_BATCH)
                    .execute(&self.db)
                    .await?
                    .rows_affected();
                purged += n;
                // Pause three times as long as the batch took, so the purge holds the database
                // at most a quarter of the time: a SQLite writer that found it locked retries on
                // a back-off of up to 100 ms, and a mere yield would let the purge take the lock
                // again first.
                tokio::time::sleep(started.elapsed() * 3).await;
                if n < PURGE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(purged)
    }
}

/// Fixes deleted per statement by [`Fixes::purge_fixes`].
pub const PURGE_BATCH: i64 = 2000;

/// Each device with the time before which its fixes are past its tenant's retention.
async fn purge_cutoffs(
    db: &Db,
    now: DateTime<Utc>,
    default_retention_days: u32,
) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
    let rows = query(
        "select d.id, coalesce(s.fix_retention_days, $1) from devices d \
         left join tenant_settings s on s.tenant_id = d.tenant_id order by d.id",
    )
    .bind(i64::from(default_retention_days))
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), now - chrono::Duration::days(r.get(1)))).collect())
}

/// A fix to insert with its device and the time it was received.
type FixRow<'a> = (&'a DeviceId, DateTime<Utc>, &'a NewFix);

/// The columns [`insert_fix_rows`] writes.
const FIX_INSERT_COLUMNS: usize = 12;

/// A stored fix's key, (device, time in milliseconds): the precision both backends keep.
type FixKey = (String, i64);

/// Inserts fixes in one statement; a fix already stored (a resend) is skipped. Returns the keys
/// of the fixes that were new.
async fn insert_fix_rows(tx: &mut Tx, fixes: &[FixRow<'_>]) -> Result<Vec<FixKey>, StoreError> {
    const COLUMNS: usize = FIX_INSERT_COLUMNS;
    if fixes.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<String> = (0..fixes.len())
        .map(|row| {
            let first = row * COLUMNS + 1;
            let placeholders: Vec<String> = (first..first + COLUMNS).map(|n| tx.placeholder(n)).collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    let mut q = query(format!(
        "insert into fixes (device_id, time, received_at, lat, lon, accuracy_m, speed_mps, \
         course_deg, altitude_m, battery_pct, source, late) values {} on conflict do nothing \
         returning device_id, time",
        rows.join(", ")
    ));
    for &(device, received_at, NewFix { fix, late }) in fixes {
        q = q
            .bind(device.as_str())
            .bind(fix.time)
            .bind(received_at)
            .bind(fix.lat)
            .bind(fix.lon)
            .bind(fix.accuracy_m)
            .bind(fix.speed_mps)
            .bind(fix.course_deg)
            .bind(fix.altitude_m)
            .bind(fix.battery_pct.map(i16::from))
            .bind(fix.source.as_str())
            .bind(*late);
    }
    q.fetch_all(tx).await?.iter().map(|r| Ok((r.get(0), get_time(r, 1)?.timestamp_millis()))).collect()
}

/// A fixes row read from column `at` on, in the order of [`FIX_COLUMNS`].
pub(crate) fn stored_fix(r: &Row, at: usize) -> Result<StoredFix, StoreError> {
    let battery_pct = r
        .get::<Option<i16>, _>(at + 8)
        .map(|b| u8::try_from(b).map_err(|_| StoreError::Corrupt { what: "battery", value: b.to_string() }))
        .transpose()?;
    Ok(StoredFix {
        fix: Fix {
            time: get_time(r, at)?,
            lat: r.get(at + 2),
            lon: r.get(at + 3),
            accuracy_m: r.get(at + 4),
            speed_mps: r.get(at + 5),
            course_deg: r.get(at + 6),
            altitude_m: r.get(at + 7),
            battery_pct,
            source: parse_source(r.get(at + 9))?,
        },
        received_at: get_time(r, at + 1)?,
        late: r.get(at + 10),
    })
}
