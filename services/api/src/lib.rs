//! trygg's REST API for caseworkers (handläggare), staff and admins, under `/api/v1`.
//!
//! It is where people configure who wears what, record consent, draw zones and decide who
//! responds, and where staff work alarms (acknowledge, on site, close, follow the live
//! position) and caseworkers read the alarm report; all of it shares one access control:
//!
//! - [`auth`]: argon2 passwords, HS256 tokens, the [`Caller`](auth::Caller) extractor that
//!   every handler takes and that yields the caller's tenant for its role;
//! - [`routes`]: the handlers, one module per resource, each documented for OpenAPI;
//! - [`retention`]: the purge job that enforces each tenant's fix retention.
//!
//! Tenants are isolated by construction: handlers pass the tenant from the token to store
//! calls that filter by it, so another tenant's id answers 404 exactly like a missing one.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;
use trygg_store::Store;

pub mod auth;
mod error;
pub mod login_guard;
mod openapi;
pub mod retention;
pub mod routes;
pub mod settings;
pub mod validate;

pub use auth::{BootstrapAdmin, Caller, Tokens};
pub use error::ApiError;
pub use trygg_alarms::ZoneIndexes;

/// The cheap handles every handler needs.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Token signing and checking.
    pub tokens: Arc<Tokens>,
    /// The zone indexes the alarm engine reads.
    pub zones: Arc<ZoneIndexes>,
    /// How often a live alarm stream (`alarms/{id}/live`) looks for new fixes and for the
    /// alarm being closed; [`DEFAULT_LIVE_POLL`] unless a test wants it faster.
    pub live_poll: Duration,
    /// Turns true when the server begins to shut down: live alarm streams end on it rather than
    /// holding the server open until their alarm closes. A sender that goes away counts as true.
    pub stopping: watch::Receiver<bool>,
    /// Open device connections, for server commands (`devices/{id}/commands`).
    pub devices: trygg_ingest::DeviceLinks,
    /// Account states the per-request check read recently.
    pub accounts: Arc<auth::AccountCache>,
    /// Login attempt budgets per source address and per account.
    pub logins: Arc<login_guard::LoginGuard>,
}

/// The live stream's polling interval: a second is well within how often watches report, and
/// one indexed query a second per open stream is cheap.
pub const DEFAULT_LIVE_POLL: Duration = Duration::from_secs(1);

/// The API's routes and their OpenAPI document, built from the same handler list; the
/// document also describes the device ingest endpoints ([`openapi`]).
pub fn router_and_doc(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, doc) = routes::all(openapi::skeleton()).split_for_parts();
    let doc = openapi::complete(doc);
    let served = doc.clone();
    let router = router
        .route("/api/v1/openapi.json", axum::routing::get(move || async move { axum::Json(served) }))
        .layer(axum::middleware::map_response(no_store))
        .with_state(state);
    (router, doc)
}

/// Answers of this API carry personal data (names, door codes, positions): no cache, shared or
/// private, may keep them.
async fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header::CACHE_CONTROL};
    response.headers_mut().entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The API's routes, including `/api/v1/openapi.json`.
pub fn router(state: ApiState) -> Router {
    router_and_doc(state).0
}
