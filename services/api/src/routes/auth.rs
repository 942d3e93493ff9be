//! `POST /api/v1/auth/login`: email and password for a token (or a browser session cookie);
//! `GET /api/v1/auth/me`: who the caller is; `POST /api/v1/auth/logout`: ends a browser
//! session; `POST /api/v1/auth/password`: change one's own password.
//!
//! Apps keep a bearer token. The web console asks for a cookie instead (`"cookie": true`), so no
//! script of the page ever holds a token: the cookie is HttpOnly, `__Host-`, Secure and
//! SameSite=Strict, and names a session stored in the database, which a logout ends at once on
//! every node without touching the account's other tokens.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, header::SET_COOKIE};
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ApiState;
use crate::auth::{
    Caller, MIN_PASSWORD_CHARS, SESSION_COOKIE, hash_password, same_origin_json, verify_password,
};
use crate::error::ApiError;
use crate::validate::{Body, Check};

/// Login request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    /// Account email.
    pub email: String,
    /// Password.
    pub password: String,
    /// `true`: set a session cookie (for the web console) instead of returning a token.
    #[serde(default)]
    pub cookie: bool,
}

/// A token (or a session cookie) and what it allows.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token (HS256 JWT). Log in again when it expires. Absent with `"cookie": true`: the
    /// token is then in the HttpOnly session cookie only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `Bearer`, or `Cookie` when a session cookie was set.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The account id.
    pub user: Uuid,
    /// The account's role.
    pub role: &'static str,
    /// The account's tenant (none for admins).
    pub tenant: Option<Uuid>,
    /// The account's name.
    pub name: String,
}

/// A hash that matches no password, checked for unknown emails so a login takes as long
/// whether or not the account exists.
const NO_SUCH_ACCOUNT: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Yk0dC4mCXfq9l3yWIh3q0fV2cc0T5nGmW2Gq0tVb1A";

/// Exchanges email and password for a token, or with `"cookie": true` for the web console's
/// session cookie (`Set-Cookie: __Host-trygg_session=…; Path=/; Secure; HttpOnly;
/// SameSite=Strict`), which every endpoint accepts instead of the bearer token. A cookie login,
/// like every cookie request that changes something, must be same-origin and JSON (403).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = LoginResponse), (status = 401, description = "wrong email or password, or account disabled"),
        (status = 403, description = "a cookie login from another site, or not JSON"),
        (status = 429, description = "too many attempts from this address or for this account; see Retry-After"),
        (status = 503, description = "too many logins at once; see Retry-After")))]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<ApiState>,
    extensions: Extensions,
    method: Method,
    headers: HeaderMap,
    Body(login): Body<Login>,
) -> Result<(HeaderMap, Json<LoginResponse>), ApiError> {
    if login.cookie {
        // Else another site could log a browser into the attacker's account.
        same_origin_json(&method, &headers)?;
    }
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
    let (tenant, role, tv) = (user.user.tenant, user.user.role, account.token_version);
    let expires_in = state.tokens.lifetime().as_secs();
    let mut cookie = HeaderMap::new();
    let token = if login.cookie {
        let session = Uuid::new_v4();
        let now = Utc::now();
        let expires_at = Utc.timestamp_opt(state.tokens.expiry(now.timestamp()), 0).single().unwrap_or(now);
        state.store.open_session(session, user.id, now, expires_at).await?;
        let token = state.tokens.issue_at(user.id, tenant, role, tv, Some(session))?;
        cookie.insert(SET_COOKIE, session_cookie(&token, expires_in)?);
        None
    } else {
        Some(state.tokens.issue_at(user.id, tenant, role, tv, None)?)
    };
    let token_type = if token.is_some() { "Bearer" } else { "Cookie" };
    Ok((
        cookie,
        Json(LoginResponse {
            token,
            token_type,
            expires_in,
            user: user.id,
            role: role.as_str(),
            tenant: tenant.map(|t| t.0),
            name: user.user.name,
        }),
    ))
}

/// The `Set-Cookie` value that keeps `token` for `max_age_secs` (0 deletes the cookie).
fn session_cookie(token: &str, max_age_secs: u64) -> Result<HeaderValue, ApiError> {
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
    );
    HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(format!("session cookie: {e}")))
}

/// Who is calling.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The account id.
    pub user: Uuid,
    /// The account's role.
    pub role: &'static str,
    /// The account's tenant (none for admins).
    pub tenant: Option<Uuid>,
    /// The account's name.
    pub name: String,
    /// The account's email.
    pub email: String,
    /// Whether the caller uses a browser session (the cookie) rather than a bearer token.
    pub session: bool,
}

/// The caller's account: the web console asks at start whether its session cookie still works.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, description = "no valid token or session")))]
#[tracing::instrument(skip_all)]
pub async fn me(State(state): State<ApiState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let users = state.store.users(caller.tenant).await?;
    let user =
        users.into_iter().find(|u| u.id == caller.user).ok_or(ApiError::Unauthorized("account disabled"))?;
    Ok(Json(Me {
        user: user.id,
        role: caller.role.as_str(),
        tenant: caller.tenant.map(|t| t.0),
        name: user.user.name,
        email: user.user.email,
        session: caller.session.is_some(),
    }))
}

/// Ends the caller's browser session: its cookie (and any copy of its token) is refused from now
/// on, on every node; the answer also deletes the cookie. The account's other sessions and
/// tokens stay valid. A bearer token has no session to end (409): it expires by itself, and a
/// password change revokes every token.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, description = "no valid token or session"),
        (status = 403, description = "a cookie request from another site, or not JSON"),
        (status = 409, description = "a bearer token without a session")))]
#[tracing::instrument(skip_all)]
pub async fn logout(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<(StatusCode, HeaderMap), ApiError> {
    let Some(session) = caller.session else {
        return Err(ApiError::Conflict("a bearer token has no session to end".to_owned()));
    };
    state.store.end_session(session, caller.user, Utc::now()).await?;
    let mut cookie = HeaderMap::new();
    cookie.insert(SET_COOKIE, session_cookie("", 0)?);
    Ok((StatusCode::NO_CONTENT, cookie))
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
