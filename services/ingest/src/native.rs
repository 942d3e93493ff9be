//! The native device API: `POST /api/v1/ingest/positions` and `POST /api/v1/ingest/alarms`,
//! each in JSON or protobuf (`proto/trygg/v1/ingest.proto`), authenticated by device token.
//!
//! A batch with some invalid fixes stores the valid ones and lists the rest in the reply: a
//! watch that drops its buffer on a 2xx must not be made to resend good fixes forever because
//! of one bad one. Only a batch with no valid fix at all is refused (422). A device alarm is
//! never refused for a bad attached position or clock: the alarm is stored and the problem
//! noted, because an SOS matters more than its metadata.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use trygg_core::{DeviceAlarmKind, DeviceId, Fix, FixSource, Freshness};
use trygg_store::{DeviceAuth, FixBatch, NewFix, token};

use crate::alarm::{Sender, StoredAlarm, store_device_alarm, truncate_to_millis, within};
use crate::{Committed, Ingest, IngestError, pb};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Protobuf,
}

const PROTOBUF: &str = "application/x-protobuf";

/// Stores a device's batch of fixes (JSON, or `application/x-protobuf` with the messages of
/// `proto/trygg/v1/ingest.proto`) and answers after they are committed. Fixes are judged one by
/// one: invalid ones (out of range, older than the buffer horizon, stamped in the future) are
/// listed in `rejected` and the valid ones stored; only a batch with no valid fix is refused.
#[utoipa::path(post, path = "/api/v1/ingest/positions", tag = "device ingest", security(("device" = [])),
    request_body(content((PositionsJson = "application/json"), (Vec<u8> = "application/x-protobuf"))),
    responses(
        (status = 200, body = PositionAck, description = "committed; `rejected` lists refused fixes"),
        (status = 400, description = "the body does not decode, or names no valid device id"),
        (status = 401, description = "no device token, or a token that is not the named device's"),
        (status = 413, description = "body or batch larger than allowed"),
        (status = 415, description = "neither JSON nor protobuf"),
        (status = 422, description = "no fixes, or no valid fix (`details` lists each reason)"),
        (status = 503, description = "nothing stored: the database is unavailable or the server is busy; resend after `Retry-After`"),
    ))]
pub(crate) async fn positions(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    handle(&ingest, positions_inner(&ingest, &headers, body).await)
}

/// Stores an alarm the device raised (JSON, or protobuf `DeviceAlarm`) and answers after it is
/// committed. A resend (same device, kind and time) answers 200 with the same alarm. The alarm
/// is never refused for its attached position: a bad fix is noted in `fix_error`.
#[utoipa::path(post, path = "/api/v1/ingest/alarms", tag = "device ingest", security(("device" = [])),
    request_body(content((AlarmJson = "application/json"), (Vec<u8> = "application/x-protobuf"))),
    responses(
        (status = 201, body = AlarmAck, description = "stored"),
        (status = 200, body = AlarmAck, description = "a resend of an alarm already stored"),
        (status = 400, description = "the body does not decode, or names no valid device id"),
        (status = 401, description = "no device token, or a token that is not the named device's"),
        (status = 413, description = "body larger than allowed"),
        (status = 415, description = "neither JSON nor protobuf"),
        (status = 503, description = "not acknowledged: the database or the alarm path is unavailable; resend after `Retry-After`"),
    ))]
pub(crate) async fn alarms(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    handle(&ingest, alarms_inner(&ingest, &headers, body).await)
}

fn handle(ingest: &Ingest, result: Result<Response, IngestError>) -> Response {
    result.unwrap_or_else(|e| {
        ingest.metrics.request_rejected(e.reason());
        e.into_response()
    })
}

/// A batch of fixes from one device.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = PositionBatch)]
struct PositionsJson {
    /// The device id the token was issued for.
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    device: String,
    /// The fixes, oldest first (at most `TRYGG_MAX_BATCH_FIXES`, default 1,000).
    #[schema(min_items = 1)]
    fixes: Vec<Fix>,
}

/// An alarm raised on the device.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = DeviceAlarm)]
struct AlarmJson {
    /// The device id the token was issued for.
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    device: String,
    /// What happened.
    kind: DeviceAlarmKind,
    /// The device's time for the alarm; a resend must carry the same time.
    time: DateTime<Utc>,
    /// The position at the time, if the device has one.
    fix: Option<Fix>,
}

/// A fix of the batch that was refused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = RejectedFix)]
struct Rejected {
    /// Position of the fix in the batch, from 0.
    index: usize,
    /// Stable reason code, e.g. `lat_out_of_range`, `in_future`, `too_old`.
    code: &'static str,
    /// The reason in words.
    error: String,
}

/// The answer to a batch, sent after its fixes are committed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PositionAck {
    /// Fixes stored by this request.
    accepted: u64,
    /// Fixes stored already by an earlier request (resends).
    duplicates: u64,
    /// Accepted fixes older than the live window (buffered uploads).
    late: u64,
    /// The refused fixes.
    rejected: Vec<Rejected>,
    /// Report every this many seconds from now on (battery-aware reporting); absent: keep the
    /// interval the device has.
    #[serde(skip_serializing_if = "Option::is_none")]
    report_interval_secs: Option<u32>,
}

/// The answer to an alarm, sent after it is committed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AlarmAck {
    /// The stored device alarm.
    alarm_id: i64,
    /// Whether it was stored already by an earlier request (a resend).
    duplicate: bool,
    /// Why the attached fix was not used, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix_error: Option<String>,
}

async fn positions_inner(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<Response, IngestError> {
    let (format, token) = (format(headers)?, bearer(headers)?);
    let deadline = Instant::now() + ingest.timeout;
    let claimed = within(deadline, authenticate(ingest, token)).await?;
    let bytes = read_body(body, headers, ingest.limits.max_body_bytes).await?;
    let (device, fixes) = match format {
        Format::Json => {
            let p: PositionsJson =
                serde_json::from_slice(&bytes).map_err(|e| IngestError::Malformed(e.to_string()))?;
            (p.device, p.fixes)
        }
        Format::Protobuf => {
            let p = pb::PositionBatch::decode(bytes).map_err(|e| IngestError::Malformed(e.to_string()))?;
            (p.device, p.fixes.into_iter().map(fix_from_pb).collect::<Result<_, _>>()?)
        }
    };
    if fixes.is_empty() {
        return Err(IngestError::EmptyBatch);
    }
    if fixes.len() > ingest.limits.max_batch_fixes {
        return Err(IngestError::BatchTooLong { len: fixes.len(), max: ingest.limits.max_batch_fixes });
    }
    let (device, auth) = claimed.of(&device)?;
    ingest.metrics.fixes_received(fixes.len());

    let now = Utc::now();
    let mut accepted = Vec::with_capacity(fixes.len());
    let mut rejected = Vec::new();
    for (index, fix) in fixes.into_iter().enumerate() {
        let fix = truncate_to_millis(fix);
        match ingest.policy.check(&fix, now) {
            Ok(freshness) => accepted.push(NewFix { fix, late: freshness == Freshness::Late }),
            Err(e) => {
                ingest.metrics.fix_rejected(e.code());
                rejected.push(Rejected { index, code: e.code(), error: e.to_string() });
            }
        }
    }
    if accepted.is_empty() {
        let rejected = serde_json::to_value(&rejected).unwrap_or_default();
        return Err(IngestError::NoValidFix { rejected });
    }
    let late = accepted.iter().filter(|f| f.late).count() as u64;
    let valid = accepted.len() as u64;
    let committed_fixes = accepted.iter().map(|f| f.fix.clone()).collect();
    let batch = FixBatch { device: device.clone(), received_at: now, fixes: accepted };
    let new = ingest.committer.commit(batch, deadline).await?;
    let report_interval_secs = ingest.report_intervals.get(&device);
    ingest.sink.committed(Committed::Fixes {
        tenant: auth.tenant,
        wearer: auth.wearer,
        device,
        fixes: committed_fixes,
        received_at: now,
    });

    let ack = PositionAck { accepted: new, duplicates: valid - new, late, rejected, report_interval_secs };
    Ok(match format {
        Format::Json => Json(ack).into_response(),
        Format::Protobuf => protobuf(
            StatusCode::OK,
            pb::PositionAck {
                accepted: ack.accepted as u32,
                duplicates: ack.duplicates as u32,
                late: ack.late as u32,
                report_interval_secs: ack.report_interval_secs,
                rejected: ack
                    .rejected
                    .into_iter()
                    .map(|r| pb::RejectedFix {
                        index: r.index as u32,
                        error: r.error,
                        code: r.code.to_owned(),
                    })
                    .collect(),
            },
        ),
    })
}

async fn alarms_inner(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<Response, IngestError> {
    let (format, token) = (format(headers)?, bearer(headers)?);
    let deadline = Instant::now() + ingest.timeout;
    let claimed = within(deadline, authenticate(ingest, token)).await?;
    let bytes = read_body(body, headers, ingest.limits.max_body_bytes).await?;
    let (device, kind, time, fix) = match format {
        Format::Json => {
            let a: AlarmJson =
                serde_json::from_slice(&bytes).map_err(|e| IngestError::Malformed(e.to_string()))?;
            (a.device, a.kind, a.time, a.fix)
        }
        Format::Protobuf => {
            let a = pb::DeviceAlarm::decode(bytes).map_err(|e| IngestError::Malformed(e.to_string()))?;
            let kind = match pb::AlarmKind::try_from(a.kind) {
                Ok(pb::AlarmKind::Sos) => DeviceAlarmKind::Sos,
                Ok(pb::AlarmKind::Fall) => DeviceAlarmKind::Fall,
                Ok(pb::AlarmKind::WatchRemoved) => DeviceAlarmKind::WatchRemoved,
                Ok(pb::AlarmKind::Test) => DeviceAlarmKind::Test,
                _ => return Err(IngestError::Malformed(format!("kind {} is not an alarm kind", a.kind))),
            };
            (a.device, kind, time_from_ms(a.time_unix_ms)?, a.fix.map(fix_from_pb).transpose()?)
        }
    };
    let (device, auth) = claimed.of(&device)?;
    let sender = Sender { tenant: auth.tenant, wearer: auth.wearer, device };
    let StoredAlarm { insert: stored, fix_error } =
        store_device_alarm(ingest, sender, kind, time, fix, deadline).await?;

    let status = if stored.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let ack = AlarmAck { alarm_id: stored.id, duplicate: stored.duplicate, fix_error };
    Ok(match format {
        Format::Json => (status, Json(ack)).into_response(),
        Format::Protobuf => protobuf(
            status,
            pb::AlarmAck { alarm_id: ack.alarm_id, duplicate: ack.duplicate, fix_error: ack.fix_error },
        ),
    })
}

fn format(headers: &HeaderMap) -> Result<Format, IngestError> {
    let raw = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let raw = raw.unwrap_or_default();
    let mime = raw.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Format::Json),
        PROTOBUF | "application/protobuf" => Ok(Format::Protobuf),
        _ => Err(IngestError::UnsupportedMediaType(raw)),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, IngestError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(IngestError::MissingToken)
}

/// Reads the body, refusing it as soon as it passes `limit` bytes (before buffering the rest).
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, IngestError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(IngestError::BodyTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.downcast_ref::<http_body_util::LengthLimitError>().is_some());
        if too_large {
            IngestError::BodyTooLarge { limit }
        } else {
            IngestError::Malformed(format!("could not read the body: {e}"))
        }
    })
}

/// The device a token belongs to, found before the body is read: a request without a valid
/// token costs no more than its headers. Unknown device and wrong token answer alike, so the
/// answer does not tell which device ids exist.
async fn authenticate(ingest: &Ingest, token: &str) -> Result<Authenticated, IngestError> {
    match ingest.store.device_by_token_hash(&token::hash(token)).await? {
        Some((id, auth)) if auth.token_hash.as_deref().is_some_and(|h| token::verify(token, h)) => {
            Ok(Authenticated { id, auth })
        }
        _ => Err(IngestError::Unauthenticated),
    }
}

/// A device that proved its token.
struct Authenticated {
    id: DeviceId,
    auth: DeviceAuth,
}

impl Authenticated {
    /// The device, if the body speaks for the device the token belongs to.
    fn of(self, device: &str) -> Result<(DeviceId, DeviceAuth), IngestError> {
        let named = DeviceId::parse(device).map_err(|e| IngestError::Malformed(format!("device: {e}")))?;
        if named == self.id { Ok((self.id, self.auth)) } else { Err(IngestError::Unauthenticated) }
    }
}

fn time_from_ms(ms: i64) -> Result<DateTime<Utc>, IngestError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| IngestError::Malformed(format!("time_unix_ms {ms} is out of range")))
}

fn fix_from_pb(f: pb::Fix) -> Result<Fix, IngestError> {
    Ok(Fix {
        time: time_from_ms(f.time_unix_ms)?,
        lat: f.lat,
        lon: f.lon,
        accuracy_m: f.accuracy_m,
        speed_mps: f.speed_mps,
        course_deg: f.course_deg,
        altitude_m: f.altitude_m,
        // Anything above 255 is as wrong as 101; validation names the field.
        battery_pct: f.battery_pct.map(|b| u8::try_from(b).unwrap_or(u8::MAX)),
        source: match pb::FixSource::try_from(f.source) {
            Ok(pb::FixSource::Gps) => FixSource::Gps,
            Ok(pb::FixSource::Wifi) => FixSource::Wifi,
            Ok(pb::FixSource::Cell) => FixSource::Cell,
            _ => FixSource::Unknown,
        },
    })
}

fn protobuf(status: StatusCode, message: impl Message) -> Response {
    (status, [(header::CONTENT_TYPE, PROTOBUF)], message.encode_to_vec()).into_response()
}
