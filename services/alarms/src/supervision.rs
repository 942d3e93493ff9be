//! The rules of device supervision, pure: when a battery reading raises a `low_battery`
//! alert, waits for the morning, or re-arms the alert for the next discharge; the daily spans
//! of hours (quiet hours, the test-alarm window); and when a watch is told to report faster
//! (battery-aware reporting, [`reporting_change`]).
//!
//! In the field most alarms staff get are low-battery alerts (103 of 135 in one pilot), so the
//! rules aim at one useful alert per discharge, at a time staff can act:
//!
//! - **One per discharge.** After an alert nothing more is raised until the device reports
//!   charging (a level clearly above the previous one) or a level of at least the threshold plus
//!   the tenant's margin (`battery_rearm_margin_pct`, default 10 points).
//! - **Early in daytime.** A discharge trend (the least-squares fall over the last 1–3 hours) that empties the
//!   watch before the end of the coming night raises the alert now, above the threshold, while
//!   staff can still visit with a charger.
//! - **Quiet at night.** Between `quiet_from_hour` and `quiet_until_hour` (tenant time zone) a
//!   low battery waits for the morning, unless the trend says the watch dies before then.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// How far back readings are kept for the trend.
const TREND_WINDOW: Duration = Duration::hours(3);
/// The shortest span of readings a trend is drawn from.
const TREND_MIN_SPAN: Duration = Duration::minutes(60);
/// A reading this many points above the previous one means the watch is charging.
const CHARGING_RISE_PCT: u8 = 3;

/// A span of hours every day in a tenant's local time: its quiet hours for technical alerts,
/// its daily test-alarm window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyHours {
    /// The tenant's time zone.
    pub tz: Tz,
    /// First hour of the span (0–23).
    pub from_hour: u8,
    /// First hour after the span (0–23); equal to `from_hour`: no span at all.
    pub until_hour: u8,
}

impl DailyHours {
    /// Whether the span is empty (`from_hour == until_hour`): never quiet, no test window.
    pub fn is_empty(&self) -> bool {
        self.from_hour == self.until_hour
    }

    /// Whether `at` falls in the span.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let hour = at.with_timezone(&self.tz).hour() as u8;
        match self.from_hour.cmp(&self.until_hour) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => hour >= self.from_hour && hour < self.until_hour,
            std::cmp::Ordering::Greater => hour >= self.from_hour || hour < self.until_hour,
        }
    }

    /// The end of the span `at` is in, otherwise of the next one (for quiet hours: the next
    /// morning). Without a span, a day after `at`.
    pub fn next_end(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_empty() {
            return at + Duration::days(1);
        }
        let night = if self.contains(at) { at } else { self.next_hour(at, self.from_hour) };
        self.next_hour(night, self.until_hour)
    }

    /// The end of the first whole span that starts after `at`: when the daily test alarm is
    /// due next for a device first heard at `at`, or that sent its test alarm at `at` in the
    /// span before. Without a span, a day after `at`.
    pub fn end_of_next_whole(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_empty() {
            return at + Duration::days(1);
        }
        self.next_end(self.next_hour(at, self.from_hour))
    }

    /// The first time after `after` that the local clock shows `hour`:00.
    fn next_hour(&self, after: DateTime<Utc>, hour: u8) -> DateTime<Utc> {
        let time = NaiveTime::from_hms_opt(u32::from(hour), 0, 0).unwrap_or_default();
        let mut day = after.with_timezone(&self.tz).date_naive();
        for _ in 0..3 {
            // A local time skipped by a clock change has no `earliest`: try the next day.
            if let Some(t) = self.tz.from_local_datetime(&day.and_time(time)).earliest()
                && t.with_timezone(&Utc) > after
            {
                return t.with_timezone(&Utc);
            }
            day += Duration::days(1);
        }
        after + Duration::days(1)
    }
}

/// The tenant's battery rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatteryRule {
    /// Alert at or below this level.
    pub low_pct: u8,
    /// Re-armed at or above `low_pct + rearm_margin_pct`, or when charging.
    pub rearm_margin_pct: u8,
    /// When an alert that can wait waits.
    pub quiet: DailyHours,
}

/// Where a device's low-battery alert stands (stored as its `low_battery` deadline row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatteryState {
    /// No alert for this discharge yet.
    #[default]
    Armed,
    /// Low at night: the alert waits until then (the row's due time).
    Waiting(DateTime<Utc>),
    /// Alerted for this discharge, at this level (100 when not known: after a restart).
    Alerted(u8),
}

/// What a reading leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatteryDecision {
    /// Nothing changes.
    Nothing,
    /// Raise the alert now (`early`: above the threshold, from the trend).
    Raise {
        /// Raised from the trend before the level reached the threshold.
        early: bool,
        /// When the trend says it will be empty, if it says.
        empty_at: Option<DateTime<Utc>>,
        /// The level.
        pct: u8,
    },
    /// Low, but it lasts the night: wait until the morning.
    WaitUntil(DateTime<Utc>),
    /// Charging or well above the threshold: the next discharge may alert again.
    Rearm,
}

/// One device's battery readings and alert state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatteryTrack {
    /// Its alert state.
    pub state: BatteryState,
    readings: VecDeque<(DateTime<Utc>, u8)>,
}

impl BatteryTrack {
    /// A track in `state` without readings (after a restart).
    pub fn new(state: BatteryState) -> Self {
        Self { state, readings: VecDeque::new() }
    }

    /// The newest reading's level.
    pub fn last_pct(&self) -> Option<u8> {
        self.readings.back().map(|(_, p)| *p)
    }

    /// When the readings say the battery will be empty: the least-squares fall of the readings
    /// of the last hours (since the last charge), extrapolated from the newest. `None` without a
    /// fall over at least an hour of readings: a short span of noisy whole-percent readings
    /// would cry wolf right after every charge.
    pub fn empty_at(&self) -> Option<DateTime<Utc>> {
        let &(last_at, last) = self.readings.back()?;
        let &(first_at, _) = self.readings.front()?;
        if last_at - first_at < TREND_MIN_SPAN {
            return None;
        }
        let n = self.readings.len() as f64;
        let hours = |t: DateTime<Utc>| (t - first_at).num_milliseconds() as f64 / 3_600_000.0;
        let mean_t = self.readings.iter().map(|(t, _)| hours(*t)).sum::<f64>() / n;
        let mean_p = self.readings.iter().map(|(_, p)| f64::from(*p)).sum::<f64>() / n;
        let (mut cov, mut var) = (0.0, 0.0);
        for (t, p) in &self.readings {
            let dt = hours(*t) - mean_t;
            cov += dt * (f64::from(*p) - mean_p);
            var += dt * dt;
        }
        let per_hour = -cov / var;
        let hours_left = f64::from(last) / per_hour;
        // No fall, or one so slow it says nothing about the coming night (and would overflow).
        if !(per_hour > 0.0 && hours_left < 24.0 * 7.0) {
            return None;
        }
        last_at.checked_add_signed(Duration::milliseconds((hours_left * 3_600_000.0) as i64))
    }

    /// Takes a reading of `pct` at `at` and decides; the caller applies the decision's state
    /// once it is stored ([`BatteryTrack::settle`]). Readings older than the newest are ignored.
    pub fn reading(&mut self, rule: &BatteryRule, at: DateTime<Utc>, pct: u8) -> BatteryDecision {
        let previous = self.readings.back().copied();
        if previous.is_some_and(|(t, _)| at <= t) {
            return BatteryDecision::Nothing;
        }
        let charging = previous.is_some_and(|(_, p)| pct >= p.saturating_add(CHARGING_RISE_PCT));
        if charging {
            // A new discharge starts here: the old readings say nothing about it.
            self.readings.clear();
        }
        self.readings.push_back((at, pct));
        while self.readings.front().is_some_and(|(t, _)| at - *t > TREND_WINDOW) {
            self.readings.pop_front();
        }
        // Re-armed by charging, or by a level the margin above both the threshold and the level
        // it alerted at (an early alert above the threshold must not re-arm itself).
        let rearm_at = |alerted: u8| rule.low_pct.max(alerted).saturating_add(rule.rearm_margin_pct);
        match self.state {
            BatteryState::Alerted(at_pct) => {
                return if charging || pct >= rearm_at(at_pct) {
                    BatteryDecision::Rearm
                } else {
                    BatteryDecision::Nothing
                };
            }
            BatteryState::Waiting(_) if charging || pct >= rearm_at(0) => return BatteryDecision::Rearm,
            _ => {}
        }
        let morning = rule.quiet.next_end(at);
        let empty_at = self.empty_at();
        let dies_first = empty_at.is_some_and(|e| e <= morning);
        if pct <= rule.low_pct {
            if rule.quiet.contains(at) && !dies_first {
                return match self.state {
                    BatteryState::Waiting(_) => BatteryDecision::Nothing,
                    _ => BatteryDecision::WaitUntil(morning),
                };
            }
            return BatteryDecision::Raise { early: false, empty_at, pct };
        }
        if dies_first {
            return BatteryDecision::Raise { early: true, empty_at, pct };
        }
        BatteryDecision::Nothing
    }

    /// Applies a decision once it is stored.
    pub fn settle(&mut self, decision: BatteryDecision) {
        match decision {
            BatteryDecision::Nothing => {}
            BatteryDecision::Raise { pct, .. } => self.state = BatteryState::Alerted(pct),
            BatteryDecision::WaitUntil(t) => self.state = BatteryState::Waiting(t),
            BatteryDecision::Rearm => self.state = BatteryState::Armed,
        }
    }
}

/// The longest a watch is kept reporting fast for one suspected exit: a wearer lingering just
/// outside the zone, never clear of its margin, must not drain the watch.
pub const FAST_REPORTING_AT_MOST: Duration = Duration::minutes(10);

/// Where a device's battery-aware reporting stands (absent: its normal interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporting {
    /// Told to report fast since this fix time, while an exit is suspected.
    Fast(DateTime<Utc>),
    /// Told to report normally again although the suspicion lasts: it lasted too long.
    Capped,
}

/// What a device is told about its report interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tell {
    /// Report at the fast interval.
    Fast,
    /// Report at the normal interval.
    Normal,
    /// Nothing (it already reports normally).
    Nothing,
}

/// Battery-aware reporting: how a device's reporting changes after a report at `at`, where
/// `suspected` says whether the exit policy awaits the confirmation of an exit. Fast from the
/// first fix outside until the exit is confirmed or cleared, at most
/// [`FAST_REPORTING_AT_MOST`]. Returns the new state (`None`: normal) and what to tell the
/// device, or `None` when nothing changes.
pub fn reporting_change(
    told: Option<Reporting>,
    suspected: bool,
    at: DateTime<Utc>,
) -> Option<(Option<Reporting>, Tell)> {
    match (told, suspected) {
        (None, true) => Some((Some(Reporting::Fast(at)), Tell::Fast)),
        (Some(Reporting::Fast(since)), true) if at - since >= FAST_REPORTING_AT_MOST => {
            Some((Some(Reporting::Capped), Tell::Normal))
        }
        (Some(Reporting::Fast(_)), false) => Some((None, Tell::Normal)),
        (Some(Reporting::Capped), false) => Some((None, Tell::Nothing)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> BatteryRule {
        BatteryRule {
            low_pct: 20,
            rearm_margin_pct: 10,
            quiet: DailyHours { tz: chrono_tz::Europe::Stockholm, from_hour: 22, until_hour: 7 },
        }
    }

    /// Stockholm local time on a winter day (UTC+1).
    fn local(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        chrono_tz::Europe::Stockholm
            .with_ymd_and_hms(2026, 12, day, hour, minute, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Feeds readings and settles each decision; returns the decisions that were not `Nothing`.
    fn feed(
        track: &mut BatteryTrack,
        readings: &[(DateTime<Utc>, u8)],
    ) -> Vec<(DateTime<Utc>, BatteryDecision)> {
        let mut out = Vec::new();
        for &(at, pct) in readings {
            let d = track.reading(&rule(), at, pct);
            track.settle(d);
            if d != BatteryDecision::Nothing {
                out.push((at, d));
            }
        }
        out
    }

    #[test]
    fn quiet_hours_wrap_midnight_and_the_morning_is_the_end_of_the_coming_night() {
        let q = rule().quiet;
        assert!(q.contains(local(3, 22, 0)) && q.contains(local(4, 6, 59)) && q.contains(local(4, 0, 30)));
        assert!(!q.contains(local(4, 7, 0)) && !q.contains(local(3, 21, 59)) && !q.contains(local(3, 12, 0)));
        assert_eq!(q.next_end(local(3, 12, 0)), local(4, 7, 0), "daytime: after the coming night");
        assert_eq!(q.next_end(local(3, 23, 0)), local(4, 7, 0));
        assert_eq!(q.next_end(local(4, 3, 0)), local(4, 7, 0));
        assert_eq!(q.next_end(local(4, 7, 0)), local(5, 7, 0));
        let day_shift = DailyHours { tz: chrono_tz::Europe::Stockholm, from_hour: 1, until_hour: 6 };
        assert!(day_shift.contains(local(3, 2, 0)) && !day_shift.contains(local(3, 6, 0)));
        assert_eq!(day_shift.next_end(local(3, 12, 0)), local(4, 6, 0));
        assert_eq!(day_shift.next_end(local(3, 0, 30)), local(3, 6, 0));
    }

    #[test]
    fn the_next_whole_test_window_starts_after_the_time_given() {
        let window = DailyHours { tz: chrono_tz::Europe::Stockholm, from_hour: 9, until_hour: 12 };
        assert_eq!(window.end_of_next_whole(local(3, 8, 0)), local(3, 12, 0), "before today's window");
        assert_eq!(window.end_of_next_whole(local(3, 10, 0)), local(4, 12, 0), "in it: tomorrow's");
        assert_eq!(window.end_of_next_whole(local(3, 13, 0)), local(4, 12, 0));
        let night = DailyHours { tz: chrono_tz::Europe::Stockholm, from_hour: 22, until_hour: 2 };
        assert_eq!(night.end_of_next_whole(local(3, 23, 0)), local(5, 2, 0));
        assert_eq!(night.end_of_next_whole(local(3, 12, 0)), local(4, 2, 0));
    }

    #[test]
    fn a_slow_discharge_alerts_once_at_the_threshold_and_again_only_after_charging() {
        let mut track = BatteryTrack::default();
        // 1 point an hour from 30 % at 08:00, reporting every 10 minutes: 20 % at 18:00, which
        // lasts far past the morning.
        let readings: Vec<_> =
            (0..73).map(|i| (local(3, 8 + i / 6, (i % 6) * 10), 30 - (i / 6) as u8)).collect();
        let out = feed(&mut track, &readings);
        assert_eq!(out.len(), 1, "one alert per discharge, not one per report: {out:?}");
        assert_eq!(out[0].0, local(3, 18, 0));
        assert!(matches!(out[0].1, BatteryDecision::Raise { early: false, .. }));
        // Noise (a point up, a point down) re-arms nothing; charging does.
        assert!(feed(&mut track, &[(local(3, 20, 10), 19), (local(3, 20, 20), 18)]).is_empty());
        let out = feed(&mut track, &[(local(3, 20, 30), 40)]);
        assert_eq!(out, [(local(3, 20, 30), BatteryDecision::Rearm)]);
        // The next discharge alerts again.
        let out = feed(&mut track, &[(local(4, 12, 0), 25), (local(4, 13, 0), 20)]);
        assert!(matches!(out[..], [(_, BatteryDecision::Raise { .. })]), "{out:?}");
    }

    #[test]
    fn a_flat_or_noisy_battery_after_a_charge_predicts_nothing() {
        let mut track = BatteryTrack::default();
        // Full, then flat with a point of noise: no trend, and no overflow on a tiny slope.
        let readings: Vec<_> =
            (0..36).map(|i| (local(3, 8 + i / 6, (i % 6) * 10), 100 - (i % 2) as u8)).collect();
        assert!(feed(&mut track, &readings).is_empty());
        assert_eq!(track.empty_at(), None);
        // 2 %/h with ±1 of noise right after a charge: nothing in the first hour.
        let mut track = BatteryTrack::default();
        let readings =
            [(local(4, 8, 0), 100), (local(4, 8, 10), 98), (local(4, 8, 20), 97), (local(4, 8, 30), 96)];
        assert!(feed(&mut track, &readings).is_empty());
        assert_eq!(track.empty_at(), None, "less than an hour of readings");
    }

    #[test]
    fn a_steep_discharge_in_daytime_alerts_early_before_the_night() {
        let mut track = BatteryTrack::default();
        // 5 points an hour from 60 % at 14:00: empty around 02:00, before the morning.
        let readings: Vec<_> = (0..5).map(|h| (local(3, 14 + h, 0), 60 - 5 * h as u8)).collect();
        let out = feed(&mut track, &readings);
        let [(at, BatteryDecision::Raise { early: true, empty_at: Some(empty), pct: 55 })] = out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(at, local(3, 15, 0), "raised as soon as the trend is drawn, in daytime");
        assert!(empty < local(4, 7, 0));
        // Still falling: no second alert, though the level is above threshold + margin.
        assert!(feed(&mut track, &[(local(3, 19, 0), 35), (local(3, 20, 0), 30)]).is_empty());
    }

    #[test]
    fn at_night_a_low_battery_that_lasts_waits_for_the_morning_but_one_that_dies_does_not() {
        let mut track = BatteryTrack::default();
        // Slow: 1 point an hour, 20 % at 23:00 lasts until the next afternoon.
        let readings: Vec<_> = (0..4).map(|h| (local(3, 20 + h, 0), 23 - h as u8)).collect();
        let out = feed(&mut track, &readings);
        assert_eq!(out, [(local(3, 23, 0), BatteryDecision::WaitUntil(local(4, 7, 0)))]);
        assert!(feed(&mut track, &[(local(4, 1, 0), 18)]).is_empty(), "still waiting, not re-decided");

        // Steep: 4 points an hour, 20 % at 23:00 is empty at 04:00.
        let mut track = BatteryTrack::default();
        let readings: Vec<_> = (0..4).map(|h| (local(3, 20 + h, 0), 32 - 4 * h as u8)).collect();
        let out = feed(&mut track, &readings);
        assert!(matches!(out[..], [(_, BatteryDecision::Raise { .. })]), "{out:?}");
        assert!(out[0].0 < local(4, 4, 0));
    }
}
