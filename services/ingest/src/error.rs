//! Ingest errors and their one mapping to HTTP responses.
//!
//! Every refusal is a JSON `{"error": "...", "details": ...}` with a status that tells the
//! device what to do: 4xx means "this request will never succeed, don't resend it as it is";
//! 503 (always with `Retry-After`) means "not acknowledged, resend later" — a database that is
//! down, slow or locked, a full commit queue, a dead alarm engine. Internal causes are logged,
//! never sent.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use trygg_store::StoreError;

/// A refused ingest request.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The Content-Type is neither JSON nor protobuf.
    #[error("unsupported content type {0:?}; send application/json or application/x-protobuf")]
    UnsupportedMediaType(String),
    /// The body is larger than the configured cap.
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The cap.
        limit: usize,
    },
    /// The batch holds more fixes than allowed.
    #[error("batch has {len} fixes; at most {max} per request")]
    BatchTooLong {
        /// Fixes sent.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body does not decode.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// No `Authorization: Bearer` header.
    #[error("missing device token: send Authorization: Bearer <token>")]
    MissingToken,
    /// The token belongs to no registered device, or not to the device the body names. One
    /// answer for both, so it does not tell which device ids exist.
    #[error("invalid device token")]
    Unauthenticated,
    /// A positions request with no fixes.
    #[error("batch has no fixes")]
    EmptyBatch,
    /// Every fix of the batch was refused.
    #[error("no fix in the batch is valid")]
    NoValidFix {
        /// Why each was refused: `[{"index", "code", "error"}]`.
        rejected: Value,
    },
    /// The database failed; nothing was stored.
    #[error("storage unavailable")]
    Storage(#[source] Arc<StoreError>),
    /// The database did not answer within the request's deadline; the data may or may not be
    /// stored (a resend is harmless).
    #[error("storage did not answer in time")]
    TimedOut,
    /// Too many fixes are waiting for the database already; nothing was stored.
    #[error("too many fixes waiting to be stored")]
    Busy,
    /// The task that turns device alarms into alarms is not running: an alarm acknowledged now
    /// might not be raised until a restart, so it is not acknowledged (it is stored, and the
    /// device's resend is harmless).
    #[error("alarm handling is unavailable")]
    AlarmPathDown,
    /// The server is draining and takes no new work.
    #[error("server is shutting down")]
    ShuttingDown,
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        Self::Storage(Arc::new(e))
    }
}

impl IngestError {
    /// The metrics label for this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::BodyTooLarge { .. } | Self::BatchTooLong { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::MissingToken | Self::Unauthenticated => "unauthenticated",
            Self::EmptyBatch | Self::NoValidFix { .. } => "invalid",
            Self::Storage(_) | Self::TimedOut | Self::AlarmPathDown | Self::ShuttingDown => "unavailable",
            Self::Busy => "busy",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } | Self::BatchTooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::MissingToken | Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::EmptyBatch | Self::NoValidFix { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Storage(_) | Self::TimedOut | Self::Busy | Self::AlarmPathDown | Self::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        match &self {
            Self::Storage(cause) => tracing::error!(error = %cause, "Ingest request failed on storage"),
            Self::TimedOut => tracing::warn!("Ingest request timed out waiting for storage"),
            Self::Busy => tracing::warn!("Ingest request refused: the commit queue is full"),
            Self::AlarmPathDown => {
                tracing::error!("Device alarm stored but not acknowledged: alarm handling is down")
            }
            _ => {}
        }
        let details = match &self {
            Self::NoValidFix { rejected } => rejected.clone(),
            Self::BatchTooLong { len, max } => json!({ "fixes": len, "max": max }),
            Self::BodyTooLarge { limit } => json!({ "max_bytes": limit }),
            _ => Value::Null,
        };
        let mut response =
            (self.status(), Json(json!({ "error": self.to_string(), "details": details }))).into_response();
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
