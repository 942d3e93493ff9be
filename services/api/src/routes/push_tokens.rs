//! Staff phones' push registrations: the app registers its FCM token after login, so the push
//! worker can reach the phone with alarms, and removes it on logout.
//!
//! A token belongs to one account: registering it again (another person logging in on the same
//! phone) moves it. Each account sees and deletes only its own tokens; someone else's token
//! answers 404 like a missing one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trygg_store::PushToken;
use utoipa::ToSchema;

use super::READERS;
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::validate::{Body, Check};

/// FCM tokens are about 160 characters today; this leaves room without storing anything.
const MAX_TOKEN_CHARS: usize = 4096;
/// The platforms the companion app runs on.
const PLATFORMS: &[&str] = &["android", "ios"];

/// A phone's push registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushTokenIn {
    /// The FCM registration token, 1 to 4096 characters without spaces or control characters.
    #[schema(min_length = 1, max_length = 4096, pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]*$")]
    pub token: String,
    /// `android` or `ios`.
    #[schema(schema_with = platforms)]
    pub platform: String,
}

fn platforms() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(PLATFORMS.iter().copied())
}

/// A registered push token.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushTokenOut {
    /// The FCM registration token.
    pub token: String,
    /// `android` or `ios`.
    pub platform: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When FCM said it is no longer valid; the app should register a new one.
    pub disabled_at: Option<DateTime<Utc>>,
}

impl From<PushToken> for PushTokenOut {
    fn from(t: PushToken) -> Self {
        Self { token: t.token, platform: t.platform, created_at: t.created_at, disabled_at: t.disabled_at }
    }
}

/// Registers the caller's phone for pushes (moving the token from any other account of the
/// tenant; a token another tenant's account registered is refused, 409).
#[utoipa::path(post, path = "/api/v1/push-tokens", tag = "push tokens", request_body = PushTokenIn,
    security(("bearer" = [])), responses((status = 201, body = PushTokenOut), (status = 403),
        (status = 409, description = "registered by another tenant's account"), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn register(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<PushTokenIn>,
) -> Result<(StatusCode, Json<PushTokenOut>), ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let chars = body.token.chars().count();
    Check::default()
        .ensure(
            (1..=MAX_TOKEN_CHARS).contains(&chars),
            "token",
            format!("must be 1 to {MAX_TOKEN_CHARS} characters"),
        )
        .ensure(
            !body.token.chars().any(|c| c.is_whitespace() || c.is_control()),
            "token",
            "must not contain spaces",
        )
        .ensure(PLATFORMS.contains(&body.platform.as_str()), "platform", "must be android or ios")
        .done()?;
    let now = Utc::now();
    state.store.put_push_token(tenant, caller.user, &body.token, &body.platform, now).await?;
    let out = PushTokenOut { token: body.token, platform: body.platform, created_at: now, disabled_at: None };
    Ok((StatusCode::CREATED, Json(out)))
}

/// The caller's push tokens, newest first.
#[utoipa::path(get, path = "/api/v1/push-tokens", tag = "push tokens", security(("bearer" = [])),
    responses((status = 200, body = Vec<PushTokenOut>), (status = 403)))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<PushTokenOut>>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let tokens = state.store.push_tokens(tenant, caller.user).await?;
    Ok(Json(tokens.into_iter().map(PushTokenOut::from).collect()))
}

/// Removes one of the caller's push tokens (on logout).
#[utoipa::path(delete, path = "/api/v1/push-tokens/{token}", tag = "push tokens", params(("token" = String, Path)),
    security(("bearer" = [])), responses((status = 204), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    if state.store.delete_push_token(tenant, caller.user, &token).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("push token"))
    }
}
