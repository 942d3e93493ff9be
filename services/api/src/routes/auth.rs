//! `POST /api/v1/auth/login`: email and password for a token.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ApiState;
use crate::auth::verify_password;
use crate::error::ApiError;
use crate::validate::Body;

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
    responses((status = 200, body = LoginResponse), (status = 401, description = "wrong email or password")))]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<ApiState>,
    Body(login): Body<Login>,
) -> Result<Json<LoginResponse>, ApiError> {
    let user = state.store.user_by_email(&login.email.trim().to_lowercase()).await?;
    let hash = user.as_ref().map_or(NO_SUCH_ACCOUNT, |u| u.user.password_hash.as_str()).to_owned();
    let ok = verify_password(login.password, hash).await?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(ApiError::Unauthorized("wrong email or password"));
    };
    let token = state.tokens.issue(user.id, user.user.tenant, user.user.role)?;
    Ok(Json(LoginResponse {
        token,
        token_type: "Bearer",
        expires_in: state.tokens.lifetime().as_secs(),
        user: user.id,
        role: user.user.role.as_str(),
        tenant: user.user.tenant.map(|t| t.0),
    }))
}
