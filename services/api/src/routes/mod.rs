//! The handlers, one module per resource, and the list that makes them both routes and
//! OpenAPI paths ([`all`]): a handler is served exactly when it is documented.
//!
//! Who may call what is said once per handler with a role set from here, through
//! [`Caller::tenant_for`]; the role check comes before any lookup, so a forbidden caller learns
//! nothing about which ids exist (403), and an allowed caller asking for another tenant's id
//! gets 404 like for a missing one.

use std::collections::HashSet;

use trygg_core::{TenantId, WearerId};
use trygg_store::{AlarmFilter, ResponderTarget, Role, Wearer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::ApiState;
use crate::auth::Caller;
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
/// Take an alarm and mark being on site: responders, never an office click that would stop the
/// escalation while nobody goes out.
const RESPONDERS: &[Role] = &[Role::Staff];
/// Close an alarm: the responder, or a tenant admin clearing one up.
const CLOSERS: &[Role] = &[Role::Staff, Role::TenantAdmin];

/// Adds every API route to `router`.
pub fn all(router: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    router
        .routes(routes!(auth::login))
        .routes(routes!(auth::me))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::change_password))
        .routes(routes!(tenants::create, tenants::list))
        .routes(routes!(tenants::get))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::delete))
        .routes(routes!(users::disable))
        .routes(routes!(users::enable))
        .routes(routes!(users::reset_password))
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
        .routes(routes!(zones::dry_run))
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
async fn find_wearer(state: &ApiState, tenant: TenantId, id: &str) -> Result<Wearer, ApiError> {
    let id = WearerId(path_id("wearer", id)?);
    state.store.wearer(tenant, id).await?.ok_or(ApiError::NotFound("wearer"))
}

/// The wearer named in the path, if the caller may see its configuration (note and door code,
/// contact, zones, responders); 404 otherwise, like a missing one. See [`WearerScope`].
async fn find_visible_wearer(
    state: &ApiState,
    caller: &Caller,
    tenant: TenantId,
    id: &str,
) -> Result<Wearer, ApiError> {
    let wearer = find_wearer(state, tenant, id).await?;
    if WearerScope::of(state, caller, tenant).await?.sees(state, tenant, &wearer).await? {
        Ok(wearer)
    } else {
        Err(ApiError::NotFound("wearer"))
    }
}

/// Which wearers a caller may see the configuration of. Caseworkers and tenant admins see every
/// wearer of their tenant; staff those of their teams, those whose responder order names them or
/// a team of theirs, and those they have an open alarm for that they can see (a fallback push
/// names the wearer's door code too).
pub(crate) struct WearerScope {
    /// `None`: every wearer. Otherwise the staff member and their teams.
    staff: Option<(uuid::Uuid, HashSet<uuid::Uuid>)>,
}

impl WearerScope {
    /// The scope of `caller` (one query for staff: their teams).
    pub(crate) async fn of(state: &ApiState, caller: &Caller, tenant: TenantId) -> Result<Self, ApiError> {
        if caller.role != Role::Staff {
            return Ok(Self { staff: None });
        }
        let teams = state.store.teams(tenant).await?;
        let mine = teams.into_iter().filter(|t| t.members.contains(&caller.user)).map(|t| t.id).collect();
        Ok(Self { staff: Some((caller.user, mine)) })
    }

    /// Whether the caller may see `wearer`.
    pub(crate) async fn sees(
        &self,
        state: &ApiState,
        tenant: TenantId,
        wearer: &Wearer,
    ) -> Result<bool, ApiError> {
        let Some((user, teams)) = &self.staff else { return Ok(true) };
        if wearer.fields.team.is_some_and(|t| teams.contains(&t)) {
            return Ok(true);
        }
        let plan = state.store.responders(tenant, wearer.id).await?;
        if plan.steps.iter().any(|s| match s.target {
            ResponderTarget::User(u) => u == *user,
            ResponderTarget::Team(t) => teams.contains(&t),
        }) {
            return Ok(true);
        }
        has_open_alarm(state, *user, tenant, wearer.id).await
    }
}

/// Whether staff member `user` can see an open alarm of `wearer`.
async fn has_open_alarm(
    state: &ApiState,
    user: uuid::Uuid,
    tenant: TenantId,
    wearer: WearerId,
) -> Result<bool, ApiError> {
    let filter = AlarmFilter {
        viewer: Some(user),
        open: Some(true),
        wearer: Some(wearer),
        limit: 1,
        ..Default::default()
    };
    Ok(!state.store.alarms(tenant, &filter).await?.is_empty())
}

/// After a write that changes which zones alarm: the evaluator sees it from the next fix on.
async fn zones_changed(state: &ApiState, tenant: TenantId) -> Result<(), ApiError> {
    Ok(state.zones.rebuild(state.store.as_ref(), tenant).await?)
}
