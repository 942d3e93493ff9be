//! Weekly schedules: when a zone is active.
//!
//! Some zones only matter at certain times: a night zone (stay in the flat 22:00–07:00), a day
//! centre on weekdays. Windows are wall-clock times in the tenant's time zone, because that is
//! how a caseworker thinks and how the care plan is written. Evaluating in local wall time
//! makes daylight saving time come out right by itself: 22:00–07:00 is 22:00–07:00 on the
//! night the clocks change, even though that night is an hour shorter or longer.

use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A set of weekly windows in one time zone. The zone is active while any window is open.
///
/// ```
/// use trygg_geofence::Schedule;
/// let night: Schedule = serde_json::from_value(serde_json::json!({
///     "windows": [{ "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "22:00", "to": "07:00" }]
/// }))?;
/// // 2026-05-04 is a Monday; Stockholm is UTC+2 in May.
/// assert!(night.is_active("2026-05-04T21:30:00Z".parse()?));  // 23:30 local
/// assert!(night.is_active("2026-05-05T04:59:00Z".parse()?));  // 06:59 local
/// assert!(!night.is_active("2026-05-05T05:00:00Z".parse()?)); // 07:00 local
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// IANA time zone the windows are written in; `Europe/Stockholm` when left out.
    #[serde(default = "default_tz")]
    pub tz: Tz,
    /// The windows. An empty list means the zone is never active.
    pub windows: Vec<Window>,
}

/// One weekly window, `[from, to)` in local wall-clock time.
///
/// When `to` is not after `from` the window crosses midnight and ends on the next day:
/// `22:00–07:00` on Friday runs from Friday 22:00 to Saturday 07:00. `from == to` is a full day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The days on which the window opens (`"mon"`, `"tuesday"`, … case-insensitive).
    pub days: Vec<Weekday>,
    /// Local opening time, `"HH:MM"` or `"HH:MM:SS"`.
    pub from: NaiveTime,
    /// Local closing time (excluded).
    pub to: NaiveTime,
}

fn default_tz() -> Tz {
    chrono_tz::Europe::Stockholm
}

impl Schedule {
    /// Whether any window is open at `at`.
    pub fn is_active(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.tz);
        let (day, time) = (local.weekday(), local.time());
        self.windows.iter().any(|w| w.is_open(day, time))
    }
}

impl Window {
    fn is_open(&self, day: Weekday, time: NaiveTime) -> bool {
        if self.from < self.to {
            self.days.contains(&day) && self.from <= time && time < self.to
        } else {
            (self.days.contains(&day) && time >= self.from)
                || (self.days.contains(&day.pred()) && time < self.to)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(days: &[Weekday], from: &str, to: &str) -> Schedule {
        Schedule {
            tz: default_tz(),
            windows: vec![Window {
                days: days.to_vec(),
                from: from.parse().unwrap(),
                to: to.parse().unwrap(),
            }],
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn window_within_a_day_is_open_from_its_start_until_just_before_its_end() {
        let s = schedule(&[Weekday::Mon], "08:00", "16:00");
        // Monday 2026-05-04, UTC+2.
        assert!(!s.is_active(at("2026-05-04T05:59:59Z")));
        assert!(s.is_active(at("2026-05-04T06:00:00Z")));
        assert!(s.is_active(at("2026-05-04T13:59:59Z")));
        assert!(!s.is_active(at("2026-05-04T14:00:00Z")));
        assert!(!s.is_active(at("2026-05-05T08:00:00Z")), "Tuesday is not in the window");
    }

    #[test]
    fn window_across_midnight_runs_into_the_next_day_only_after_a_listed_day() {
        let s = schedule(&[Weekday::Fri], "22:00", "07:00");
        // Friday 2026-05-08 22:30 local and Saturday 06:30 local are in; Friday 06:30 is not
        // (Thursday is not listed), nor is Saturday 22:30.
        assert!(s.is_active(at("2026-05-08T20:30:00Z")));
        assert!(s.is_active(at("2026-05-09T04:30:00Z")));
        assert!(!s.is_active(at("2026-05-08T04:30:00Z")));
        assert!(!s.is_active(at("2026-05-09T20:30:00Z")));
    }

    #[test]
    fn night_window_follows_wall_clock_when_summer_time_starts() {
        // Clocks go from 02:00 to 03:00 on Sunday 2026-03-29: the night is one hour shorter.
        let s = schedule(&[Weekday::Sat], "22:00", "07:00");
        assert!(s.is_active(at("2026-03-28T21:00:00Z")), "22:00 CET");
        assert!(s.is_active(at("2026-03-29T04:59:00Z")), "06:59 CEST");
        assert!(
            !s.is_active(at("2026-03-29T05:00:00Z")),
            "07:00 CEST, one hour earlier in UTC than in winter"
        );
    }

    #[test]
    fn night_window_follows_wall_clock_when_summer_time_ends() {
        // Clocks go from 03:00 back to 02:00 on Sunday 2026-10-25: the night is one hour longer.
        let s = schedule(&[Weekday::Sat], "22:00", "07:00");
        assert!(s.is_active(at("2026-10-24T20:00:00Z")), "22:00 CEST");
        assert!(s.is_active(at("2026-10-25T05:59:00Z")), "06:59 CET");
        assert!(!s.is_active(at("2026-10-25T06:00:00Z")), "07:00 CET");
        // Both passes through 02:30 are inside the window.
        assert!(s.is_active(at("2026-10-25T00:30:00Z")));
        assert!(s.is_active(at("2026-10-25T01:30:00Z")));
    }

    #[test]
    fn window_starting_in_the_skipped_hour_opens_when_the_clock_jumps() {
        let s = schedule(&[Weekday::Sun], "02:30", "04:00");
        assert!(!s.is_active(at("2026-03-29T00:59:00Z")), "01:59 CET");
        assert!(s.is_active(at("2026-03-29T01:00:00Z")), "03:00 CEST, past 02:30");
    }

    #[test]
    fn schedule_reads_day_names_and_short_times_and_defaults_to_stockholm() {
        let s: Schedule = serde_json::from_str(
            r#"{"windows":[{"days":["Mon","tuesday"],"from":"22:00","to":"07:00:00"}]}"#,
        )
        .unwrap();
        assert_eq!(s.tz, chrono_tz::Europe::Stockholm);
        assert_eq!(s.windows[0].days, vec![Weekday::Mon, Weekday::Tue]);
        let helsinki: Schedule = serde_json::from_str(r#"{"tz":"Europe/Helsinki","windows":[]}"#).unwrap();
        assert_eq!(helsinki.tz, chrono_tz::Europe::Helsinki);
        assert!(!helsinki.is_active(at("2026-05-04T12:00:00Z")));
    }
}
