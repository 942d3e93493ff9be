//! Accounts: admins create them in any tenant, tenant admins in their own.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use trygg_core::TenantId;
use trygg_store::{NewUser, Role, User};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::ApiState;
use crate::auth::{Caller, MIN_PASSWORD_CHARS, hash_password};
use crate::error::ApiError;
use crate::validate::{Body, Check, Params};

/// An account to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUserIn {
    /// Login email, unique in the installation.
    pub email: String,
    /// Display name.
    pub name: String,
    /// `admin`, `tenant_admin`, `caseworker` or `staff`.
    pub role: String,
    /// Initial password, at least 12 characters.
    pub password: String,
    /// The tenant; required when an admin creates a non-admin account, ignored for tenant admins.
    pub tenant: Option<Uuid>,
}

/// An account (never its password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    /// Its id.
    pub id: Uuid,
    /// Login email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: &'static str,
    /// Tenant (none for admins).
    pub tenant: Option<Uuid>,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.user.email,
            name: u.user.name,
            role: u.user.role.as_str(),
            tenant: u.user.tenant.map(|t| t.0),
        }
    }
}

/// Creates an account (admin: any tenant and role; tenant admin: own tenant, not admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUserIn, security(("bearer" = [])),
    responses((status = 201, body = UserOut), (status = 409, description = "email taken"), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<NewUserIn>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let mut check = Check::default();
    let email = body.email.trim().to_lowercase();
    check.text("email", &email, 3, 254).ensure(
        email.contains('@') && !email.contains(char::is_whitespace),
        "email",
        "must be an email address",
    );
    check.text("name", &body.name, 1, 200);
    check.ensure(
        body.password.chars().count() >= MIN_PASSWORD_CHARS,
        "password",
        format!("must be at least {MIN_PASSWORD_CHARS} characters"),
    );
    let role: Option<Role> = check.parse("role", &body.role);
    let tenant = match (caller.role, role) {
        (Role::Admin, Some(Role::Admin)) => {
            check.ensure(body.tenant.is_none(), "tenant", "an admin belongs to no tenant");
            None
        }
        (Role::Admin, _) => {
            check.ensure(body.tenant.is_some(), "tenant", "required for this role");
            body.tenant.map(TenantId)
        }
        (_, r) => {
            check.ensure(r != Some(Role::Admin), "role", "only an admin may create an admin");
            check.ensure(
                body.tenant.is_none_or(|t| Some(TenantId(t)) == caller.tenant),
                "tenant",
                "must be your own tenant",
            );
            caller.tenant
        }
    };
    check.done()?;
    let role = role.ok_or_else(|| ApiError::field("role", "required"))?;
    let unknown_tenant = match tenant {
        Some(t) => state.store.tenant(t).await?.is_none(),
        None => false,
    };
    if unknown_tenant {
        return Err(ApiError::field("tenant", "no such tenant"));
    }
    let password_hash = hash_password(body.password).await?;
    let user = NewUser { tenant, email, name: body.name.trim().to_owned(), role, password_hash };
    let id = state.store.add_user(&user).await?;
    Ok((StatusCode::CREATED, Json(User { id, user }.into())))
}

/// Which accounts to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UserFilter {
    /// Admins only: one tenant's accounts.
    pub tenant: Option<Uuid>,
}

/// Lists accounts (admin: all or one tenant's; tenant admin: own tenant's).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UserFilter), security(("bearer" = [])),
    responses((status = 200, body = Vec<UserOut>)))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Params(filter): Params<UserFilter>,
) -> Result<Json<Vec<UserOut>>, ApiError> {
    let tenant = match caller.role {
        Role::Admin => filter.tenant.map(TenantId),
        _ => Some(caller.tenant_for(super::TENANT_ADMINS)?),
    };
    Ok(Json(state.store.users(tenant).await?.into_iter().map(Into::into).collect()))
}
