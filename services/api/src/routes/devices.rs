//! Devices: register, bind to a wearer, unbind, replace. Bindings are kept as history, so a
//! replaced watch leaves the wearer's trail whole.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use trygg_core::{DeviceId, TenantId, WearerId};
use trygg_store::{DeviceInfo, NewDevice, Protocol, token};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{EDITORS, READERS, find_wearer, zones_changed};
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::validate::{Body, Check};

/// A device to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeviceIn {
    /// The id the device reports: IMEI, watch id, or a name for native devices.
    pub id: String,
    /// `native`, `watch`, `gt06` or `osmand`.
    pub protocol: String,
    /// A wearer to bind it to at once.
    pub wearer: Option<Uuid>,
}

/// A device.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceOut {
    /// Its id.
    pub id: String,
    /// Its protocol.
    pub protocol: &'static str,
    /// The wearer it is bound to.
    pub wearer: Option<Uuid>,
    /// A native device's token, shown only in the registration answer (stored hashed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<DeviceInfo> for DeviceOut {
    fn from(d: DeviceInfo) -> Self {
        Self {
            id: d.id.to_string(),
            protocol: d.protocol.as_str(),
            wearer: d.wearer.map(|w| w.0),
            token: None,
        }
    }
}

/// Binding request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindIn {
    /// The wearer.
    pub wearer: Uuid,
}

/// Replacement request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceIn {
    /// The registered, unbound device that takes over.
    pub device: String,
}

fn path_device(id: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(id).map_err(|_| ApiError::NotFound("device"))
}

/// The wearer to bind to: in the tenant and active, else 422 on `field`.
async fn bindable_wearer(
    state: &ApiState,
    tenant: TenantId,
    field: &str,
    id: Uuid,
) -> Result<WearerId, ApiError> {
    match find_wearer(state, tenant, &id.to_string()).await {
        Ok(w) if w.deactivated_at.is_none() => Ok(w.id),
        Ok(_) => Err(ApiError::field(field, "the wearer is deactivated")),
        Err(ApiError::NotFound(_)) => Err(ApiError::field(field, "no such wearer")),
        Err(e) => Err(e),
    }
}

async fn answer(state: &ApiState, tenant: TenantId, id: &DeviceId) -> Result<Json<DeviceOut>, ApiError> {
    Ok(Json(state.store.device(tenant, id).await?.ok_or(ApiError::NotFound("device"))?.into()))
}

/// Registers a device. A device id is registered once in the whole installation: 409 if it is
/// taken, in this tenant or another.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", request_body = NewDeviceIn, security(("bearer" = [])),
    responses((status = 201, body = DeviceOut), (status = 409), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn register(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<NewDeviceIn>,
) -> Result<(StatusCode, Json<DeviceOut>), ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let mut check = Check::default();
    let id = check.result("id", DeviceId::parse(&body.id));
    let protocol: Option<Protocol> = check.parse("protocol", &body.protocol);
    check.done()?;
    let (Some(id), Some(protocol)) = (id, protocol) else { return Err(ApiError::field("id", "required")) };
    let wearer = match body.wearer {
        Some(w) => Some(bindable_wearer(&state, tenant, "wearer", w).await?),
        None => None,
    };
    let secret = (protocol == Protocol::Native).then(token::generate);
    let new = NewDevice {
        id: id.clone(),
        tenant,
        wearer,
        protocol,
        token_hash: secret.as_deref().map(token::hash),
    };
    state.store.register_device(&new).await?;
    if wearer.is_some() {
        zones_changed(&state, tenant).await?;
    }
    let out = DeviceOut {
        id: id.to_string(),
        protocol: protocol.as_str(),
        wearer: wearer.map(|w| w.0),
        token: secret,
    };
    Ok((StatusCode::CREATED, Json(out)))
}

/// Lists the tenant's devices.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = Vec<DeviceOut>)))]
#[tracing::instrument(skip_all)]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<Vec<DeviceOut>>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    Ok(Json(state.store.devices(tenant).await?.into_iter().map(Into::into).collect()))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = DeviceOut), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeviceOut>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    answer(&state, tenant, &path_device(&id)?).await
}

/// Binds an unbound device to a wearer.
#[utoipa::path(post, path = "/api/v1/devices/{id}/bind", tag = "devices", params(("id" = String, Path)), request_body = BindIn,
    security(("bearer" = [])), responses((status = 200, body = DeviceOut), (status = 404), (status = 409), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn bind(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<BindIn>,
) -> Result<Json<DeviceOut>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let id = path_device(&id)?;
    state.store.device(tenant, &id).await?.ok_or(ApiError::NotFound("device"))?;
    let wearer = bindable_wearer(&state, tenant, "wearer", body.wearer).await?;
    state.store.bind_device(tenant, &id, wearer, Utc::now()).await?;
    zones_changed(&state, tenant).await?;
    answer(&state, tenant, &id).await
}

/// Ends a device's binding (the history stays).
#[utoipa::path(post, path = "/api/v1/devices/{id}/unbind", tag = "devices", params(("id" = String, Path)),
    security(("bearer" = [])), responses((status = 200, body = DeviceOut), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all)]
pub async fn unbind(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeviceOut>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let id = path_device(&id)?;
    state.store.unbind_device(tenant, &id, Utc::now()).await?;
    zones_changed(&state, tenant).await?;
    answer(&state, tenant, &id).await
}

/// Replaces a bound device with a registered, unbound one: the wearer moves to it in one step.
#[utoipa::path(post, path = "/api/v1/devices/{id}/replace", tag = "devices", params(("id" = String, Path)),
    request_body = ReplaceIn, security(("bearer" = [])),
    responses((status = 200, body = DeviceOut, description = "the new device"), (status = 404), (status = 409), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn replace(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<ReplaceIn>,
) -> Result<Json<DeviceOut>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let old = path_device(&id)?;
    state.store.device(tenant, &old).await?.ok_or(ApiError::NotFound("device"))?;
    let mut check = Check::default();
    let new = check.result("device", DeviceId::parse(&body.device));
    check.ensure(new.as_ref() != Some(&old), "device", "must differ from the replaced device");
    check.done()?;
    let new = new.ok_or_else(|| ApiError::field("device", "required"))?;
    if state.store.device(tenant, &new).await?.is_none() {
        return Err(ApiError::field("device", "no such device; register it first"));
    }
    state.store.replace_device(tenant, &old, &new, Utc::now()).await?;
    zones_changed(&state, tenant).await?;
    answer(&state, tenant, &new).await
}
