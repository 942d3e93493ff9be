//! Per-tenant settings and their defaults.
//!
//! A tenant that never saved settings runs on the defaults here; the exit policy's defaults are
//! the geofence crate's [`Policy::default`], documented there.

use serde::{Deserialize, Serialize};
use trygg_core::TenantId;
use trygg_geofence::Policy;
use trygg_store::{Store, SupervisionSettings, TenantSettings};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Time zone of schedules and reports when a tenant set none.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Stockholm";
/// A device silent this long is offline: three missed reports at the slowest usual interval.
pub const DEFAULT_OFFLINE_AFTER_SECS: u32 = trygg_store::DEFAULT_OFFLINE_AFTER_SECS;
/// Battery level that raises a low-battery alert.
pub const DEFAULT_BATTERY_LOW_PCT: u8 = 20;
/// Fixes are kept this long unless attached to an alarm.
pub const DEFAULT_FIX_RETENTION_DAYS: u32 = 30;
/// Time from raised to on site (inställelsetid) after which an alarm is flagged as late.
pub const DEFAULT_ON_SITE_LIMIT_SECS: u32 = 60 * 60;
pub use trygg_store::DEFAULT_REPEAT_JOIN_SECS;

/// A tenant's settings as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Settings {
    /// IANA time zone, e.g. `Europe/Stockholm`.
    pub time_zone: String,
    /// Exit-policy parameters (see the geofence crate's `Policy`).
    #[schema(value_type = Object)]
    pub exit_policy: Policy,
    /// Seconds without a report before a device counts as offline.
    pub offline_after_secs: u32,
    /// Battery percentage that raises a low-battery alert.
    pub battery_low_pct: u8,
    /// Days fixes are kept (fixes attached to an alarm are kept with it).
    pub fix_retention_days: u32,
    /// Seconds from raised to on site after which an alarm is flagged as late.
    pub on_site_limit_secs: u32,
    /// Seconds after an acknowledged alarm was last triggered during which a repeat (same
    /// wearer, kind and zone) joins it and is pushed to whoever has it; later, or once the
    /// alarm is on site, a repeat raises a new alarm.
    pub repeat_join_secs: u32,
    /// The team alerted for alarms nobody else would get: an SOS from a watch bound to nobody,
    /// or from a wearer with neither responders nor a team.
    pub fallback_team_id: Option<uuid::Uuid>,
    /// The alarm centre (https) alerted after the fallback team, and for wearers without an
    /// alarm centre of their own.
    pub fallback_alarm_centre_url: Option<String>,
    /// Points above `battery_low_pct` (or charging) a device must report before a new
    /// low-battery alert can be raised: one alert per discharge.
    pub battery_rearm_margin_pct: u8,
    /// Start of the quiet hours (hour 0–23, `time_zone`): technical alerts that can wait (a
    /// low battery that will last the night) are held until `quiet_until_hour`.
    pub quiet_from_hour: u8,
    /// End of the quiet hours (hour 0–23); equal to `quiet_from_hour`: no quiet hours.
    pub quiet_until_hour: u8,
    /// Start of the daily test-alarm window (hour 0–23, `time_zone`): every bound device that
    /// has been heard must send a test alarm before `test_alarm_until_hour`, or a
    /// `test_alarm_missing` technical alert is raised.
    pub test_alarm_from_hour: u8,
    /// End of the daily test-alarm window (hour 0–23); equal to `test_alarm_from_hour` (the
    /// default): no daily test alarm.
    pub test_alarm_until_hour: u8,
    /// Seconds between reports that watches are told to go back to once a suspected zone exit
    /// is confirmed or cleared.
    pub report_interval_secs: u32,
    /// Seconds between reports while a zone exit is suspected but not yet confirmed (at most
    /// 10 minutes per suspicion); not less than `report_interval_secs`: never commanded.
    pub report_interval_fast_secs: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            time_zone: DEFAULT_TIME_ZONE.to_owned(),
            exit_policy: Policy::default(),
            offline_after_secs: DEFAULT_OFFLINE_AFTER_SECS,
            battery_low_pct: DEFAULT_BATTERY_LOW_PCT,
            fix_retention_days: DEFAULT_FIX_RETENTION_DAYS,
            on_site_limit_secs: DEFAULT_ON_SITE_LIMIT_SECS,
            repeat_join_secs: DEFAULT_REPEAT_JOIN_SECS,
            fallback_team_id: None,
            fallback_alarm_centre_url: None,
            battery_rearm_margin_pct: SupervisionSettings::default().battery_rearm_margin_pct,
            quiet_from_hour: SupervisionSettings::default().quiet_from_hour,
            quiet_until_hour: SupervisionSettings::default().quiet_until_hour,
            test_alarm_from_hour: SupervisionSettings::default().test_alarm_from_hour,
            test_alarm_until_hour: SupervisionSettings::default().test_alarm_until_hour,
            report_interval_secs: SupervisionSettings::default().report_interval_secs,
            report_interval_fast_secs: SupervisionSettings::default().report_interval_fast_secs,
        }
    }
}

impl Settings {
    /// The tenant's saved settings, or the defaults.
    pub async fn load(store: &dyn Store, tenant: TenantId) -> Result<Self, ApiError> {
        let Some(s) = store.settings(tenant).await? else { return Ok(Self::default()) };
        let exit_policy = serde_json::from_str(&s.exit_policy)
            .map_err(|e| ApiError::Internal(format!("stored exit policy of {tenant}: {e}")))?;
        Ok(Self {
            time_zone: s.time_zone,
            exit_policy,
            offline_after_secs: s.offline_after_secs,
            battery_low_pct: s.battery_low_pct,
            fix_retention_days: s.fix_retention_days,
            on_site_limit_secs: s.on_site_limit_secs,
            repeat_join_secs: s.repeat_join_secs,
            fallback_team_id: s.fallback_team,
            fallback_alarm_centre_url: s.fallback_alarm_centre_url,
            battery_rearm_margin_pct: s.supervision.battery_rearm_margin_pct,
            quiet_from_hour: s.supervision.quiet_from_hour,
            quiet_until_hour: s.supervision.quiet_until_hour,
            test_alarm_from_hour: s.supervision.test_alarm_from_hour,
            test_alarm_until_hour: s.supervision.test_alarm_until_hour,
            report_interval_secs: s.supervision.report_interval_secs,
            report_interval_fast_secs: s.supervision.report_interval_fast_secs,
        })
    }

    /// The stored form.
    pub fn to_stored(&self) -> Result<TenantSettings, ApiError> {
        Ok(TenantSettings {
            time_zone: self.time_zone.clone(),
            exit_policy: serde_json::to_string(&self.exit_policy)
                .map_err(|e| ApiError::Internal(format!("encoding the exit policy: {e}")))?,
            offline_after_secs: self.offline_after_secs,
            battery_low_pct: self.battery_low_pct,
            fix_retention_days: self.fix_retention_days,
            on_site_limit_secs: self.on_site_limit_secs,
            repeat_join_secs: self.repeat_join_secs,
            fallback_team: self.fallback_team_id,
            fallback_alarm_centre_url: self.fallback_alarm_centre_url.clone(),
            supervision: SupervisionSettings {
                battery_rearm_margin_pct: self.battery_rearm_margin_pct,
                quiet_from_hour: self.quiet_from_hour,
                quiet_until_hour: self.quiet_until_hour,
                test_alarm_from_hour: self.test_alarm_from_hour,
                test_alarm_until_hour: self.test_alarm_until_hour,
                report_interval_secs: self.report_interval_secs,
                report_interval_fast_secs: self.report_interval_fast_secs,
            },
        })
    }
}
