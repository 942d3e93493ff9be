//! A local FCM for tests, `trygg fake-fcm` and the demo (cargo feature `fake`).
//!
//! It runs the real client against loopback with the checks Google makes, so a test that passes
//! here exercises the same OAuth2 exchange, request shape and error handling as production:
//! the token endpoint verifies the RS256 assertion (signature, `iss`, `aud`, scope, lifetime),
//! and `messages:send` demands a known, unexpired bearer token and a valid message (one target,
//! string data values, the 4 KiB payload limit) and answers errors in Google's body shape.
//!
//! Tests script it: fail the next requests (or those for one device token) with any FCM error
//! class, go down for a while (new connections are dropped, open ones reset), or hang: take
//! requests and never answer them, the failure a client only notices through its own timeout.
//! Every accepted message is recorded for assertions such as "each recipient notified once per
//! alarm".
//!
//! The key pair it trusts is a committed TEST-ONLY key (`tests/data/`); it opens nothing.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::credentials::ServiceAccountKey;
use crate::message::{PAYLOAD_LIMIT_BYTES, payload_bytes};
use crate::token::{AssertionClaims, FCM_SCOPE, JWT_BEARER_GRANT};

/// TEST-ONLY RSA private key (PKCS#8 PEM) of the fake's service account. Never use elsewhere.
pub const TEST_PRIVATE_KEY_PEM: &str = include_str!("../tests/data/test-only-service-account-key.pem");

/// The public half, with which the fake verifies assertions.
const TEST_PUBLIC_KEY_PEM: &str = include_str!("../tests/data/test-only-service-account-key.pub.pem");

/// The Firebase project id of the test service account.
pub const TEST_PROJECT_ID: &str = "trygg-test";

/// The e-mail (assertion issuer) of the test service account.
pub const TEST_CLIENT_EMAIL: &str = "fcm-sender@trygg-test.iam.gserviceaccount.com";

/// Access tokens live this long unless a test says otherwise (Google's own figure).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// A service-account key file signed with the TEST-ONLY key, exchanging at `token_uri`.
///
/// A `client_email` other than [`TEST_CLIENT_EMAIL`] gives an account the fake refuses.
pub fn test_service_account_json(token_uri: &str, client_email: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": TEST_PROJECT_ID,
        "private_key_id": "test-only-key",
        "private_key": TEST_PRIVATE_KEY_PEM,
        "client_email": client_email,
        "client_id": "0",
        "token_uri": token_uri,
    })
    .to_string()
}

/// An FCM error class the fake can be told to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 503 `UNAVAILABLE`, with this `Retry-After` value (seconds or an HTTP date) if given.
    Unavailable {
        /// The `Retry-After` header value.
        retry_after: Option<String>,
    },
    /// 429 `QUOTA_EXCEEDED`, with this `Retry-After` value if given.
    Throttled {
        /// The `Retry-After` header value.
        retry_after: Option<String>,
    },
    /// 500 `INTERNAL`.
    Internal,
    /// 404 `UNREGISTERED`: the app is gone from the device.
    Unregistered,
    /// 400 `INVALID_ARGUMENT`: "not a valid FCM registration token".
    InvalidToken,
    /// 400 `INVALID_ARGUMENT` about the payload, not the token.
    InvalidArgument,
    /// 401 `UNAUTHENTICATED` without an FCM code, as for a revoked access token.
    Unauthenticated,
    /// 403 `SENDER_ID_MISMATCH`.
    SenderIdMismatch,
    /// 401 `THIRD_PARTY_AUTH_ERROR`: the project's APNs key is bad.
    ThirdPartyAuth,
    /// No answer at all: the request is read and left hanging until the client gives up. It
    /// is not recorded, so a later resend is not a duplicate.
    Hang,
}

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    /// The name it was given, `projects/{project}/messages/{n}`.
    pub name: String,
    /// The target device token, if it was sent to one.
    pub token: Option<String>,
    /// `android.collapse_key`, if set.
    pub collapse_key: Option<String>,
    /// The `message` object as received.
    pub message: Value,
}

/// Faults queued for the next matching sends.
#[derive(Debug)]
struct Script {
    fault: Fault,
    remaining: usize,
    token: Option<String>,
}

#[derive(Debug)]
struct Inner {
    token_lifetime: Duration,
    access_tokens: HashMap<String, Instant>,
    issued: u64,
    token_requests: usize,
    scripts: VecDeque<Script>,
    down_until: Option<Instant>,
    hanging_until: Option<Instant>,
    hung_sends: usize,
    messages: Vec<ReceivedMessage>,
}

struct Shared {
    token_uri: String,
    decoding_key: DecodingKey,
    inner: Mutex<Inner>,
    /// Every accepted message, as it arrives, for [`FakeFcm::subscribe`].
    accepted: broadcast::Sender<ReceivedMessage>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake FCM state lock poisoned")
    }

    fn is_down(&self) -> bool {
        self.lock().down_until.is_some_and(|until| Instant::now() < until)
    }

    /// True while hanging; counts the send about to be left unanswered.
    fn hangs_send(&self) -> bool {
        let mut inner = self.lock();
        let hanging = inner.hanging_until.is_some_and(|until| Instant::now() < until);
        inner.hung_sends += usize::from(hanging);
        hanging
    }
}

/// A running fake FCM on `127.0.0.1`; stops when dropped.
pub struct FakeFcm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeFcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeFcm").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for FakeFcm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeFcm {
    /// Binds `127.0.0.1:0` and serves in a background task.
    pub async fn start() -> io::Result<Self> {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await?)
    }

    /// Serves on `listener` (e.g. a fixed port for `trygg fake-fcm`).
    pub fn start_on(listener: TcpListener) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let decoding_key = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY_PEM.as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let shared = Arc::new(Shared {
            token_uri: format!("http://{addr}/token"),
            decoding_key,
            accepted: broadcast::channel(1024).0,
            inner: Mutex::new(Inner {
                token_lifetime: DEFAULT_TOKEN_LIFETIME,
                access_tokens: HashMap::new(),
                issued: 0,
                token_requests: 0,
                scripts: VecDeque::new(),
                down_until: None,
                hanging_until: None,
                hung_sends: 0,
                messages: Vec::new(),
            }),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{project_id}/messages:send", post(send))
            .with_state(shared.clone());
        let listener = DownAwareListener { inner: listener, shared: shared.clone() };
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "Fake FCM stopped");
            }
        });
        tracing::info!(%addr, "Fake FCM listening");
        Ok(Self { addr, shared, task })
    }

    /// The base URL to use as `TRYGG_FCM_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The test service-account key file, exchanging tokens at this fake.
    pub fn service_account_json(&self) -> String {
        test_service_account_json(&self.shared.token_uri, TEST_CLIENT_EMAIL)
    }

    /// The test service account, parsed.
    pub fn service_account(&self) -> ServiceAccountKey {
        ServiceAccountKey::from_json(&self.service_account_json()).expect("the test service account is valid")
    }

    /// Issue access tokens that expire after `lifetime` (whole seconds, as `expires_in`).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().token_lifetime = lifetime;
    }

    /// Forget every access token issued so far, as if Google revoked them.
    pub fn revoke_access_tokens(&self) {
        self.shared.lock().access_tokens.clear();
    }

    /// Answer the next `n` sends with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.shared.lock().scripts.push_back(Script { fault, remaining: n, token: None });
    }

    /// Answer the next `n` sends to device token `token` with `fault` (`usize::MAX`: always).
    pub fn fail_next_for_token(&self, token: &str, n: usize, fault: Fault) {
        let script = Script { fault, remaining: n, token: Some(token.to_owned()) };
        self.shared.lock().scripts.push_back(script);
    }

    /// Be down for `duration`: drop new connections and reset open ones.
    pub fn go_down_for(&self, duration: Duration) {
        self.shared.lock().down_until = Some(Instant::now() + duration);
    }

    /// Hang for `duration`: accept connections and read each send, but never answer it (the
    /// token endpoint still answers). A send that arrived while hanging stays unanswered.
    pub fn hang_for(&self, duration: Duration) {
        self.shared.lock().hanging_until = Some(Instant::now() + duration);
    }

    /// Be up again at once (after [`go_down_for`](Self::go_down_for) or
    /// [`hang_for`](Self::hang_for)).
    pub fn come_back(&self) {
        let mut inner = self.shared.lock();
        (inner.down_until, inner.hanging_until) = (None, None);
    }

    /// Forget the scripted faults not used up yet.
    pub fn clear_faults(&self) {
        self.shared.lock().scripts.clear();
    }

    /// Each message accepted from now on, as it arrives.
    pub fn subscribe(&self) -> broadcast::Receiver<ReceivedMessage> {
        self.shared.accepted.subscribe()
    }

    /// How many times the token endpoint was called.
    pub fn token_requests(&self) -> usize {
        self.shared.lock().token_requests
    }

    /// How many sends arrived while hanging (see [`hang_for`](Self::hang_for)) and were left
    /// unanswered: a test knows a worker holds a claim in flight.
    pub fn hung_sends(&self) -> usize {
        self.shared.lock().hung_sends
    }

    /// Every message accepted so far, in arrival order.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.shared.lock().messages.clone()
    }

    /// How many messages were accepted for device token `token`.
    pub fn count_for_token(&self, token: &str) -> usize {
        self.shared.lock().messages.iter().filter(|m| m.token.as_deref() == Some(token)).count()
    }

    /// How many messages were accepted with collapse key `key`.
    pub fn count_for_collapse_key(&self, key: &str) -> usize {
        self.shared.lock().messages.iter().filter(|m| m.collapse_key.as_deref() == Some(key)).count()
    }
}

/// `trygg fake-fcm`: serves a fake FCM on `listener` until `shutdown`, having written the
/// matching TEST-ONLY service-account file to `credentials_path` (point
/// `TRYGG_FCM_CREDENTIALS` at it and `TRYGG_FCM_ENDPOINT` at the address), and prints each
/// accepted push to stdout as one JSON line, as it arrives.
pub async fn run_printing(
    listener: TcpListener,
    credentials_path: &std::path::Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let fake = FakeFcm::start_on(listener)?;
    std::fs::write(credentials_path, fake.service_account_json())?;
    tracing::info!(
        endpoint = %fake.endpoint(),
        credentials = %credentials_path.display(),
        "Fake FCM ready: set TRYGG_FCM_ENDPOINT and TRYGG_FCM_CREDENTIALS to these"
    );
    let mut accepted = fake.subscribe();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            received = accepted.recv() => match received {
                Ok(m) => {
                    let line = json!({"name": m.name, "token": m.token, "collapse_key": m.collapse_key, "message": m.message});
                    println!("{line}");
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "Printing fell behind; some pushes were not printed");
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// `POST /token`: the JWT-bearer exchange, with the checks Google makes.
async fn token(State(shared): State<Arc<Shared>>, Form(form): Form<HashMap<String, String>>) -> Response {
    shared.lock().token_requests += 1;
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER_GRANT) {
        return oauth_error("unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&shared.token_uri]);
    validation.set_issuer(&[TEST_CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(assertion, &shared.decoding_key, &validation) {
        Ok(data) => data.claims,
        Err(error) => return oauth_error("invalid_grant", &format!("Invalid JWT: {error}")),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if claims.exp.saturating_sub(claims.iat) > 3600 || claims.iat.abs_diff(now) > 300 {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    }
    if !claims.scope.split(' ').any(|s| s == FCM_SCOPE) {
        return oauth_error("invalid_scope", "The scope does not allow FCM sends");
    }
    let mut inner = shared.lock();
    inner.issued += 1;
    let access_token = format!("fake-at-{}", inner.issued);
    let lifetime = inner.token_lifetime;
    inner.access_tokens.insert(access_token.clone(), Instant::now() + lifetime);
    Json(json!({"access_token": access_token, "expires_in": lifetime.as_secs(), "token_type": "Bearer"}))
        .into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error, "error_description": description}))).into_response()
}

/// `POST /v1/projects/{project_id}/messages:send`.
async fn send(
    State(shared): State<Arc<Shared>>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !bearer_is_valid(&shared, &headers) {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials.",
            None,
        );
    }
    if project_id != TEST_PROJECT_ID {
        return google_error(StatusCode::FORBIDDEN, "Permission denied on the project.", None);
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => return invalid_argument(&format!("Invalid JSON payload received. {error}")),
    };
    let message = match validate(&request) {
        Ok(message) => message,
        Err(reason) => return invalid_argument(&reason),
    };
    let token = message.get("token").and_then(Value::as_str).map(str::to_owned);
    if shared.hangs_send() {
        return fault_response(&Fault::Hang).await;
    }
    if let Some(fault) = take_fault(&shared, token.as_deref()) {
        return fault_response(&fault).await;
    }
    let validate_only = ["validate_only", "validateOnly"].iter().any(|f| request[f] == Value::Bool(true));
    if validate_only {
        return Json(json!({"name": format!("projects/{TEST_PROJECT_ID}/messages/fake_message_id")}))
            .into_response();
    }
    let android = message.get("android");
    let collapse_key =
        ["collapse_key", "collapseKey"].iter().find_map(|f| android?.get(f)?.as_str()).map(str::to_owned);
    let mut inner = shared.lock();
    let name = format!("projects/{TEST_PROJECT_ID}/messages/{}", inner.messages.len() + 1);
    tracing::info!(%name, token = token.as_deref(), collapse_key = collapse_key.as_deref(), "Fake FCM accepted a message");
    let received = ReceivedMessage { name: name.clone(), token, collapse_key, message: message.clone() };
    inner.messages.push(received.clone());
    drop(inner);
    // Nobody listening is fine: the message is recorded either way.
    let _ = shared.accepted.send(received);
    Json(json!({"name": name})).into_response()
}

fn bearer_is_valid(shared: &Shared, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer
        .is_some_and(|token| shared.lock().access_tokens.get(token).is_some_and(|exp| Instant::now() < *exp))
}

/// The first scripted fault matching this send, used up by one.
fn take_fault(shared: &Shared, token: Option<&str>) -> Option<Fault> {
    let mut inner = shared.lock();
    let index = inner.scripts.iter().position(|s| s.token.is_none() || s.token.as_deref() == token)?;
    let script = &mut inner.scripts[index];
    script.remaining = script.remaining.saturating_sub(1);
    let fault = script.fault.clone();
    if script.remaining == 0 {
        inner.scripts.remove(index);
    }
    Some(fault)
}

/// The checks FCM makes on a `SendMessageRequest`; returns the `message` object.
fn validate(request: &Value) -> Result<&Value, String> {
    let message = request.get("message").filter(|m| m.is_object()).ok_or("message is required")?;
    let targets = ["token", "topic", "condition"].iter().filter(|f| message.get(f).is_some()).count();
    if targets != 1 {
        return Err("Exactly one of token, topic or condition must be set".to_owned());
    }
    if let Some(data) = message.get("data") {
        let data = data.as_object().ok_or("message.data must be a map")?;
        for (i, (key, value)) in data.iter().enumerate() {
            if !value.is_string() {
                return Err(format!("Invalid value at 'message.data[{i}].value' (TYPE_STRING), {value}"));
            }
            if key == "from" || key == "message_type" || key.starts_with("google") || key.starts_with("gcm") {
                return Err(format!("Invalid data payload key: {key}"));
            }
        }
    }
    let bytes = payload_bytes(message);
    if bytes > PAYLOAD_LIMIT_BYTES {
        return Err(format!("Message is too big: {bytes} bytes, limit {PAYLOAD_LIMIT_BYTES}"));
    }
    if let Some(android) = message.get("android") {
        let priority = android.get("priority").and_then(Value::as_str);
        if priority.is_some_and(|p| !["NORMAL", "HIGH", "normal", "high"].contains(&p)) {
            return Err("Invalid value at 'message.android.priority'".to_owned());
        }
        let ttl = android.get("ttl").map(|t| t.as_str().and_then(ttl_secs));
        if ttl.is_some_and(|secs| secs.is_none_or(|s| s > 2_419_200.0)) {
            return Err("Invalid value at 'message.android.ttl'".to_owned());
        }
    }
    Ok(message)
}

/// A protobuf Duration string such as `"300s"` or `"3.5s"`, in seconds.
fn ttl_secs(text: &str) -> Option<f64> {
    let number = text.strip_suffix('s')?;
    let valid = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.');
    valid.then(|| number.parse().ok()).flatten()
}

fn invalid_argument(message: &str) -> Response {
    google_error(StatusCode::BAD_REQUEST, message, Some("INVALID_ARGUMENT"))
}

/// Google's error body; `fcm_code` adds the `FcmError` detail.
fn google_error(status: StatusCode, message: &str, fcm_code: Option<&str>) -> Response {
    let canonical = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let details: Vec<Value> = fcm_code
        .map(
            |code| json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}),
        )
        .into_iter()
        .collect();
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": canonical, "details": details}});
    (status, Json(body)).into_response()
}

/// The answer for `fault`; for [`Fault::Hang`] none: the future stays pending until axum drops
/// it with the connection the client gave up.
async fn fault_response(fault: &Fault) -> Response {
    let (status, message, code, retry_after) = match fault {
        Fault::Unavailable { retry_after } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is currently unavailable.",
            Some("UNAVAILABLE"),
            retry_after,
        ),
        Fault::Throttled { retry_after } => {
            (StatusCode::TOO_MANY_REQUESTS, "Quota exceeded.", Some("QUOTA_EXCEEDED"), retry_after)
        }
        Fault::Internal => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error encountered.", Some("INTERNAL"), &None)
        }
        Fault::Unregistered => {
            (StatusCode::NOT_FOUND, "Requested entity was not found.", Some("UNREGISTERED"), &None)
        }
        Fault::InvalidToken => (
            StatusCode::BAD_REQUEST,
            "The registration token is not a valid FCM registration token",
            Some("INVALID_ARGUMENT"),
            &None,
        ),
        Fault::InvalidArgument => (
            StatusCode::BAD_REQUEST,
            "Invalid value at 'message.android.ttl'",
            Some("INVALID_ARGUMENT"),
            &None,
        ),
        Fault::Unauthenticated => {
            (StatusCode::UNAUTHORIZED, "Request had invalid authentication credentials.", None, &None)
        }
        Fault::SenderIdMismatch => {
            (StatusCode::FORBIDDEN, "SenderId mismatch", Some("SENDER_ID_MISMATCH"), &None)
        }
        Fault::ThirdPartyAuth => (
            StatusCode::UNAUTHORIZED,
            "Auth error from APNS or Web Push Service",
            Some("THIRD_PARTY_AUTH_ERROR"),
            &None,
        ),
        Fault::Hang => return std::future::pending().await,
    };
    let mut response = google_error(status, message, code);
    if let Some(value) = retry_after.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Accepts connections, except while the fake is down: then it drops them at once.
struct DownAwareListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for DownAwareListener {
    type Io = DownAwareStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _)) if self.shared.is_down() => drop(stream),
                Ok((stream, addr)) => return (DownAwareStream { stream, shared: self.shared.clone() }, addr),
                // Out of file descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write while the fake is down, so pooled
/// keep-alive connections break like they do when a real server goes away.
struct DownAwareStream {
    stream: TcpStream,
    shared: Arc<Shared>,
}

impl DownAwareStream {
    fn check(&self) -> io::Result<()> {
        if self.shared.is_down() { Err(io::ErrorKind::ConnectionReset.into()) } else { Ok(()) }
    }
}

impl AsyncRead for DownAwareStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for DownAwareStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_accepts_protobuf_durations_only() {
        assert_eq!(ttl_secs("300s"), Some(300.0));
        assert_eq!(ttl_secs("3.5s"), Some(3.5));
        assert_eq!(ttl_secs("300"), None);
        assert_eq!(ttl_secs("-1s"), None);
        assert_eq!(ttl_secs("s"), None);
    }

    #[test]
    fn a_message_needs_exactly_one_target() {
        let both = json!({"message": {"token": "a", "topic": "b"}});
        assert!(validate(&both).is_err());
        let none = json!({"message": {"data": {}}});
        assert!(validate(&none).is_err());
        assert!(validate(&json!({"message": {"topic": "b"}})).is_ok());
    }

    #[test]
    fn data_values_must_be_strings_and_keys_not_reserved() {
        let number = json!({"message": {"token": "a", "data": {"lat": 57.7}}});
        assert!(validate(&number).unwrap_err().contains("message.data[0].value"));
        let reserved = json!({"message": {"token": "a", "data": {"google.x": "1"}}});
        assert!(validate(&reserved).is_err());
    }
}
