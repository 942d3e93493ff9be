//! `POST /api/v1/auth/login`: email and password for a token; `POST /api/v1/auth/password`:
//! change one's own password.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ApiState;
use crate::auth::{Caller, MIN_PASSWORD_CHARS, hash_password, verify_password};
use crate::error::ApiError;
use crate::validate::{Body, Check};

/// Login request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    /// Account email.
    pub email: String,
    /// Password.
    pub password: String,
}

/// A token and what it allows.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token (HS256 JWT). Log in again when it expires.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The account id.
    pub user: Uuid,
    /// The account's role.
    pub role: &'static str,
    /// The account's tenant (none for admins).
    pub tenant: Option<Uuid>,
}

/// A hash that matches no password, checked for unknown emails so a login takes as long
/// whether or not the account exists.
const NO_SUCH_ACCOUNT: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Yk0dC4mCXfq9l3yWIh3q0fV2cc0T5nGmW2Gq0tVb1A";

/// Exchanges email and password for a token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = LoginResponse), (status = 401, description = "wrong email or password, or account disabled"),
        (status = 429, description = "too many attempts from this address or for this account; see Retry-After"),
        (status = 503, description = "too many logins at once; see Retry-After")))]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<ApiState>,
    extensions: Extensions,
    Body(login): Body<Login>,
) -> Result<Json<LoginResponse>, ApiError> {
    let email = login.email.trim().to_lowercase();
    let address = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    state.logins.attempt(address, &email)?;
    let user = state.store.user_by_email(&email).await?;
    let hash = user.as_ref().map_or(NO_SUCH_ACCOUNT, |u| u.user.password_hash.as_str()).to_owned();
    let ok = verify_password(login.password, hash).await?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(ApiError::Unauthorized("wrong email or password"));
    };
    let account = state.store.account_state(user.id).await?;
    let Some(account) = account.filter(|a| a.active) else {
        return Err(ApiError::Unauthorized("account disabled"));
    };
    let token = state.tokens.issue_at(user.id, user.user.tenant, user.user.role, account.token_version)?;
    Ok(Json(LoginResponse {
        token,
        token_type: "Bearer",
        expires_in: state.tokens.lifetime().as_secs(),
        user: user.id,
        role: user.user.role.as_str(),
        tenant: user.user.tenant.map(|t| t.0),
    }))
}

/// A password change by the account's owner.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    pub current_password: String,
    /// The new password, at least 12 characters.
    #[schema(min_length = 12)]
    pub new_password: String,
}

/// Changes the caller's own password. Every token of the account is revoked, this one too: log
/// in again with the new password.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    security(("bearer" = [])),
    responses((status = 204), (status = 401, description = "no valid token"),
        (status = 403, description = "the current password is wrong"), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn change_password(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    check_new_password(&body.new_password)?;
    let hash = state.store.password_hash(caller.user).await?.unwrap_or_default();
    if !verify_password(body.current_password, hash).await? {
        return Err(ApiError::Forbidden);
    }
    let hash = hash_password(body.new_password).await?;
    if !state.store.set_password_hash(caller.tenant, caller.user, &hash).await? {
        return Err(ApiError::Unauthorized("account disabled"));
    }
    state.accounts.forget(caller.user);
    Ok(StatusCode::NO_CONTENT)
}

/// 422 unless `password` is long enough.
pub(crate) fn check_new_password(password: &str) -> Result<(), ApiError> {
    let mut check = Check::default();
    check.ensure(
        password.chars().count() >= MIN_PASSWORD_CHARS,
        "new_password",
        format!("must be at least {MIN_PASSWORD_CHARS} characters"),
    );
    check.done()
}
