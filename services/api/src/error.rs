//! The API's one error type and its one mapping to HTTP.
//!
//! Every handler returns [`ApiError`]; [`IntoResponse`] turns it into the JSON shape all of
//! trygg uses, `{"error": "...", "details": ...}`. Store and internal failures are logged with
//! their cause and answered with a bare 500: a client never sees an internal message.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use trygg_store::StoreError;

/// What can go wrong answering an API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or a token that is malformed, expired or not signed by us.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid caller whose role may not do this.
    #[error("your role may not do this")]
    Forbidden,
    /// A request refused for how it was sent, whoever sent it (a cross-site request with the
    /// session cookie).
    #[error("{0}")]
    Refused(&'static str),
    /// No such resource in the caller's tenant (including another tenant's resource).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state (a taken id, a bound device).
    #[error("{0}")]
    Conflict(String),
    /// A conflict the client can act on, with what it conflicts with (e.g. who already took
    /// an alarm) as details.
    #[error("{message}")]
    ConflictWith {
        /// Why, in words.
        message: String,
        /// The state that refused the request.
        details: Value,
    },
    /// A body that is not JSON at all.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Fields that fail validation: field path → what is wrong.
    #[error("validation failed")]
    Invalid(BTreeMap<String, String>),
    /// Too many attempts (logins): try again after the given seconds.
    #[error("too many attempts; try again later")]
    TooManyRequests {
        /// Seconds until the next attempt is allowed (`Retry-After`).
        retry_after_secs: u64,
    },
    /// The server is too busy to answer this now (`Retry-After`).
    #[error("busy; try again shortly")]
    Busy {
        /// Seconds to wait (`Retry-After`).
        retry_after_secs: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something inside trygg failed (hashing, a blocking task).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<trygg_alarms::EngineError> for ApiError {
    fn from(e: trygg_alarms::EngineError) -> Self {
        match e {
            trygg_alarms::EngineError::Store(e) => Self::Store(e),
            trygg_alarms::EngineError::Corrupt(what) => Self::Internal(what),
        }
    }
}

impl ApiError {
    /// A validation failure of one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(BTreeMap::from([(field.into(), message.into())]))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, details) = match &self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, Value::Null),
            Self::Forbidden | Self::Refused(_) => (StatusCode::FORBIDDEN, Value::Null),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, Value::Null),
            Self::Conflict(_) => (StatusCode::CONFLICT, Value::Null),
            Self::ConflictWith { details, .. } => (StatusCode::CONFLICT, details.clone()),
            Self::Malformed(_) => (StatusCode::BAD_REQUEST, Value::Null),
            Self::Invalid(fields) => (StatusCode::UNPROCESSABLE_ENTITY, json!({ "fields": fields })),
            Self::TooManyRequests { retry_after_secs } | Self::Busy { retry_after_secs } => {
                let status = match self {
                    Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::TOO_MANY_REQUESTS,
                };
                let body =
                    json!({ "error": self.to_string(), "details": { "retry_after_secs": retry_after_secs } });
                let retry = [(axum::http::header::RETRY_AFTER, retry_after_secs.to_string())];
                return (status, retry, Json(body)).into_response();
            }
            Self::Store(StoreError::Conflict(what)) => {
                return ApiError::Conflict(format!("{what} already exists")).into_response();
            }
            Self::Store(StoreError::WrongState(what)) => {
                return ApiError::Conflict((*what).to_owned()).into_response();
            }
            Self::Store(StoreError::NotFound(what)) => return ApiError::NotFound(what).into_response(),
            Self::Store(_) | Self::Internal(_) => {
                tracing::error!(error = %self, "Request failed");
                let body = json!({ "error": "internal error", "details": null });
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
            }
        };
        (status, Json(json!({ "error": self.to_string(), "details": details }))).into_response()
    }
}
