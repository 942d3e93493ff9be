//! The embedded SQLite backend: one file in WAL mode.
//!
//! WAL lets readers run beside the single writer; ingest's group commit keeps that writer busy
//! with few, large transactions. `synchronous` decides what a commit survives: `full` (the
//! default) syncs the WAL on every commit, so an acknowledged fix survives a power loss;
//! `normal` syncs only at checkpoints, so it survives a process crash but a power loss may
//! take the last commits.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _, QueryBuilder, Row, SqlitePool};
use trygg_core::{DeviceId, Fix, TenantId, WearerId};
use uuid::Uuid;

use crate::{
    AlarmInsert, ConnectOptions, DeviceAuth, Directory, FixBatch, NewDevice, NewDeviceAlarm, NewFix, Store,
    StoreError, StoredDeviceAlarm, StoredFix, WearerFields, conflict, parse_id, parse_kind, parse_protocol,
    parse_source,
};

/// SQLite's `synchronous` pragma, as far as trygg offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Sync the WAL on every commit: survives process crash and power loss.
    Full,
    /// Sync at checkpoints: survives a process crash; a power loss can lose recent commits.
    Normal,
}

impl FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(format!("unknown synchronous mode {s:?}; expected full or normal")),
        }
    }
}

/// Rows per INSERT statement: 12 columns stay well under SQLite's 32,766 bound parameters.
const ROWS_PER_INSERT: usize = 500;

/// Storage in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and applies the migrations.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::BadUrl(url.to_owned()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.sqlite_synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(options.busy_timeout);
        migrate(&connect).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.busy_timeout)
            .connect_with(connect.foreign_keys(true))
            .await?;
        Ok(Self { pool })
    }
}

/// Applies the migrations on a connection of their own with foreign keys off: SQLite changes a
/// column's constraints only by rebuilding its table (create, copy, drop, rename), and with
/// foreign keys on, dropping the old table would check (and renaming would rewrite) every other
/// table's references to it. `foreign_key_check` afterwards proves every reference still holds.
async fn migrate(connect: &SqliteConnectOptions) -> Result<(), StoreError> {
    let mut conn = connect.clone().foreign_keys(false).connect().await?;
    sqlx::migrate!("../../migrations/sqlite").run(&mut conn).await?;
    let broken = sqlx::query("pragma foreign_key_check").fetch_all(&mut conn).await?;
    if let Some(row) = broken.first() {
        let table: String = row.get(0);
        return Err(StoreError::Corrupt { what: "reference after migrating", value: table });
    }
    conn.close().await?;
    Ok(())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(what: &'static str, v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(v).ok_or(StoreError::Corrupt { what, value: v.to_string() })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str) -> Result<TenantId, StoreError> {
        let id = TenantId::new();
        sqlx::query("insert into tenants (id, name, created_ms) values (?, ?, ?)")
            .bind(id.to_string())
            .bind(name)
            .bind(ms(Utc::now()))
            .execute(&self.pool)
            .await
            .map_err(conflict("tenant"))?;
        Ok(id)
    }

    async fn create_wearer(&self, tenant: TenantId, name: &str) -> Result<WearerId, StoreError> {
        self.add_wearer(tenant, &WearerFields { name: name.to_owned(), ..WearerFields::default() }).await
    }

    async fn register_device(&self, device: &NewDevice) -> Result<(), StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        sqlx::query(
            "insert into devices (id, tenant_id, wearer_id, protocol, token_hash, created_ms) \
             values (?, ?, ?, ?, ?, ?)",
        )
        .bind(device.id.as_str())
        .bind(device.tenant.to_string())
        .bind(device.wearer.map(|w| w.to_string()))
        .bind(device.protocol.as_str())
        .bind(device.token_hash.as_deref())
        .bind(ms(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(conflict("device"))?;
        if let Some(wearer) = device.wearer {
            record_binding(&mut tx, device, wearer).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn device_auth(&self, id: &DeviceId) -> Result<Option<DeviceAuth>, StoreError> {
        let row = sqlx::query("select tenant_id, wearer_id, protocol, token_hash from devices where id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(DeviceAuth {
                tenant: parse_id("tenant id", r.get(0), TenantId::parse)?,
                wearer: r
                    .get::<Option<String>, _>(1)
                    .map(|w| parse_id("wearer id", w, WearerId::parse))
                    .transpose()?,
                protocol: parse_protocol(r.get(2))?,
                token_hash: r.get(3),
            })
        })
        .transpose()
    }

    async fn insert_fixes(&self, batches: &[FixBatch]) -> Result<Vec<u64>, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let mut inserted = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut n = 0;
            for chunk in batch.fixes.chunks(ROWS_PER_INSERT) {
                n += insert_fix_rows(&mut tx, &batch.device, batch.received_at, chunk).await?;
            }
            inserted.push(n);
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn recent_fixes(&self, device: &DeviceId, limit: u32) -> Result<Vec<StoredFix>, StoreError> {
        let rows = sqlx::query(
            "select time_ms, received_ms, lat, lon, accuracy_m, speed_mps, course_deg, altitude_m, \
             battery_pct, source, late from fixes where device_id = ? order by time_ms desc limit ?",
        )
        .bind(device.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| stored_fix(r, 0)).collect()
    }

    async fn insert_device_alarm(&self, alarm: &NewDeviceAlarm) -> Result<AlarmInsert, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        if let Some(fix) = &alarm.fix {
            insert_fix_rows(&mut tx, &alarm.device, alarm.received_at, std::slice::from_ref(fix)).await?;
        }
        let new_id: Option<i64> = sqlx::query_scalar(
            "insert into device_alarms (device_id, kind, time_ms, received_ms, clock_suspect, fix_time_ms) \
             values (?, ?, ?, ?, ?, ?) on conflict do nothing returning id",
        )
        .bind(alarm.device.as_str())
        .bind(alarm.kind.as_str())
        .bind(ms(alarm.time))
        .bind(ms(alarm.received_at))
        .bind(alarm.clock_suspect)
        .bind(alarm.fix.as_ref().map(|f| ms(f.fix.time)))
        .fetch_optional(&mut *tx)
        .await?;
        let result = match new_id {
            Some(id) => AlarmInsert { id, duplicate: false },
            None => {
                let id = sqlx::query_scalar(
                    "select id from device_alarms where device_id = ? and kind = ? and time_ms = ?",
                )
                .bind(alarm.device.as_str())
                .bind(alarm.kind.as_str())
                .bind(ms(alarm.time))
                .fetch_one(&mut *tx)
                .await?;
                AlarmInsert { id, duplicate: true }
            }
        };
        tx.commit().await?;
        Ok(result)
    }

    async fn device_alarms(&self, device: &DeviceId) -> Result<Vec<StoredDeviceAlarm>, StoreError> {
        let rows = sqlx::query(
            "select id, kind, time_ms, received_ms, clock_suspect, fix_time_ms from device_alarms \
             where device_id = ? order by received_ms, id",
        )
        .bind(device.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredDeviceAlarm {
                    id: r.get(0),
                    kind: parse_kind(r.get(1))?,
                    time: from_ms("alarm time", r.get(2))?,
                    received_at: from_ms("received time", r.get(3))?,
                    clock_suspect: r.get(4),
                    fix_time: r.get::<Option<i64>, _>(5).map(|t| from_ms("fix time", t)).transpose()?,
                })
            })
            .collect()
    }

    async fn purge_fixes(&self, now: DateTime<Utc>, default_retention_days: u32) -> Result<u64, StoreError> {
        let sql = format!(
            "delete from fixes where device_id = ?1 and time_ms in (select f.time_ms from fixes f \
             where f.device_id = ?1 and f.time_ms < ?2 \
             and not exists (select 1 from device_alarms a where a.device_id = f.device_id and a.fix_time_ms = f.time_ms) \
             and not exists (select 1 from alarms al where al.device_id = f.device_id and al.kind in ({critical}) \
             and f.time_ms >= al.trigger_time - ?3 and f.time_ms <= al.trigger_time + ?4 \
             and (al.closed_at is null or f.time_ms <= al.closed_at)) \
             order by f.time_ms limit ?5)",
            critical = crate::alarms::critical_kinds_sql()
        );
        let devices = crate::purge_cutoffs(&self.pool, now, default_retention_days).await?;
        crate::purge_in_batches(devices, |device, cutoff| {
            let sql = &sql;
            async move {
                let done = sqlx::query(sql)
                    .bind(device)
                    .bind(ms(cutoff))
                    .bind(crate::alarms::TRAIL_BEFORE.num_milliseconds())
                    .bind(crate::alarms::TRAIL_AFTER_MAX.num_milliseconds())
                    .bind(crate::PURGE_BATCH)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        })
        .await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// The binding row of a device registered with a wearer.
async fn record_binding(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    device: &NewDevice,
    wearer: WearerId,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into device_bindings (tenant_id, device_id, wearer_id, bound_at) values (?, ?, ?, ?)",
    )
    .bind(db_id(device.tenant.0))
    .bind(device.id.as_str())
    .bind(db_id(wearer.0))
    .bind(ms(Utc::now()))
    .execute(&mut **tx)
    .await
    .map_err(conflict("device binding"))?;
    Ok(())
}

/// Starts a transaction holding the write lock from its first statement (`BEGIN IMMEDIATE`).
/// Every transaction here writes; a deferred one that reads first cannot take the write lock
/// once another connection has committed since (SQLite answers busy at once, without waiting
/// for the busy timeout), so it would fail under concurrent writers instead of queueing.
async fn begin_write(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

// Value conversions for the shared queries of `directory`: uuids as text, times as ms.

fn db_id(id: Uuid) -> String {
    id.to_string()
}

fn db_time(t: DateTime<Utc>) -> i64 {
    ms(t)
}

fn get_uuid(r: &SqliteRow, i: usize) -> Result<Uuid, StoreError> {
    parse_id("id", r.get(i), Uuid::parse_str)
}

fn get_opt_uuid(r: &SqliteRow, i: usize) -> Result<Option<Uuid>, StoreError> {
    r.get::<Option<String>, _>(i).map(|s| parse_id("id", s, Uuid::parse_str)).transpose()
}

fn get_time(r: &SqliteRow, i: usize) -> Result<DateTime<Utc>, StoreError> {
    from_ms("time", r.get(i))
}

fn get_opt_time(r: &SqliteRow, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
    r.get::<Option<i64>, _>(i).map(|t| from_ms("time", t)).transpose()
}

/// A fixes row read from column `at` on, in the order of `recent_fixes`.
fn stored_fix(r: &SqliteRow, at: usize) -> Result<StoredFix, StoreError> {
    Ok(StoredFix {
        fix: Fix {
            time: from_ms("fix time", r.get(at))?,
            lat: r.get(at + 2),
            lon: r.get(at + 3),
            accuracy_m: r.get(at + 4),
            speed_mps: r.get(at + 5),
            course_deg: r.get(at + 6),
            altitude_m: r.get(at + 7),
            battery_pct: r.get::<Option<u8>, _>(at + 8),
            source: parse_source(r.get(at + 9))?,
        },
        received_at: from_ms("received time", r.get(at + 1))?,
        late: r.get(at + 10),
    })
}

crate::devices::impl_devices!(SqliteStore, sqlx::Sqlite);
crate::accounts::impl_accounts!(SqliteStore, sqlx::Sqlite);
crate::directory::impl_directory!(SqliteStore, sqlx::Sqlite, wearer_created = "created_ms");
crate::alarms::impl_alarms!(
    SqliteStore,
    sqlx::Sqlite,
    fix_columns = "f.time_ms, f.received_ms, f.lat, f.lon, f.accuracy_m, f.speed_mps, f.course_deg, \
                   f.altitude_m, f.battery_pct, f.source, f.late",
    fix_time = "time_ms",
    fix_received = "received_ms",
    alarm_time = "time_ms",
    alarm_received = "received_ms",
    alarm_fix_time = "fix_time_ms"
);
crate::outbox::impl_outbox!(SqliteStore, sqlx::Sqlite, skip_locked = "");

async fn insert_fix_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    device: &DeviceId,
    received_at: DateTime<Utc>,
    fixes: &[NewFix],
) -> Result<u64, StoreError> {
    if fixes.is_empty() {
        return Ok(0);
    }
    let mut q = QueryBuilder::new(
        "insert into fixes (device_id, time_ms, received_ms, lat, lon, accuracy_m, speed_mps, \
         course_deg, altitude_m, battery_pct, source, late) ",
    );
    q.push_values(fixes, |mut row, NewFix { fix, late }| {
        row.push_bind(device.as_str())
            .push_bind(ms(fix.time))
            .push_bind(ms(received_at))
            .push_bind(fix.lat)
            .push_bind(fix.lon)
            .push_bind(fix.accuracy_m)
            .push_bind(fix.speed_mps)
            .push_bind(fix.course_deg)
            .push_bind(fix.altitude_m)
            .push_bind(fix.battery_pct)
            .push_bind(fix.source.as_str())
            .push_bind(*late);
    });
    q.push(" on conflict do nothing");
    Ok(q.build().execute(&mut **tx).await?.rows_affected())
}
