//! A wearer's zones (trygghetszoner), as GeoJSON.
//!
//! Geometry is checked with the geofence crate's own parser and validation, so the API accepts
//! exactly what the evaluator can answer for. A zone outside Sweden is stored with a warning
//! (a border municipality or a holiday may need one); without a consent in force covering
//! passive alarms a zone is stored but marked as not alarming.
//!
//! Before saving, a caseworker can dry-run a zone (`zones/dry-run`): the real exit policy and
//! schedule over the wearer's stored fixes of the last week answer which alarms the zone would
//! have raised, so a zone drawn too tight is seen before it pages staff. Like any read of
//! positions it needs a consent covering positioning and is recorded in the access log; only the
//! events leave the server, never the fixes between them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trygg_core::TenantId;
use trygg_geofence::{DeviceState, EventKind, Schedule, Shape, Zone, ZoneError, ZoneId, ZoneIndex, ZoneKind};
use trygg_store::{AccessEntry, StoredZone, Wearer, ZoneFields};
use utoipa::ToSchema;
use uuid::Uuid;

use super::wearers::{not_alarming_reason, require_positioning_consent};
use super::{EDITORS, READERS, find_visible_wearer, find_wearer, path_id, zones_changed};
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::settings::Settings;
use crate::validate::{Body, Check};

/// Most vertices in one zone: a hand-drawn zone has tens; thousands means an imported map
/// layer that belongs elsewhere and would slow every fix of the tenant.
pub const MAX_ZONE_VERTICES: usize = 10_000;
/// Largest circle radius, in metres.
pub const MAX_RADIUS_M: f64 = 50_000.0;
/// Sweden's bounding box, `(lon, lat)` min and max, with a little margin.
const SWEDEN: ((f64, f64), (f64, f64)) = ((10.5, 55.0), (24.5, 69.5));

/// A zone to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneIn {
    /// Name, e.g. "Hemma".
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
    /// `stay_inside` (alarm on exit) or `keep_out` (alarm on entry).
    #[schema(schema_with = zone_kinds)]
    pub kind: String,
    /// A GeoJSON geometry: Polygon, MultiPolygon, or Point with `radius_m`. `[lon, lat]`.
    #[schema(value_type = Object)]
    pub geometry: Value,
    /// Circle radius in metres, for a Point geometry (and only for one).
    #[schema(minimum = 1.0, maximum = 50000.0)]
    pub radius_m: Option<f64>,
    /// Weekly schedule, e.g. `{"windows":[{"days":["mon",…],"from":"22:00","to":"07:00"}]}`;
    /// `tz` defaults to the tenant's time zone. Left out: always active.
    #[schema(value_type = Option<Object>)]
    pub schedule: Option<Value>,
}

/// A zone's properties.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneProperties {
    /// The wearer.
    pub wearer: Uuid,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Circle radius.
    pub radius_m: Option<f64>,
    /// Weekly schedule.
    #[schema(value_type = Option<Object>)]
    pub schedule: Option<Value>,
    /// Whether the zone raises alarms now.
    pub alarming: bool,
    /// Why it does not, when it does not.
    pub not_alarming_reason: Option<&'static str>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A zone as a GeoJSON Feature.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneFeature {
    /// Always `Feature`.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// The zone id.
    pub id: Uuid,
    /// The geometry as given.
    #[schema(value_type = Object)]
    pub geometry: Value,
    /// The zone's properties.
    pub properties: ZoneProperties,
    /// Things worth a second look that did not stop the write (e.g. outside Sweden).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A wearer's zones as a GeoJSON FeatureCollection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneCollection {
    /// Always `FeatureCollection`.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// The zones.
    pub features: Vec<ZoneFeature>,
}

fn feature(
    z: StoredZone,
    reason: Option<&'static str>,
    warnings: Vec<String>,
) -> Result<ZoneFeature, ApiError> {
    let corrupt = |e: serde_json::Error| ApiError::Internal(format!("stored zone {}: {e}", z.id));
    let geometry = serde_json::from_str(&z.fields.geometry).map_err(corrupt)?;
    let schedule = z.fields.schedule.as_deref().map(serde_json::from_str).transpose().map_err(corrupt)?;
    Ok(ZoneFeature {
        type_: "Feature",
        id: z.id,
        geometry,
        properties: ZoneProperties {
            wearer: z.wearer.0,
            name: z.fields.name,
            kind: z.fields.kind,
            radius_m: z.fields.radius_m,
            schedule,
            alarming: reason.is_none(),
            not_alarming_reason: reason,
            updated_at: z.updated_at,
        },
        warnings,
    })
}

fn zone_kinds() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(["stay_inside", "keep_out"])
}

/// Checks a zone; returns what to store and the warnings.
fn checked_zone(body: ZoneIn, time_zone: &str) -> Result<(ZoneFields, Vec<String>), ApiError> {
    let mut check = Check::default();
    let mut warnings = Vec::new();
    check.text("name", &body.name, 1, 100);
    let kind: Option<ZoneKind> =
        check.result("kind", serde_json::from_value(Value::String(body.kind.clone()))).or_else(|| {
            check.ensure(false, "kind", "must be stay_inside or keep_out");
            None
        });
    let geometry: Option<geojson::Geometry> = serde_json::from_value(body.geometry.clone())
        .map_err(|e| check.ensure(false, "geometry", format!("not a GeoJSON geometry: {e}")))
        .ok();
    if let Some(g) = &geometry {
        let positions = positions(&g.value);
        check.ensure(
            positions.len() <= MAX_ZONE_VERTICES,
            "geometry",
            format!("too many vertices: {} (at most {MAX_ZONE_VERTICES})", positions.len()),
        );
        let ((min_lon, min_lat), (max_lon, max_lat)) = SWEDEN;
        let outside = positions.iter().any(|p| {
            p.len() >= 2 && !((min_lon..=max_lon).contains(&p[0]) && (min_lat..=max_lat).contains(&p[1]))
        });
        if outside {
            warnings.push(
                "the zone lies (partly) outside Sweden; check that lon and lat are not swapped".to_owned(),
            );
        }
        let is_point = matches!(g.value, geojson::Value::Point(_));
        match body.radius_m {
            Some(r) if !is_point => {
                check.ensure(false, "radius_m", format!("only a Point geometry has a radius, got {r}"))
            }
            Some(r) => check.range("radius_m", r, 1.0..=MAX_RADIUS_M),
            None => check.ensure(!is_point, "radius_m", "required for a Point geometry (a circle)"),
        };
    }
    let schedule = body.schedule.map(|mut s| {
        if let Value::Object(o) = &mut s {
            o.entry("tz").or_insert_with(|| Value::String(time_zone.to_owned()));
        }
        check.result("schedule", serde_json::from_value::<Schedule>(s))
    });
    if schedule.as_ref().and_then(Option::as_ref).is_some_and(|s| s.windows.is_empty()) {
        warnings.push("the schedule has no windows: the zone is never active".to_owned());
    }
    check.done()?;
    let (Some(kind), Some(geometry)) = (kind, geometry) else {
        return Err(ApiError::field("geometry", "required"));
    };
    // The geofence crate's own checks: closed rings, no self-intersection, valid coordinates.
    let zone = Shape::from_geojson(&geometry.value, body.radius_m)
        .and_then(|shape| Zone::new(ZoneId::new("new"), kind, shape));
    if let Err(e) = zone {
        let field = if matches!(e, ZoneError::MissingRadius | ZoneError::BadRadius(_)) {
            "radius_m"
        } else {
            "geometry"
        };
        return Err(ApiError::field(field, e.to_string()));
    }
    Ok((
        ZoneFields {
            name: body.name.trim().to_owned(),
            kind: body.kind,
            geometry: to_json(&geometry),
            radius_m: body.radius_m,
            schedule: schedule.flatten().map(|s| to_json(&s)),
        },
        warnings,
    ))
}

/// The checked values back as JSON for storage; they came from JSON, so this cannot fail.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Every position of a geometry, rings included.
fn positions(value: &geojson::Value) -> Vec<&[f64]> {
    use geojson::Value as V;
    match value {
        V::Point(p) => vec![p.as_slice()],
        V::MultiPoint(ps) | V::LineString(ps) => ps.iter().map(Vec::as_slice).collect(),
        V::Polygon(rings) | V::MultiLineString(rings) => rings.iter().flatten().map(Vec::as_slice).collect(),
        V::MultiPolygon(polys) => polys.iter().flatten().flatten().map(Vec::as_slice).collect(),
        V::GeometryCollection(gs) => gs.iter().flat_map(|g| positions(&g.value)).collect(),
    }
}

async fn reason_for(
    state: &ApiState,
    tenant: TenantId,
    wearer: &Wearer,
) -> Result<Option<&'static str>, ApiError> {
    let consents = state.store.consents(tenant, Some(wearer.id)).await?;
    Ok(not_alarming_reason(wearer, &consents, Utc::now()))
}

async fn find_zone(
    state: &ApiState,
    tenant: TenantId,
    wearer: &Wearer,
    id: &str,
) -> Result<StoredZone, ApiError> {
    let id = path_id("zone", id)?;
    let zones = state.store.zones(tenant, Some(wearer.id)).await?;
    zones.into_iter().find(|z| z.id == id).ok_or(ApiError::NotFound("zone"))
}

/// Draws a zone for a wearer.
#[utoipa::path(post, path = "/api/v1/wearers/{id}/zones", tag = "zones", params(("id" = Uuid, Path)), request_body = ZoneIn,
    security(("bearer" = [])), responses((status = 201, body = ZoneFeature), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<ZoneIn>,
) -> Result<(StatusCode, Json<ZoneFeature>), ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let wearer = find_wearer(&state, tenant, &id).await?;
    let settings = Settings::load(state.store.as_ref(), tenant).await?;
    let (fields, warnings) = checked_zone(body, &settings.time_zone)?;
    let now = Utc::now();
    let zone_id = state.store.add_zone(tenant, wearer.id, &fields, now).await?;
    zones_changed(&state, tenant).await?;
    let stored = StoredZone { id: zone_id, wearer: wearer.id, fields, updated_at: now };
    let reason = reason_for(&state, tenant, &wearer).await?;
    Ok((StatusCode::CREATED, Json(feature(stored, reason, warnings)?)))
}

/// A wearer's zones.
#[utoipa::path(get, path = "/api/v1/wearers/{id}/zones", tag = "zones", params(("id" = Uuid, Path)),
    security(("bearer" = [])), responses((status = 200, body = ZoneCollection), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ZoneCollection>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let wearer = find_visible_wearer(&state, &caller, tenant, &id).await?;
    let reason = reason_for(&state, tenant, &wearer).await?;
    let features = state
        .store
        .zones(tenant, Some(wearer.id))
        .await?
        .into_iter()
        .map(|z| feature(z, reason, Vec::new()))
        .collect::<Result<_, _>>()?;
    Ok(Json(ZoneCollection { type_: "FeatureCollection", features }))
}

/// One zone.
#[utoipa::path(get, path = "/api/v1/wearers/{id}/zones/{zone}", tag = "zones", params(("id" = Uuid, Path), ("zone" = Uuid, Path)),
    security(("bearer" = [])), responses((status = 200, body = ZoneFeature), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, zone)): Path<(String, String)>,
) -> Result<Json<ZoneFeature>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let wearer = find_visible_wearer(&state, &caller, tenant, &id).await?;
    let zone = find_zone(&state, tenant, &wearer, &zone).await?;
    Ok(Json(feature(zone, reason_for(&state, tenant, &wearer).await?, Vec::new())?))
}

/// Replaces a zone.
#[utoipa::path(put, path = "/api/v1/wearers/{id}/zones/{zone}", tag = "zones", params(("id" = Uuid, Path), ("zone" = Uuid, Path)),
    request_body = ZoneIn, security(("bearer" = [])), responses((status = 200, body = ZoneFeature), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, zone)): Path<(String, String)>,
    Body(body): Body<ZoneIn>,
) -> Result<Json<ZoneFeature>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let wearer = find_wearer(&state, tenant, &id).await?;
    let zone = find_zone(&state, tenant, &wearer, &zone).await?;
    let settings = Settings::load(state.store.as_ref(), tenant).await?;
    let (fields, warnings) = checked_zone(body, &settings.time_zone)?;
    let now = Utc::now();
    if !state.store.update_zone(tenant, wearer.id, zone.id, &fields, now).await? {
        return Err(ApiError::NotFound("zone"));
    }
    zones_changed(&state, tenant).await?;
    let stored = StoredZone { id: zone.id, wearer: wearer.id, fields, updated_at: now };
    Ok(Json(feature(stored, reason_for(&state, tenant, &wearer).await?, warnings)?))
}

/// Deletes a zone.
#[utoipa::path(delete, path = "/api/v1/wearers/{id}/zones/{zone}", tag = "zones", params(("id" = Uuid, Path), ("zone" = Uuid, Path)),
    security(("bearer" = [])), responses((status = 204), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, zone)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let wearer = find_wearer(&state, tenant, &id).await?;
    let zone = path_id("zone", &zone)?;
    if !state.store.delete_zone(tenant, wearer.id, zone).await? {
        return Err(ApiError::NotFound("zone"));
    }
    zones_changed(&state, tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How far back a dry run looks.
pub const DRY_RUN_DAYS: i64 = 7;
/// Most fixes a dry run reads per device: a week of a watch reporting every 30 s.
pub const DRY_RUN_MAX_FIXES: u32 = 7 * 24 * 120;

/// What a zone would have done over the last week.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRun {
    /// Start of the period looked at.
    pub from: DateTime<Utc>,
    /// End of the period (now).
    pub to: DateTime<Utc>,
    /// How many of the wearer's fixes the policy was run over.
    pub fixes_considered: usize,
    /// Whether a device had more fixes than a dry run reads ([`DRY_RUN_MAX_FIXES`]); then the
    /// oldest were left out.
    pub truncated: bool,
    /// The alarms (`exit` of a stay_inside zone, `enter` of a keep_out zone) and returns the zone
    /// would have raised, oldest first.
    pub events: Vec<DryRunEvent>,
    /// Things worth a second look about the zone itself (as when saving it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One event a zone would have raised, at the fix that confirmed it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunEvent {
    /// `exit`, `return` or `enter`.
    #[schema(value_type = String)]
    pub event: EventKind,
    /// The confirming fix's time.
    pub time: DateTime<Utc>,
    /// The confirming fix's latitude.
    pub lat: f64,
    /// The confirming fix's longitude.
    pub lon: f64,
    /// The confirming fix's accuracy in metres, if reported.
    pub accuracy_m: Option<f64>,
}

/// Runs a zone that is not saved yet (the body of a zone create) over the wearer's stored fixes
/// of the last 7 days, with the tenant's exit policy and the zone's schedule, and answers the
/// events it would have raised. Only fixes of devices while they were bound to this wearer count.
/// Recorded in the access log; needs a consent in force covering positioning.
#[utoipa::path(post, path = "/api/v1/wearers/{id}/zones/dry-run", tag = "zones", params(("id" = Uuid, Path)), request_body = ZoneIn,
    security(("bearer" = [])), responses((status = 200, body = DryRun), (status = 404),
    (status = 409, description = "no consent in force covers positioning"), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn dry_run(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<ZoneIn>,
) -> Result<Json<DryRun>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let wearer = find_wearer(&state, tenant, &id).await?;
    let settings = Settings::load(state.store.as_ref(), tenant).await?;
    let (fields, warnings) = checked_zone(body, &settings.time_zone)?;
    let now = Utc::now();
    require_positioning_consent(&state, tenant, &wearer, now).await?;
    let name = fields.name.clone();
    let draft = StoredZone { id: Uuid::nil(), wearer: wearer.id, fields, updated_at: now };
    let zone = trygg_alarms::zones::to_geofence(&draft)?;
    let from = now - TimeDelta::days(DRY_RUN_DAYS);
    let mut run =
        DryRun { from, to: now, fixes_considered: 0, truncated: false, events: Vec::new(), warnings };
    for binding in state.store.bindings(tenant, wearer.id).await? {
        let start = binding.bound_at.max(from);
        let end = binding.unbound_at.map_or(now, |u| u.min(now));
        if start >= end {
            continue;
        }
        let fixes = state.store.fixes_between(&binding.device, start, Some(end), DRY_RUN_MAX_FIXES).await?;
        run.truncated |= fixes.len() == DRY_RUN_MAX_FIXES as usize;
        // The engine evaluates a device's fixes against its wearer's zones; this one zone alone
        // decides the same (zones share only the device's speed check, which sees every fix).
        let index = ZoneIndex::build(vec![zone.clone().for_devices(vec![binding.device.clone()])])
            .map_err(|e| ApiError::Internal(format!("indexing a dry-run zone: {e}")))?;
        let mut device_state = DeviceState::default();
        // A binding ends at `unbound_at`, exclusive: the next wearer's first fix is not this one's.
        for stored in fixes.iter().filter(|f| binding.unbound_at.is_none_or(|u| f.fix.time < u)) {
            run.fixes_considered += 1;
            let fix = &stored.fix;
            for event in settings.exit_policy.evaluate(&index, &binding.device, &mut device_state, fix) {
                run.events.push(DryRunEvent {
                    event: event.kind,
                    time: event.time,
                    lat: fix.lat,
                    lon: fix.lon,
                    accuracy_m: fix.accuracy_m,
                });
            }
        }
    }
    run.events.sort_by_key(|e| e.time);
    // Recorded before the answer leaves: a read that cannot be logged is not served.
    let entry = AccessEntry {
        tenant,
        user: caller.user,
        wearer: wearer.id,
        at: now,
        what: "zone_dry_run".to_owned(),
        reason: format!("dry run of zone {name:?}"),
    };
    state.store.log_access(&entry).await?;
    Ok(Json(run))
}
