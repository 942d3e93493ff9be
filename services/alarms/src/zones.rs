//! The per-tenant zone indexes that the alarm engine evaluates fixes against.
//!
//! Each tenant has an immutable [`ZoneIndex`] holding the zones that alarm now: zones of active
//! wearers with a consent in force covering passive alarms, applied to the devices bound to
//! them. The map of indexes sits behind `arc-swap`, so a reader takes the current index without
//! a lock. After every write that can change that set (zones, consents, bindings, deactivation)
//! the API calls [`ZoneIndexes::rebuild`] and the next fix is evaluated against the new index:
//! edits take effect without a restart. Consent that lapses by its end date is caught by the
//! periodic [`ZoneIndexes::rebuild_all`] in `serve`; the engine should still check the time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use trygg_core::{DeviceId, TenantId, WearerId};
use trygg_geofence::{Schedule, Shape, Zone, ZoneId, ZoneIndex, ZoneKind};
use trygg_store::{Store, StoredZone};

use crate::EngineError;

/// The zone index of every tenant, swapped atomically on edits.
#[derive(Debug, Default)]
pub struct ZoneIndexes {
    indexes: ArcSwap<HashMap<TenantId, Arc<ZoneIndex>>>,
    /// Serialises rebuilds so an older rebuild never overwrites a newer one.
    rebuilding: tokio::sync::Mutex<()>,
}

impl ZoneIndexes {
    /// The tenant's current index (empty if it has no alarming zones).
    pub fn get(&self, tenant: TenantId) -> Arc<ZoneIndex> {
        self.indexes.load().get(&tenant).cloned().unwrap_or_else(|| Arc::new(ZoneIndex::empty()))
    }

    /// Rebuilds one tenant's index from the store and swaps it in.
    pub async fn rebuild(&self, store: &dyn Store, tenant: TenantId) -> Result<(), EngineError> {
        let _one_at_a_time = self.rebuilding.lock().await;
        let index = Arc::new(build(store, tenant, Utc::now()).await?);
        self.indexes.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(tenant, index.clone());
            next
        });
        Ok(())
    }

    /// Rebuilds every tenant's index (at start, and periodically for consents that lapse).
    pub async fn rebuild_all(&self, store: &dyn Store) -> Result<(), EngineError> {
        for tenant in store.tenants().await? {
            self.rebuild(store, tenant.id).await?;
        }
        Ok(())
    }
}

async fn build(store: &dyn Store, tenant: TenantId, now: DateTime<Utc>) -> Result<ZoneIndex, EngineError> {
    // Sets, not lists: a tenant of 20,000 wearers has 100,000 zones to check against them.
    let consenting: HashSet<WearerId> = store
        .consents(tenant, None)
        .await?
        .into_iter()
        .filter(|c| c.consent.passive_alarms && c.in_force_at(now))
        .map(|c| c.consent.wearer)
        .collect();
    let active: HashSet<WearerId> = store
        .wearers(tenant)
        .await?
        .into_iter()
        .filter(|w| w.deactivated_at.is_none())
        .map(|w| w.id)
        .collect();
    let mut devices: HashMap<WearerId, Vec<DeviceId>> = HashMap::new();
    for d in store.devices(tenant).await? {
        if let Some(w) = d.wearer {
            devices.entry(w).or_default().push(d.id);
        }
    }
    let mut zones = Vec::new();
    for stored in store.zones(tenant, None).await? {
        if !(consenting.contains(&stored.wearer) && active.contains(&stored.wearer)) {
            continue;
        }
        let zone =
            to_geofence(&stored)?.for_devices(devices.get(&stored.wearer).cloned().unwrap_or_default());
        zones.push(zone);
    }
    ZoneIndex::build(zones).map_err(|e| EngineError::Corrupt(format!("indexing zones of {tenant}: {e}")))
}

/// A stored zone as the evaluator's [`Zone`]. Stored zones were validated on the way in, so a
/// failure here means the database holds something the API never wrote.
pub fn to_geofence(stored: &StoredZone) -> Result<Zone, EngineError> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        EngineError::Corrupt(format!("stored zone {} has an unusable {what}: {e}", stored.id))
    };
    let f = &stored.fields;
    let geometry: geojson::Geometry = f.geometry.parse().map_err(|e| corrupt("geometry", &e))?;
    let shape = Shape::from_geojson(&geometry.value, f.radius_m).map_err(|e| corrupt("geometry", &e))?;
    let kind: ZoneKind =
        serde_json::from_value(serde_json::Value::String(f.kind.clone())).map_err(|e| corrupt("kind", &e))?;
    let mut zone =
        Zone::new(ZoneId::new(stored.id.to_string()), kind, shape).map_err(|e| corrupt("geometry", &e))?;
    if let Some(schedule) = &f.schedule {
        let schedule: Schedule = serde_json::from_str(schedule).map_err(|e| corrupt("schedule", &e))?;
        zone = zone.with_schedule(schedule);
    }
    Ok(zone)
}
