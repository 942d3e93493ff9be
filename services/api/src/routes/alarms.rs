//! Alarms from the staff side: the list and the detail a responder works from, the lifecycle
//! steps they take (acknowledge, on site, close), the audit trail, and the live position stream
//! they follow during a search (eftersök).
//!
//! Staff see only the alarms the store says they may ([`AlarmFilter::viewer`]): anything else
//! answers 404, like another tenant's alarm. Positions are what a responder needs and what the
//! law protects: staff see the wearer's positions only while the alarm is open (a closed alarm
//! shows them none; caseworkers and tenant admins still see them), the detail shows how old and
//! how accurate they are, and every answer that shows a wearer's position (the list, the detail,
//! the events, a step's answer, each live connection) is written to the access log, once per
//! wearer, before it is served. The response-time figures come from [`trygg_alarms::report`],
//! the same functions the report uses.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::stream::{self, Stream};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use trygg_alarms::report;
use trygg_core::{AlarmKind, AlarmState, DeviceId, Outcome, Step, TenantId, WearerId};
use trygg_store::{
    AccessEntry, Alarm, AlarmFilter, Position, ReceiptOutcome, Role, Stamp, StepOutcome, StepRequest, Store,
    StoreError, StoredFix,
};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{CLOSERS, READERS, RESPONDERS, path_id};
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::settings::Settings;
use crate::validate::{Body, Check, Params};

/// Alarms listed when the query names no limit.
const DEFAULT_LIMIT: u32 = 100;
/// Most alarms one list answers.
const MAX_LIMIT: u32 = 500;
/// Most fixes in a trail.
const TRAIL_MAX: u32 = 500;
/// Most new fixes a live stream reads per poll.
const LIVE_BATCH: u32 = 500;

/// Someone, by id and name.
#[derive(Debug, Serialize, ToSchema)]
pub struct Named {
    /// Their id.
    pub id: Uuid,
    /// Their name.
    pub name: String,
}

/// Who took a lifecycle step, and when.
#[derive(Debug, Serialize, ToSchema)]
pub struct StampOut {
    /// The account.
    pub user: Uuid,
    /// Its display name.
    pub name: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<&Stamp> for StampOut {
    fn from(s: &Stamp) -> Self {
        Self { user: s.user, name: s.name.clone(), at: s.at }
    }
}

/// A position of the wearer, with how old and how accurate it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct PositionOut {
    /// Latitude, WGS84.
    pub lat: f64,
    /// Longitude, WGS84.
    pub lon: f64,
    /// Accuracy radius in metres, if the device reported one.
    pub accuracy_m: Option<f64>,
    /// The fix time (device clock).
    pub time: DateTime<Utc>,
    /// Seconds between the fix and now.
    pub age_secs: i64,
    /// How the device found it: `gps`, `wifi`, `cell` or `unknown`; absent for the position
    /// stored with the alarm (see `last_position`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
}

impl PositionOut {
    fn new(p: &Position, time: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Self {
            lat: p.lat,
            lon: p.lon,
            accuracy_m: p.accuracy_m,
            time,
            age_secs: (now - time).num_seconds(),
            source: None,
        }
    }

    fn of_fix(f: &StoredFix, now: DateTime<Utc>) -> Self {
        Self { source: Some(f.fix.source.as_str()), ..Self::new(&Position::of(&f.fix), f.fix.time, now) }
    }
}

/// An alarm as staff see it in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmOut {
    /// Its id.
    pub id: Uuid,
    /// `sos`, `fall`, `zone_exit`, `zone_enter`, `watch_removed`, `low_battery`,
    /// `device_offline`, `test` or `test_alarm_missing`.
    pub kind: &'static str,
    /// `raised`, `notified`, `acknowledged`, `on_site` or `closed`.
    pub state: &'static str,
    /// The zone of a zone alarm.
    pub zone: Option<String>,
    /// Whose alarm it is; null for an alarm from a watch bound to nobody.
    pub wearer: Option<Named>,
    /// The device that raised it (for an alarm without a wearer, the only clue to whose it is).
    pub device_id: Option<String>,
    /// When the server raised it.
    pub raised_at: DateTime<Utc>,
    /// The device's time of what raised it.
    pub trigger_time: DateTime<Utc>,
    /// The position it was raised with.
    pub position: Option<PositionOut>,
    /// Who took it.
    pub acknowledged: Option<StampOut>,
    /// Who marked being on site.
    pub on_site: Option<StampOut>,
    /// Who closed it.
    pub closed: Option<StampOut>,
    /// How it ended: `assisted`, `false_alarm`, `test`, `not_found` or `other`.
    pub outcome: Option<&'static str>,
    /// The closing note.
    pub note: String,
    /// When the wearer came back inside the zone (exit alarms).
    pub returned_at: Option<DateTime<Utc>>,
    /// Seconds from raised to acknowledged.
    pub time_to_acknowledge_secs: Option<i64>,
    /// Seconds from raised to on site.
    pub time_to_on_site_secs: Option<i64>,
    /// A critical alarm with nobody on site within the tenant's `on_site_limit_secs` of it
    /// being raised (technical and test alarms are never overdue).
    pub on_site_overdue: bool,
}

/// What turns stored alarms into [`AlarmOut`]s: wearer names, the tenant's on-site limit and
/// whose positions the caller may see.
struct Items {
    names: HashMap<WearerId, String>,
    on_site_limit_secs: u32,
    now: DateTime<Utc>,
    role: Role,
}

impl Items {
    /// With the names of every wearer of the tenant (for lists).
    async fn all(state: &ApiState, caller: &Caller, tenant: TenantId) -> Result<Self, ApiError> {
        let names = state.store.wearers(tenant).await?.into_iter().map(|w| (w.id, w.fields.name)).collect();
        Self::with(state, caller, tenant, names).await
    }

    async fn with(
        state: &ApiState,
        caller: &Caller,
        tenant: TenantId,
        names: HashMap<WearerId, String>,
    ) -> Result<Self, ApiError> {
        let on_site_limit_secs = Settings::load(state.store.as_ref(), tenant).await?.on_site_limit_secs;
        Ok(Self { names, on_site_limit_secs, now: Utc::now(), role: caller.role })
    }

    fn item(&self, a: &Alarm) -> AlarmOut {
        AlarmOut {
            id: a.id,
            kind: a.kind.as_str(),
            state: a.state.as_str(),
            zone: a.zone.clone(),
            wearer: a
                .wearer
                .map(|w| Named { id: w.0, name: self.names.get(&w).cloned().unwrap_or_default() }),
            device_id: a.device.as_ref().map(|d| d.to_string()),
            raised_at: a.raised_at,
            trigger_time: a.trigger_time,
            position: a
                .position
                .filter(|_| shows_positions(self.role, a))
                .map(|(p, t)| PositionOut::new(&p, t, self.now)),
            acknowledged: a.acknowledged.as_ref().map(StampOut::from),
            on_site: a.on_site.as_ref().map(StampOut::from),
            closed: a.closed.as_ref().map(StampOut::from),
            outcome: a.outcome.map(Outcome::as_str),
            note: a.note.clone(),
            returned_at: a.returned_at,
            time_to_acknowledge_secs: report::time_to_acknowledge_s(a),
            time_to_on_site_secs: report::time_to_on_site_s(a),
            on_site_overdue: report::on_site_overdue(a, self.on_site_limit_secs, self.now),
        }
    }
}

/// The wearer's name, for one alarm.
async fn item_of(
    state: &ApiState,
    caller: &Caller,
    tenant: TenantId,
    a: &Alarm,
) -> Result<AlarmOut, ApiError> {
    let mut names = HashMap::new();
    if let Some(w) = a.wearer {
        names.insert(w, state.store.wearer(tenant, w).await?.map(|w| w.fields.name).unwrap_or_default());
    }
    Ok(Items::with(state, caller, tenant, names).await?.item(a))
}

/// Staff are restricted to the alarms they may see; the other tenant roles see every alarm.
fn viewer(caller: &Caller) -> Option<Uuid> {
    (caller.role == Role::Staff).then_some(caller.user)
}

/// Whether `role` is shown the wearer's positions on `a`: staff only while it is open (their
/// access to a wearer's whereabouts ends with the alarm), the other tenant roles always.
fn shows_positions(role: Role, a: &Alarm) -> bool {
    role != Role::Staff || a.state.is_open()
}

/// The alarm in the path, if the caller may see it; 404 otherwise.
async fn visible(state: &ApiState, caller: &Caller, tenant: TenantId, id: &str) -> Result<Alarm, ApiError> {
    let id = path_id("alarm", id)?;
    state.store.alarm(tenant, id, viewer(caller)).await?.ok_or(ApiError::NotFound("alarm"))
}

/// The fix times of an alarm's device that are positions of the alarm's wearer: up to the end of
/// the device's binding to that wearer in force when the alarm was raised (or the last one before
/// it, for an alarm raised late), from the end of the device's binding before it (fixes taken
/// while bound to nobody count as the wearer's; another wearer's never do). For an alarm from a
/// watch bound to nobody, the time between the bindings around it. A fix outside it is somebody else's position (DESIGN.md: an alarm shows its
/// wearer's binding, never whoever the device is bound to later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// From (inclusive); `None`: from the first fix.
    from: Option<DateTime<Utc>>,
    /// Until (exclusive); `None`: the binding is still in force.
    until: Option<DateTime<Utc>>,
}

impl Window {
    /// The window of `a`'s positions; `None` when no binding makes any fix the wearer's.
    async fn of(store: &dyn Store, tenant: TenantId, a: &Alarm) -> Result<Option<Self>, StoreError> {
        let Some(device) = &a.device else { return Ok(None) };
        let bindings = store.device_bindings(tenant, device).await?;
        let at = a.raised_at;
        Ok(match a.wearer {
            Some(wearer) => bindings
                .iter()
                .filter(|b| b.wearer == wearer && b.bound_at <= at)
                .max_by_key(|b| b.bound_at)
                .map(|b| Self {
                    // From the end of the watch's previous binding: what it recorded while bound
                    // to nobody (set up, buffered before the binding) is nobody else's.
                    from: bindings.iter().filter_map(|p| p.unbound_at).filter(|u| *u <= b.bound_at).max(),
                    until: b.unbound_at,
                }),
            None => Some(Self {
                from: bindings.iter().filter_map(|b| b.unbound_at).filter(|u| *u <= at).max(),
                until: bindings.iter().map(|b| b.bound_at).filter(|b| *b > at).min(),
            }),
        })
    }

    fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| f <= t) && self.until.is_none_or(|u| t < u)
    }

    /// The first instant, for an inclusive range query.
    fn first(&self) -> DateTime<Utc> {
        self.from.unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// The last instant, for an inclusive range query (fix times are stored to the millisecond).
    fn last(&self) -> Option<DateTime<Utc>> {
        self.until.map(|u| u - TimeDelta::milliseconds(1))
    }
}

/// The newest fix of the alarm's device within its window.
async fn last_fix(store: &dyn Store, device: &DeviceId, w: &Window) -> Result<Option<StoredFix>, StoreError> {
    Ok(store.fixes_between(device, w.first(), w.last(), 1).await?.pop())
}

/// Records that the caller is shown positions of the wearers of `alarms`: one entry per wearer,
/// naming that wearer's alarms. A read that cannot be logged is not served.
async fn log_reads(
    state: &ApiState,
    caller: &Caller,
    tenant: TenantId,
    alarms: &[&Alarm],
    what: &str,
) -> Result<(), ApiError> {
    let mut per_wearer: HashMap<WearerId, Vec<String>> = HashMap::new();
    // An alarm from a watch bound to nobody shows no wearer's positions: nobody's to log.
    for a in alarms {
        if let Some(w) = a.wearer {
            per_wearer.entry(w).or_default().push(a.id.to_string());
        }
    }
    let at = Utc::now();
    for (wearer, ids) in per_wearer {
        let reason = format!("{} {}", if ids.len() == 1 { "alarm" } else { "alarms" }, ids.join(", "));
        let entry = AccessEntry { tenant, user: caller.user, wearer, at, what: what.to_owned(), reason };
        state.store.log_access(&entry).await?;
    }
    Ok(())
}

/// Which alarms to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `open` (default), `closed` or `all`.
    #[param(schema_with = list_states)]
    pub state: Option<String>,
    /// Only this kind, e.g. `sos`.
    #[param(schema_with = alarm_kinds)]
    pub kind: Option<String>,
    /// Only this wearer.
    pub wearer: Option<Uuid>,
    /// Most alarms, newest first (default 100, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `newest` (default) or `triage`: critical alarms first, newest first, then technical
    /// alerts and the rest grouped per wearer.
    #[param(schema_with = list_orders)]
    pub order: Option<String>,
}

fn list_states() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(["open", "closed", "all"])
}

fn list_orders() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(["newest", "triage"])
}

fn alarm_kinds() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(AlarmKind::ALL.iter().map(|k| k.as_str()))
}

fn outcomes() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(Outcome::ALL.iter().map(|o| o.as_str()))
}

impl ListQuery {
    /// The store filter; values the API does not know are a 400.
    fn filter(&self, viewer: Option<Uuid>) -> Result<AlarmFilter, ApiError> {
        let open = match self.state.as_deref().unwrap_or("open") {
            "open" => Some(true),
            "closed" => Some(false),
            "all" => None,
            other => {
                return Err(ApiError::Malformed(format!("state {other:?}: expected open, closed or all")));
            }
        };
        let kind = self
            .kind
            .as_deref()
            .map(str::parse::<AlarmKind>)
            .transpose()
            .map_err(|e| ApiError::Malformed(e.to_string()))?;
        let limit = crate::validate::limit(self.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
        let wearer = self.wearer.map(WearerId);
        let triage = match self.order.as_deref().unwrap_or("newest") {
            "newest" => false,
            "triage" => true,
            other => return Err(ApiError::Malformed(format!("order {other:?}: expected newest or triage"))),
        };
        Ok(AlarmFilter { viewer, open, kind, wearer, from: None, to: None, limit, triage })
    }
}

/// Lists alarms, newest first: staff see those of their teams' wearers, of the wearers they
/// respond for and those pushed to them (a closed one without its position); caseworkers and
/// tenant admins see the tenant's. Each wearer whose position is shown is recorded in the
/// access log.
#[utoipa::path(get, path = "/api/v1/alarms", tag = "alarms", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<AlarmOut>), (status = 400), (status = 403)))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Vec<AlarmOut>>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let filter = q.filter(viewer(&caller))?;
    let alarms = state.store.alarms(tenant, &filter).await?;
    let items = Items::all(&state, &caller, tenant).await?;
    let out: Vec<AlarmOut> = alarms.iter().map(|a| items.item(a)).collect();
    let shown: Vec<&Alarm> =
        alarms.iter().zip(&out).filter(|(_, o)| o.position.is_some()).map(|(a, _)| a).collect();
    log_reads(&state, &caller, tenant, &shown, "alarms").await?;
    Ok(Json(out))
}

/// One point of the trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrailPoint {
    /// Latitude, WGS84.
    pub lat: f64,
    /// Longitude, WGS84.
    pub lon: f64,
    /// Accuracy radius in metres, if reported.
    pub accuracy_m: Option<f64>,
    /// The fix time (device clock).
    pub time: DateTime<Utc>,
    /// How the device found it: `gps`, `wifi`, `cell` or `unknown`.
    pub source: &'static str,
}

/// An alarm with what a responder needs to go out: the note, the contact, where the wearer is
/// and where they came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmDetail {
    /// The alarm.
    #[serde(flatten)]
    pub alarm: AlarmOut,
    /// The wearer's note for responders (door code, key box, habits).
    pub wearer_note: String,
    /// The wearer's contact person.
    pub contact_name: String,
    /// The contact person's phone.
    pub contact_phone: String,
    /// The newest fix of the alarm's device while bound to the alarm's wearer (for a closed
    /// alarm: the newest of the trail, up to its closing; none for staff).
    pub last_position: Option<PositionOut>,
    /// The device's newest 500 fixes from ten minutes before the trigger on (up to the closing
    /// for a closed alarm), only those of its binding to the alarm's wearer, oldest first; empty
    /// for staff once the alarm is closed.
    pub trail: Vec<TrailPoint>,
    /// An OpenStreetMap link to the last position.
    pub map_url: Option<String>,
}

/// An OpenStreetMap link centred on a point, with a marker.
fn map_url(lat: f64, lon: f64) -> String {
    format!("https://www.openstreetmap.org/?mlat={lat:.6}&mlon={lon:.6}#map=17/{lat:.6}/{lon:.6}")
}

/// One alarm with the wearer's note and contact, the last position and the trail (for staff,
/// only while the alarm is open). Reading positions is recorded in the access log.
#[utoipa::path(get, path = "/api/v1/alarms/{id}", tag = "alarms", params(("id" = Uuid, Path)),
    security(("bearer" = [])), responses((status = 200, body = AlarmDetail), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AlarmDetail>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let a = visible(&state, &caller, tenant, &id).await?;
    let wearer = match a.wearer {
        Some(w) => Some(state.store.wearer(tenant, w).await?.ok_or(ApiError::NotFound("alarm"))?),
        None => None,
    };
    let now = Utc::now();
    // A closed alarm shows where the wearer was while it was open, not where they are now.
    let until = a.closed.as_ref().map(|c| c.at);
    let (mut trail, mut last) = (Vec::new(), None);
    let window = match a.device.as_ref().filter(|_| shows_positions(caller.role, &a)) {
        Some(device) => Window::of(state.store.as_ref(), tenant, &a).await?.map(|w| (device, w)),
        None => None,
    };
    if let Some((device, window)) = window {
        let from = (a.trigger_time - trygg_store::alarms::TRAIL_BEFORE).max(window.first());
        let end = match (until, window.last()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        trail = state.store.fixes_between(device, from, end, TRAIL_MAX).await?;
        last = match until {
            Some(_) => trail.last().cloned(),
            None => last_fix(state.store.as_ref(), device, &window).await?,
        };
    }
    let names = wearer.iter().map(|w| (w.id, w.fields.name.clone())).collect();
    let item = Items::with(&state, &caller, tenant, names).await?.item(&a);
    if item.position.is_some() || last.is_some() || !trail.is_empty() {
        log_reads(&state, &caller, tenant, &[&a], "alarm").await?;
    }
    Ok(Json(AlarmDetail {
        alarm: item,
        wearer_note: wearer.as_ref().map(|w| w.fields.note.clone()).unwrap_or_default(),
        contact_name: wearer.as_ref().map(|w| w.fields.contact_name.clone()).unwrap_or_default(),
        contact_phone: wearer.map(|w| w.fields.contact_phone).unwrap_or_default(),
        map_url: last.as_ref().map(|f| map_url(f.fix.lat, f.fix.lon)),
        last_position: last.as_ref().map(|f| PositionOut::of_fix(f, now)),
        trail: trail
            .iter()
            .map(|f| TrailPoint {
                lat: f.fix.lat,
                lon: f.fix.lon,
                accuracy_m: f.fix.accuracy_m,
                time: f.fix.time,
                source: f.fix.source.as_str(),
            })
            .collect(),
    }))
}

/// A position attached to an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPosition {
    /// Latitude, WGS84.
    pub lat: f64,
    /// Longitude, WGS84.
    pub lon: f64,
    /// Accuracy radius in metres.
    pub accuracy_m: Option<f64>,
}

/// One entry of an alarm's audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    /// Its sequence number.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// What: `raised`, `repeated`, `notified`, `acknowledged`, `on_site`, `closed`, `returned`, …
    pub kind: String,
    /// Who, if a person.
    pub actor: Option<Named>,
    /// Where (the wearer's position, or the staff member's for their steps). Staff see none of
    /// a closed alarm's positions except their own.
    pub position: Option<EventPosition>,
    /// Details.
    pub detail: String,
}

/// An alarm's events (its append-only audit trail), oldest first. Showing the wearer's
/// positions is recorded in the access log.
#[utoipa::path(get, path = "/api/v1/alarms/{id}/events", tag = "alarms", params(("id" = Uuid, Path)),
    security(("bearer" = [])), responses((status = 200, body = Vec<EventOut>), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn events(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<EventOut>>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let a = visible(&state, &caller, tenant, &id).await?;
    let shows = shows_positions(caller.role, &a);
    let mut events = state.store.alarm_events(tenant, a.id).await?;
    // A person's step records where that person was; the system's events, where the wearer was.
    for e in &mut events {
        if !shows && e.event.actor != Some(caller.user) {
            e.event.position = None;
        }
    }
    if events.iter().any(|e| e.event.actor.is_none() && e.event.position.is_some()) {
        log_reads(&state, &caller, tenant, &[&a], "alarm events").await?;
    }
    Ok(Json(
        events
            .into_iter()
            .map(|e| EventOut {
                id: e.id,
                at: e.event.at,
                kind: e.event.kind,
                actor: e.event.actor.map(|id| Named { id, name: e.actor_name.unwrap_or_default() }),
                position: e.event.position.map(|p| EventPosition {
                    lat: p.lat,
                    lon: p.lon,
                    accuracy_m: p.accuracy_m,
                }),
                detail: e.event.detail,
            })
            .collect(),
    ))
}

/// The phone confirms that the push for this alarm arrived (a 200 from FCM means only
/// accepted). A critical alarm whose pushes nobody confirms in time escalates as undelivered.
/// Confirming twice is harmless.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/received", tag = "alarms", params(("id" = Uuid, Path)),
    security(("bearer" = [])), responses((status = 204), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn received(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let a = visible(&state, &caller, tenant, &id).await?;
    match state.store.record_receipt(tenant, a.id, caller.user, Utc::now()).await? {
        ReceiptOutcome::Recorded | ReceiptOutcome::Repeated => Ok(StatusCode::NO_CONTENT),
        ReceiptOutcome::NotFound => Err(ApiError::NotFound("alarm")),
    }
}

/// A body that may be left out: no body, only whitespace or JSON `null` reads as
/// `T::default()`, anything else is read like [`Body`].
#[derive(Debug)]
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| ApiError::Malformed(e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        let Body(value) =
            Body::<Option<T>>::from_request(Request::new(axum::body::Body::from(bytes)), state).await?;
        Ok(Self(value.unwrap_or_default()))
    }
}

/// The staff member's own position, as their phone knows it.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PositionIn {
    /// Latitude, −90 to 90.
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    /// Longitude, −180 to 180.
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// Accuracy radius in metres.
    #[schema(minimum = 0.0, maximum = 100000.0)]
    pub accuracy_m: Option<f64>,
}

/// The optional body of acknowledge and on-site.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepIn {
    /// Where the staff member is; recorded on the event.
    pub position: Option<PositionIn>,
}

impl StepIn {
    fn position(&self) -> Result<Option<Position>, ApiError> {
        let Some(p) = self.position else { return Ok(None) };
        let mut check = Check::default();
        check.range("position.lat", p.lat, -90.0..=90.0).range("position.lon", p.lon, -180.0..=180.0);
        if let Some(acc) = p.accuracy_m {
            check.range("position.accuracy_m", acc, 0.0..=100_000.0);
        }
        check.done()?;
        Ok(Some(Position { lat: p.lat, lon: p.lon, accuracy_m: p.accuracy_m }))
    }
}

/// How an alarm ended.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseIn {
    /// `assisted`, `false_alarm`, `test`, `not_found` or `other`.
    #[schema(schema_with = outcomes)]
    pub outcome: String,
    /// What happened, at most 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub note: String,
}

/// Takes `step` for the caller on the alarm in the path: the alarm as it is now (its position
/// logged as read when shown), or 409 saying why not (and who has it).
async fn take_step(
    state: &ApiState,
    caller: &Caller,
    tenant: TenantId,
    id: &str,
    step: Step,
    position: Option<Position>,
    note: String,
) -> Result<Json<AlarmOut>, ApiError> {
    let a = visible(state, caller, tenant, id).await?;
    let req = StepRequest { step, actor: Some(caller.user), at: Utc::now(), position, note };
    match state.store.step_alarm(tenant, a.id, &req).await?.ok_or(ApiError::NotFound("alarm"))? {
        StepOutcome::Done(a) => {
            let out = item_of(state, caller, tenant, &a).await?;
            if out.position.is_some() {
                log_reads(state, caller, tenant, &[&a], "alarm step").await?;
            }
            Ok(Json(out))
        }
        StepOutcome::Refused(a) => Err(refusal(step, &a)),
    }
}

/// The 409 for a refused step: why in words, the state and the people involved as details.
fn refusal(step: Step, a: &Alarm) -> ApiError {
    let message = match (step, &a.acknowledged, &a.on_site) {
        _ if a.state == AlarmState::Closed => "alarm is already closed".to_owned(),
        (Step::Acknowledge, Some(by), _) => format!("alarm already acknowledged by {}", by.name),
        (Step::OnSite, _, Some(by)) => format!("on site already marked by {}", by.name),
        (_, None, _) => format!("alarm must be acknowledged first; it is {}", a.state),
        _ => format!("alarm cannot go from {} to {}", a.state, step.target()),
    };
    let stamp = |s: &Stamp| json!({ "user": s.user, "name": s.name, "at": s.at });
    let mut details = json!({ "state": a.state.as_str() });
    for (key, s) in
        [("acknowledged_by", &a.acknowledged), ("on_site_by", &a.on_site), ("closed_by", &a.closed)]
    {
        if let Some(s) = s {
            details[key] = stamp(s);
        }
    }
    ApiError::ConflictWith { message, details }
}

/// Takes the alarm (kvittera); staff only. Exactly one of several staff acknowledging at once wins; the
/// others get 409 naming who did.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/acknowledge", tag = "alarms", params(("id" = Uuid, Path)),
    request_body(content = Option<StepIn>, description = "Optional: the staff member's position"),
    security(("bearer" = [])),
    responses((status = 200, body = AlarmOut), (status = 403, description = "staff only"), (status = 404),
        (status = 409, description = "already acknowledged (details name by whom) or closed"), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn acknowledge(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<StepIn>,
) -> Result<Json<AlarmOut>, ApiError> {
    let tenant = caller.tenant_for(RESPONDERS)?;
    let position = body.position()?;
    take_step(&state, &caller, tenant, &id, Step::Acknowledge, position, String::new()).await
}

/// Marks that the staff member is with the wearer (närvaromarkering); staff only, and only
/// after an acknowledgement.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/on-site", tag = "alarms", params(("id" = Uuid, Path)),
    request_body(content = Option<StepIn>, description = "Optional: the staff member's position"),
    security(("bearer" = [])),
    responses((status = 200, body = AlarmOut), (status = 403, description = "staff only"), (status = 404),
        (status = 409, description = "not acknowledged yet, already on site, or closed"), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn on_site(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<StepIn>,
) -> Result<Json<AlarmOut>, ApiError> {
    let tenant = caller.tenant_for(RESPONDERS)?;
    let position = body.position()?;
    take_step(&state, &caller, tenant, &id, Step::OnSite, position, String::new()).await
}

/// Closes the alarm with an outcome and a note; staff or tenant admins, only once someone
/// acknowledged it.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/close", tag = "alarms", params(("id" = Uuid, Path)),
    request_body = CloseIn, security(("bearer" = [])),
    responses((status = 200, body = AlarmOut), (status = 403, description = "staff and tenant admins only"), (status = 404),
        (status = 409, description = "not acknowledged yet, or already closed"), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn close(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CloseIn>,
) -> Result<Json<AlarmOut>, ApiError> {
    let tenant = caller.tenant_for(CLOSERS)?;
    let mut check = Check::default();
    let outcome: Option<Outcome> = check.parse("outcome", &body.outcome);
    check.ensure(body.note.chars().count() <= 2000, "note", "must be at most 2000 characters");
    check.done()?;
    let outcome = outcome.ok_or_else(|| ApiError::field("outcome", "required"))?;
    take_step(&state, &caller, tenant, &id, Step::Close(outcome), None, body.note.trim().to_owned()).await
}

/// How far back each live poll re-reads, by received time. A fix is stamped when it arrives but
/// is visible only once committed, and positions wait for a group commit while a device alarm's
/// fix commits at once: a fix can become visible after one received later. Seconds are far more
/// than a group commit takes.
const LIVE_OVERLAP: TimeDelta = TimeDelta::seconds(5);

/// The state of one live stream: where it is in the device's fixes and what it has to send.
struct Live {
    store: Arc<dyn Store>,
    tenant: TenantId,
    alarm: Uuid,
    /// The staff member watching, whose right to see the alarm is checked at every poll.
    viewer: Option<Uuid>,
    device: Option<DeviceId>,
    /// The fix times that are the wearer's positions; none: no fix is.
    window: Option<Window>,
    /// Newest received time of the fixes seen.
    cursor: DateTime<Utc>,
    /// The fixes seen (sent, or summed up by the first position), by fix time (unique per
    /// device) with their received time; only those a re-read can return again are kept, so the
    /// set stays as small as what arrives within [`LIVE_OVERLAP`].
    seen: HashMap<DateTime<Utc>, DateTime<Utc>>,
    poll: Duration,
    stopping: watch::Receiver<bool>,
    pending: VecDeque<Event>,
    /// The alarm closed or the server is stopping: send what is pending, then end.
    done: bool,
}

impl Live {
    /// The next event, waiting for one as long as the alarm is open and the server runs; `None`
    /// ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let stopping = tokio::select! {
                () = tokio::time::sleep(self.poll) => false,
                // An error means the sender is gone, and with it the server.
                _ = self.stopping.wait_for(|stopping| *stopping) => true,
            };
            if stopping {
                // The client reconnects to the next server and gets the last position again.
                self.done = true;
                let data = json!({ "id": self.alarm });
                return Some(Event::default().event("shutdown").data(data.to_string()));
            }
            if let Err(error) = self.poll_once().await {
                // The client reconnects and gets the last position again: nothing is lost.
                tracing::warn!(alarm = %self.alarm, %error, "Live alarm stream ends: the store failed");
                return None;
            }
        }
    }

    /// Queues the fixes not sent yet, then `closed` if the alarm closed. A caller who may no
    /// longer see the alarm (taken off the team, the wearer's responders changed) gets no more
    /// positions: `ended` and the end of the stream.
    async fn poll_once(&mut self) -> Result<(), StoreError> {
        let now = Utc::now();
        // Alarms are never deleted: `None` means the caller may no longer see this one.
        let Some(alarm) = self.store.alarm(self.tenant, self.alarm, self.viewer).await? else {
            let data = json!({ "id": self.alarm, "reason": "you may no longer see this alarm" });
            self.pending.push_back(Event::default().event("ended").data(data.to_string()));
            self.done = true;
            return Ok(());
        };
        // The watch was unbound (and perhaps given to someone else): its fixes from then on are
        // not the wearer's, so the stream sends those from before and ends rather than follow it.
        self.window = Window::of(self.store.as_ref(), self.tenant, &alarm).await?;
        for f in self.unseen().await? {
            self.pending.push_back(position_event(&f, now));
        }
        if alarm.state.is_open() && self.window.is_none_or(|w| w.until.is_some()) {
            let data = json!({ "id": self.alarm, "reason": "the watch is no longer bound to the wearer" });
            self.pending.push_back(Event::default().event("ended").data(data.to_string()));
            self.done = true;
            return Ok(());
        }
        if !alarm.state.is_open() {
            let data = json!({
                "id": self.alarm,
                "outcome": alarm.outcome.map(Outcome::as_str),
                "closed": alarm.closed.as_ref().map(StampOut::from),
            });
            self.pending.push_back(Event::default().event("closed").data(data.to_string()));
            self.done = true;
        }
        Ok(())
    }

    /// The device's fixes received after `cursor − LIVE_OVERLAP` and not seen before, in the
    /// order received, now marked seen. When a full batch holds only fixes already seen, it reads
    /// on from the cursor itself, so a burst within the overlap cannot stall the stream.
    async fn unseen(&mut self) -> Result<Vec<StoredFix>, StoreError> {
        let Some(device) = &self.device else { return Ok(Vec::new()) };
        let mut after = self.cursor - LIVE_OVERLAP;
        loop {
            let batch = self.store.fixes_received_after(device, after, LIVE_BATCH).await?;
            let full = batch.len() == LIVE_BATCH as usize;
            let mut fresh = Vec::new();
            for f in batch {
                if self.seen.insert(f.fix.time, f.received_at).is_none() {
                    self.cursor = self.cursor.max(f.received_at);
                    if self.window.is_some_and(|w| w.contains(f.fix.time)) {
                        fresh.push(f);
                    }
                }
            }
            if full && fresh.is_empty() && after < self.cursor {
                after = self.cursor;
                continue;
            }
            let horizon = self.cursor - LIVE_OVERLAP;
            self.seen.retain(|_, received| *received > horizon);
            return Ok(fresh);
        }
    }
}

fn position_event(f: &StoredFix, now: DateTime<Utc>) -> Event {
    let data = serde_json::to_value(PositionOut::of_fix(f, now)).unwrap_or_default();
    Event::default().event("position").data(data.to_string())
}

/// Server-Sent Events of the wearer's position while the alarm is open: `position` with the
/// last known position first, then one per fix of the alarm's device received from then on
/// (fixes that arrive late are sent when they become visible), and `closed` when the alarm
/// closes, `ended` when the caller may no longer see it or the watch is no longer bound to the
/// wearer, or `shutdown` when the server stops; each ends the stream. Only fixes of the
/// device's binding to the alarm's wearer are sent. Each connection is
/// recorded in the access log.
#[utoipa::path(get, path = "/api/v1/alarms/{id}/live", tag = "alarms", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream",
            description = "events `position` (lat, lon, accuracy_m, time, age_secs), then a final `closed` \
                (id, outcome, closed) or `shutdown` (id: reconnect later)"),
        (status = 404), (status = 409, description = "the alarm is closed")))]
#[tracing::instrument(skip_all)]
pub async fn live(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let a = visible(&state, &caller, tenant, &id).await?;
    if !a.state.is_open() {
        return Err(ApiError::Conflict("alarm is closed".to_owned()));
    }
    log_reads(&state, &caller, tenant, &[&a], "live").await?;
    let started = Utc::now();
    let window = Window::of(state.store.as_ref(), tenant, &a).await?;
    let last = match (&a.device, &window) {
        (Some(device), Some(w)) => last_fix(state.store.as_ref(), device, w).await?,
        _ => None,
    };
    let mut live = Live {
        store: state.store.clone(),
        tenant,
        alarm: a.id,
        viewer: viewer(&caller),
        device: a.device.clone(),
        window,
        cursor: last.as_ref().map_or(started, |f| f.received_at),
        seen: HashMap::new(),
        poll: state.live_poll,
        stopping: state.stopping.clone(),
        pending: last.iter().map(|f| position_event(f, started)).collect(),
        done: false,
    };
    // What was committed before the stream began is history the last position sums up: reading
    // it past marks it seen and moves the cursor to the newest received time. Fixes newer than
    // the last position were committed meanwhile and are sent.
    let newer = live.unseen().await?;
    let newer = newer.iter().filter(|f| last.as_ref().is_none_or(|l| f.fix.time > l.fix.time));
    live.pending.extend(newer.map(|f| position_event(f, started)));
    // Everything lives in the stream: a client that goes away drops it, and with it the poll.
    let events = stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((Ok(event), live))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
