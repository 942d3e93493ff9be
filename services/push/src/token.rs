//! OAuth2 access tokens for FCM from a service account (RFC 7523 JWT-bearer grant).
//!
//! One token serves every send of the process: minting one per message would add a round trip
//! to every alarm and hit Google's token quota. The token is refreshed before it expires, by
//! one caller at a time: while it is still valid the other senders keep using it, and only when
//! there is no valid token do they wait for the single fetch in flight.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::credentials::ServiceAccountKey;

/// The OAuth2 scope that allows `messages:send`.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The grant type of a signed-JWT exchange.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Google accepts assertions valid for at most an hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// Refresh when less than this is left, so a send never races an expiring token.
const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint could not be reached or did not answer in time.
    #[error("token endpoint unreachable: {0}")]
    Network(#[from] reqwest::Error),
    /// The token endpoint failed on its side (429 or 5xx); worth retrying.
    #[error("token endpoint unavailable (HTTP {status})")]
    Unavailable {
        /// The HTTP status.
        status: u16,
    },
    /// The token endpoint refused the assertion: wrong key, revoked account, clock skew.
    #[error("token endpoint refused the assertion (HTTP {status}): {error}: {description}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The OAuth2 `error` code, e.g. `invalid_grant`.
        error: String,
        /// Google's `error_description`.
        description: String,
    },
    /// The token endpoint answered 200 with a body that is not a token.
    #[error("token endpoint answered with an unexpected body: {0}")]
    BadResponse(String),
    /// The assertion could not be signed.
    #[error("cannot sign the JWT assertion: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl TokenError {
    /// Whether trying again later may succeed without anyone changing the configuration.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Network(_) | Self::Unavailable { .. })
    }
}

/// The claims of the JWT assertion (RFC 7523 §3).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AssertionClaims {
    pub(crate) iss: String,
    pub(crate) scope: String,
    pub(crate) aud: String,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
}

/// The token endpoint's answer, success or failure.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A cached access token.
#[derive(Clone)]
struct AccessToken {
    value: String,
    expires_at: Instant,
}

/// Hands out a cached OAuth2 access token for FCM, fetching a new one before it expires.
#[derive(Debug)]
pub struct TokenProvider {
    http: reqwest::Client,
    key: ServiceAccountKey,
    refresh_margin: Duration,
    /// Never held across an await: senders copy the token out.
    cached: Mutex<Option<AccessToken>>,
    /// Held by the one caller fetching a token.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider for `key` that refreshes five minutes before expiry.
    pub fn new(http: reqwest::Client, key: ServiceAccountKey) -> Self {
        Self {
            http,
            key,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Refresh when less than `margin` of the token's life is left (default 5 minutes).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The service account this provider signs for.
    pub fn key(&self) -> &ServiceAccountKey {
        &self.key
    }

    /// The HTTP client, shared with the FCM client so both use one connection pool.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A valid access token: the cached one, or a new one when it is close to expiry.
    ///
    /// A failed early refresh is logged and the still-valid token is returned, so a token
    /// endpoint outage only matters once the token has really expired.
    pub async fn access_token(&self) -> Result<String, TokenError> {
        let now = Instant::now();
        match self.cached() {
            Some(token) if now + self.refresh_margin < token.expires_at => Ok(token.value),
            Some(token) if now < token.expires_at => {
                let Ok(_fetching) = self.fetching.try_lock() else {
                    return Ok(token.value);
                };
                if let Some(newer) = self.cached().filter(|t| t.value != token.value) {
                    return Ok(newer.value);
                }
                match self.fetch().await {
                    Ok(value) => Ok(value),
                    Err(error) => {
                        tracing::warn!(%error, "Early FCM token refresh failed; using the current token");
                        Ok(token.value)
                    }
                }
            }
            _ => {
                let _fetching = self.fetching.lock().await;
                if let Some(token) = self.cached().filter(|t| Instant::now() < t.expires_at) {
                    return Ok(token.value);
                }
                self.fetch().await
            }
        }
    }

    /// Forgets `token` if it is still the cached one, e.g. after FCM answered 401 to it.
    pub fn invalidate(&self, token: &str) {
        let mut cached = self.cached.lock().expect("token cache lock poisoned");
        if cached.as_ref().is_some_and(|t| t.value == token) {
            *cached = None;
        }
    }

    fn cached(&self) -> Option<AccessToken> {
        self.cached.lock().expect("token cache lock poisoned").clone()
    }

    /// Signs an assertion, exchanges it, caches and returns the access token.
    async fn fetch(&self) -> Result<String, TokenError> {
        let started = Instant::now();
        let assertion = self.assertion(SystemTime::now())?;
        let response = self
            .http
            .post(self.key.token_uri())
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.as_str())])
            .send()
            .await?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(TokenError::Unavailable { status: status.as_u16() });
        }
        let body = response.bytes().await?;
        let parsed: Option<TokenResponse> = serde_json::from_slice(&body).ok();
        let token = match parsed {
            Some(TokenResponse { access_token: Some(value), expires_in: Some(secs), .. })
                if status.is_success() =>
            {
                AccessToken { value, expires_at: started + Duration::from_secs(secs) }
            }
            Some(TokenResponse { error, error_description, .. }) if !status.is_success() => {
                return Err(TokenError::Rejected {
                    status: status.as_u16(),
                    error: error.unwrap_or_default(),
                    description: error_description.unwrap_or_default(),
                });
            }
            _ => {
                return Err(TokenError::BadResponse(format!(
                    "HTTP {status}, {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                )));
            }
        };
        tracing::info!(
            client_email = self.key.client_email(),
            expires_in_s = token.expires_at.saturating_duration_since(started).as_secs(),
            "Fetched FCM access token"
        );
        *self.cached.lock().expect("token cache lock poisoned") = Some(token.clone());
        Ok(token.value)
    }

    /// The signed JWT assertion for `now` (wall-clock time: Google checks `iat` against its own).
    fn assertion(&self, now: SystemTime) -> Result<String, TokenError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = AssertionClaims {
            iss: self.key.client_email().to_owned(),
            scope: FCM_SCOPE.to_owned(),
            aud: self.key.token_uri().to_owned(),
            iat,
            exp: iat + ASSERTION_LIFETIME.as_secs(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key.private_key_id().map(str::to_owned);
        Ok(jsonwebtoken::encode(&header, &claims, self.key.encoding_key())?)
    }
}
