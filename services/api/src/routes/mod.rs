//! The handlers, one module per resource, and the list that makes them both routes and
//! OpenAPI paths ([`all`]): a handler is served exactly when it is documented.
//!
//! Who may call what is said once per handler with a role set from here, through
//! [`Caller::tenant_for`]; the role check comes before any lookup, so a forbidden caller learns
//! nothing about which ids exist (403), and an allowed caller asking for another tenant's id
//! gets 404 like for a missing one.

use trygg_core::WearerId;
use trygg_store::{Role, Wearer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::ApiState;
use crate::error::ApiError;

pub mod access_log;
pub mod alarms;
pub mod auth;
pub mod devices;
pub mod push_tokens;
pub mod reports;
pub mod settings;
pub mod teams;
pub mod tenants;
pub mod users;
pub mod wearers;
pub mod zones;

/// Configure wearers, consent, devices, zones, teams and responders.
const EDITORS: &[Role] = &[Role::TenantAdmin, Role::Caseworker];
/// Read wearers and their configuration (staff need the responder note, the door code); see
/// and work alarms (staff only those they may see); register push tokens.
const READERS: &[Role] = &[Role::TenantAdmin, Role::Caseworker, Role::Staff];
/// Manage the tenant itself: users, settings, the access log.
const TENANT_ADMINS: &[Role] = &[Role::TenantAdmin];

/// Adds every API route to `router`.
pub fn all(router: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    router
        .routes(routes!(auth::login))
        .routes(routes!(tenants::create, tenants::list))
        .routes(routes!(tenants::get))
        .routes(routes!(users::create, users::list))
        .routes(routes!(settings::get, settings::put))
        .routes(routes!(settings::get_push, settings::put_push))
        .routes(routes!(access_log::list))
        .routes(routes!(wearers::create, wearers::list))
        .routes(routes!(wearers::get, wearers::update))
        .routes(routes!(wearers::deactivate))
        .routes(routes!(wearers::add_consent, wearers::list_consents))
        .routes(routes!(wearers::withdraw_consent))
        .routes(routes!(wearers::put_responders, wearers::get_responders))
        .routes(routes!(wearers::positions))
        .routes(routes!(devices::register, devices::list))
        .routes(routes!(devices::get, devices::update))
        .routes(routes!(devices::import))
        .routes(routes!(devices::command))
        .routes(routes!(devices::bind))
        .routes(routes!(devices::unbind))
        .routes(routes!(devices::replace))
        .routes(routes!(zones::create, zones::list))
        .routes(routes!(zones::get, zones::update, zones::delete))
        .routes(routes!(teams::create, teams::list))
        .routes(routes!(teams::set_members))
        .routes(routes!(alarms::list))
        .routes(routes!(alarms::get))
        .routes(routes!(alarms::events))
        .routes(routes!(alarms::acknowledge))
        .routes(routes!(alarms::on_site))
        .routes(routes!(alarms::close))
        .routes(routes!(alarms::received))
        .routes(routes!(alarms::live))
        .routes(routes!(push_tokens::register, push_tokens::list))
        .routes(routes!(push_tokens::delete))
        .routes(routes!(reports::alarms))
}

/// An id from the path; one that is not a UUID names nothing, so it is a 404.
fn path_id(what: &'static str, s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::NotFound(what))
}

/// The wearer named in the path, in the caller's tenant.
async fn find_wearer(state: &ApiState, tenant: trygg_core::TenantId, id: &str) -> Result<Wearer, ApiError> {
    let id = WearerId(path_id("wearer", id)?);
    state.store.wearer(tenant, id).await?.ok_or(ApiError::NotFound("wearer"))
}

/// After a write that changes which zones alarm: the evaluator sees it from the next fix on.
async fn zones_changed(state: &ApiState, tenant: trygg_core::TenantId) -> Result<(), ApiError> {
    Ok(state.zones.rebuild(state.store.as_ref(), tenant).await?)
}
