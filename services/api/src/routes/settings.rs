//! `GET`/`PUT /api/v1/settings`: the caller's tenant's settings; `GET`/`PUT
//! /api/v1/settings/push`: what pushes may carry and the alarm-centre webhook's signing key.

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use trygg_geofence::Policy;
use trygg_store::PushSettings;
use utoipa::ToSchema;

use super::{EDITORS, TENANT_ADMINS};
use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::settings::Settings;
use crate::validate::{Body, Check};

/// A settings change; fields left out keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// IANA time zone.
    pub time_zone: Option<String>,
    /// Exit-policy parameters; parameters left out take the geofence crate's defaults.
    #[schema(value_type = Option<Object>)]
    pub exit_policy: Option<Policy>,
    /// Seconds without a report before a device is offline, 60..=604800.
    #[schema(minimum = 60, maximum = 604800)]
    pub offline_after_secs: Option<u32>,
    /// Low-battery threshold in percent, 1..=99.
    #[schema(minimum = 1, maximum = 99)]
    pub battery_low_pct: Option<u8>,
    /// Days fixes are kept, 1..=3650.
    #[schema(minimum = 1, maximum = 3650)]
    pub fix_retention_days: Option<u32>,
    /// Seconds from raised to on site before an alarm is flagged as late, 60..=86400.
    #[schema(minimum = 60, maximum = 86400)]
    pub on_site_limit_secs: Option<u32>,
    /// Seconds an acknowledged alarm takes repeats after its last trigger, 0..=86400.
    #[schema(minimum = 0, maximum = 86400)]
    pub repeat_join_secs: Option<u32>,
    /// The fallback team's id (a team of the tenant); an empty string removes it.
    pub fallback_team_id: Option<String>,
    /// The fallback alarm centre's https URL; an empty string removes it.
    pub fallback_alarm_centre_url: Option<String>,
    /// Battery points above the threshold that re-arm the low-battery alert, 1..=50.
    #[schema(minimum = 1, maximum = 50)]
    pub battery_rearm_margin_pct: Option<u8>,
    /// Start of the quiet hours for technical alerts, hour 0..=23 (tenant time zone).
    #[schema(minimum = 0, maximum = 23)]
    pub quiet_from_hour: Option<u8>,
    /// End of the quiet hours, hour 0..=23; equal to the start: none.
    #[schema(minimum = 0, maximum = 23)]
    pub quiet_until_hour: Option<u8>,
    /// Start of the daily test-alarm window, hour 0..=23 (tenant time zone).
    #[schema(minimum = 0, maximum = 23)]
    pub test_alarm_from_hour: Option<u8>,
    /// End of the daily test-alarm window, hour 0..=23; equal to the start: no daily test alarm.
    #[schema(minimum = 0, maximum = 23)]
    pub test_alarm_until_hour: Option<u8>,
    /// Seconds between reports normally, 10..=86400.
    #[schema(minimum = 10, maximum = 86400)]
    pub report_interval_secs: Option<u32>,
    /// Seconds between reports while a zone exit is suspected, 10..=86400.
    #[schema(minimum = 10, maximum = 86400)]
    pub report_interval_fast_secs: Option<u32>,
}

/// The tenant's settings (defaults until saved).
#[utoipa::path(get, path = "/api/v1/settings", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = Settings)))]
#[tracing::instrument(skip_all)]
pub async fn get(State(state): State<ApiState>, caller: Caller) -> Result<Json<Settings>, ApiError> {
    let tenant = caller.tenant_for(EDITORS)?;
    Ok(Json(Settings::load(state.store.as_ref(), tenant).await?))
}

/// Changes the tenant's settings (tenant admin).
#[utoipa::path(put, path = "/api/v1/settings", tag = "settings", request_body = SettingsPatch, security(("bearer" = [])),
    responses((status = 200, body = Settings), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    Body(patch): Body<SettingsPatch>,
) -> Result<Json<Settings>, ApiError> {
    let tenant = caller.tenant_for(TENANT_ADMINS)?;
    let mut s = Settings::load(state.store.as_ref(), tenant).await?;
    let mut check = Check::default();
    if let Some(tz) = patch.time_zone {
        check.parse::<chrono_tz::Tz>("time_zone", &tz);
        s.time_zone = tz;
    }
    if let Some(p) = patch.exit_policy {
        check_policy(&mut check, &p);
        s.exit_policy = p;
    }
    s.offline_after_secs = patch.offline_after_secs.unwrap_or(s.offline_after_secs);
    s.battery_low_pct = patch.battery_low_pct.unwrap_or(s.battery_low_pct);
    s.fix_retention_days = patch.fix_retention_days.unwrap_or(s.fix_retention_days);
    s.on_site_limit_secs = patch.on_site_limit_secs.unwrap_or(s.on_site_limit_secs);
    s.repeat_join_secs = patch.repeat_join_secs.unwrap_or(s.repeat_join_secs);
    s.battery_rearm_margin_pct = patch.battery_rearm_margin_pct.unwrap_or(s.battery_rearm_margin_pct);
    s.quiet_from_hour = patch.quiet_from_hour.unwrap_or(s.quiet_from_hour);
    s.quiet_until_hour = patch.quiet_until_hour.unwrap_or(s.quiet_until_hour);
    s.test_alarm_from_hour = patch.test_alarm_from_hour.unwrap_or(s.test_alarm_from_hour);
    s.test_alarm_until_hour = patch.test_alarm_until_hour.unwrap_or(s.test_alarm_until_hour);
    s.report_interval_secs = patch.report_interval_secs.unwrap_or(s.report_interval_secs);
    s.report_interval_fast_secs = patch.report_interval_fast_secs.unwrap_or(s.report_interval_fast_secs);
    match patch.fallback_team_id.as_deref() {
        Some("") => s.fallback_team_id = None,
        Some(id) => {
            let teams = state.store.teams(tenant).await?;
            let team = check.parse::<uuid::Uuid>("fallback_team_id", id);
            let known = team.is_some_and(|t| teams.iter().any(|x| x.id == t));
            check.ensure(team.is_none() || known, "fallback_team_id", "no such team");
            s.fallback_team_id = team;
        }
        None => {}
    }
    match patch.fallback_alarm_centre_url {
        Some(url) if url.is_empty() => s.fallback_alarm_centre_url = None,
        Some(url) => {
            check.webhook_url("fallback_alarm_centre_url", &url, &["https"]);
            s.fallback_alarm_centre_url = Some(url);
        }
        None => {}
    }
    check
        .range("offline_after_secs", s.offline_after_secs, 60..=7 * 86_400)
        .range("battery_low_pct", s.battery_low_pct, 1..=99)
        .range("fix_retention_days", s.fix_retention_days, 1..=3650)
        .range("on_site_limit_secs", s.on_site_limit_secs, 60..=86_400)
        .range("repeat_join_secs", s.repeat_join_secs, 0..=86_400)
        .range("battery_rearm_margin_pct", s.battery_rearm_margin_pct, 1..=50)
        .range("quiet_from_hour", s.quiet_from_hour, 0..=23)
        .range("quiet_until_hour", s.quiet_until_hour, 0..=23)
        .range("test_alarm_from_hour", s.test_alarm_from_hour, 0..=23)
        .range("test_alarm_until_hour", s.test_alarm_until_hour, 0..=23)
        .range("report_interval_secs", s.report_interval_secs, 10..=86_400)
        .range("report_interval_fast_secs", s.report_interval_fast_secs, 10..=86_400)
        .done()?;
    state.store.put_settings(tenant, &s.to_stored()?, Utc::now()).await?;
    Ok(Json(s))
}

fn check_policy(check: &mut Check, p: &Policy) {
    check
        .range("exit_policy.margin_m", p.margin_m, 0.0..=1000.0)
        .range("exit_policy.min_accuracy_m", p.min_accuracy_m, 0.0..=1000.0)
        .range("exit_policy.unknown_accuracy_m", p.unknown_accuracy_m, 1.0..=5000.0)
        .range("exit_policy.max_accuracy_m", p.max_accuracy_m, 1.0..=5000.0)
        .range("exit_policy.max_speed_mps", p.max_speed_mps, 1.0..=1000.0)
        .range("exit_policy.confirm_fixes", p.confirm_fixes, 1..=10)
        .ensure(
            p.min_accuracy_m <= p.max_accuracy_m,
            "exit_policy.min_accuracy_m",
            "must not exceed max_accuracy_m",
        );
}

/// The tenant's push settings as shown: the webhook key itself is never sent back.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushSettingsOut {
    /// Critical pushes carry the wearer's name (off by default: the app fetches details).
    pub wearer_name_in_push: bool,
    /// A key for signing alarm-centre webhook bodies is set (without one none is sent).
    pub alarm_centre_secret_set: bool,
}

impl From<&PushSettings> for PushSettingsOut {
    fn from(s: &PushSettings) -> Self {
        Self {
            wearer_name_in_push: s.wearer_name_in_push,
            alarm_centre_secret_set: s.alarm_centre_secret.is_some(),
        }
    }
}

/// A push settings change; fields left out keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSettingsPatch {
    /// Put the wearer's name in critical pushes.
    pub wearer_name_in_push: Option<bool>,
    /// The HMAC-SHA256 key (32..=256 characters) the alarm centre verifies webhook bodies with;
    /// an empty string removes it.
    pub alarm_centre_secret: Option<String>,
}

/// The tenant's push settings (tenant admin).
#[utoipa::path(get, path = "/api/v1/settings/push", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = PushSettingsOut)))]
#[tracing::instrument(skip_all)]
pub async fn get_push(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<PushSettingsOut>, ApiError> {
    let tenant = caller.tenant_for(TENANT_ADMINS)?;
    Ok(Json((&state.store.push_settings(tenant).await?).into()))
}

/// Changes the tenant's push settings (tenant admin).
#[utoipa::path(put, path = "/api/v1/settings/push", tag = "settings", request_body = PushSettingsPatch,
    security(("bearer" = [])), responses((status = 200, body = PushSettingsOut), (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn put_push(
    State(state): State<ApiState>,
    caller: Caller,
    Body(patch): Body<PushSettingsPatch>,
) -> Result<Json<PushSettingsOut>, ApiError> {
    let tenant = caller.tenant_for(TENANT_ADMINS)?;
    let mut s = state.store.push_settings(tenant).await?;
    s.wearer_name_in_push = patch.wearer_name_in_push.unwrap_or(s.wearer_name_in_push);
    match patch.alarm_centre_secret {
        Some(secret) if secret.is_empty() => s.alarm_centre_secret = None,
        Some(secret) => {
            Check::default().text("alarm_centre_secret", &secret, 32, 256).done()?;
            s.alarm_centre_secret = Some(secret);
        }
        None => {}
    }
    state.store.put_push_settings(tenant, &s).await?;
    Ok(Json((&s).into()))
}
