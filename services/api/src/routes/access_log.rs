//! `GET /api/v1/access-log`: who read which wearer's positions, when and why (tenant admins).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::TENANT_ADMINS;
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::validate::Params;

/// How much of the log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Most entries, newest first (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One read of a wearer's positions.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessOut {
    /// Who read.
    pub user: Uuid,
    /// Whose positions.
    pub wearer: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// What was read.
    pub what: String,
    /// Why, as stated.
    pub reason: String,
}

/// The tenant's access log, newest first.
#[utoipa::path(get, path = "/api/v1/access-log", tag = "access log", params(Page), security(("bearer" = [])),
    responses((status = 200, body = Vec<AccessOut>)))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Params(page): Params<Page>,
) -> Result<Json<Vec<AccessOut>>, ApiError> {
    let tenant = caller.tenant_for(TENANT_ADMINS)?;
    let entries = state.store.access_log(tenant, crate::validate::limit(page.limit, 100, 1000)?).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| AccessOut { user: e.user, wearer: e.wearer.0, at: e.at, what: e.what, reason: e.reason })
            .collect(),
    ))
}
