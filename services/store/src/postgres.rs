//! The PostgreSQL backend, for installations that run several nodes or want a managed database.
//!
//! A commit returns once the WAL is flushed (with the default `synchronous_commit = on`), so an
//! acknowledged fix survives a crash of trygg, of PostgreSQL and a power loss of the database
//! host. Timestamps are `timestamptz`, ids `uuid`.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, QueryBuilder, Row};
use trygg_core::{DeviceId, Fix, TenantId, WearerId};
use uuid::Uuid;

use crate::{
    AlarmInsert, ConnectOptions, DeviceAuth, Directory, FixBatch, NewDevice, NewDeviceAlarm, NewFix, Store,
    StoreError, StoredDeviceAlarm, StoredFix, WearerFields, conflict, parse_kind, parse_protocol,
    parse_source,
};

/// Rows per INSERT statement: 12 columns stay well under PostgreSQL's 65,535 bound parameters.
const ROWS_PER_INSERT: usize = 1000;

/// Storage in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and applies the migrations (under an advisory lock, so several nodes
    /// starting at once apply them once).
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url).map_err(|_| StoreError::BadUrl(url.to_owned()))?;
        // Migrations may rewrite large tables: they run on their own connection, without the
        // statement timeout the pool's connections get.
        let mut migrating = tokio::time::timeout(options.busy_timeout, PgConnection::connect_with(&connect))
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))??;
        sqlx::migrate!("../../migrations/postgres").run(&mut migrating).await?;
        migrating.close().await?;
        let statement_timeout = format!("{}ms", options.statement_timeout.as_millis());
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.busy_timeout)
            .connect_with(connect.options([("statement_timeout", statement_timeout.as_str())]))
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str) -> Result<TenantId, StoreError> {
        let id = TenantId::new();
        sqlx::query("insert into tenants (id, name) values ($1, $2)")
            .bind(id.0)
            .bind(name)
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
            "insert into devices (id, tenant_id, wearer_id, protocol, token_hash) values ($1, $2, $3, $4, $5)",
        )
        .bind(device.id.as_str())
        .bind(device.tenant.0)
        .bind(device.wearer.map(|w| w.0))
        .bind(device.protocol.as_str())
        .bind(device.token_hash.as_deref())
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
        let row = sqlx::query("select tenant_id, wearer_id, protocol, token_hash from devices where id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(DeviceAuth {
                tenant: TenantId(r.get(0)),
                wearer: r.get::<Option<uuid::Uuid>, _>(1).map(WearerId),
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
            "select time, received_at, lat, lon, accuracy_m, speed_mps, course_deg, altitude_m, \
             battery_pct, source, late from fixes where device_id = $1 order by time desc limit $2",
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
            "insert into device_alarms (device_id, kind, time, received_at, clock_suspect, fix_time) \
             values ($1, $2, $3, $4, $5, $6) on conflict do nothing returning id",
        )
        .bind(alarm.device.as_str())
        .bind(alarm.kind.as_str())
        .bind(alarm.time)
        .bind(alarm.received_at)
        .bind(alarm.clock_suspect)
        .bind(alarm.fix.as_ref().map(|f| f.fix.time))
        .fetch_optional(&mut *tx)
        .await?;
        let result = match new_id {
            Some(id) => AlarmInsert { id, duplicate: false },
            None => {
                let id = sqlx::query_scalar(
                    "select id from device_alarms where device_id = $1 and kind = $2 and time = $3",
                )
                .bind(alarm.device.as_str())
                .bind(alarm.kind.as_str())
                .bind(alarm.time)
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
            "select id, kind, time, received_at, clock_suspect, fix_time from device_alarms \
             where device_id = $1 order by received_at, id",
        )
        .bind(device.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredDeviceAlarm {
                    id: r.get(0),
                    kind: parse_kind(r.get(1))?,
                    time: r.get(2),
                    received_at: r.get(3),
                    clock_suspect: r.get(4),
                    fix_time: r.get(5),
                })
            })
            .collect()
    }

    async fn purge_fixes(&self, now: DateTime<Utc>, default_retention_days: u32) -> Result<u64, StoreError> {
        let sql = format!(
            "delete from fixes where device_id = $1 and time in (select f.time from fixes f \
             where f.device_id = $1 and f.time < $2 \
             and not exists (select 1 from device_alarms a where a.device_id = f.device_id and a.fix_time = f.time) \
             and not exists (select 1 from alarms al where al.device_id = f.device_id and al.kind in ({critical}) \
             and f.time >= al.trigger_time - make_interval(secs => $3) \
             and f.time <= al.trigger_time + make_interval(secs => $4) \
             and (al.closed_at is null or f.time <= al.closed_at)) \
             order by f.time limit $5)",
            critical = crate::alarms::critical_kinds_sql()
        );
        let devices = crate::purge_cutoffs(&self.pool, now, default_retention_days).await?;
        crate::purge_in_batches(devices, |device, cutoff| {
            let sql = &sql;
            async move {
                let done = sqlx::query(sql)
                    .bind(device)
                    .bind(cutoff)
                    .bind(crate::alarms::TRAIL_BEFORE.num_seconds() as f64)
                    .bind(crate::alarms::TRAIL_AFTER_MAX.num_seconds() as f64)
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
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    device: &NewDevice,
    wearer: WearerId,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into device_bindings (tenant_id, device_id, wearer_id, bound_at) values ($1, $2, $3, $4)",
    )
    .bind(device.tenant.0)
    .bind(device.id.as_str())
    .bind(wearer.0)
    .bind(Utc::now())
    .execute(&mut **tx)
    .await
    .map_err(conflict("device binding"))?;
    Ok(())
}

/// Starts a transaction; row locks and `for update skip locked` do the rest on PostgreSQL.
async fn begin_write(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    pool.begin().await
}

// Value conversions for the shared queries of `directory`: native uuid and timestamptz.

fn db_id(id: Uuid) -> Uuid {
    id
}

fn db_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t
}

#[allow(clippy::unnecessary_wraps)] // the SQLite twin parses text and can fail
fn get_uuid(r: &PgRow, i: usize) -> Result<Uuid, StoreError> {
    Ok(r.get(i))
}

#[allow(clippy::unnecessary_wraps)]
fn get_opt_uuid(r: &PgRow, i: usize) -> Result<Option<Uuid>, StoreError> {
    Ok(r.get(i))
}

#[allow(clippy::unnecessary_wraps)]
fn get_time(r: &PgRow, i: usize) -> Result<DateTime<Utc>, StoreError> {
    Ok(r.get(i))
}

#[allow(clippy::unnecessary_wraps)]
fn get_opt_time(r: &PgRow, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(r.get(i))
}

/// A fixes row read from column `at` on, in the order of `recent_fixes`.
fn stored_fix(r: &PgRow, at: usize) -> Result<StoredFix, StoreError> {
    let battery_pct = r
        .get::<Option<i16>, _>(at + 8)
        .map(|b| u8::try_from(b).map_err(|_| StoreError::Corrupt { what: "battery", value: b.to_string() }))
        .transpose()?;
    Ok(StoredFix {
        fix: Fix {
            time: r.get(at),
            lat: r.get(at + 2),
            lon: r.get(at + 3),
            accuracy_m: r.get(at + 4),
            speed_mps: r.get(at + 5),
            course_deg: r.get(at + 6),
            altitude_m: r.get(at + 7),
            battery_pct,
            source: parse_source(r.get(at + 9))?,
        },
        received_at: r.get(at + 1),
        late: r.get(at + 10),
    })
}

crate::devices::impl_devices!(PgStore, sqlx::Postgres);
crate::accounts::impl_accounts!(PgStore, sqlx::Postgres);
crate::directory::impl_directory!(PgStore, sqlx::Postgres, wearer_created = "created_at");
crate::alarms::impl_alarms!(
    PgStore,
    sqlx::Postgres,
    fix_columns = "f.time, f.received_at, f.lat, f.lon, f.accuracy_m, f.speed_mps, f.course_deg, \
                   f.altitude_m, f.battery_pct, f.source, f.late",
    fix_time = "time",
    fix_received = "received_at",
    alarm_time = "time",
    alarm_received = "received_at",
    alarm_fix_time = "fix_time"
);
crate::outbox::impl_outbox!(PgStore, sqlx::Postgres, skip_locked = " for update skip locked");

async fn insert_fix_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    device: &DeviceId,
    received_at: DateTime<Utc>,
    fixes: &[NewFix],
) -> Result<u64, StoreError> {
    if fixes.is_empty() {
        return Ok(0);
    }
    let mut q = QueryBuilder::new(
        "insert into fixes (device_id, time, received_at, lat, lon, accuracy_m, speed_mps, \
         course_deg, altitude_m, battery_pct, source, late) ",
    );
    q.push_values(fixes, |mut row, NewFix { fix, late }| {
        row.push_bind(device.as_str())
            .push_bind(fix.time)
            .push_bind(received_at)
            .push_bind(fix.lat)
            .push_bind(fix.lon)
            .push_bind(fix.accuracy_m)
            .push_bind(fix.speed_mps)
            .push_bind(fix.course_deg)
            .push_bind(fix.altitude_m)
            .push_bind(fix.battery_pct.map(i16::from))
            .push_bind(fix.source.as_str())
            .push_bind(*late);
    });
    q.push(" on conflict do nothing");
    Ok(q.build().execute(&mut **tx).await?.rows_affected())
}
