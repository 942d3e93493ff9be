//! Wearers (brukare) and what hangs off them: consent records, the responder order, and the
//! positions read (each read recorded in the access log).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trygg_core::TenantId;
use trygg_store::{
    AccessEntry, Consent, ConsentGiver, NewConsent, Responder, ResponderPlan, ResponderTarget, Role, Wearer,
    WearerFields,
};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    EDITORS, READERS, WearerScope, find_visible_wearer, find_wearer, has_open_alarm, path_id, zones_changed,
};
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::validate::{Body, Check, Params};

/// A wearer's fields, for create and update (update replaces them all).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WearerIn {
    /// Name.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// For responders: door code, key box, walking habits.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub note: String,
    /// Contact person's name.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub contact_name: String,
    /// Contact person's phone number: digits, spaces and `+ - ( )`.
    #[serde(default)]
    #[schema(max_length = 40, pattern = r"^[0-9 +()-]*$")]
    pub contact_phone: String,
    /// The responding team.
    pub team: Option<Uuid>,
}

/// Which consents are in force now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentState {
    /// A consent in force covers positioning.
    pub positioning: bool,
    /// A consent in force covers passive alarms.
    pub passive_alarms: bool,
}

/// A wearer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WearerOut {
    /// Its id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Note for responders.
    pub note: String,
    /// Contact person's name.
    pub contact_name: String,
    /// Contact person's phone.
    pub contact_phone: String,
    /// Responding team.
    pub team: Option<Uuid>,
    /// False once deactivated.
    pub active: bool,
    /// Consent in force now.
    pub consent: ConsentState,
    /// Whether the wearer's zones raise alarms now.
    pub zones_alarming: bool,
    /// Why they do not, when they do not.
    pub zones_not_alarming_reason: Option<&'static str>,
}

/// Why a wearer's zones raise no alarm, or `None` if they do.
pub(crate) fn not_alarming_reason(
    wearer: &Wearer,
    consents: &[Consent],
    now: DateTime<Utc>,
) -> Option<&'static str> {
    if wearer.deactivated_at.is_some() {
        Some("the wearer is deactivated")
    } else if !passive_alarms_consented(wearer, consents, now) {
        Some("no consent in force covers passive alarms")
    } else {
        None
    }
}

fn passive_alarms_consented(wearer: &Wearer, consents: &[Consent], now: DateTime<Utc>) -> bool {
    consents.iter().any(|c| c.consent.wearer == wearer.id && c.consent.passive_alarms && c.in_force_at(now))
}

fn wearer_out(w: Wearer, consents: &[Consent], now: DateTime<Utc>) -> WearerOut {
    let reason = not_alarming_reason(&w, consents, now);
    let in_force = |covers: fn(&NewConsent) -> bool| {
        consents.iter().any(|c| c.consent.wearer == w.id && covers(&c.consent) && c.in_force_at(now))
    };
    WearerOut {
        id: w.id.0,
        consent: ConsentState {
            positioning: in_force(|c| c.positioning),
            passive_alarms: in_force(|c| c.passive_alarms),
        },
        name: w.fields.name,
        note: w.fields.note,
        contact_name: w.fields.contact_name,
        contact_phone: w.fields.contact_phone,
        team: w.fields.team,
        active: w.deactivated_at.is_none(),
        zones_alarming: reason.is_none(),
        zones_not_alarming_reason: reason,
    }
}

async fn checked_fields(
    state: &ApiState,
    tenant: TenantId,
    body: WearerIn,
) -> Result<WearerFields, ApiError> {
    let mut check = Check::default();
    check
        .text("name", &body.name, 1, 200)
        .text("note", &body.note, 0, 2000)
        .text("contact_name", &body.contact_name, 0, 200)
        .text("contact_phone", &body.contact_phone, 0, 40)
        .ensure(
            body.contact_phone.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c)),
            "contact_phone",
            "may hold only digits, spaces and + - ( )",
        );
    if let Some(team) = body.team {
        let teams = state.store.teams(tenant).await?;
        check.ensure(teams.iter().any(|t| t.id == team), "team", "no such team");
    }
    check.done()?;
    Ok(WearerFields {
        name: body.name.trim().to_owned(),
        note: body.note.trim().to_owned(),
        contact_name: body.contact_name.trim().to_owned(),
        contact_phone: body.contact_phone.trim().to_owned(),
        team: body.team,
    })
}

async fn answer(state: &ApiState, tenant: TenantId, wearer: Wearer) -> Result<Json<WearerOut>, ApiError> {
    let consents = state.store.consents(tenant, Some(wearer.id)).await?;
    Ok(Json(wearer_out(wearer, &consents, Utc::now())))
}

/// Creates a wearer.
#[utoipa::path(post, path = "/api/v1/wearers", tag = "wearers", request_body = WearerIn, security(("bearer" = [])),
    responses((status = 201, body = WearerOut), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<WearerIn>,
) -> Result<(StatusCode, Json<WearerOut>), ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let fields = checked_fields(&state, tenant, body).await?;
    let id = state.store.add_wearer(tenant, &fields).await?;
    let wearer = Wearer { id, fields, deactivated_at: None };
    Ok((StatusCode::CREATED, answer(&state, tenant, wearer).await?))
}

/// Lists the tenant's wearers.
#[utoipa::path(get, path = "/api/v1/wearers", tag = "wearers", security(("bearer" = [])),
    responses((status = 200, body = Vec<WearerOut>)))]
#[tracing::instrument(skip_all)]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<Vec<WearerOut>>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let consents = state.store.consents(tenant, None).await?;
    let now = Utc::now();
    let scope = WearerScope::of(&state, &caller, tenant).await?;
    let mut out = Vec::new();
    for w in state.store.wearers(tenant).await? {
        if scope.sees(&state, tenant, &w).await? {
            out.push(wearer_out(w, &consents, now));
        }
    }
    Ok(Json(out))
}

/// One wearer.
#[utoipa::path(get, path = "/api/v1/wearers/{id}", tag = "wearers", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = WearerOut), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WearerOut>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let wearer = find_visible_wearer(&state, &caller, tenant, &id).await?;
    answer(&state, tenant, wearer).await
}

/// Replaces a wearer's fields (team assignment included).
#[utoipa::path(put, path = "/api/v1/wearers/{id}", tag = "wearers", params(("id" = Uuid, Path)), request_body = WearerIn,
    security(("bearer" = [])), responses((status = 200, body = WearerOut), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<WearerIn>,
) -> Result<Json<WearerOut>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let mut wearer = find_wearer(&state, tenant, &id).await?;
    wearer.fields = checked_fields(&state, tenant, body).await?;
    if !state.store.update_wearer(tenant, wearer.id, &wearer.fields).await? {
        return Err(ApiError::NotFound("wearer"));
    }
    answer(&state, tenant, wearer).await
}

/// Deactivates a wearer: kept for the record, no longer alarming. Repeating it changes nothing.
#[utoipa::path(post, path = "/api/v1/wearers/{id}/deactivate", tag = "wearers", params(("id" = Uuid, Path)),
    security(("bearer" = [])), responses((status = 200, body = WearerOut), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn deactivate(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WearerOut>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let wearer = find_wearer(&state, tenant, &id).await?;
    state.store.deactivate_wearer(tenant, wearer.id, Utc::now()).await?;
    zones_changed(&state, tenant).await?;
    let wearer = state.store.wearer(tenant, wearer.id).await?.ok_or(ApiError::NotFound("wearer"))?;
    answer(&state, tenant, wearer).await
}

/// A consent record to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentIn {
    /// What it covers: `positioning`, `passive_alarms` (one or both).
    #[schema(schema_with = consent_covers)]
    pub covers: Vec<String>,
    /// `wearer`, `legal_representative` or `decision`.
    #[schema(schema_with = consent_givers)]
    pub given_by: String,
    /// Reference to the signed document or decision (diarienummer).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub document_ref: String,
    /// Valid from (default now).
    pub valid_from: Option<DateTime<Utc>>,
    /// Valid until, excluded (default open-ended).
    pub valid_until: Option<DateTime<Utc>>,
}

/// What a consent may cover.
const CONSENT_COVERS: [&str; 2] = ["positioning", "passive_alarms"];

fn consent_covers() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(crate::openapi::one_of(CONSENT_COVERS))
        .min_items(Some(1))
        .build()
}

fn consent_givers() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(ConsentGiver::ALL.iter().map(|g| g.as_str()))
}

/// A consent record.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentOut {
    /// Its id.
    pub id: Uuid,
    /// What it covers.
    pub covers: Vec<&'static str>,
    /// Who gave it.
    pub given_by: &'static str,
    /// Document reference.
    pub document_ref: String,
    /// Valid from.
    pub valid_from: DateTime<Utc>,
    /// Valid until.
    pub valid_until: Option<DateTime<Utc>>,
    /// When withdrawn.
    pub withdrawn_at: Option<DateTime<Utc>>,
    /// In force now.
    pub in_force: bool,
    /// Who recorded it.
    pub recorded_by: Uuid,
}

fn consent_out(c: Consent, now: DateTime<Utc>) -> ConsentOut {
    let in_force = c.in_force_at(now);
    let k = c.consent;
    let covers = [(k.positioning, "positioning"), (k.passive_alarms, "passive_alarms")]
        .into_iter()
        .filter_map(|(yes, name)| yes.then_some(name))
        .collect();
    ConsentOut {
        id: c.id,
        covers,
        given_by: k.given_by.as_str(),
        document_ref: k.document_ref,
        valid_from: k.valid_from,
        valid_until: k.valid_until,
        withdrawn_at: c.withdrawn_at,
        in_force,
        recorded_by: k.recorded_by,
    }
}

/// Records a consent (or decision) for a wearer.
#[utoipa::path(post, path = "/api/v1/wearers/{id}/consents", tag = "consent", params(("id" = Uuid, Path)),
    request_body = ConsentIn, security(("bearer" = [])), responses((status = 201, body = ConsentOut), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn add_consent(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<ConsentIn>,
) -> Result<(StatusCode, Json<ConsentOut>), ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let wearer = find_wearer(&state, tenant, &id).await?;
    let mut check = Check::default();
    check.ensure(!body.covers.is_empty(), "covers", "must name positioning, passive_alarms or both").ensure(
        body.covers.iter().all(|c| CONSENT_COVERS.contains(&c.as_str())),
        "covers",
        "may hold only positioning and passive_alarms",
    );
    let given_by: Option<ConsentGiver> = check.parse("given_by", &body.given_by);
    check.text("document_ref", &body.document_ref, 1, 200);
    let now = Utc::now();
    let valid_from = body.valid_from.unwrap_or(now);
    check.ensure(body.valid_until.is_none_or(|u| u > valid_from), "valid_until", "must be after valid_from");
    check.done()?;
    let consent = NewConsent {
        wearer: wearer.id,
        positioning: body.covers.iter().any(|c| c == "positioning"),
        passive_alarms: body.covers.iter().any(|c| c == "passive_alarms"),
        given_by: given_by.ok_or_else(|| ApiError::field("given_by", "required"))?,
        document_ref: body.document_ref.trim().to_owned(),
        valid_from,
        valid_until: body.valid_until,
        recorded_by: caller.user,
    };
    let id = state.store.add_consent(tenant, &consent).await?;
    zones_changed(&state, tenant).await?;
    Ok((StatusCode::CREATED, Json(consent_out(Consent { id, consent, withdrawn_at: None }, now))))
}

/// A wearer's consent records, oldest first.
#[utoipa::path(get, path = "/api/v1/wearers/{id}/consents", tag = "consent", params(("id" = Uuid, Path)),
    security(("bearer" = [])), responses((status = 200, body = Vec<ConsentOut>), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn list_consents(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<ConsentOut>>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let wearer = find_wearer(&state, tenant, &id).await?;
    let now = Utc::now();
    let consents = state.store.consents(tenant, Some(wearer.id)).await?;
    Ok(Json(consents.into_iter().map(|c| consent_out(c, now)).collect()))
}

/// Withdraws a consent from now on (the record stays).
#[utoipa::path(post, path = "/api/v1/wearers/{id}/consents/{consent}/withdraw", tag = "consent",
    params(("id" = Uuid, Path), ("consent" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = ConsentOut), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn withdraw_consent(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, consent)): Path<(String, String)>,
) -> Result<Json<ConsentOut>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let wearer = find_wearer(&state, tenant, &id).await?;
    let consent = path_id("consent", &consent)?;
    let now = Utc::now();
    if !state.store.withdraw_consent(tenant, wearer.id, consent, now).await? {
        return Err(ApiError::NotFound("consent"));
    }
    zones_changed(&state, tenant).await?;
    let stored = state.store.consents(tenant, Some(wearer.id)).await?;
    let c = stored.into_iter().find(|c| c.id == consent).ok_or(ApiError::NotFound("consent"))?;
    Ok(Json(consent_out(c, now)))
}

/// One responder step: exactly one of `user` (a staff account) or `team`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A staff account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Uuid>,
    /// A team (all its members are alerted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Uuid>,
    /// Seconds an unacknowledged alarm waits at this step before the next, 30..=3600.
    #[schema(minimum = 30, maximum = 3600)]
    pub escalate_after_secs: u32,
}

/// A wearer's ordered responders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Responders {
    /// Steps in order, at most 10.
    #[schema(max_items = 10)]
    pub steps: Vec<Step>,
    /// An external alarm receiving centre's webhook (`https://…`), alerted after the last step.
    /// Set by tenant admins only; a caseworker's order leaves it as it is (a different value:
    /// 403).
    pub alarm_centre_url: Option<String>,
}

impl From<ResponderPlan> for Responders {
    fn from(p: ResponderPlan) -> Self {
        let steps = p
            .steps
            .into_iter()
            .map(|s| {
                let (user, team) = match s.target {
                    ResponderTarget::User(u) => (Some(u), None),
                    ResponderTarget::Team(t) => (None, Some(t)),
                };
                Step { user, team, escalate_after_secs: s.escalate_after_secs }
            })
            .collect();
        Self { steps, alarm_centre_url: p.alarm_centre_url }
    }
}

/// Sets a wearer's responder order.
#[utoipa::path(put, path = "/api/v1/wearers/{id}/responders", tag = "responders", params(("id" = Uuid, Path)),
    request_body = Responders, security(("bearer" = [])), responses((status = 200, body = Responders),
        (status = 403, description = "a caseworker changing alarm_centre_url"), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn put_responders(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Responders>,
) -> Result<Json<Responders>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    let wearer = find_wearer(&state, tenant, &id).await?;
    let staff = state.store.users(Some(tenant)).await?;
    let teams = state.store.teams(tenant).await?;
    let mut check = Check::default();
    check.ensure(body.steps.len() <= 10, "steps", "at most 10 steps");
    let mut steps = Vec::new();
    for (i, s) in body.steps.iter().enumerate() {
        let field = format!("steps[{i}]");
        let target = match (s.user, s.team) {
            (Some(u), None) => {
                let ok = staff.iter().any(|x| x.id == u && x.user.role == Role::Staff);
                check.ensure(ok, &format!("{field}.user"), "no such staff account");
                Some(ResponderTarget::User(u))
            }
            (None, Some(t)) => {
                check.ensure(teams.iter().any(|x| x.id == t), &format!("{field}.team"), "no such team");
                Some(ResponderTarget::Team(t))
            }
            _ => {
                check.ensure(false, &field, "name exactly one of user or team");
                None
            }
        };
        check.range(&format!("{field}.escalate_after_secs"), s.escalate_after_secs, 30..=3600);
        steps.extend(target.map(|target| Responder { target, escalate_after_secs: s.escalate_after_secs }));
    }
    // The alarm centre receives positions and its answers land in the alarm's events: only a
    // tenant admin points it somewhere. A caseworker's order keeps the URL as it is.
    let current = state.store.responders(tenant, wearer.id).await?.alarm_centre_url;
    let alarm_centre_url = match body.alarm_centre_url {
        url if caller.role == Role::TenantAdmin => url,
        Some(url) if Some(&url) != current.as_ref() => return Err(ApiError::Forbidden),
        _ => current,
    };
    if let Some(url) = &alarm_centre_url {
        check.webhook_url("alarm_centre_url", url, &["https"]);
    }
    check.done()?;
    let plan = ResponderPlan { steps, alarm_centre_url };
    if !state.store.set_responders(tenant, wearer.id, &plan).await? {
        return Err(ApiError::NotFound("wearer"));
    }
    Ok(Json(plan.into()))
}

/// A wearer's responder order.
#[utoipa::path(get, path = "/api/v1/wearers/{id}/responders", tag = "responders", params(("id" = Uuid, Path)),
    security(("bearer" = [])), responses((status = 200, body = Responders), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn get_responders(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Responders>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let wearer = find_visible_wearer(&state, &caller, tenant, &id).await?;
    Ok(Json(state.store.responders(tenant, wearer.id).await?.into()))
}

/// Why the positions are read, and how many.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PositionsQuery {
    /// Why the positions are read (e.g. an alarm id), recorded in the access log.
    #[param(required = true, min_length = 3, max_length = 500, pattern = r"\S")]
    pub reason: Option<String>,
    /// Most positions, newest first (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One position.
#[derive(Debug, Serialize, ToSchema)]
pub struct PositionOut {
    /// The device that reported it.
    pub device: String,
    /// The fix time (device clock).
    pub time: DateTime<Utc>,
    /// Seconds between the fix and now: how old the position is.
    pub age_secs: i64,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Reported accuracy in metres.
    pub accuracy_m: Option<f64>,
    /// `gps`, `wifi`, `cell` or `unknown`.
    pub source: &'static str,
    /// Battery in percent.
    pub battery_pct: Option<u8>,
}

/// 409 unless a consent in force at `now` covers positioning: every read of a wearer's stored
/// positions needs one.
pub(super) async fn require_positioning_consent(
    state: &ApiState,
    tenant: TenantId,
    wearer: &Wearer,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let consents = state.store.consents(tenant, Some(wearer.id)).await?;
    if consents.iter().any(|c| c.consent.positioning && c.in_force_at(now)) {
        Ok(())
    } else {
        Err(ApiError::Conflict("no consent in force covers positioning".to_owned()))
    }
}

/// A wearer's recent positions (the trail), from every device bound to them at the time. Every
/// read is recorded in the access log with the caller and the stated reason. Staff read them
/// only while they have an open alarm for the wearer that they can see (403 otherwise).
#[utoipa::path(get, path = "/api/v1/wearers/{id}/positions", tag = "positions", params(("id" = Uuid, Path), PositionsQuery),
    security(("bearer" = [])), responses((status = 200, body = Vec<PositionOut>), (status = 404),
    (status = 403, description = "staff without an open alarm for the wearer"),
    (status = 409, description = "no consent in force covers positioning"), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn positions(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<PositionsQuery>,
) -> Result<Json<Vec<PositionOut>>, ApiError> {
    let tenant = caller.tenant_for(READERS)?;
    let wearer = find_visible_wearer(&state, &caller, tenant, &id).await?;
    // DESIGN.md: staff see a wearer's position only while they have an open alarm for them.
    if caller.role == Role::Staff && !has_open_alarm(&state, caller.user, tenant, wearer.id).await? {
        return Err(ApiError::Forbidden);
    }
    let reason = q.reason.unwrap_or_default();
    Check::default().text("reason", &reason, 3, 500).done()?;
    let now = Utc::now();
    require_positioning_consent(&state, tenant, &wearer, now).await?;
    let limit = crate::validate::limit(q.limit, 100, 1000)?;
    let mut out = Vec::new();
    for b in state.store.bindings(tenant, wearer.id).await? {
        for f in state.store.recent_fixes(&b.device, limit).await? {
            let t = f.fix.time;
            if b.bound_at <= t && b.unbound_at.is_none_or(|u| t < u) {
                out.push(PositionOut {
                    device: b.device.to_string(),
                    time: t,
                    age_secs: (now - t).num_seconds(),
                    lat: f.fix.lat,
                    lon: f.fix.lon,
                    accuracy_m: f.fix.accuracy_m,
                    source: f.fix.source.as_str(),
                    battery_pct: f.fix.battery_pct,
                });
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.time));
    out.truncate(limit as usize);
    // Recorded before the answer leaves: a read that cannot be logged is not served.
    let entry = AccessEntry {
        tenant,
        user: caller.user,
        wearer: wearer.id,
        at: now,
        what: "positions".to_owned(),
        reason: reason.trim().to_owned(),
    };
    state.store.log_access(&entry).await?;
    Ok(Json(out))
}
