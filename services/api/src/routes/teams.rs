//! Teams of staff; a wearer is assigned a team on the wearer itself, and a team can be a step
//! in a wearer's responder order.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use trygg_store::{Role, Team};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{EDITORS, READERS, path_id};
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::validate::{Body, Check};

/// A team to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    /// Name, unique in the tenant.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
}

/// A team's members (replaces them all).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Members {
    /// Staff accounts of the tenant, at most 500.
    #[schema(max_items = 500)]
    pub members: Vec<Uuid>,
}

/// A team.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamOut {
    /// Its id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Member accounts.
    pub members: Vec<Uuid>,
}

impl From<Team> for TeamOut {
    fn from(t: Team) -> Self {
        Self { id: t.id, name: t.name, members: t.members }
    }
}

/// Creates a team.
#[utoipa::path(post, path = "/api/v1/teams", tag = "teams", request_body = NewTeam, security(("bearer" = [])),
    responses((status = 201, body = TeamOut), (status = 409), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<NewTeam>,
) -> Result<(StatusCode, Json<TeamOut>), ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    Check::default().text("name", &body.name, 1, 100).done()?;
    let name = body.name.trim().to_owned();
    let id = state.store.add_team(tenant, &name).await?;
    Ok((StatusCode::CREATED, Json(TeamOut { id, name, members: Vec::new() })))
}

/// The tenant's teams.
#[utoipa::path(get, path = "/api/v1/teams", tag = "teams", security(("bearer" = [])),
    responses((status = 200, body = Vec<TeamOut>)))]
#[tracing::instrument(skip_all)]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<Vec<TeamOut>>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    Ok(Json(state.store.teams(tenant).await?.into_iter().map(Into::into).collect()))
}

/// Replaces a team's members.
#[utoipa::path(put, path = "/api/v1/teams/{id}/members", tag = "teams", params(("id" = Uuid, Path)), request_body = Members,
    security(("bearer" = [])), responses((status = 200, body = TeamOut), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn set_members(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Members>,
) -> Result<Json<TeamOut>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let id = path_id("team", &id)?;
    let team = state
        .store
        .teams(tenant)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or(ApiError::NotFound("team"))?;
    let staff = state.store.users(Some(tenant)).await?;
    let mut check = Check::default();
    check.ensure(body.members.len() <= 500, "members", "at most 500 members");
    for (i, m) in body.members.iter().enumerate() {
        let ok = staff.iter().any(|u| u.id == *m && u.user.role == Role::Staff);
        check.ensure(ok, &format!("members[{i}]"), "no such staff account");
    }
    check.done()?;
    let mut members = body.members;
    members.sort_unstable();
    members.dedup();
    if !state.store.set_team_members(tenant, team.id, &members).await? {
        return Err(ApiError::NotFound("team"));
    }
    Ok(Json(TeamOut { id: team.id, name: team.name, members }))
}
