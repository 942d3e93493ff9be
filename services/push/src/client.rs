//! One FCM HTTP v1 send, and what its answer means for the delivery worker.
//!
//! A push that fails silently can leave a person lost outdoors, so no answer is "an error" in
//! the abstract: every one, network failures included, becomes a [`SendOutcome`] naming what the
//! worker must do. Classification follows FCM's `details[].errorCode` first and the HTTP status
//! second, as Google's own Admin SDKs do, because the top-level status can be generic.
//!
//! Retrying is the worker's job (it stores the due time, see [`crate::Backoff`]); the only retry
//! here is the one FCM documents for a 401 without an FCM error code: the access token was
//! revoked or expired early, so fetch a new one and send once more.

use std::time::{Duration, SystemTime};

use reqwest::header::RETRY_AFTER;
use serde::{Deserialize, Serialize};

use crate::credentials::ServiceAccountKey;
use crate::message::Message;
use crate::token::{TokenError, TokenProvider};

/// Google's FCM endpoint; `TRYGG_FCM_ENDPOINT` overrides it for the fake.
pub const DEFAULT_ENDPOINT: &str = "https://fcm.googleapis.com";

/// A longer `Retry-After` than this is taken as this: an alarm is escalated long before.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What the delivery worker does with a send. FCM's `200` means accepted, not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// FCM accepted the message; the app's receipt will say whether it arrived.
    Delivered {
        /// FCM's message name, `projects/{project}/messages/{id}`.
        name: String,
    },
    /// A transient failure: send again later, not before `retry_after` if given.
    Retry {
        /// What failed, for the event log and metrics.
        cause: RetryCause,
        /// The server's `Retry-After`, in seconds or as an HTTP date, made relative.
        retry_after: Option<Duration>,
        /// A line for the log.
        detail: String,
    },
    /// The device token is dead: disable it and reach the responder another way.
    TokenInvalid {
        /// Which kind of dead.
        cause: TokenInvalidCause,
        /// A line for the log.
        detail: String,
    },
    /// Our credentials or the Firebase project's setup are wrong. Keep the device token,
    /// alert operators loudly and escalate: no retry fixes this without a person.
    AuthError {
        /// Which part of the setup is wrong.
        cause: AuthCause,
        /// A line for the log.
        detail: String,
    },
    /// FCM refused this message for a reason retrying will not change: escalate.
    Permanent {
        /// The HTTP status.
        status: u16,
        /// A line for the log.
        detail: String,
    },
}

/// Why a send should be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// 429 or `QUOTA_EXCEEDED`: project or device rate exceeded.
    Throttled,
    /// FCM failed on its side (5xx, `UNAVAILABLE`, `INTERNAL`).
    ServerError {
        /// The HTTP status.
        status: u16,
    },
    /// FCM could not be reached or the connection broke. The message may have been accepted:
    /// the collapse key makes a repeat harmless.
    Network,
    /// The OAuth2 token endpoint was unreachable or failing.
    TokenEndpoint,
}

/// Why a device token is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenInvalidCause {
    /// 404 `UNREGISTERED`: the app was uninstalled or the token expired.
    Unregistered,
    /// 400 `INVALID_ARGUMENT` about the registration token itself.
    InvalidToken,
}

/// Which part of the sending setup is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCause {
    /// 401 even with a freshly fetched access token.
    Unauthenticated,
    /// 403 without an FCM code: the service account lacks the permission or the API is off.
    PermissionDenied,
    /// 403 `SENDER_ID_MISMATCH`: the token belongs to another Firebase project. Kept, not
    /// disabled, because a wrong credentials file would otherwise disable every token.
    SenderIdMismatch,
    /// 401 `THIRD_PARTY_AUTH_ERROR`: the project's APNs key is missing or invalid (a Firebase
    /// console fix); the device token is fine.
    ThirdPartyAuth,
    /// The token endpoint refused our assertion (key revoked, clock skew, wrong account).
    TokenExchange,
}

impl SendOutcome {
    /// A bounded label for metrics: `delivered`, `retry`, `token_invalid`, `auth_error`, `permanent`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Retry { .. } => "retry",
            Self::TokenInvalid { .. } => "token_invalid",
            Self::AuthError { .. } => "auth_error",
            Self::Permanent { .. } => "permanent",
        }
    }
}

/// Sends messages to FCM for one service account's project.
#[derive(Debug)]
pub struct FcmClient {
    http: reqwest::Client,
    tokens: TokenProvider,
    send_url: String,
}

/// `{"message": …}`, the `messages:send` body.
#[derive(Serialize)]
struct SendRequest<'a> {
    message: &'a Message,
}

/// `{"name": …}`, the success body.
#[derive(Deserialize)]
struct SendResponse {
    name: String,
}

/// Google's error body: `{"error": {"code", "message", "status", "details": […]}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "@type", default)]
    type_url: String,
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
    #[serde(rename = "fieldViolations", default)]
    field_violations: Vec<FieldViolation>,
}

#[derive(Deserialize)]
struct FieldViolation {
    #[serde(default)]
    field: String,
}

/// The HTTP client for FCM and its token endpoint. The timeouts turn a hung connection into a
/// [`RetryCause::Network`] instead of a send that never returns.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
}

impl FcmClient {
    /// A client for `key`'s project at `endpoint` (e.g. [`DEFAULT_ENDPOINT`]), with default
    /// timeouts and token refresh.
    pub fn from_key(key: ServiceAccountKey, endpoint: &str) -> Result<Self, reqwest::Error> {
        Ok(Self::new(TokenProvider::new(http_client()?, key), endpoint))
    }

    /// A client using `tokens` (and its HTTP client) at `endpoint`.
    pub fn new(tokens: TokenProvider, endpoint: &str) -> Self {
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            endpoint.trim_end_matches('/'),
            tokens.key().project_id()
        );
        Self { http: tokens.http().clone(), tokens, send_url }
    }

    /// The access-token cache, shared by every send of this client.
    pub fn tokens(&self) -> &TokenProvider {
        &self.tokens
    }

    /// Sends one message and classifies the answer.
    pub async fn send(&self, message: &Message) -> SendOutcome {
        let mut retried_with_new_token = false;
        loop {
            let outcome = match self.tokens.access_token().await {
                Ok(token) => {
                    let outcome = self.post(&token, message).await;
                    let unauthenticated =
                        matches!(outcome, SendOutcome::AuthError { cause: AuthCause::Unauthenticated, .. });
                    if unauthenticated && !retried_with_new_token {
                        tracing::info!(
                            "FCM refused the access token; fetching a new one and sending once more"
                        );
                        self.tokens.invalidate(&token);
                        retried_with_new_token = true;
                        continue;
                    }
                    outcome
                }
                Err(error) => token_failure(&error),
            };
            log(&outcome);
            return outcome;
        }
    }

    async fn post(&self, token: &str, message: &Message) -> SendOutcome {
        let sent =
            self.http.post(&self.send_url).bearer_auth(token).json(&SendRequest { message }).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return network_failure(&error),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        match response.bytes().await {
            Ok(body) => classify(status, retry_after, &body),
            Err(error) => network_failure(&error),
        }
    }
}

fn network_failure(error: &reqwest::Error) -> SendOutcome {
    SendOutcome::Retry { cause: RetryCause::Network, retry_after: None, detail: error.to_string() }
}

fn token_failure(error: &TokenError) -> SendOutcome {
    if error.is_transient() {
        SendOutcome::Retry { cause: RetryCause::TokenEndpoint, retry_after: None, detail: error.to_string() }
    } else {
        SendOutcome::AuthError { cause: AuthCause::TokenExchange, detail: error.to_string() }
    }
}

fn log(outcome: &SendOutcome) {
    match outcome {
        SendOutcome::AuthError { cause, detail } => {
            tracing::error!(?cause, %detail, "FCM push refused: credentials or Firebase project setup is broken")
        }
        SendOutcome::Permanent { status, detail } => {
            tracing::warn!(status, %detail, "FCM refused the message")
        }
        other => tracing::debug!(outcome = other.label(), "FCM send finished"),
    }
}

/// What an FCM answer means. `body` is the response body as received.
fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> SendOutcome {
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<SendResponse>(body) {
            Ok(response) => SendOutcome::Delivered { name: response.name },
            Err(_) => {
                tracing::warn!(status, "FCM accepted a message without naming it");
                SendOutcome::Delivered { name: String::new() }
            }
        };
    }
    let error = serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.error);
    let fcm_code = error.as_ref().and_then(|e| {
        e.details
            .iter()
            .find(|d| d.type_url.ends_with("google.firebase.fcm.v1.FcmError"))
            .and_then(|d| d.error_code.clone())
    });
    let about_token = error.as_ref().is_some_and(|e| {
        e.message.to_ascii_lowercase().contains("registration token")
            || e.details.iter().flat_map(|d| &d.field_violations).any(|v| v.field == "message.token")
    });
    let detail = match &error {
        Some(e) => {
            format!("HTTP {status} {} {}: {}", e.status, fcm_code.as_deref().unwrap_or("-"), e.message)
        }
        None => format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])),
    };
    match (fcm_code.as_deref(), status) {
        (Some("UNREGISTERED"), _) => {
            SendOutcome::TokenInvalid { cause: TokenInvalidCause::Unregistered, detail }
        }
        (Some("SENDER_ID_MISMATCH"), _) => {
            SendOutcome::AuthError { cause: AuthCause::SenderIdMismatch, detail }
        }
        (Some("THIRD_PARTY_AUTH_ERROR"), _) => {
            SendOutcome::AuthError { cause: AuthCause::ThirdPartyAuth, detail }
        }
        (Some("QUOTA_EXCEEDED"), _) | (_, 429) => {
            SendOutcome::Retry { cause: RetryCause::Throttled, retry_after, detail }
        }
        (Some("UNAVAILABLE" | "INTERNAL"), _) | (_, 500..=599) => {
            SendOutcome::Retry { cause: RetryCause::ServerError { status }, retry_after, detail }
        }
        (Some("INVALID_ARGUMENT") | None, 400) if about_token => {
            SendOutcome::TokenInvalid { cause: TokenInvalidCause::InvalidToken, detail }
        }
        (_, 401) => SendOutcome::AuthError { cause: AuthCause::Unauthenticated, detail },
        (_, 403) => SendOutcome::AuthError { cause: AuthCause::PermissionDenied, detail },
        _ => SendOutcome::Permanent { status, detail },
    }
}

/// `Retry-After` as delta-seconds or an HTTP date, relative to `now`, at most an hour.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(now).unwrap_or_default(),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fcm_error(code: u16, status: &str, message: &str, fcm_code: &str) -> Vec<u8> {
        serde_json::json!({"error": {"code": code, "message": message, "status": status, "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
        ]}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn an_invalid_argument_about_the_payload_is_permanent_not_a_dead_token() {
        let body = serde_json::json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
            "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.data[0].value", "description": "…"}]}]}})
        .to_string();
        assert!(matches!(classify(400, None, body.as_bytes()), SendOutcome::Permanent { status: 400, .. }));
    }

    #[test]
    fn a_field_violation_on_the_token_marks_the_token_invalid() {
        let body = serde_json::json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad",
            "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token"}]}]}})
        .to_string();
        assert!(matches!(
            classify(400, None, body.as_bytes()),
            SendOutcome::TokenInvalid { cause: TokenInvalidCause::InvalidToken, .. }
        ));
    }

    #[test]
    fn the_fcm_error_code_wins_over_the_http_status() {
        let body = fcm_error(500, "INTERNAL", "x", "UNREGISTERED");
        assert!(matches!(classify(500, None, &body), SendOutcome::TokenInvalid { .. }));
    }

    #[test]
    fn an_error_without_a_google_body_is_classified_by_status() {
        assert!(matches!(
            classify(502, Some(Duration::from_secs(3)), b"<html>bad gateway</html>"),
            SendOutcome::Retry { cause: RetryCause::ServerError { status: 502 }, retry_after: Some(_), .. }
        ));
        assert!(matches!(classify(404, None, b""), SendOutcome::Permanent { status: 404, .. }));
    }
}
