//! The position a TCP device reports, before its clock offset is known, and the one rule that
//! turns it into a [`Fix`].
//!
//! The rule lives here, not in each listener, because it decides what staff see on the map: a
//! cell-only or Wi-Fi-only report must never look like a precise satellite fix, and a report
//! with no coordinates must not become a dot at 0°N 0°E.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use trygg_core::{Fix, FixSource};

/// Accuracy assumed for a position the device derived from mobile cells (LBS is often 500–2,000 m
/// off), in metres.
pub const CELL_ACCURACY_M: f64 = 1000.0;

/// Accuracy assumed for a position the device derived from visible Wi-Fi networks, in metres.
pub const WIFI_ACCURACY_M: f64 = 100.0;

/// Accuracy assumed for a last-known position repeated without a fix and without saying how it
/// was obtained, in metres: as coarse as a cell position, since nothing better is known.
pub const LAST_KNOWN_ACCURACY_M: f64 = 1000.0;

/// A position as decoded from a device frame, on the device clock.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePosition {
    /// When the device took the position, on its own clock (often local time).
    pub time: NaiveDateTime,
    /// Whether the device says it has a satellite fix (`A` in the watch protocol, bit 12 of the
    /// GT06 course word).
    pub valid: bool,
    /// Latitude in degrees, negative south; `0.0` when the device had none.
    pub lat: f64,
    /// Longitude in degrees, negative west; `0.0` when the device had none.
    pub lon: f64,
    /// Ground speed in km/h.
    pub speed_kmh: Option<f64>,
    /// Course over ground in degrees clockwise from north.
    pub course_deg: Option<f64>,
    /// Altitude in metres.
    pub altitude_m: Option<f64>,
    /// Satellites used for the fix.
    pub satellites: Option<u8>,
    /// Battery charge in percent, `0..=100`.
    pub battery_pct: Option<u8>,
    /// Mobile cells reported alongside (they allow a cell lookup, they are not a position).
    pub cell_count: u32,
    /// Wi-Fi access points reported alongside.
    pub wifi_count: u32,
}

impl DevicePosition {
    /// Whether the device reported no coordinates at all (0/0).
    pub fn has_no_coordinates(&self) -> bool {
        self.lat == 0.0 && self.lon == 0.0
    }

    /// Turns the position into a [`Fix`], reading the device clock at `utc_offset` (the device's
    /// configured offset; `+00:00` for devices that send UTC).
    ///
    /// - A valid fix with coordinates is [`FixSource::Gps`].
    /// - 0/0 gives no fix at all, valid or not: a position is never invented, so a cell- or
    ///   Wi-Fi-only report needs a lookup service before it can be shown.
    /// - An invalid (`V`) report with coordinates is a coarse or last-known position: it is
    ///   [`FixSource::Wifi`] if Wi-Fi networks were reported, else [`FixSource::Cell`] if cells
    ///   were, else [`FixSource::Unknown`], with the matching coarse accuracy constant.
    ///
    /// Values are not range-checked here; the listener runs [`trygg_core::FixPolicy::check`].
    ///
    /// ```
    /// use chrono::{FixedOffset, NaiveDate};
    /// use trygg_core::FixSource;
    /// use trygg_protocols::DevicePosition;
    /// let pos = DevicePosition {
    ///     time: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap().and_hms_opt(12, 0, 0).unwrap(),
    ///     valid: true, lat: 57.7, lon: 11.97, speed_kmh: Some(3.6), course_deg: None,
    ///     altitude_m: None, satellites: Some(7), battery_pct: Some(80), cell_count: 0, wifi_count: 0,
    /// };
    /// let fix = pos.to_fix(FixedOffset::east_opt(2 * 3600).unwrap()).unwrap();
    /// assert_eq!(fix.time.to_rfc3339(), "2026-05-01T10:00:00+00:00");
    /// assert_eq!(fix.source, FixSource::Gps);
    /// assert_eq!(fix.speed_mps, Some(1.0));
    /// ```
    pub fn to_fix(&self, utc_offset: FixedOffset) -> Option<Fix> {
        if self.has_no_coordinates() {
            return None;
        }
        let (source, accuracy_m) = if self.valid {
            (FixSource::Gps, None)
        } else if self.wifi_count > 0 {
            (FixSource::Wifi, Some(WIFI_ACCURACY_M))
        } else if self.cell_count > 0 {
            (FixSource::Cell, Some(CELL_ACCURACY_M))
        } else {
            (FixSource::Unknown, Some(LAST_KNOWN_ACCURACY_M))
        };
        Some(Fix {
            time: device_time_to_utc(self.time, utc_offset),
            lat: self.lat,
            lon: self.lon,
            accuracy_m,
            speed_mps: self.speed_kmh.map(|v| v / 3.6),
            course_deg: self.course_deg.filter(|c| c.is_finite() && *c >= 0.0).map(|c| c % 360.0),
            altitude_m: self.altitude_m,
            battery_pct: self.battery_pct,
            source,
        })
    }
}

/// A UTC offset from minutes east of UTC (Sweden: 60 or 120), or `None` at ±24 h or beyond.
pub fn utc_offset_from_minutes(minutes: i32) -> Option<FixedOffset> {
    FixedOffset::east_opt(minutes.checked_mul(60)?)
}

/// Reads a device clock value at a fixed offset. A fixed offset has no gaps or folds, so the
/// mapping is always unique.
pub(crate) fn device_time_to_utc(time: NaiveDateTime, offset: FixedOffset) -> DateTime<Utc> {
    match offset.from_local_datetime(&time).single() {
        Some(t) => t.with_timezone(&Utc),
        None => Utc.from_utc_datetime(&time),
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn pos(valid: bool, lat: f64, lon: f64, cells: u32, wifi: u32) -> DevicePosition {
        DevicePosition {
            time: NaiveDate::from_ymd_opt(2026, 1, 10).unwrap().and_hms_opt(8, 30, 0).unwrap(),
            valid,
            lat,
            lon,
            speed_kmh: Some(36.0),
            course_deg: Some(360.0),
            altitude_m: None,
            satellites: None,
            battery_pct: Some(50),
            cell_count: cells,
            wifi_count: wifi,
        }
    }

    fn utc() -> FixedOffset {
        FixedOffset::east_opt(0).unwrap()
    }

    #[test]
    fn a_valid_report_is_a_gps_fix_in_metres_per_second() {
        let fix = pos(true, 57.7, 11.9, 1, 0).to_fix(utc()).unwrap();
        assert_eq!(fix.source, FixSource::Gps);
        assert_eq!(fix.accuracy_m, None);
        assert_eq!(fix.speed_mps, Some(10.0));
        assert_eq!(fix.course_deg, Some(0.0));
    }

    #[test]
    fn zero_zero_is_no_fix_even_with_cells_or_wifi() {
        assert_eq!(pos(false, 0.0, 0.0, 3, 5).to_fix(utc()), None);
        assert_eq!(pos(true, 0.0, 0.0, 0, 0).to_fix(utc()), None);
    }

    #[test]
    fn an_invalid_report_with_coordinates_is_coarse_never_gps() {
        let wifi = pos(false, 57.7, 11.9, 2, 3).to_fix(utc()).unwrap();
        assert_eq!((wifi.source, wifi.accuracy_m), (FixSource::Wifi, Some(WIFI_ACCURACY_M)));
        let cell = pos(false, 57.7, 11.9, 2, 0).to_fix(utc()).unwrap();
        assert_eq!((cell.source, cell.accuracy_m), (FixSource::Cell, Some(CELL_ACCURACY_M)));
        let last = pos(false, 57.7, 11.9, 0, 0).to_fix(utc()).unwrap();
        assert_eq!((last.source, last.accuracy_m), (FixSource::Unknown, Some(LAST_KNOWN_ACCURACY_M)));
    }

    #[test]
    fn the_device_clock_is_read_at_the_given_offset() {
        let stockholm_summer = utc_offset_from_minutes(120).unwrap();
        let fix = pos(true, 57.7, 11.9, 0, 0).to_fix(stockholm_summer).unwrap();
        assert_eq!(fix.time.to_rfc3339(), "2026-01-10T06:30:00+00:00");
        let west = utc_offset_from_minutes(-300).unwrap();
        assert_eq!(
            pos(true, 1.0, 1.0, 0, 0).to_fix(west).unwrap().time.to_rfc3339(),
            "2026-01-10T13:30:00+00:00"
        );
        assert_eq!(utc_offset_from_minutes(25 * 60), None);
        assert_eq!(utc_offset_from_minutes(i32::MAX), None);
    }
}
