//! The OsmAnd / Traccar Client HTTP listener: one position per request, in the query string or
//! a form body, at any path (clients are configured with a bare `http://HOST:5055`).
//!
//! The device id is the only credential, as with the TCP protocols: it must be registered as an
//! `osmand` device. Answers: 200 with an empty body once the position (and alarm) is committed;
//! 400 for a malformed request or an unknown id (Traccar's answer, which clients understand as
//! "do not resend this"); 503 when nothing could be stored (the client resends).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use trygg_protocols::osmand;
use trygg_store::Protocol;

use crate::device::{DeviceIngest, Refused};

const PROTOCOL: Protocol = Protocol::Osmand;

/// Largest OsmAnd request body: a form with one position is well under 1 KiB.
const MAX_BODY_BYTES: usize = 16 << 10;

/// The OsmAnd routes: every path and method goes to the one handler.
pub(crate) fn router(ctx: Arc<DeviceIngest>) -> Router {
    Router::new().fallback(report).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).with_state(ctx)
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{reason}\n")).into_response()
}

async fn report(State(ctx): State<Arc<DeviceIngest>>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let query = query.unwrap_or_default();
    let report = match osmand::parse_request(&query, &body) {
        Ok(r) => r,
        Err(e) => {
            ctx.metrics.frame(PROTOCOL, "malformed");
            return refuse(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    ctx.metrics.frame(PROTOCOL, "ok");
    let session = match ctx.identify(&report.device_id, PROTOCOL).await {
        Ok(s) => s,
        Err(Refused::Unavailable) => return unavailable(),
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "unknown device"),
    };
    ctx.heard(&session, report.battery_pct).await;
    let now = Utc::now();
    let fix = report.to_fix(now);
    let stored = match report.device_alarm() {
        Some(kind) => {
            let time = fix.as_ref().map_or(now, |f| f.time);
            ctx.raise(&session, &[kind], time, fix.as_ref()).await
        }
        None => match fix {
            Some(fix) => ctx.commit_fixes(&session, vec![fix]).await,
            None => Ok(()),
        },
    };
    match stored {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::warn!(device = %session.device, error = %e, "OsmAnd report not stored");
            unavailable()
        }
    }
}

fn unavailable() -> Response {
    let mut response = refuse(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable, resend later");
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
