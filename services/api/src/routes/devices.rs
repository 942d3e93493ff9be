//! Devices: register (one, or a CSV import of delivered watches), bind to a wearer, unbind,
//! replace, set the device clock's offset, send a command to a connected watch. Bindings are
//! kept as history, so a replaced watch leaves the wearer's trail whole.
//!
//! Who may register: a watch, GT06 or OsmAnd device has no credential but its id, so whoever
//! registers an id receives its positions. Those are registered by tenant admins only; a native
//! device (which authenticates with the token shown once at registration) also by caseworkers.
//! An id registered anywhere answers the same 409 whichever tenant holds it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::collections::HashMap;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trygg_core::{DeviceId, TenantId, WearerId};
use trygg_ingest::{CommandError, DeviceCommand};
use trygg_store::{DeviceCommandLog, DeviceStatus};
use trygg_store::{DeviceInfo, NewDevice, Protocol, token};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{EDITORS, READERS, TENANT_ADMINS, find_wearer, zones_changed};
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::validate::{Body, Check};

/// A device to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeviceIn {
    /// The id the device reports: IMEI, watch id, or a name for native devices (1 to 64
    /// letters, digits and `- _ . :`).
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    pub id: String,
    /// `native`, `watch`, `gt06` or `osmand`.
    #[schema(schema_with = protocols)]
    pub protocol: String,
    /// A wearer to bind it to at once.
    pub wearer: Option<Uuid>,
    /// The device clock's offset from UTC in minutes (watches often send local time: Sweden is
    /// 60, or 120 in summer), −720 to 840 in quarter hours. Unset: UTC, or for GT06 the time
    /// zone its login sends.
    #[schema(minimum = -720, maximum = 840, multiple_of = 15)]
    pub utc_offset_minutes: Option<i32>,
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
    /// The device clock's offset from UTC in minutes; null: not set.
    pub utc_offset_minutes: Option<i32>,
    /// When the device was last heard (a connection, keep-alive or report), registered or not.
    pub last_heard_at: Option<DateTime<Utc>>,
    /// When the id was first heard while nobody had registered it (it was refused then).
    pub heard_before_registration_at: Option<DateTime<Utc>>,
    /// The battery the device last reported in a keep-alive, in percent.
    pub last_battery_pct: Option<u8>,
    /// Whether the device has an open connection to this server now (commands can be sent).
    pub connected: bool,
}

impl DeviceOut {
    fn new(d: DeviceInfo, status: Option<DeviceStatus>, connected: bool) -> Self {
        let status = status.unwrap_or(DeviceStatus {
            id: d.id.clone(),
            utc_offset_minutes: None,
            last_heard_at: None,
            heard_before_registration_at: None,
            last_battery_pct: None,
        });
        Self {
            id: d.id.to_string(),
            protocol: d.protocol.as_str(),
            wearer: d.wearer.map(|w| w.0),
            token: None,
            utc_offset_minutes: status.utc_offset_minutes,
            last_heard_at: status.last_heard_at,
            heard_before_registration_at: status.heard_before_registration_at,
            last_battery_pct: status.last_battery_pct,
            connected,
        }
    }
}

/// The devices as the API shows them, with their status.
async fn with_status(
    state: &ApiState,
    tenant: TenantId,
    devices: Vec<DeviceInfo>,
    one: Option<&DeviceId>,
) -> Result<Vec<DeviceOut>, ApiError> {
    let mut statuses: HashMap<DeviceId, DeviceStatus> =
        state.store.device_statuses(tenant, one).await?.into_iter().map(|s| (s.id.clone(), s)).collect();
    Ok(devices
        .into_iter()
        .map(|d| {
            let connected = state.devices.is_connected(&d.id);
            let status = statuses.remove(&d.id);
            DeviceOut::new(d, status, connected)
        })
        .collect())
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
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    pub device: String,
}

fn path_device(id: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(id).map_err(|_| ApiError::NotFound("device"))
}

/// The wearer to bind to: in the tenant and active; 422 on `field` if there is none, 409 if it
/// is deactivated (a state, not a malformed request).
async fn bindable_wearer(
    state: &ApiState,
    tenant: TenantId,
    field: &str,
    id: Uuid,
) -> Result<WearerId, ApiError> {
    match find_wearer(state, tenant, &id.to_string()).await {
        Ok(w) if w.deactivated_at.is_none() => Ok(w.id),
        Ok(_) => Err(ApiError::Conflict("the wearer is deactivated".to_owned())),
        Err(ApiError::NotFound(_)) => Err(ApiError::field(field, "no such wearer")),
        Err(e) => Err(e),
    }
}

async fn answer(state: &ApiState, tenant: TenantId, id: &DeviceId) -> Result<Json<DeviceOut>, ApiError> {
    let device = state.store.device(tenant, id).await?.ok_or(ApiError::NotFound("device"))?;
    let out = with_status(state, tenant, vec![device], Some(id)).await?.pop();
    Ok(Json(out.ok_or(ApiError::NotFound("device"))?))
}

/// Watches and trackers without credentials are registered by tenant admins only.
fn may_register(caller: &Caller, protocol: Protocol) -> Result<(), ApiError> {
    if protocol == Protocol::Native { Ok(()) } else { caller.require(TENANT_ADMINS) }
}

/// Offsets real clocks use: −12:00 to +14:00 in quarter hours.
fn check_offset(check: &mut Check, field: &str, minutes: Option<i32>) {
    if let Some(m) = minutes {
        check.ensure(
            (-720..=840).contains(&m) && m % 15 == 0,
            field,
            "must be -720..840 minutes, in quarter hours",
        );
    }
}

/// Registers a device. A device id is registered once in the whole installation: 409 if it is
/// taken, in this tenant or another (the same answer either way). Watch, GT06 and OsmAnd devices
/// are registered by tenant admins only (403 for caseworkers); native devices by either.
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
    check_offset(&mut check, "utc_offset_minutes", body.utc_offset_minutes);
    check.done()?;
    let (Some(id), Some(protocol)) = (id, protocol) else { return Err(ApiError::field("id", "required")) };
    let wearer = match body.wearer {
        Some(w) => Some(bindable_wearer(&state, tenant, "wearer", w).await?),
        None => None,
    };
    may_register(&caller, protocol)?;
    let secret = (protocol == Protocol::Native).then(token::generate);
    let new = NewDevice {
        id: id.clone(),
        tenant,
        wearer,
        protocol,
        token_hash: secret.as_deref().map(token::hash),
    };
    state.store.register_device(&new).await?;
    if body.utc_offset_minutes.is_some() {
        state.store.set_utc_offset(tenant, &id, body.utc_offset_minutes).await?;
    }
    if wearer.is_some() {
        zones_changed(&state, tenant).await?;
    }
    let Json(mut out) = answer(&state, tenant, &id).await?;
    out.token = secret;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Lists the tenant's devices.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = Vec<DeviceOut>)))]
#[tracing::instrument(skip_all)]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<Vec<DeviceOut>>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let devices = state.store.devices(tenant).await?;
    Ok(Json(with_status(&state, tenant, devices, None).await?))
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

/// A change to a device's settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceUpdateIn {
    /// The device clock's offset from UTC in minutes, −720 to 840 in quarter hours; null clears
    /// it (UTC, or for GT06 the time zone its login sends).
    #[schema(minimum = -720, maximum = 840, multiple_of = 15)]
    pub utc_offset_minutes: Option<i32>,
}

/// Changes a device's settings: the offset its clock is read at.
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    request_body = DeviceUpdateIn, security(("bearer" = [])),
    responses((status = 200, body = DeviceOut), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<DeviceUpdateIn>,
) -> Result<Json<DeviceOut>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let id = path_device(&id)?;
    let mut check = Check::default();
    check_offset(&mut check, "utc_offset_minutes", body.utc_offset_minutes);
    check.done()?;
    if !state.store.set_utc_offset(tenant, &id, body.utc_offset_minutes).await? {
        return Err(ApiError::NotFound("device"));
    }
    tracing::info!(device = %id, utc_offset_minutes = ?body.utc_offset_minutes, "Device clock offset set");
    answer(&state, tenant, &id).await
}

/// One line of an import that was not registered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportError {
    /// The line number, from 1.
    pub line: usize,
    /// The id on the line, as written.
    pub id: String,
    /// Why it was not registered.
    pub error: String,
}

/// The outcome of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportOut {
    /// The ids registered.
    pub registered: Vec<String>,
    /// The lines that were not.
    pub errors: Vec<ImportError>,
}

/// Registers the delivered watches of a shipment: a `text/csv` body with one device a line,
/// `device_id,protocol[,utc_offset_minutes]` (a first line starting with `device_id` is a
/// header). Each line stands alone: the answer lists what was registered and why the rest was
/// not (an id registered anywhere is "already registered", whichever tenant holds it). Native
/// devices get a token each and are registered one by one instead. Tenant admins only.
#[utoipa::path(post, path = "/api/v1/devices/import", tag = "devices", request_body(content = String, content_type = "text/csv"),
    security(("bearer" = [])), responses((status = 200, body = ImportOut), (status = 400), (status = 403)))]
#[tracing::instrument(skip_all)]
pub async fn import(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: String,
) -> Result<Json<ImportOut>, ApiError> {
    let tenant = caller.tenant_for(TENANT_ADMINS)?;
    let content_type =
        headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("text/csv") && !content_type.starts_with("text/plain") {
        return Err(ApiError::Malformed("send the device list as text/csv".to_owned()));
    }
    let mut out = ImportOut { registered: Vec::new(), errors: Vec::new() };
    for (n, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.starts_with("device_id")) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let raw_id = fields[0].to_owned();
        let mut fail =
            |error: String| out.errors.push(ImportError { line: n + 1, id: raw_id.clone(), error });
        let id = match DeviceId::parse(fields[0]) {
            Ok(id) => id,
            Err(e) => {
                fail(e.to_string());
                continue;
            }
        };
        let protocol = match fields.get(1).map(|p| p.parse::<Protocol>()) {
            Some(Ok(Protocol::Native)) => {
                fail("native devices get a token: register them one by one".to_owned());
                continue;
            }
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                fail(e);
                continue;
            }
            None => {
                fail("the protocol is missing (device_id,protocol[,utc_offset_minutes])".to_owned());
                continue;
            }
        };
        let offset = match fields.get(2).filter(|v| !v.is_empty()).map(|v| v.parse::<i32>()) {
            None => None,
            Some(Ok(m)) if (-720..=840).contains(&m) && m % 15 == 0 => Some(m),
            Some(_) => {
                fail("utc_offset_minutes must be -720..840 minutes, in quarter hours".to_owned());
                continue;
            }
        };
        let new = NewDevice { id: id.clone(), tenant, wearer: None, protocol, token_hash: None };
        match state.store.register_device(&new).await {
            Ok(()) => {}
            Err(trygg_store::StoreError::Conflict(_)) => {
                fail("already registered".to_owned());
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        if offset.is_some() {
            state.store.set_utc_offset(tenant, &id, offset).await?;
        }
        out.registered.push(id.to_string());
    }
    tracing::info!(registered = out.registered.len(), refused = out.errors.len(), "Devices imported");
    Ok(Json(out))
}

/// A command for a connected device.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandIn {
    /// `locate` (ask for a position now) or `upload_interval` (with `secs`).
    #[schema(schema_with = commands)]
    pub command: String,
    /// Seconds between position reports: required for `upload_interval`, refused for `locate`.
    #[schema(minimum = 10, maximum = 86400)]
    pub secs: Option<u32>,
}

fn commands() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(["locate", "upload_interval"])
}

fn protocols() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(Protocol::ALL.iter().map(|p| p.as_str()))
}

/// The answer to a command.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandOut {
    /// The command, with its argument.
    pub command: String,
    /// Always true: the command was handed to the device's open connection.
    pub sent: bool,
}

/// Sends a command to a watch on its open connection: 202 when handed to the connection, 409
/// when the device is not connected to this server, 422 for a command its protocol lacks. Every
/// command sent is logged with who sent it.
#[utoipa::path(post, path = "/api/v1/devices/{id}/commands", tag = "devices", params(("id" = String, Path)),
    request_body = CommandIn, security(("bearer" = [])),
    responses((status = 202, body = CommandOut), (status = 404), (status = 409), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn command(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CommandIn>,
) -> Result<(StatusCode, Json<CommandOut>), ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let id = path_device(&id)?;
    state.store.device(tenant, &id).await?.ok_or(ApiError::NotFound("device"))?;
    let command = match (body.command.as_str(), body.secs) {
        ("locate", None) => DeviceCommand::Locate,
        ("upload_interval", Some(secs)) if (10..=86_400).contains(&secs) => {
            DeviceCommand::UploadInterval { secs }
        }
        ("upload_interval", _) => {
            return Err(ApiError::field("secs", "required for upload_interval: 10..86400"));
        }
        ("locate", Some(_)) => return Err(ApiError::field("secs", "locate takes no secs")),
        _ => return Err(ApiError::field("command", "expected locate or upload_interval")),
    };
    match state.devices.send(&id, command) {
        Ok(()) => {}
        Err(CommandError::NotConnected) => {
            return Err(ApiError::Conflict("the device is not connected".to_owned()));
        }
        Err(e @ CommandError::Unsupported { .. }) => return Err(ApiError::field("command", e.to_string())),
    }
    let entry = DeviceCommandLog {
        device: id.clone(),
        command: command.describe(),
        sent_by: Some(caller.user),
        sent_at: Utc::now(),
    };
    tracing::info!(device = %id, command = %entry.command, user = %caller.user, "Device command sent");
    state.store.log_device_command(tenant, &entry).await?;
    Ok((StatusCode::ACCEPTED, Json(CommandOut { command: entry.command, sent: true })))
}
