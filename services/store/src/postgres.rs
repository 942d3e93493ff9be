//! The PostgreSQL backend, for installations that run several nodes or want a managed database.
//!
//! A commit returns once the WAL is flushed (with the default `synchronous_commit = on`), so an
//! acknowledged fix survives a crash of trygg, of PostgreSQL and a power loss of the database
//! host. Timestamps are `timestamptz`, ids `uuid`.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, QueryBuilder, Row};
use trygg_core::{DeviceId, Fix, TenantId, WearerId};

use crate::{
    AlarmInsert, ConnectOptions, DeviceAuth, FixBatch, NewDevice, NewDeviceAlarm, NewFix, Store, StoreError,
    StoredDeviceAlarm, StoredFix, conflict, parse_kind, parse_protocol, parse_source,
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
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.busy_timeout)
            .connect_with(connect)
            .await?;
        sqlx::migrate!("../../migrations/postgres").run(&pool).await?;
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
        let id = WearerId::new();
        sqlx::query("insert into wearers (id, tenant_id, name) values ($1, $2, $3)")
            .bind(id.0)
            .bind(tenant.0)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(conflict("wearer"))?;
        Ok(id)
    }

    async fn register_device(&self, device: &NewDevice) -> Result<(), StoreError> {
        sqlx::query(
            "insert into devices (id, tenant_id, wearer_id, protocol, token_hash) values ($1, $2, $3, $4, $5)",
        )
        .bind(device.id.as_str())
        .bind(device.tenant.0)
        .bind(device.wearer.map(|w| w.0))
        .bind(device.protocol.as_str())
        .bind(device.token_hash.as_deref())
        .execute(&self.pool)
        .await
        .map_err(conflict("device"))?;
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
        let mut tx = self.pool.begin().await?;
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
        rows.into_iter()
            .map(|r| {
                Ok(StoredFix {
                    fix: Fix {
                        time: r.get(0),
                        lat: r.get(2),
                        lon: r.get(3),
                        accuracy_m: r.get(4),
                        speed_mps: r.get(5),
                        course_deg: r.get(6),
                        altitude_m: r.get(7),
                        battery_pct: r
                            .get::<Option<i16>, _>(8)
                            .map(|b| {
                                u8::try_from(b).map_err(|_| StoreError::Corrupt {
                                    what: "battery",
                                    value: b.to_string(),
                                })
                            })
                            .transpose()?,
                        source: parse_source(r.get(9))?,
                    },
                    received_at: r.get(1),
                    late: r.get(10),
                })
            })
            .collect()
    }

    async fn insert_device_alarm(&self, alarm: &NewDeviceAlarm) -> Result<AlarmInsert, StoreError> {
        let mut tx = self.pool.begin().await?;
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

    async fn close(&self) {
        self.pool.close().await;
    }
}

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
