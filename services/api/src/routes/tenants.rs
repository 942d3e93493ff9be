//! Tenants (kommuner): created and listed by installation admins; members may read their own.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use trygg_core::TenantId;
use trygg_store::{Role, Tenant};
use utoipa::ToSchema;
use uuid::Uuid;

use super::path_id;
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::validate::{Body, Check};

/// A tenant to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewTenant {
    /// Unique name, e.g. "Skövde kommun".
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantOut {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
}

impl From<Tenant> for TenantOut {
    fn from(t: Tenant) -> Self {
        Self { id: t.id.0, name: t.name }
    }
}

/// Creates a tenant (admin).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = NewTenant, security(("bearer" = [])),
    responses((status = 201, body = TenantOut), (status = 409, description = "name taken"), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<NewTenant>,
) -> Result<(StatusCode, Json<TenantOut>), ApiError> {
    caller.require(&[Role::Admin])?;
    Check::default().text("name", &body.name, 1, 200).done()?;
    let name = body.name.trim().to_owned();
    let id = state.store.create_tenant(&name).await?;
    Ok((StatusCode::CREATED, Json(TenantOut { id: id.0, name })))
}

/// Lists tenants (admin).
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, body = Vec<TenantOut>)))]
#[tracing::instrument(skip_all)]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<Vec<TenantOut>>, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(state.store.tenants().await?.into_iter().map(Into::into).collect()))
}

/// One tenant: any tenant for admins, the caller's own for everyone else.
#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "tenant id")), responses((status = 200, body = TenantOut), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TenantOut>, ApiError> {
    let id = TenantId(path_id("tenant", &id)?);
    if caller.role != Role::Admin && caller.tenant != Some(id) {
        return Err(ApiError::NotFound("tenant"));
    }
    Ok(Json(state.store.tenant(id).await?.ok_or(ApiError::NotFound("tenant"))?.into()))
}
