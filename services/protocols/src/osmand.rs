//! The OsmAnd / Traccar Client HTTP protocol (Traccar port 5055): one position per request, as
//! a query string or, when the query is empty, a form body.
//!
//! Every value is untrusted text, so each number is parsed on its own and a malformed one is a
//! named [`OsmandError`] the listener answers with 400: Traccar throws and closes the connection
//! without a reply, which the client reads as a network fault and retries forever.
//!
//! Unlike the TCP protocols, OsmAnd times are absolute (epoch or ISO-8601 with an offset), so a
//! report becomes a [`Fix`] without a device offset. The one exception is the bare
//! `yyyy-MM-dd HH:mm:ss` form, which Traccar reads in the *server's* zone; trygg reads it as UTC
//! so the result does not depend on where the server runs.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use trygg_core::{DeviceAlarmKind, Fix, FixSource};

use crate::LAST_KNOWN_ACCURACY_M;

/// Metres per second in one knot.
const MPS_PER_KNOT: f64 = 1852.0 / 3600.0;

/// Epoch values at or above this are milliseconds (2^31 − 1 seconds is in 2038).
const MILLIS_FROM: i64 = 2_147_483_647;

/// One position report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OsmandReport {
    /// `id` or `deviceid`.
    pub device_id: String,
    /// `timestamp`, when sent.
    pub time: Option<DateTime<Utc>>,
    /// `lat`, or the first half of `location`.
    pub lat: Option<f64>,
    /// `lon`, or the second half of `location`.
    pub lon: Option<f64>,
    /// `speed`, sent in knots, converted to m/s.
    pub speed_mps: Option<f64>,
    /// `bearing` or `heading`, in degrees.
    pub course_deg: Option<f64>,
    /// `altitude`, in metres.
    pub altitude_m: Option<f64>,
    /// `accuracy`, in metres.
    pub accuracy_m: Option<f64>,
    /// `batt`, in percent.
    pub battery_pct: Option<u8>,
    /// `charge`.
    pub charging: Option<bool>,
    /// `alarm`, as sent (`sos`, …).
    pub alarm: Option<String>,
    /// `valid`; `true` when absent.
    pub valid: bool,
}

/// Why a request is refused (HTTP 400). The message names the field and never echoes more than
/// 32 characters of the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsmandError {
    /// Neither `id` nor `deviceid` was sent, or it was empty.
    #[error("id or deviceid is required")]
    MissingId,
    /// A field does not parse.
    #[error("{field} is not valid: {value:?}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its text (at most 32 characters).
        value: String,
    },
}

fn invalid(field: &'static str, value: &str) -> OsmandError {
    OsmandError::Invalid { field, value: value.chars().take(32).collect() }
}

/// Parses a request: the query string, or the form body when the query is empty.
pub fn parse_request(query: &str, body: &[u8]) -> Result<OsmandReport, OsmandError> {
    if query.is_empty() { parse_form(body) } else { parse_form(query.as_bytes()) }
}

/// Parses a query string or `application/x-www-form-urlencoded` body (`+` and `%XX` decoded).
/// When a key repeats, the last value wins; unknown keys are ignored.
///
/// ```
/// use trygg_protocols::osmand::parse_form;
/// let r = parse_form(b"id=123456&timestamp=1609459200&lat=57.7&lon=11.97&speed=10&alarm=sos").unwrap();
/// assert_eq!(r.device_id, "123456");
/// assert_eq!(r.time.unwrap().to_rfc3339(), "2021-01-01T00:00:00+00:00");
/// assert!((r.speed_mps.unwrap() - 5.144).abs() < 0.001);
/// assert_eq!(r.device_alarm(), Some(trygg_core::DeviceAlarmKind::Sos));
/// ```
pub fn parse_form(input: &[u8]) -> Result<OsmandReport, OsmandError> {
    let mut r = OsmandReport { valid: true, ..OsmandReport::default() };
    for (key, value) in form_urlencoded::parse(input) {
        let v = value.trim();
        match key.as_ref() {
            "id" | "deviceid" => r.device_id = v.to_owned(),
            "timestamp" => r.time = Some(parse_time(v)?),
            "lat" => r.lat = Some(number("lat", v)?),
            "lon" => r.lon = Some(number("lon", v)?),
            "location" => {
                let (lat, lon) = v.split_once(',').ok_or_else(|| invalid("location", v))?;
                r.lat = Some(number("location", lat.trim())?);
                r.lon = Some(number("location", lon.trim())?);
            }
            "speed" => r.speed_mps = Some(number("speed", v)? * MPS_PER_KNOT),
            "bearing" | "heading" => r.course_deg = Some(number("bearing", v)?),
            "altitude" => r.altitude_m = Some(number("altitude", v)?),
            "accuracy" => r.accuracy_m = Some(number("accuracy", v)?),
            "batt" => {
                let b = number("batt", v)?;
                if !(0.0..=100.0).contains(&b) {
                    return Err(invalid("batt", v));
                }
                r.battery_pct = u8::try_from(b.round() as i64).ok();
            }
            "charge" => r.charging = Some(boolean("charge", v)?),
            "valid" => r.valid = boolean("valid", v)?,
            "alarm" if !v.is_empty() => r.alarm = Some(v.to_owned()),
            _ => {}
        }
    }
    if r.device_id.is_empty() {
        return Err(OsmandError::MissingId);
    }
    Ok(r)
}

fn number(field: &'static str, v: &str) -> Result<f64, OsmandError> {
    v.parse::<f64>().ok().filter(|n| n.is_finite()).ok_or_else(|| invalid(field, v))
}

fn boolean(field: &'static str, v: &str) -> Result<bool, OsmandError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(field, v)),
    }
}

/// Epoch seconds, epoch milliseconds (values ≥ 2^31 − 1), ISO-8601 / RFC 3339, or
/// `yyyy-MM-dd HH:mm:ss` read as UTC.
fn parse_time(v: &str) -> Result<DateTime<Utc>, OsmandError> {
    let bad = || invalid("timestamp", v);
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = v.parse().map_err(|_| bad())?;
        let t = if n >= MILLIS_FROM { Utc.timestamp_millis_opt(n) } else { Utc.timestamp_opt(n, 0) };
        return t.single().ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    // An unescaped `+` in an offset arrives as a space: `2021-01-01T12:00:00 01:00`.
    let repaired = v.rsplit_once(' ').filter(|(head, _)| head.contains('T')).map(|(h, t)| format!("{h}+{t}"));
    if let Some(Ok(t)) = repaired.as_deref().map(DateTime::parse_from_rfc3339) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    Err(bad())
}

impl OsmandReport {
    /// The device alarm in `alarm`, if it is one trygg raises: `sos`, `fall`/`fallDown`,
    /// `removing`. Other values (`lowBattery`, …) are not device alarms.
    pub fn device_alarm(&self) -> Option<DeviceAlarmKind> {
        match self.alarm.as_deref()?.to_ascii_lowercase().as_str() {
            "sos" => Some(DeviceAlarmKind::Sos),
            "fall" | "falldown" => Some(DeviceAlarmKind::Fall),
            "removing" | "watch_removed" => Some(DeviceAlarmKind::WatchRemoved),
            _ => None,
        }
    }

    /// The position as a [`Fix`], stamped `received_at` when no timestamp was sent; `None`
    /// without both coordinates.
    ///
    /// The phone does not say how it located itself, so the source is
    /// [`FixSource::Unknown`] with the accuracy it reported. A report flagged `valid=false` is a
    /// stale position: its accuracy is at least [`LAST_KNOWN_ACCURACY_M`].
    pub fn to_fix(&self, received_at: DateTime<Utc>) -> Option<Fix> {
        let accuracy_m = if self.valid {
            self.accuracy_m
        } else {
            Some(self.accuracy_m.map_or(LAST_KNOWN_ACCURACY_M, |a| a.max(LAST_KNOWN_ACCURACY_M)))
        };
        Some(Fix {
            time: self.time.unwrap_or(received_at),
            lat: self.lat?,
            lon: self.lon?,
            accuracy_m,
            speed_mps: self.speed_mps.filter(|s| *s >= 0.0),
            course_deg: self.course_deg.filter(|c| *c >= 0.0).map(|c| c % 360.0),
            altitude_m: self.altitude_m,
            battery_pct: self.battery_pct,
            source: FixSource::Unknown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<OsmandReport, OsmandError> {
        parse_form(q.as_bytes())
    }

    fn time(q: &str) -> String {
        parse(&format!("id=1&timestamp={q}")).unwrap().time.unwrap().to_rfc3339()
    }

    // Query strings in the shape of Traccar's OsmAndProtocolDecoderTest.java (traccar/traccar).
    #[test]
    fn a_traccar_client_query_decodes() {
        let r = parse("id=902064&lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z&hdop=6.0&altitude=224.0&speed=0.0")
            .unwrap();
        assert_eq!(r.device_id, "902064");
        assert_eq!((r.lat, r.lon), (Some(42.06288), Some(-88.23412)));
        assert_eq!(r.time.unwrap().to_rfc3339(), "2016-01-27T18:55:47+00:00");
        assert_eq!((r.altitude_m, r.speed_mps), (Some(224.0), Some(0.0)));
        assert!(r.valid);
    }

    #[test]
    fn all_timestamp_forms_are_read() {
        assert_eq!(time("1609459200"), "2021-01-01T00:00:00+00:00");
        assert_eq!(time("1609459200123"), "2021-01-01T00:00:00.123+00:00");
        assert_eq!(time("2147483647"), "1970-01-25T20:31:23.647+00:00", "2^31-1 is already milliseconds");
        assert_eq!(time("2021-01-01T12:00:00%2B01:00"), "2021-01-01T11:00:00+00:00");
        assert_eq!(time("2021-01-01T12:00:00+01:00"), "2021-01-01T11:00:00+00:00", "unescaped + is a space");
        assert_eq!(time("2021-01-01+12:00:00"), "2021-01-01T12:00:00+00:00", "the bare form is UTC");
        assert_eq!(time("2021-01-01%2012:00:00.5"), "2021-01-01T12:00:00.500+00:00");
        for bad in ["", "yesterday", "-5", "2021-13-01 00:00:00", "99999999999999999999"] {
            assert!(
                matches!(
                    parse(&format!("id=1&timestamp={bad}")),
                    Err(OsmandError::Invalid { field: "timestamp", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn location_speed_bearing_battery_and_alarm_are_read() {
        let r = parse("deviceid=abc&location=57.7%2C11.97&speed=1&heading=359.5&accuracy=12&batt=87.4&charge=true&alarm=sos")
            .unwrap();
        assert_eq!(r.device_id, "abc");
        assert_eq!((r.lat, r.lon), (Some(57.7), Some(11.97)));
        assert!((r.speed_mps.unwrap() - 0.514444).abs() < 1e-6);
        assert_eq!(
            (r.course_deg, r.accuracy_m, r.battery_pct, r.charging),
            (Some(359.5), Some(12.0), Some(87), Some(true))
        );
        assert_eq!(r.device_alarm(), Some(DeviceAlarmKind::Sos));
        assert_eq!(parse("id=1&alarm=fallDown").unwrap().device_alarm(), Some(DeviceAlarmKind::Fall));
        assert_eq!(parse("id=1&alarm=lowBattery").unwrap().device_alarm(), None);
    }

    #[test]
    fn malformed_numbers_are_named_errors() {
        for (q, field) in [
            ("id=1&lat=abc", "lat"),
            ("id=1&lon=NaN", "lon"),
            ("id=1&lat=1e999", "lat"),
            ("id=1&location=57.7", "location"),
            ("id=1&speed=fast", "speed"),
            ("id=1&bearing=", "bearing"),
            ("id=1&batt=101", "batt"),
            ("id=1&batt=-1", "batt"),
            ("id=1&charge=maybe", "charge"),
            ("id=1&valid=yes", "valid"),
        ] {
            match parse(q) {
                Err(OsmandError::Invalid { field: f, .. }) => assert_eq!(f, field, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        let long = format!("id=1&lat={}", "9".repeat(1000) + "x");
        let Err(OsmandError::Invalid { value, .. }) = parse(&long) else { panic!() };
        assert_eq!(value.len(), 32);
    }

    #[test]
    fn a_request_without_an_id_is_refused() {
        assert_eq!(parse("lat=1&lon=2"), Err(OsmandError::MissingId));
        assert_eq!(parse("id=&lat=1"), Err(OsmandError::MissingId));
        assert_eq!(parse(""), Err(OsmandError::MissingId));
    }

    #[test]
    fn the_body_is_read_when_the_query_is_empty() {
        assert_eq!(parse_request("", b"id=7&lat=1&lon=2").unwrap().device_id, "7");
        assert_eq!(parse_request("id=8", b"id=7").unwrap().device_id, "8");
        assert_eq!(parse_request("id=%E2%9C%93+x", b"").unwrap().device_id, "\u{2713} x");
    }

    #[test]
    fn a_fix_needs_both_coordinates_and_a_stale_one_is_coarse() {
        let now = Utc::now();
        assert_eq!(parse("id=1&lat=57.7").unwrap().to_fix(now), None);
        let fix = parse("id=1&lat=57.7&lon=11.9&accuracy=8").unwrap().to_fix(now).unwrap();
        assert_eq!((fix.time, fix.accuracy_m, fix.source), (now, Some(8.0), FixSource::Unknown));
        let stale = parse("id=1&lat=57.7&lon=11.9&accuracy=8&valid=false").unwrap().to_fix(now).unwrap();
        assert_eq!(stale.accuracy_m, Some(LAST_KNOWN_ACCURACY_M));
    }
}
