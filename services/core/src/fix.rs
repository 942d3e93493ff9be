//! A position fix and the rules for accepting one.
//!
//! Watches buffer fixes while they have no coverage and upload them later, so a fix can be
//! old and still be true; it is accepted and flagged as late, so the alarm engine can tell a
//! live position from history. A fix from the future or from before the buffer horizon is a
//! clock fault on the device and is refused.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How the device determined the position. Coarse sources matter to the geofence policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FixSource {
    /// Satellite positioning.
    Gps,
    /// Position looked up from visible WiFi networks.
    Wifi,
    /// Position looked up from mobile cells (LBS): often 500–2,000 m off.
    Cell,
    /// The device did not say.
    #[default]
    Unknown,
}

/// A text that names no [`FixSource`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fix source {0:?}; expected gps, wifi, cell or unknown")]
pub struct UnknownFixSource(pub String);

impl FixSource {
    /// Every source, in a stable order.
    pub const ALL: [Self; 4] = [Self::Gps, Self::Wifi, Self::Cell, Self::Unknown];

    /// The name used in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gps => "gps",
            Self::Wifi => "wifi",
            Self::Cell => "cell",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for FixSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FixSource {
    type Err = UnknownFixSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownFixSource(s.to_owned()))
    }
}

/// One position report from a device.
///
/// With the `openapi` feature it is also an OpenAPI schema whose bounds are those
/// [`Fix::check_values`] enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fix {
    /// When the device took the position (device clock, UTC).
    pub time: DateTime<Utc>,
    /// Latitude in degrees, WGS84.
    #[cfg_attr(feature = "openapi", schema(minimum = -90.0, maximum = 90.0))]
    pub lat: f64,
    /// Longitude in degrees, WGS84.
    #[cfg_attr(feature = "openapi", schema(minimum = -180.0, maximum = 180.0))]
    pub lon: f64,
    /// Estimated horizontal error radius in metres, if the device reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub accuracy_m: Option<f64>,
    /// Ground speed in metres per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub speed_mps: Option<f64>,
    /// Course over ground in degrees clockwise from north, `[0, 360)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, exclusive_maximum = 360.0))]
    pub course_deg: Option<f64>,
    /// Altitude above sea level in metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_m: Option<f64>,
    /// Battery charge in percent, `0..=100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub battery_pct: Option<u8>,
    /// How the position was determined.
    #[serde(default)]
    pub source: FixSource,
}

impl Fix {
    /// A satellite fix of a position and nothing more: no accuracy, speed, course, altitude or
    /// battery. What else is known goes in with struct update syntax:
    ///
    /// ```
    /// use chrono::Utc;
    /// use trygg_core::Fix;
    /// let fix = Fix { accuracy_m: Some(8.0), ..Fix::gps(Utc::now(), 57.7, 11.97) };
    /// assert_eq!((fix.accuracy_m, fix.speed_mps), (Some(8.0), None));
    /// ```
    pub fn gps(time: DateTime<Utc>, lat: f64, lon: f64) -> Self {
        Self {
            time,
            lat,
            lon,
            accuracy_m: None,
            speed_mps: None,
            course_deg: None,
            altitude_m: None,
            battery_pct: None,
            source: FixSource::Gps,
        }
    }

    /// Checks the values that make sense regardless of time: finite numbers, coordinates in
    /// range, no negative accuracy or speed, course in `[0, 360)`, battery at most 100 %.
    pub fn check_values(&self) -> Result<(), FixError> {
        finite("lat", self.lat)?;
        finite("lon", self.lon)?;
        if !(-90.0..=90.0).contains(&self.lat) {
            return Err(FixError::LatOutOfRange(self.lat));
        }
        if !(-180.0..=180.0).contains(&self.lon) {
            return Err(FixError::LonOutOfRange(self.lon));
        }
        for (field, value) in [("accuracy_m", self.accuracy_m), ("speed_mps", self.speed_mps)] {
            if let Some(v) = value {
                finite(field, v)?;
                if v < 0.0 {
                    return Err(FixError::Negative { field, value: v });
                }
            }
        }
        if let Some(c) = self.course_deg {
            finite("course_deg", c)?;
            if !(0.0..360.0).contains(&c) {
                return Err(FixError::CourseOutOfRange(c));
            }
        }
        if let Some(a) = self.altitude_m {
            finite("altitude_m", a)?;
        }
        if let Some(b) = self.battery_pct.filter(|b| *b > 100) {
            return Err(FixError::BatteryOutOfRange(b));
        }
        Ok(())
    }
}

/// Why a fix was refused. Each message names the field, so a device integrator can act on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FixError {
    /// A number is NaN or infinite.
    #[error("{field} is not a finite number")]
    NotFinite {
        /// The offending field.
        field: &'static str,
    },
    /// Latitude outside `[-90, 90]`.
    #[error("lat {0} is outside [-90, 90]")]
    LatOutOfRange(f64),
    /// Longitude outside `[-180, 180]`.
    #[error("lon {0} is outside [-180, 180]")]
    LonOutOfRange(f64),
    /// A quantity that cannot be negative is.
    #[error("{field} {value} is negative")]
    Negative {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// Course outside `[0, 360)`.
    #[error("course_deg {0} is outside [0, 360)")]
    CourseOutOfRange(f64),
    /// Battery above 100 %.
    #[error("battery_pct {0} is above 100")]
    BatteryOutOfRange(u8),
    /// The fix time is further ahead of the server clock than allowed.
    #[error("time is {ahead_secs} s in the future (at most {max_secs} s allowed)")]
    InFuture {
        /// How far ahead, in seconds.
        ahead_secs: i64,
        /// The allowed skew.
        max_secs: u64,
    },
    /// The fix is older than the buffer horizon.
    #[error("time is {age_secs} s old (at most {max_secs} s accepted)")]
    TooOld {
        /// How old, in seconds.
        age_secs: i64,
        /// The buffer horizon.
        max_secs: u64,
    },
}

impl FixError {
    /// A short stable code for the reason: a metrics label and a field in API errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFinite { .. } => "not_finite",
            Self::LatOutOfRange(_) => "lat_out_of_range",
            Self::LonOutOfRange(_) => "lon_out_of_range",
            Self::Negative { .. } => "negative",
            Self::CourseOutOfRange(_) => "course_out_of_range",
            Self::BatteryOutOfRange(_) => "battery_out_of_range",
            Self::InFuture { .. } => "in_future",
            Self::TooOld { .. } => "too_old",
        }
    }
}

/// Whether an accepted fix is live or a buffered upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Received soon after it was taken.
    Live,
    /// Taken more than [`FixPolicy::late_after`] before it was received.
    Late,
}

/// The limits a fix is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixPolicy {
    /// Clock skew tolerated for fixes stamped in the future.
    pub max_future: Duration,
    /// Oldest fix accepted: how long a watch may buffer without coverage.
    pub max_age: Duration,
    /// Fixes older than this on arrival are flagged late.
    pub late_after: Duration,
}

impl Default for FixPolicy {
    /// 5 minutes of skew, 7 days of buffering, late after 2 minutes (a normal report
    /// interval is 1–10 minutes, but a live fix reaches us within seconds).
    fn default() -> Self {
        Self {
            max_future: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
            late_after: Duration::from_secs(120),
        }
    }
}

impl FixPolicy {
    /// Checks a fix received at `now`.
    ///
    /// ```
    /// use chrono::Utc;
    /// use trygg_core::{Fix, FixPolicy, Freshness};
    /// let now = Utc::now();
    /// let fix = Fix { accuracy_m: Some(8.0), battery_pct: Some(80), ..Fix::gps(now, 57.7, 11.97) };
    /// assert_eq!(FixPolicy::default().check(&fix, now), Ok(Freshness::Live));
    /// ```
    pub fn check(&self, fix: &Fix, now: DateTime<Utc>) -> Result<Freshness, FixError> {
        fix.check_values()?;
        self.check_time(fix.time, now)
    }

    /// Checks only a device time: within the clock skew ahead and the buffer horizon behind.
    pub fn check_time(&self, time: DateTime<Utc>, now: DateTime<Utc>) -> Result<Freshness, FixError> {
        let age_ms = (now - time).num_milliseconds();
        if -age_ms > millis(self.max_future) {
            return Err(FixError::InFuture {
                ahead_secs: -age_ms / 1000,
                max_secs: self.max_future.as_secs(),
            });
        }
        if age_ms > millis(self.max_age) {
            return Err(FixError::TooOld { age_secs: age_ms / 1000, max_secs: self.max_age.as_secs() });
        }
        Ok(if age_ms > millis(self.late_after) { Freshness::Late } else { Freshness::Live })
    }
}

fn finite(field: &'static str, v: f64) -> Result<(), FixError> {
    if v.is_finite() { Ok(()) } else { Err(FixError::NotFinite { field }) }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Where a wearer was: a fix's place and how sure it is, without the rest of the fix. What an
/// alarm, its events and a push carry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// Latitude, WGS84.
    pub lat: f64,
    /// Longitude, WGS84.
    pub lon: f64,
    /// Accuracy radius in metres, if known.
    pub accuracy_m: Option<f64>,
}

impl Position {
    /// The position of a fix.
    pub fn of(fix: &Fix) -> Self {
        Self { lat: fix.lat, lon: fix.lon, accuracy_m: fix.accuracy_m }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn fix_at(time: DateTime<Utc>) -> Fix {
        Fix {
            time,
            lat: 57.70887,
            lon: 11.97456,
            accuracy_m: Some(10.0),
            speed_mps: Some(1.2),
            course_deg: Some(90.0),
            altitude_m: Some(12.0),
            battery_pct: Some(55),
            source: FixSource::Gps,
        }
    }

    fn check(f: impl FnOnce(&mut Fix)) -> Result<Freshness, FixError> {
        let now = Utc::now();
        let mut fix = fix_at(now);
        f(&mut fix);
        FixPolicy::default().check(&fix, now)
    }

    #[test]
    fn a_plain_fix_is_live() {
        assert_eq!(check(|_| {}), Ok(Freshness::Live));
    }

    #[test]
    fn coordinates_must_be_finite_and_in_range() {
        assert_eq!(check(|f| f.lat = f64::NAN), Err(FixError::NotFinite { field: "lat" }));
        assert_eq!(check(|f| f.lon = f64::INFINITY), Err(FixError::NotFinite { field: "lon" }));
        assert_eq!(check(|f| f.lat = 90.5), Err(FixError::LatOutOfRange(90.5)));
        assert_eq!(check(|f| f.lon = -180.01), Err(FixError::LonOutOfRange(-180.01)));
        assert_eq!(check(|f| (f.lat, f.lon) = (-90.0, 180.0)), Ok(Freshness::Live));
    }

    #[test]
    fn accuracy_and_speed_cannot_be_negative() {
        assert_eq!(
            check(|f| f.accuracy_m = Some(-1.0)),
            Err(FixError::Negative { field: "accuracy_m", value: -1.0 })
        );
        assert_eq!(
            check(|f| f.speed_mps = Some(-0.5)),
            Err(FixError::Negative { field: "speed_mps", value: -0.5 })
        );
        assert_eq!(check(|f| f.accuracy_m = Some(0.0)), Ok(Freshness::Live));
        assert_eq!(
            check(|f| f.accuracy_m = Some(f64::NAN)),
            Err(FixError::NotFinite { field: "accuracy_m" })
        );
    }

    #[test]
    fn course_and_battery_are_range_checked() {
        assert_eq!(check(|f| f.course_deg = Some(360.0)), Err(FixError::CourseOutOfRange(360.0)));
        assert_eq!(check(|f| f.battery_pct = Some(101)), Err(FixError::BatteryOutOfRange(101)));
        assert_eq!(check(|f| f.battery_pct = Some(100)), Ok(Freshness::Live));
    }

    #[test]
    fn future_fixes_are_refused_beyond_five_minutes() {
        assert_eq!(check(|f| f.time += TimeDelta::seconds(299)), Ok(Freshness::Live));
        assert!(matches!(
            check(|f| f.time += TimeDelta::seconds(301)),
            Err(FixError::InFuture { ahead_secs: 301, max_secs: 300 })
        ));
    }

    #[test]
    fn buffered_fixes_are_late_until_the_buffer_horizon() {
        assert_eq!(check(|f| f.time -= TimeDelta::seconds(119)), Ok(Freshness::Live));
        assert_eq!(check(|f| f.time -= TimeDelta::hours(20)), Ok(Freshness::Late));
        assert!(matches!(
            check(|f| f.time -= TimeDelta::days(8)),
            Err(FixError::TooOld { max_secs: 604_800, .. })
        ));
    }

    #[test]
    fn fix_json_uses_named_units_and_defaults_the_source() {
        let fix: Fix =
            serde_json::from_str(r#"{"time":"2026-05-01T10:00:00Z","lat":57.7,"lon":11.9,"accuracy_m":12}"#)
                .unwrap();
        assert_eq!(fix.accuracy_m, Some(12.0));
        assert_eq!(fix.source, FixSource::Unknown);
        assert!(serde_json::from_str::<Fix>(r#"{"time":"x","lat":1,"lon":2}"#).is_err());
        assert!("lbs".parse::<FixSource>().is_err());
    }
}
