//! Accounts and tokens: argon2 password hashes, HS256 JWTs, and the [`Caller`] extractor.
//!
//! A login returns a signed token valid for the configured lifetime; there is no refresh token:
//! when it expires the client logs in again. That keeps one secret (the password) and one
//! mechanism, and bounds what a stolen token is worth. Only HS256 with our key is accepted, so a
//! token signed with another key, another algorithm or `alg: none` is refused, as is an expired
//! one.
//!
//! Every request also checks that the account is still active and that the token was issued at
//! the account's current token version (disabling, deleting, a password change or a reset
//! increments it). That check reads the account at most every [`ACCOUNT_CHECK_TTL`] per node, so
//! a revocation takes effect everywhere within that long (at once on the node that made it).
//!
//! Authorization is by role per endpoint ([`Caller::tenant_for`]) and by tenant in every store
//! query: handlers get the caller's tenant from the token, never from the request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString, rand_core::OsRng};
use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use trygg_core::TenantId;
use trygg_store::{AccountState, NewUser, Role, Store};
use uuid::Uuid;

use crate::ApiState;
use crate::error::ApiError;

/// Shortest signing key accepted, in bytes: HS256 keys shorter than its 256-bit output weaken it.
pub const MIN_SECRET_BYTES: usize = 32;
/// Shortest password accepted for an account.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Signs and checks tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

/// A signing key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the JWT signing key must be at least {MIN_SECRET_BYTES} bytes")]
pub struct WeakSecret;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account id.
    pub sub: Uuid,
    /// The account's tenant; absent for installation admins.
    pub tenant: Option<Uuid>,
    /// The account's role.
    pub role: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// The account's token version when it was issued; a token of another version is revoked.
    #[serde(default)]
    pub tv: i64,
    /// The browser session the token belongs to (the console's cookie); a token of an ended
    /// session is refused. None for the bearer tokens of apps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

impl Tokens {
    /// Tokens signed with `secret` (HS256), valid for `lifetime`.
    pub fn new(secret: &[u8], lifetime: Duration) -> Result<Self, WeakSecret> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetime,
        })
    }

    /// How long a token is valid.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Signs a token for an account at token version 0 (a fresh account's).
    pub fn issue(&self, user: Uuid, tenant: Option<TenantId>, role: Role) -> Result<String, ApiError> {
        self.issue_at(user, tenant, role, 0, None)
    }

    /// Signs a token for an account at its current token version, for browser session `sid`
    /// if given.
    pub fn issue_at(
        &self,
        user: Uuid,
        tenant: Option<TenantId>,
        role: Role,
        tv: i64,
        sid: Option<Uuid>,
    ) -> Result<String, ApiError> {
        let iat = Utc::now().timestamp();
        self.sign(&Claims {
            sub: user,
            tenant: tenant.map(|t| t.0),
            role: role.as_str().to_owned(),
            exp: self.expiry(iat),
            iat,
            tv,
            sid,
        })
    }

    /// When a token issued at `iat` (seconds since the epoch) expires.
    pub fn expiry(&self, iat: i64) -> i64 {
        iat + i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX / 2)
    }

    /// Signs arbitrary claims (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("signing a token: {e}")))
    }

    /// Checks a token and returns the caller it names (the signature and expiry only: the
    /// account's state is checked by the [`Caller`] extractor).
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        self.verify_versioned(token).map(|(caller, _)| caller)
    }

    /// Like [`verify`](Self::verify), with the token version (the session is in the caller).
    fn verify_versioned(&self, token: &str) -> Result<(Caller, i64), ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            tracing::debug!(error = %e, "Token refused");
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("token expired; log in again")
                }
                _ => ApiError::Unauthorized("invalid token"),
            }
        })?;
        let claims = data.claims;
        let role: Role = claims.role.parse().map_err(|_| ApiError::Unauthorized("invalid token"))?;
        // The token must agree with the rule the database enforces: admins have no tenant.
        if (role == Role::Admin) != claims.tenant.is_none() {
            return Err(ApiError::Unauthorized("invalid token"));
        }
        let caller =
            Caller { user: claims.sub, tenant: claims.tenant.map(TenantId), role, session: claims.sid };
        Ok((caller, claims.tv))
    }
}

/// How long an account's state is trusted before it is read again.
pub const ACCOUNT_CHECK_TTL: Duration = Duration::from_secs(5);

/// Account states read recently, so the per-request check costs a database read per account at
/// most every [`ACCOUNT_CHECK_TTL`].
#[derive(Debug, Default)]
pub struct AccountCache {
    entries: Mutex<HashMap<Uuid, (Instant, Option<AccountState>)>>,
}

impl AccountCache {
    /// Most accounts remembered; beyond it expired entries are dropped.
    const MAX_ENTRIES: usize = 100_000;

    async fn state(&self, store: &dyn Store, id: Uuid) -> Result<Option<AccountState>, ApiError> {
        if let Some((at, state)) = self.entries.lock().expect("account cache").get(&id)
            && at.elapsed() < ACCOUNT_CHECK_TTL
        {
            return Ok(*state);
        }
        let state = store.account_state(id).await?;
        let mut entries = self.entries.lock().expect("account cache");
        if entries.len() >= Self::MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < ACCOUNT_CHECK_TTL);
        }
        entries.insert(id, (Instant::now(), state));
        Ok(state)
    }

    /// Forgets an account's state: a change made on this node takes effect here at once.
    pub fn forget(&self, id: Uuid) {
        self.entries.lock().expect("account cache").remove(&id);
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The account id.
    pub user: Uuid,
    /// The account's tenant (none for admins).
    pub tenant: Option<TenantId>,
    /// The account's role.
    pub role: Role,
    /// The browser session of the token, if it is a console session's.
    pub session: Option<Uuid>,
}

impl Caller {
    /// The caller's tenant if its role is one of `roles`; 403 otherwise. Admins have no
    /// tenant and so never pass a tenant-scoped check.
    pub fn tenant_for(&self, roles: &[Role]) -> Result<TenantId, ApiError> {
        match self.tenant {
            Some(tenant) if roles.contains(&self.role) => Ok(tenant),
            _ => Err(ApiError::Forbidden),
        }
    }

    /// 403 unless the caller's role is one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) { Ok(()) } else { Err(ApiError::Forbidden) }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let token = match parts.headers.get(AUTHORIZATION) {
            Some(header) => {
                let header = header.to_str().map_err(|_| ApiError::Unauthorized("invalid token"))?;
                header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
                    .ok_or(ApiError::Unauthorized("missing bearer token"))?
                    .trim()
            }
            None => {
                let token =
                    session_cookie(&parts.headers).ok_or(ApiError::Unauthorized("missing bearer token"))?;
                // A browser sends the cookie with whatever page started the request.
                same_origin_json(&parts.method, &parts.headers)?;
                token
            }
        };
        let (caller, tv) = state.tokens.verify_versioned(token)?;
        if let Some(session) = caller.session
            && !state.store.session_open(session).await?
        {
            return Err(ApiError::Unauthorized("session ended; log in again"));
        }
        match state.accounts.state(state.store.as_ref(), caller.user).await? {
            Some(account) if account.active && account.tenant == caller.tenant => {
                if account.token_version == tv {
                    Ok(caller)
                } else {
                    Err(ApiError::Unauthorized("token revoked; log in again"))
                }
            }
            _ => Err(ApiError::Unauthorized("account disabled")),
        }
    }
}

/// The web console's session cookie. `__Host-`: the browser keeps it only if it was set Secure,
/// for Path=/ and without a Domain, so no other host or path can plant or read it.
pub const SESSION_COOKIE: &str = "__Host-trygg_session";

/// The session cookie's token, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

/// Refuses (403) a request that changes something and that a browser may have sent for another
/// site's page: with a cookie, an unsafe method needs `Sec-Fetch-Site: same-origin` (or, from a
/// browser that sends no fetch metadata, an `Origin` naming this host) and a JSON body, which a
/// cross-site form cannot send. Safe methods pass: they change nothing, and SameSite=Strict keeps
/// the cookie off cross-site requests in the first place.
pub fn same_origin_json(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let same_origin = match (text("sec-fetch-site"), text("origin"), text("host")) {
        (Some(site), _, _) => site == "same-origin",
        (None, Some(origin), Some(host)) => {
            origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) == Some(host)
        }
        _ => false,
    };
    if !same_origin {
        return Err(ApiError::Refused("cross-site request refused"));
    }
    let json = text("content-type")
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::Refused("a request with the session cookie must send application/json"));
    }
    Ok(())
}

/// Hashes a password with argon2id (its recommended parameters) on a hashing thread, once a
/// hashing slot is free ([`login_guard`](crate::login_guard) bounds how many run at once).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    crate::login_guard::hash_on_slot(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await?
    .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))
}

/// Checks a password against a stored hash on a hashing thread, once a hashing slot is free.
pub async fn verify_password(password: String, hash: String) -> Result<bool, ApiError> {
    crate::login_guard::hash_on_slot(move || verify_reusing_memory(password.as_bytes(), &hash)).await
}

/// Most argon2 memory a stored hash may ask for, in KiB (the recommended 19 MiB, with room).
const MAX_HASH_MEMORY_KIB: u32 = 64 * 1024;

/// Checks `password` against a PHC string, with argon2's working memory kept by the hashing
/// thread: allocated once per thread, not once per check, so a flood of checks does not leave
/// the allocator holding a freed block per check.
fn verify_reusing_memory(password: &[u8], phc: &str) -> bool {
    use argon2::password_hash::Output;
    use argon2::{Algorithm, Block, Params, Version};
    thread_local! {
        static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Ok(h) = PasswordHash::new(phc) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(h.algorithm), Params::try_from(&h)) else {
        return false;
    };
    let Ok(version) = h.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else { return false };
    if params.m_cost() > MAX_HASH_MEMORY_KIB {
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let mut out = vec![0u8; expected.len()];
    let blocks = params.block_count();
    let hashed = BLOCKS.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
            .is_ok()
    });
    // `Output`'s equality is constant-time.
    hashed && Output::new(&out).is_ok_and(|o| o == expected)
}

/// A `--bootstrap-admin` value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Not `EMAIL:PASSWORD`, or a password that is too short.
    #[error(
        "bootstrap admin must be EMAIL:PASSWORD with an email containing @ and a password of at least {MIN_PASSWORD_CHARS} characters"
    )]
    Invalid,
}

/// The first installation admin, from configuration (`EMAIL:PASSWORD`).
#[derive(Clone)]
pub struct BootstrapAdmin {
    email: String,
    password: String,
}

impl std::fmt::Debug for BootstrapAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapAdmin").field("email", &self.email).finish_non_exhaustive()
    }
}

impl std::str::FromStr for BootstrapAdmin {
    type Err = BootstrapError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (email, password) = s.split_once(':').ok_or(BootstrapError::Invalid)?;
        if !email.contains('@') || password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(BootstrapError::Invalid);
        }
        Ok(Self { email: email.trim().to_lowercase(), password: password.to_owned() })
    }
}

impl BootstrapAdmin {
    /// Creates the admin unless an account with its email exists (whose password is then left
    /// alone). Returns whether it was created.
    pub async fn ensure(&self, store: &Arc<dyn Store>) -> Result<bool, ApiError> {
        if store.user_by_email(&self.email).await?.is_some() {
            return Ok(false);
        }
        let password_hash = hash_password(self.password.clone()).await?;
        let user = NewUser {
            tenant: None,
            email: self.email.clone(),
            name: "Administrator".to_owned(),
            role: Role::Admin,
            password_hash,
        };
        match store.add_user(&user).await {
            Ok(_) => {
                tracing::info!(email = %self.email, "Created the bootstrap admin");
                Ok(true)
            }
            // Another node created it at the same moment.
            Err(trygg_store::StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
