//! Accounts: admins create and manage them in any tenant, tenant admins in their own: disable,
//! enable, delete, reset a password.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use trygg_core::TenantId;
use trygg_store::{AccountState, NewUser, Role, User};
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
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// `admin`, `tenant_admin`, `caseworker` or `staff`.
    #[schema(schema_with = roles)]
    pub role: String,
    /// Initial password, at least 12 characters.
    #[schema(min_length = 12)]
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
    /// False while disabled.
    pub active: bool,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.user.email,
            name: u.user.name,
            role: u.user.role.as_str(),
            tenant: u.user.tenant.map(|t| t.0),
            active: true,
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

fn roles() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(Role::ALL.iter().map(|r| r.as_str()))
}

/// Which accounts to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
    let states: HashMap<Uuid, AccountState> = state.store.account_states(tenant).await?.into_iter().collect();
    let mut out = Vec::new();
    for user in state.store.users(tenant).await? {
        let Some(account) = states.get(&user.id).filter(|a| !a.deleted) else { continue };
        let active = account.active;
        out.push(UserOut { active, ..user.into() });
    }
    Ok(Json(out))
}

/// The tenant filter for changing account `id`: admins change any account, tenant admins those
/// of their tenant (never an admin, who has none); nobody disables or deletes themselves.
fn managed(caller: &Caller, id: &str, own_ok: bool) -> Result<(Option<TenantId>, Uuid), ApiError> {
    let tenant = match caller.role {
        Role::Admin => None,
        _ => Some(caller.tenant_for(super::TENANT_ADMINS)?),
    };
    let id = super::path_id("user", id)?;
    if id == caller.user && !own_ok {
        return Err(ApiError::Conflict("you cannot disable or delete your own account".to_owned()));
    }
    Ok((tenant, id))
}

/// After a change that revokes tokens: effective at once on this node, within
/// [`ACCOUNT_CHECK_TTL`](crate::auth::ACCOUNT_CHECK_TTL) on the others.
fn changed(state: &ApiState, done: bool, id: Uuid) -> Result<StatusCode, ApiError> {
    state.accounts.forget(id);
    if done { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::NotFound("user")) }
}

/// Disables an account: no login, and its tokens are refused from now on (admin: any account;
/// tenant admin: own tenant's).
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 401), (status = 403), (status = 404),
        (status = 409, description = "your own account")))]
#[tracing::instrument(skip_all)]
pub async fn disable(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (tenant, id) = managed(&caller, &id, false)?;
    let done = state.store.set_account_disabled(tenant, id, true, Utc::now()).await?;
    changed(&state, done, id)
}

/// Enables a disabled account again (its old tokens stay revoked).
#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = [])), responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn enable(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (tenant, id) = managed(&caller, &id, true)?;
    let done = state.store.set_account_disabled(tenant, id, false, Utc::now()).await?;
    changed(&state, done, id)
}

/// Deletes an account for good: its tokens are refused, its email is free again, it leaves its
/// teams and its phones get no more pushes. Alarm events and the access log keep its name.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 401), (status = 403), (status = 404),
        (status = 409, description = "your own account")))]
#[tracing::instrument(skip_all)]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (tenant, id) = managed(&caller, &id, false)?;
    let done = state.store.delete_account(tenant, id, Utc::now()).await?;
    changed(&state, done, id)
}

/// A new password set by an administrator.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// The new password, at least 12 characters.
    #[schema(min_length = 12)]
    pub new_password: String,
}

/// Resets an account's password (admin: any account; tenant admin: own tenant's); the account's
/// tokens are refused from now on.
#[utoipa::path(post, path = "/api/v1/users/{id}/password", tag = "users", params(("id" = Uuid, Path)),
    request_body = PasswordReset, security(("bearer" = [])),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn reset_password(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<PasswordReset>,
) -> Result<StatusCode, ApiError> {
    let (tenant, id) = managed(&caller, &id, true)?;
    super::auth::check_new_password(&body.new_password)?;
    let hash = hash_password(body.new_password).await?;
    let done = state.store.set_password_hash(tenant, id, &hash).await?;
    changed(&state, done, id)
}
