//! What the device listeners need to know and record about TCP and OsmAnd devices: who a device
//! is (tenant, wearer, protocol, clock offset), when it was last heard and its battery, ids heard
//! before anyone registered them, and the commands sent to a device.
//!
//! A trait of its own (like [`Directory`](crate::Directory) and [`Alarms`](crate::Alarms)) so the
//! listeners and the API depend on a handful of small queries, each written once for both
//! backends.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::instrument;
use trygg_core::{DeviceId, TenantId, WearerId};
use uuid::Uuid;

use crate::dialect::{Row, get_opt_time, get_opt_uuid, get_time, get_uuid, query};
use crate::directory::insert_binding;
use crate::{Protocol, SqlStore, StoreError, conflict, parse_protocol};

/// What a listener needs to accept a TCP or OsmAnd device's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProfile {
    /// The tenant it is registered in.
    pub tenant: TenantId,
    /// The wearer it is bound to now.
    pub wearer: Option<WearerId>,
    /// The protocol it was registered with.
    pub protocol: Protocol,
    /// Its clock's offset from UTC in minutes, if set.
    pub utc_offset_minutes: Option<i32>,
}

/// What the API shows about a device beyond its registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    /// The device.
    pub id: DeviceId,
    /// Its clock's offset from UTC in minutes, if set.
    pub utc_offset_minutes: Option<i32>,
    /// When it was last heard (registered or not).
    pub last_heard_at: Option<DateTime<Utc>>,
    /// When it was first heard while nobody had registered it.
    pub heard_before_registration_at: Option<DateTime<Utc>>,
    /// The battery it last reported in a keep-alive, in percent.
    pub last_battery_pct: Option<u8>,
}

/// That a registered device was heard, for [`Devices::devices_heard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHeard {
    /// The device.
    pub device: DeviceId,
    /// When.
    pub at: DateTime<Utc>,
    /// The battery it reported then, if it did.
    pub battery_pct: Option<u8>,
}

/// A command sent to a device on its open connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCommandLog {
    /// The device.
    pub device: DeviceId,
    /// The command as the API names it, with its argument (`locate`, `upload_interval 60`).
    pub command: String,
    /// The user who asked.
    pub sent_by: Option<Uuid>,
    /// When it was written to the connection.
    pub sent_at: DateTime<Utc>,
}

/// One period in which a device was bound to a wearer, seen from the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceBinding {
    /// The wearer.
    pub wearer: WearerId,
    /// From.
    pub bound_at: DateTime<Utc>,
    /// Until, if it ended.
    pub unbound_at: Option<DateTime<Utc>>,
}

/// A device to register.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// The id the device reports.
    pub id: DeviceId,
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// The wearer it is bound to, if any yet.
    pub wearer: Option<WearerId>,
    /// Its protocol.
    pub protocol: Protocol,
    /// Hash of its token ([`token::hash`]); native devices only.
    pub token_hash: Option<String>,
}

/// What ingest needs to know about a device to accept its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// The wearer it is bound to.
    pub wearer: Option<WearerId>,
    /// Its protocol.
    pub protocol: Protocol,
    /// Hash of its token, if it has one.
    pub token_hash: Option<String>,
}

/// Device registration, listener and device status queries.
#[async_trait]
pub trait Devices: Send + Sync {
    /// Registers a device. Fails with [`StoreError::Conflict`] if the id is registered
    /// anywhere, in this tenant or another.
    async fn register_device(&self, device: &NewDevice) -> Result<(), StoreError>;
    /// Looks a device up for authentication.
    async fn device_auth(&self, id: &DeviceId) -> Result<Option<DeviceAuth>, StoreError>;
    /// The registered device with this id, in any tenant: the listeners' identity check.
    async fn device_profile(&self, id: &DeviceId) -> Result<Option<DeviceProfile>, StoreError>;
    /// Records, in one transaction, that registered devices were heard: each device's
    /// `last_heard_at` becomes its latest `at`, and its battery the latest one reported.
    async fn devices_heard(&self, heard: &[DeviceHeard]) -> Result<(), StoreError>;
    /// Records that a registered device was heard at `at`, with the battery it reported.
    async fn device_heard(
        &self,
        id: &DeviceId,
        at: DateTime<Utc>,
        battery_pct: Option<u8>,
    ) -> Result<(), StoreError> {
        self.devices_heard(&[DeviceHeard { device: id.clone(), at, battery_pct }]).await
    }
    /// Records that an id nobody registered connected over `protocol` at `at` (and was refused).
    async fn unregistered_heard(
        &self,
        id: &DeviceId,
        protocol: Protocol,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Sets (or with `None` clears) a device's clock offset; `false` if it is not in the tenant.
    async fn set_utc_offset(
        &self,
        tenant: TenantId,
        id: &DeviceId,
        minutes: Option<i32>,
    ) -> Result<bool, StoreError>;
    /// Status of the tenant's devices (one device when `id` is given), by id.
    async fn device_statuses(
        &self,
        tenant: TenantId,
        id: Option<&DeviceId>,
    ) -> Result<Vec<DeviceStatus>, StoreError>;
    /// Appends to the device's command log.
    async fn log_device_command(&self, tenant: TenantId, entry: &DeviceCommandLog) -> Result<(), StoreError>;
    /// The device's command log, oldest first.
    async fn device_commands(
        &self,
        tenant: TenantId,
        id: &DeviceId,
    ) -> Result<Vec<DeviceCommandLog>, StoreError>;
    /// The device whose token has this hash, with what ingest needs to accept its data: a
    /// native device is authenticated by its token before its request body is read.
    async fn device_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(DeviceId, DeviceAuth)>, StoreError>;
    /// Every binding the device had in the tenant, oldest first: whose positions its fixes are
    /// at which time.
    async fn device_bindings(
        &self,
        tenant: TenantId,
        id: &DeviceId,
    ) -> Result<Vec<DeviceBinding>, StoreError>;
}

#[async_trait]
impl Devices for SqlStore {
    #[instrument(level = "debug", skip_all)]
    async fn register_device(&self, device: &NewDevice) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        query(
            "insert into devices (id, tenant_id, wearer_id, protocol, token_hash, created_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(device.id.as_str())
        .bind(device.tenant)
        .bind(device.wearer)
        .bind(device.protocol.as_str())
        .bind(device.token_hash.as_deref())
        .bind(Utc::now())
        .execute(&mut tx)
        .await
        .map_err(conflict("device"))?;
        if let Some(wearer) = device.wearer {
            insert_binding(&mut tx, device.tenant, &device.id, wearer, Utc::now()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn device_auth(&self, id: &DeviceId) -> Result<Option<DeviceAuth>, StoreError> {
        let row = query("select id, tenant_id, wearer_id, protocol, token_hash from devices where id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.db)
            .await?;
        Ok(row.as_ref().map(auth_row).transpose()?.map(|(_, auth)| auth))
    }

    #[instrument(level = "debug", skip_all)]
    async fn device_profile(&self, id: &DeviceId) -> Result<Option<DeviceProfile>, StoreError> {
        let row =
            query("select tenant_id, wearer_id, protocol, utc_offset_minutes from devices where id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.db)
                .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(DeviceProfile {
            tenant: TenantId(get_uuid(&r, 0)?),
            wearer: get_opt_uuid(&r, 1)?.map(WearerId),
            protocol: parse_protocol(r.get(2))?,
            utc_offset_minutes: r.get(3),
        }))
    }

    #[instrument(level = "debug", skip_all, fields(devices = heard.len()))]
    async fn devices_heard(&self, heard: &[DeviceHeard]) -> Result<(), StoreError> {
        // One row per device (an update joining two rows to one device takes either), in the
        // order heard: the latest time, the latest battery reported.
        let mut latest: BTreeMap<&str, (DateTime<Utc>, Option<u8>)> = BTreeMap::new();
        for h in heard {
            let e = latest.entry(h.device.as_str()).or_insert((h.at, None));
            e.0 = e.0.max(h.at);
            e.1 = h.battery_pct.or(e.1);
        }
        let rows: Vec<_> = latest.into_iter().collect();
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await?;
        for chunk in rows.chunks(tx.rows_per_statement(3)) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let [a, b, c] = [1, 2, 3].map(|k| tx.placeholder(3 * i + k));
                    format!("({a}, {b}, {c})")
                })
                .collect();
            let mut q = query(format!(
                "with heard (id, at, battery) as (values {}) \
                 update devices set last_heard_at = heard.at, \
                 last_battery_pct = coalesce(heard.battery, devices.last_battery_pct) \
                 from heard where devices.id = heard.id",
                values.join(", ")
            ));
            for (device, (at, battery_pct)) in chunk {
                q = q.bind(*device).bind(*at).bind(battery_pct.map(i16::from));
            }
            q.execute(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn unregistered_heard(
        &self,
        id: &DeviceId,
        protocol: Protocol,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        query(
            "insert into unregistered_devices (id, protocol, first_heard_at, last_heard_at, times_heard) \
                     values ($1, $2, $3, $3, 1) on conflict (id) do update set \
                     protocol = excluded.protocol, last_heard_at = excluded.last_heard_at, \
                     times_heard = unregistered_devices.times_heard + 1",
        )
        .bind(id.as_str())
        .bind(protocol.as_str())
        .bind(at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn set_utc_offset(
        &self,
        tenant: TenantId,
        id: &DeviceId,
        minutes: Option<i32>,
    ) -> Result<bool, StoreError> {
        let done = query("update devices set utc_offset_minutes = $1 where tenant_id = $2 and id = $3")
            .bind(minutes)
            .bind(tenant.0)
            .bind(id.as_str())
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn device_statuses(
        &self,
        tenant: TenantId,
        id: Option<&DeviceId>,
    ) -> Result<Vec<DeviceStatus>, StoreError> {
        let rows = query(
            "select d.id, d.utc_offset_minutes, d.last_heard_at, u.first_heard_at, u.last_heard_at, \
                     d.last_battery_pct from devices d left join unregistered_devices u on u.id = d.id \
                     where d.tenant_id = $1 and ($2 is null or d.id = $2) order by d.id",
        )
        .bind(tenant.0)
        .bind(id.map(DeviceId::as_str))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                let heard = get_opt_time(r, 2)?;
                let unregistered_last = get_opt_time(r, 4)?;
                Ok(DeviceStatus {
                    id: crate::parse_device(r.get(0))?,
                    utc_offset_minutes: r.get(1),
                    last_heard_at: heard.max(unregistered_last),
                    heard_before_registration_at: get_opt_time(r, 3)?,
                    last_battery_pct: r
                        .get::<Option<i16>, _>(5)
                        .map(|b| crate::narrow("battery", i64::from(b)))
                        .transpose()?,
                })
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn log_device_command(&self, tenant: TenantId, e: &DeviceCommandLog) -> Result<(), StoreError> {
        query(
            "insert into device_commands (tenant_id, device_id, command, sent_by, sent_at) \
                     values ($1, $2, $3, $4, $5)",
        )
        .bind(tenant.0)
        .bind(e.device.as_str())
        .bind(&e.command)
        .bind(e.sent_by)
        .bind(e.sent_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn device_commands(
        &self,
        tenant: TenantId,
        id: &DeviceId,
    ) -> Result<Vec<DeviceCommandLog>, StoreError> {
        let rows = query(
            "select device_id, command, sent_by, sent_at from device_commands \
                     where tenant_id = $1 and device_id = $2 order by sent_at, id",
        )
        .bind(tenant.0)
        .bind(id.as_str())
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceCommandLog {
                    device: crate::parse_device(r.get(0))?,
                    command: r.get(1),
                    sent_by: get_opt_uuid(r, 2)?,
                    sent_at: get_opt_time(r, 3)?
                        .ok_or(StoreError::Corrupt { what: "command time", value: String::new() })?,
                })
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn device_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(DeviceId, DeviceAuth)>, StoreError> {
        let row =
            query("select id, tenant_id, wearer_id, protocol, token_hash from devices where token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.db)
                .await?;
        row.as_ref().map(auth_row).transpose()
    }

    #[instrument(level = "debug", skip_all)]
    async fn device_bindings(
        &self,
        tenant: TenantId,
        id: &DeviceId,
    ) -> Result<Vec<DeviceBinding>, StoreError> {
        let rows = query(
            "select wearer_id, bound_at, unbound_at from device_bindings \
                     where tenant_id = $1 and device_id = $2 order by bound_at, id",
        )
        .bind(tenant.0)
        .bind(id.as_str())
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceBinding {
                    wearer: WearerId(get_uuid(r, 0)?),
                    bound_at: get_time(r, 1)?,
                    unbound_at: get_opt_time(r, 2)?,
                })
            })
            .collect()
    }
}

/// Reads `id, tenant_id, wearer_id, protocol, token_hash` of a `devices` row.
fn auth_row(r: &Row) -> Result<(DeviceId, DeviceAuth), StoreError> {
    let auth = DeviceAuth {
        tenant: TenantId(get_uuid(r, 1)?),
        wearer: get_opt_uuid(r, 2)?.map(WearerId),
        protocol: parse_protocol(r.get(3))?,
        token_hash: r.get(4),
    };
    Ok((crate::parse_device(r.get(0))?, auth))
}
