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
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub mod auth;
mod error;
pub mod login_guard;
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

/// The document's skeleton; paths and schemas are added by [`routes::all`].
#[derive(OpenApi)]
#[openapi(
    info(title = "trygg API", description = "Caseworker, staff and admin API of trygg. Bearer JWT from /api/v1/auth/login."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// The API's routes and their OpenAPI document, built from the same handler list.
pub fn router_and_doc(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, doc) = routes::all(OpenApiRouter::with_openapi(ApiDoc::openapi())).split_for_parts();
    let doc = with_error_answers(doc);
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

/// Completes what every handler would otherwise repeat: the one error body (`Error`) on every
/// 4xx and 5xx answer, and the 401 of every operation behind a token.
fn with_error_answers(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use serde_json::{Value, json};
    let Ok(mut v) = serde_json::to_value(&doc) else { return doc };
    v["components"]["schemas"]["Error"] = json!({
        "type": "object",
        "description": "Every error answer: what went wrong, and details where they help (the fields of a 422, who has a 409's alarm).",
        "required": ["error", "details"],
        "properties": {
            "error": { "type": "string", "description": "What went wrong, in words." },
            "details": {
                "description": "Structured details, or null.",
                "type": ["object", "array", "string", "number", "boolean", "null"]
            }
        }
    });
    let error = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
    if let Some(paths) = v["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for op in item.values_mut() {
                let secured = op.get("security").is_some();
                let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                    continue;
                };
                if secured && !responses.contains_key("401") {
                    responses.insert(
                        "401".to_owned(),
                        json!({ "description": "no token, or a token that is invalid, expired or revoked" }),
                    );
                }
                for (status, answer) in responses.iter_mut() {
                    if status.starts_with('4') || status.starts_with('5') {
                        answer["content"] = error.clone();
                        if answer.get("description").is_none() {
                            answer["description"] = json!("error");
                        }
                    }
                }
            }
        }
    }
    match serde_json::from_value(v) {
        Ok(doc) => doc,
        Err(error) => {
            tracing::error!(%error, "Completing the OpenAPI document failed");
            doc
        }
    }
}

/// The API's routes, including `/api/v1/openapi.json`.
pub fn router(state: ApiState) -> Router {
    router_and_doc(state).0
}
